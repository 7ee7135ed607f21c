/**
 * The "API token required" modal. The pasted token is traded for a session at once (session.ts) and then
 * forgotten: it is never stored in the browser and never put in a URL. Shown when the API answers 401, or
 * from the header's token button.
 */
import { h } from "./dom";
import { isSignedIn, signInWithToken, signOut } from "./session";

let pending: Promise<boolean> | null = null;

/** "run `make run` first" → ["run ", <code>make run</code>, " first"] */
function withCode(text: string): (string | HTMLElement)[] {
  return text.split("`").map((part, i) => (i % 2 ? h("code", {}, part) : part));
}

/**
 * Ask for the token in a modal and sign in with it. Concurrent callers share one prompt; resolves true once
 * signed in, false when cancelled. A rejected token keeps the modal open with the reason.
 * `reason` explains why it is asked for.
 */
export function promptForToken(reason?: string): Promise<boolean> {
  if (pending) return pending;
  pending = new Promise<boolean>((resolve) => {
    const input = h("input", {
      type: "password",
      id: "token-input",
      "data-testid": "token-input",
      autocomplete: "off",
      placeholder: "Paste the API token",
    });
    const problem = h("p", { class: "field-error", "data-testid": "token-error", role: "alert", hidden: true });
    const close = (signedIn: boolean) => {
      overlay.remove();
      document.removeEventListener("keydown", onKey);
      pending = null;
      resolve(signedIn);
    };
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") close(false);
    };
    const submit = async () => {
      const token = input.value.trim();
      if (!token) return;
      input.value = "";
      if (await signInWithToken(token)) close(true);
      else {
        problem.textContent = "The backend rejected this token. Paste the current API token.";
        problem.hidden = false;
        input.focus();
      }
    };
    const form = h(
      "form",
      {
        class: "modal",
        role: "dialog",
        "aria-modal": "true",
        "aria-labelledby": "token-title",
        onsubmit: ((e: Event) => {
          e.preventDefault();
          void submit();
        }) as EventListener,
      },
      h("h2", { id: "token-title" }, "API token required"),
      h(
        "p",
        { class: "muted" },
        ...withCode(reason ?? "This action needs the Flowerbed API token. `make run` prints it when the platform starts; this browser keeps a session, not the token."),
      ),
      h("label", { for: "token-input", class: "field-label" }, "Token"),
      input,
      problem,
      h(
        "div",
        { class: "modal-actions" },
        isSignedIn()
          ? h("button", { type: "button", class: "btn btn-ghost", "data-testid": "sign-out", onclick: () => void signOut().then(() => close(false)) }, "Sign out")
          : null,
        h("button", { type: "button", class: "btn btn-ghost", onclick: () => close(false) }, "Cancel"),
        h("button", { type: "submit", class: "btn btn-primary", "data-testid": "token-save" }, "Save token"),
      ),
    );
    const overlay = h("div", { class: "modal-overlay", "data-testid": "token-modal" }, form);
    document.addEventListener("keydown", onKey);
    document.body.appendChild(overlay);
    input.focus();
  });
  return pending;
}
