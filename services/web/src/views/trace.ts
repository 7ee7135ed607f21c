/**
 * Trace waterfall, `#/traces/<trace_id>`: local mode's built-in trace view (compose links to Grafana instead).
 *
 * `GET /traces/{id}` returns every span of the trace; they become a tree ordered by start time
 * (POST /training/start → fl.run → fl.round → fl.client.train → train.epoch → train.step, with aggregate,
 * evaluate.centralized and checkpoint.save under fl.round), so rounds and clients group themselves.
 *
 * The bars are absolutely positioned DOM elements, not a uPlot chart: uPlot plots series over a shared x axis
 * and has no interval (Gantt/waterfall) chart type, and each row here is also a tree node with its own label,
 * toggle and click target.
 *
 * A 10-round run can carry tens of thousands of train.step spans, so only expanded subtrees are rendered:
 * nodes whose children are epochs or steps start collapsed, and a node shows at most PAGE children at a time
 * ("N more train.step spans" then reveals the next page).
 */
import { ApiError, api } from "../api";
import { h, mount, stateBlock } from "../dom";
import { href, type Route } from "../router";
import { axisPanel, detailPanel, headerPanel, legendPanel, rowsPanel } from "./trace_panels";
import { buildTree, isOpen, type SpanNode, type SpanTree } from "./trace_tree";

const POLL_MS = 8000;
const POLL_TRIES = 40;

/** The trace's data stream: `GET /traces/{id}`, polled while the run still adds spans, as span-tree snapshots. */
function traceStream(traceId: string, onTree: (tree: SpanTree, spanCount: number) => void, onError: (err: unknown) => void) {
  let alive = true;
  let timer: number | undefined;
  let tries = 0;
  let loaded = false;
  const load = async () => {
    window.clearTimeout(timer);
    try {
      const trace = await api.trace(traceId);
      if (!alive) return;
      loaded = true;
      onTree(buildTree(trace.spans), trace.spans.length);
      // A run still training keeps adding spans; fl.run ends (and is exported) last.
      const complete = trace.spans.some((s) => s.name === "fl.run");
      if (!complete && tries++ < POLL_TRIES) timer = window.setTimeout(() => void load(), POLL_MS);
    } catch (err) {
      if (!alive || loaded) return; // keep what is shown; the Refresh button retries
      const retrying = err instanceof ApiError && err.status === 404 && tries++ < POLL_TRIES;
      onError(err);
      if (retrying) timer = window.setTimeout(() => void load(), POLL_MS);
    }
  };
  void load();
  return {
    load: () => void load(),
    dispose: () => {
      alive = false;
      window.clearTimeout(timer);
    },
  };
}

export function renderTrace(root: HTMLElement, route: Route): () => void {
  const traceId = route.path[1];
  let tree: SpanTree | null = null;
  let spanCount = 0;
  let selected: string | null = null;
  const expanded = new Map<string, boolean>(); // the user's choice; absent = the default
  const shown = new Map<string, number>(); // children revealed per node (pagination)

  const header = h("div");
  const legend = h("div", { class: "wf-legend" });
  const rowsHost = h("div", { class: "wf-rows", role: "tree", "aria-label": "Spans of this trace", "data-testid": "trace-waterfall" });
  const axis = h("div", { class: "wf-row wf-axis", "aria-hidden": "true" });
  const detail = h("aside", { class: "card trace-detail", "data-testid": "span-detail", "aria-live": "polite" });
  const body = h("div", { class: "trace-layout" }, h("section", { class: "card trace-card" }, legend, h("div", { class: "wf" }, axis, rowsHost)), detail);

  mount(root, stateBlock("loading", "Loading trace…", `Trace ${traceId}`));

  const actions = {
    onToggle: (node: SpanNode, open: boolean) => {
      expanded.set(node.span.span_id, open);
      renderRows();
    },
    onSelect: (spanId: string | null) => select(spanId),
    onShowMore: (key: string, count: number) => {
      shown.set(key, count);
      renderRows();
    },
  };

  const stream = traceStream(
    traceId,
    (fresh, count) => {
      const first = tree === null;
      tree = fresh;
      spanCount = count;
      if (first) mount(root, header, body);
      mount(header, headerPanel(tree, traceId, spanCount, () => stream.load()));
      mount(legend, legendPanel(tree));
      mount(axis, axisPanel(tree));
      renderRows();
      renderDetail();
    },
    (err) => {
      const notFound = err instanceof ApiError && err.status === 404;
      const retry = h("button", { class: "btn", onclick: () => (mount(root, stateBlock("loading", "Loading trace…")), stream.load()) }, "Try again");
      mount(
        root,
        notFound
          ? stateBlock(
              "empty",
              "No spans stored for this trace yet",
              "Spans reach the backend a few seconds after they end; a run that just started has few. Local mode keeps only the newest spans, so an old run's trace may be gone. This page checks again by itself.",
              h("div", { class: "state-actions" }, retry, h("a", { class: "btn btn-ghost", href: href("runs") }, "All runs")),
            )
          : stateBlock("error", "Could not load the trace", (err as Error).message, retry),
      );
    },
  );

  function renderRows() {
    if (!tree) return;
    const focused = (document.activeElement as HTMLElement | null)?.dataset?.spanId;
    rowsHost.replaceChildren(...rowsPanel(tree, { expanded, shown, selected }, actions));
    if (focused) rowsHost.querySelector<HTMLElement>(`[data-span-id="${CSS.escape(focused)}"]`)?.focus();
  }

  function renderDetail() {
    const node = selected && tree ? tree.byId.get(selected) : undefined;
    detail.classList.toggle("has-selection", Boolean(node));
    if (tree) mount(detail, detailPanel(tree, node, select));
  }

  function select(spanId: string | null) {
    selected = spanId;
    // Reveal a selected span whose ancestors are collapsed (e.g. "Parent" links in the panel).
    for (let n = spanId ? tree?.byId.get(spanId)?.parent : null; n; n = n.parent) if (!isOpen(n, expanded)) expanded.set(n.span.span_id, true);
    renderRows();
    renderDetail();
    // Narrow screens: the panel is a bottom sheet; keep the chosen row above it.
    root.classList.toggle("trace-sheet-open", Boolean(spanId));
    if (spanId && window.matchMedia("(max-width: 1099px)").matches) {
      const el = rowsHost.querySelector<HTMLElement>(`[data-span-id="${CSS.escape(spanId)}"]`);
      const top = el?.getBoundingClientRect().top ?? 0;
      if (el && top > window.innerHeight * 0.38) window.scrollBy({ top: top - window.innerHeight * 0.2 });
    }
  }

  const onKey = (e: KeyboardEvent) => {
    if (e.key === "Escape" && selected) select(null);
  };
  document.addEventListener("keydown", onKey);

  return () => {
    stream.dispose();
    root.classList.remove("trace-sheet-open");
    document.removeEventListener("keydown", onKey);
  };
}
