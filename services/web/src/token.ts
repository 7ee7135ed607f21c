/**
 * The API token, Jupyter style: `?token=…` in the URL is stored in localStorage and removed from the
 * address bar; without one, the user is asked once (a small modal) when the API answers 401.
 * This module must not make requests itself; api.ts decides when a token is needed.
 */
import { h } from "./dom";

const KEY = "flowerbed.token";

export function getToken(): string | null {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) localStorage.setItem(KEY, token);
    else localStorage.removeItem(KEY);
  } catch {
    /* private mode: the token lives only for this page */
  }
  document.dispatchEvent(new CustomEvent("flowerbed:token"));
}

/** Take `?token=` out of the URL (keeping the hash route) and remember it. */
export function captureTokenFromUrl(): void {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  setToken(token);
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

let pending: Promise<string | null> | null = null;

/** "run `make run` first" → ["run ", <code>make run</code>, " first"] */
function withCode(text: string): (string | HTMLElement)[] {
  return text.split("`").map((part, i) => (i % 2 ? h("code", {}, part) : part));
}

/**
 * Ask for the token in a modal. Concurrent callers share one prompt; resolves null when cancelled.
 * `reason` explains why (e.g. the previous token was rejected).
 */
export function promptForToken(reason?: string): Promise<string | null> {
  if (pending) return pending;
  pending = new Promise<string | null>((resolve) => {
    const input = h("input", {
      type: "password",
      id: "token-input",
      "data-testid": "token-input",
      autocomplete: "off",
      placeholder: "Paste the API token",
      value: getToken() ?? "",
    });
    const close = (value: string | null) => {
      overlay.remove();
      document.removeEventListener("keydown", onKey);
      pending = null;
      if (value) setToken(value);
      resolve(value);
    };
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") close(null);
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
          close(input.value.trim() || null);
        }) as EventListener,
      },
      h("h2", { id: "token-title" }, "API token required"),
      h(
        "p",
        { class: "muted" },
        ...withCode(reason ?? "This action needs the Flowerbed API token. `make run` prints it when the platform starts; it is kept in this browser only."),
      ),
      h("label", { for: "token-input", class: "field-label" }, "Token"),
      input,
      h(
        "div",
        { class: "modal-actions" },
        h("button", { type: "button", class: "btn btn-ghost", onclick: () => close(null) }, "Cancel"),
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
