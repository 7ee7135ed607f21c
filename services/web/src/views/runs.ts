/**
 * Run history: status filter, pagination, and an overlay of the accuracy curves of the selected runs.
 * The filter and page live in the URL hash so a view can be shared or reloaded.
 */
import { RUN_STATUSES, api, type RunDetail, type RunSummary } from "../api";
import { compareChart } from "../charts";
import { h, mount, stateBlock } from "../dom";
import { formatAccuracy, formatDuration, formatLoss, formatTimestamp, shortId, toMillis } from "../format";
import { href, navigate, type Route } from "../router";
import { roundAccuracy, sortedRounds } from "../run_metrics";
import { card, pageHeader, statusBadge, table, traceAnchor } from "../widgets";

const PAGE_SIZE = 20;

function duration(r: RunSummary): string {
  const start = toMillis(r.started_at ?? null) ?? toMillis(r.created_at);
  const end = toMillis(r.finished_at ?? null);
  if (start === null) return "—";
  if (end === null) return r.status === "running" || r.status === "pending" ? `${formatDuration((Date.now() - start) / 1000)}…` : "—";
  return formatDuration((end - start) / 1000);
}

export function renderRuns(root: HTMLElement, route: Route): () => void {
  const status = route.query.get("status") ?? "";
  const page = Math.max(0, Number(route.query.get("page") ?? 0) || 0);
  const selected = new Set<string>((route.query.get("compare") ?? "").split(",").filter(Boolean));
  let alive = true;
  let destroyChart: (() => void) | null = null;

  const filter = h(
    "select",
    { "data-testid": "status-filter", "aria-label": "Filter by status", class: "select-inline" },
    h("option", { value: "" }, "All statuses"),
    RUN_STATUSES.map((s) => h("option", { value: s }, s.charAt(0).toUpperCase() + s.slice(1))),
  );
  filter.value = status;
  filter.addEventListener("change", () => navigate("runs", { status: filter.value }));

  const listBody = h("div", {}, stateBlock("loading", "Loading runs…"));
  const pager = h("div", { class: "pager" });
  const compareButton = h("button", { class: "btn btn-primary", "data-testid": "compare-button", disabled: true }, "Compare");
  const compareBody = h("div");
  const compareCard = card("Compare accuracy", [compareBody], { testid: "compare-card" });
  compareCard.hidden = true;

  const updateCompareButton = () => {
    compareButton.disabled = selected.size < 2;
    compareButton.textContent = selected.size ? `Compare ${selected.size} run${selected.size === 1 ? "" : "s"}` : "Compare";
  };

  const showComparison = async () => {
    compareCard.hidden = false;
    mount(compareBody, stateBlock("loading", "Loading rounds of the selected runs…"));
    try {
      const runs: RunDetail[] = await Promise.all([...selected].map((id) => api.run(id)));
      if (!alive) return;
      destroyChart?.();
      const host = h("div", { class: "chart", "data-testid": "compare-chart" });
      mount(compareBody, host);
      destroyChart = compareChart(
        host,
        runs.map((r) => {
          const rounds = sortedRounds(r.rounds);
          return { label: `${shortId(r.run_id)} · ${r.config?.model ?? ""}`.trim(), rounds: rounds.map((x) => x.round), accuracy: rounds.map(roundAccuracy) };
        }),
      );
      compareCard.scrollIntoView({ block: "nearest" });
    } catch (err) {
      mount(compareBody, stateBlock("error", "Could not load the selected runs", (err as Error).message));
    }
  };
  compareButton.addEventListener("click", () => void showComparison());

  mount(
    root,
    pageHeader("Runs", "Every training run, newest first. Tick two or more to compare their accuracy.", h("a", { class: "btn btn-primary", href: href("start"), "data-testid": "new-run" }, "New run")),
    card(null, [h("div", { class: "toolbar" }, h("label", { class: "toolbar-label" }, "Status", filter), h("div", { class: "spacer" }), compareButton), listBody, pager], { testid: "runs-card" }),
    compareCard,
  );
  updateCompareButton();

  api
    .runs({ status: status || undefined, limit: PAGE_SIZE, offset: page * PAGE_SIZE })
    .then((data) => {
      if (!alive) return;
      if (!data.items.length) {
        mount(
          listBody,
          status
            ? stateBlock("empty", `No ${status} runs`, "Try another status filter.")
            : stateBlock("empty", "No runs yet", "Start a training run to see it here.", h("a", { class: "btn btn-primary", href: href("start") }, "Start training")),
        );
        return;
      }
      const rows = data.items.map((r) => {
        const box = h("input", { type: "checkbox", "aria-label": `Select run ${r.run_id}`, "data-testid": "run-select", checked: selected.has(r.run_id) });
        box.addEventListener("change", () => {
          if (box.checked) selected.add(r.run_id);
          else selected.delete(r.run_id);
          updateCompareButton();
        });
        const open = () => navigate(`runs/${r.run_id}`);
        const row = h(
          "tr",
          { class: "row-link", "data-testid": "run-row", "data-run-id": r.run_id },
          h("td", { class: "select-cell", onclick: ((e: Event) => e.stopPropagation()) as EventListener }, box),
          h("td", {}, h("a", { href: href(`runs/${r.run_id}`), class: "mono" }, shortId(r.run_id))),
          h("td", {}, statusBadge(r.status)),
          h("td", {}, String(r.config?.model ?? "—")),
          h("td", { class: "num" }, `${r.rounds_completed ?? 0}/${r.num_rounds ?? r.config?.num_rounds ?? "?"}`),
          h("td", { class: "num" }, formatAccuracy(r.accuracy)),
          h("td", { class: "num" }, formatLoss(r.loss)),
          h("td", {}, formatTimestamp(r.created_at)),
          h("td", { class: "num" }, duration(r)),
          // The list answer (RunSummary) carries no trace_id/trace_url today, so this cell stays empty until it does.
          h("td", {}, traceAnchor(r as { trace_id?: string | null; trace_url?: string | null }, "Trace")),
        );
        row.addEventListener("click", open);
        return row;
      });
      mount(
        listBody,
        table(
          ["", "Run", "Status", { label: "Model", hideSm: true }, { label: "Rounds", numeric: true, hideSm: true }, { label: "Accuracy", numeric: true }, { label: "Loss", numeric: true, hideSm: true }, { label: "Created", hideSm: true }, { label: "Duration", numeric: true, hideSm: true }, { label: "", hideSm: true }],
          rows,
          "runs-table",
        ),
      );
      const from = data.offset + 1;
      const to = data.offset + data.items.length;
      const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
      mount(
        pager,
        h("span", { class: "muted", "data-testid": "runs-range" }, `${from}–${to} of ${data.total}`),
        h("div", { class: "spacer" }),
        h("button", { class: "btn btn-sm", disabled: page === 0, onclick: () => navigate("runs", { status, page: page - 1 || null }) }, "← Previous"),
        h("span", { class: "muted" }, `Page ${page + 1} of ${pages}`),
        h("button", { class: "btn btn-sm", disabled: to >= data.total, "data-testid": "next-page", onclick: () => navigate("runs", { status, page: page + 1 }) }, "Next →"),
      );
      if (selected.size >= 2) void showComparison();
    })
    .catch((err: unknown) => {
      if (!alive) return;
      mount(listBody, stateBlock("error", "Could not load runs", (err as Error).message, h("button", { class: "btn", onclick: () => renderRuns(root, route) }, "Retry")));
    });

  return () => {
    alive = false;
    destroyChart?.();
  };
}
