/** Stored checkpoints (global models), optionally for one run: download, resume, lineage, and "Try it" (predictions). */
import { api, downloadUrl } from "../api";
import { h, mount, stateBlock } from "../dom";
import { formatAccuracy, formatBytes, formatLoss, formatTimestamp, shortId, toMillis } from "../format";
import { href, navigate, type Route } from "../router";
import { card, pageHeader, table } from "../widgets";
import { tryItCard } from "./try_it";

export function renderModels(root: HTMLElement, route: Route): () => void {
  let alive = true;
  const runId = route.query.get("run_id") ?? "";
  const tryModel = route.query.get("try") ?? undefined;
  const input = h("input", { type: "search", placeholder: "Filter by run id", value: runId, "data-testid": "models-run-filter", "aria-label": "Run id" });
  const form = h("form", { class: "toolbar" }, h("label", { class: "toolbar-label" }, "Run", input), h("button", { class: "btn", type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    navigate("models", { run_id: input.value.trim() });
  });
  const body = h("div", {}, stateBlock("loading", "Loading models…"));
  const tryIt = h("div", {});
  mount(root, pageHeader("Models", "Checkpoints of the global model, one per round. Verified by SHA-256."), tryIt, card(null, [form, body], { testid: "models-card" }));

  api
    .models(runId || undefined)
    .then(({ items }) => {
      if (!alive) return;
      if (!items.length) {
        mount(body, stateBlock("empty", runId ? "No checkpoints for this run" : "No checkpoints yet", "The server stores the global model after every round of a run."));
        return;
      }
      const newest = (m: (typeof items)[number]) => toMillis(m.created_at ?? null) ?? 0;
      const sorted = [...items].sort((a, b) => newest(b) - newest(a) || b.round - a.round);
      mount(tryIt, tryItCard(sorted, tryModel));
      const rows = sorted.map((m) =>
        h(
          "tr",
          { "data-testid": "model-row" },
          h("td", { class: "mono", title: m.model_id }, shortId(m.model_id, 12)),
          h("td", {}, h("a", { class: "mono", href: href(`runs/${m.run_id}`) }, shortId(m.run_id))),
          h("td", { class: "num" }, String(m.round)),
          h("td", {}, m.model ?? "—"),
          h("td", { class: "num" }, formatAccuracy(m.metrics?.accuracy ?? null)),
          h("td", { class: "num" }, formatLoss(m.metrics?.loss ?? null)),
          h("td", { class: "num" }, formatBytes(m.size)),
          h("td", { class: "mono muted", title: m.sha256 ?? "" }, m.sha256 ? m.sha256.slice(0, 10) : "—"),
          h("td", {}, formatTimestamp(m.created_at ?? null)),
          h("td", {}, m.parent ? lineageButton(m.model_id, m.parent) : "—"),
          h(
            "td",
            { class: "actions" },
            h("a", { class: "btn btn-sm", href: downloadUrl(m.model_id), download: "" }, "Download"),
            h("a", { class: "btn btn-sm btn-ghost", href: href("start", { resume: m.run_id, checkpoint: m.model_id }) }, "Resume"),
          ),
        ),
      );
      mount(
        body,
        table(["Model", { label: "Run", hideSm: true }, { label: "Round", numeric: true }, { label: "Architecture", hideSm: true }, { label: "Accuracy", numeric: true }, { label: "Loss", numeric: true, hideSm: true }, { label: "Size", numeric: true, hideSm: true }, { label: "SHA-256", hideSm: true }, { label: "Created", hideSm: true }, { label: "Started from", hideSm: true }, ""], rows, "models-table"),
      );
    })
    .catch((err: unknown) => {
      if (alive) mount(body, stateBlock("error", "Could not load models", (err as Error).message));
    });
  return () => {
    alive = false;
  };
}

/** The checkpoint a model's run started from; a click unfolds the whole chain (GET /models/{id}/lineage). */
function lineageButton(modelId: string, parent: string): HTMLElement {
  const holder = h("div", { "data-testid": "model-lineage" });
  const button = h("button", { class: "btn btn-sm btn-ghost mono", type: "button", title: parent }, shortId(parent, 12));
  button.addEventListener("click", () => {
    api
      .lineage(modelId)
      .then(({ chain }) =>
        mount(
          holder,
          h(
            "ol",
            { class: "lineage" },
            chain.slice(1).map((e) => h("li", { class: "mono", title: e.model_id }, `${shortId(e.run_id)} · round ${e.round}${e.available ? "" : " (deleted)"}`)),
          ),
        ),
      )
      .catch((err: unknown) => mount(holder, (err as Error).message));
  });
  mount(holder, button);
  return holder;
}
