/** Entry point: sign-in from the link, top navigation and the hash router. Views own everything below <main>. */
import "./styles.css";
import { currentRoute, type Route } from "./router";
import { isSignedIn, refreshSession, signInFromUrl } from "./session";
import { promptForToken } from "./token";
import { renderModels } from "./views/models";
import { renderNodes } from "./views/nodes";
import { renderRun } from "./views/run";
import { renderRuns } from "./views/runs";
import { renderStart } from "./views/start";
import { renderTrace } from "./views/trace";

const app = document.getElementById("app")!;
let cleanup: (() => void) | null = null;

function viewFor(route: Route): (root: HTMLElement, route: Route) => () => void {
  const [section, id] = route.path;
  if (section === "start") return renderStart;
  if (section === "runs" && id) return renderRun;
  if (section === "traces" && id) return renderTrace;
  if (section === "nodes") return renderNodes;
  if (section === "models") return renderModels;
  return renderRuns;
}

function route(): void {
  const r = currentRoute();
  cleanup?.();
  document.querySelectorAll(".toast, .modal-overlay:not([data-testid=token-modal])").forEach((el) => el.remove());
  const section = r.path[0] || "runs";
  document.querySelectorAll<HTMLAnchorElement>(".tabs a").forEach((a) => {
    const active = a.dataset.route === (section === "traces" ? "runs" : section);
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  document.title = `${{ start: "Start training", runs: r.path[1] ? `Run ${r.path[1].slice(0, 8)}` : "Runs", traces: `Trace ${(r.path[1] ?? "").slice(0, 8)}`, nodes: "Nodes", models: "Models" }[section] ?? "Runs"} · Flowerbed`;
  cleanup = viewFor(r)(app, r);
  window.scrollTo(0, 0);
}

const tokenButton = document.getElementById("token-button")!;
function renderTokenButton(): void {
  const has = isSignedIn();
  tokenButton.textContent = has ? "Token ✓" : "Set token";
  tokenButton.classList.toggle("token-set", has);
}
tokenButton.addEventListener("click", () => void promptForToken("Paste the API token (`make run` prints it). This browser keeps a session, not the token."));
document.addEventListener("flowerbed:session", renderTokenButton);
renderTokenButton();

// Sign in first (a login code in the link, an existing session cookie), so the first view's requests
// already carry the session.
void (async () => {
  await signInFromUrl();
  await refreshSession();
  window.addEventListener("hashchange", route);
  route();
})();
