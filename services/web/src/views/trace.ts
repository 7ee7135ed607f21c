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
import { ApiError, api, type TraceEvent, type TraceSpan } from "../api";
import { h, mount, stateBlock } from "../dom";
import { shortId } from "../format";
import { href, type Route } from "../router";
import { pageHeader } from "../widgets";

interface SpanNode {
  span: TraceSpan;
  children: SpanNode[];
  parent: SpanNode | null;
  /** Its parent span is not in the trace (not exported yet, or evicted from local storage). */
  orphan: boolean;
}

type ServiceKind = "backend" | "serverapp" | "clientapp" | "other";

const COLLAPSED_CHILDREN = new Set(["train.epoch", "train.step"]);
const PAGE = 50;
const ROOT_KEY = "\u0000root";
const POLL_MS = 8000;
const POLL_TRIES = 40;

export function serviceKind(service: string): ServiceKind {
  const s = (service || "").toLowerCase();
  if (s.includes("backend")) return "backend";
  if (s.includes("serverapp") || s.includes("server")) return "serverapp";
  if (s.includes("clientapp") || s.includes("client")) return "clientapp";
  return "other";
}

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return "—";
  if (ms === 0) return "0";
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : ms < 100 ? 1 : 0)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  return `${Math.floor(s / 60)}m ${String(Math.round(s % 60)).padStart(2, "0")}s`;
}

function formatValue(v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function buildTree(spans: TraceSpan[]): { roots: SpanNode[]; byId: Map<string, SpanNode>; start: number; end: number } {
  const sorted = [...spans].sort((a, b) => a.start_ns - b.start_ns || a.end_ns - b.end_ns);
  const byId = new Map<string, SpanNode>();
  for (const span of sorted) byId.set(span.span_id, { span, children: [], parent: null, orphan: false });
  const roots: SpanNode[] = [];
  for (const node of byId.values()) {
    const parentId = node.span.parent_span_id;
    const parent = parentId && parentId !== node.span.span_id ? byId.get(parentId) : undefined;
    if (parent) {
      node.parent = parent;
      parent.children.push(node); // in start order: nodes were inserted sorted
    } else {
      node.orphan = Boolean(parentId);
      roots.push(node);
    }
  }
  let start = Infinity;
  let end = -Infinity;
  for (const s of sorted) {
    start = Math.min(start, s.start_ns);
    end = Math.max(end, s.end_ns, s.start_ns);
  }
  return { roots, byId, start, end };
}

function attrs(span: TraceSpan): Record<string, unknown> {
  return span.attributes ?? {};
}

/** A short qualifier beside the name, so rounds and clients read at a glance. */
function hint(node: SpanNode): string {
  const a = attrs(node.span);
  const parts: string[] = [];
  switch (node.span.name) {
    case "fl.round":
      if (a["fl.round"] !== undefined) parts.push(`round ${formatValue(a["fl.round"])}`);
      if (typeof a["fl.failures"] === "number" && a["fl.failures"] > 0) parts.push(`${a["fl.failures"]} failed`);
      break;
    case "fl.client.train":
    case "fl.client.evaluate":
      if (a["fl.node_id"] !== undefined) parts.push(`node ${shortId(String(a["fl.node_id"]), 8)}`);
      if (a["fl.partition_id"] !== undefined) parts.push(`partition ${formatValue(a["fl.partition_id"])}`);
      break;
    case "train.epoch":
      if (a.epoch !== undefined) parts.push(`epoch ${formatValue(a.epoch)}`);
      break;
    case "train.step":
      if (a.step !== undefined) parts.push(`step ${formatValue(a.step)}`);
      if (typeof a.loss === "number") parts.push(`loss ${a.loss.toFixed(3)}`);
      break;
    default:
      if (a["fl.round"] !== undefined && node.parent?.span.name !== "fl.round") parts.push(`round ${formatValue(a["fl.round"])}`);
  }
  return parts.join(" · ");
}

function childSummary(node: SpanNode): string {
  const counts = new Map<string, number>();
  for (const c of node.children) counts.set(c.span.name, (counts.get(c.span.name) ?? 0) + 1);
  return [...counts].map(([name, n]) => `${n} × ${name}`).join(", ");
}

export function renderTrace(root: HTMLElement, route: Route): () => void {
  const traceId = route.path[1];
  let alive = true;
  let timer: number | undefined;
  let tries = 0;
  let tree: ReturnType<typeof buildTree> | null = null;
  let spanCount = 0;
  let selected: string | null = null;
  const expanded = new Map<string, boolean>(); // the user's choice; absent = the default
  const shown = new Map<string, number>(); // children revealed per node (pagination)

  const header = h("div");
  const legend = h("div", { class: "wf-legend" });
  const rowsHost = h("div", { class: "wf-rows", role: "tree", "aria-label": "Spans of this trace", "data-testid": "trace-waterfall" });
  const axis = h("div", { class: "wf-row wf-axis", "aria-hidden": "true" });
  const detail = h("aside", { class: "card trace-detail", "data-testid": "span-detail", "aria-live": "polite" });
  const body = h(
    "div",
    { class: "trace-layout" },
    h("section", { class: "card trace-card" }, legend, h("div", { class: "wf" }, axis, rowsHost)),
    detail,
  );

  mount(root, stateBlock("loading", "Loading trace…", `Trace ${traceId}`));

  const isOpen = (node: SpanNode): boolean => expanded.get(node.span.span_id) ?? !node.children.some((c) => COLLAPSED_CHILDREN.has(c.span.name));

  const load = async () => {
    window.clearTimeout(timer);
    try {
      const trace = await api.trace(traceId);
      if (!alive) return;
      const first = tree === null;
      tree = buildTree(trace.spans);
      spanCount = trace.spans.length;
      if (first) mount(root, header, body);
      renderHeader();
      renderAxis();
      renderRows();
      renderDetail();
      // A run still training keeps adding spans; fl.run ends (and is exported) last.
      const complete = trace.spans.some((s) => s.name === "fl.run");
      if (!complete && tries++ < POLL_TRIES) timer = window.setTimeout(() => void load(), POLL_MS);
    } catch (err) {
      if (!alive) return;
      if (tree !== null) return; // keep what is shown; the Refresh button retries
      const notFound = err instanceof ApiError && err.status === 404;
      const retry = h("button", { class: "btn", onclick: () => (mount(root, stateBlock("loading", "Loading trace…")), void load()) }, "Try again");
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
      if (notFound && tries++ < POLL_TRIES) timer = window.setTimeout(() => void load(), POLL_MS);
    }
  };

  function renderHeader() {
    if (!tree) return;
    const runSpan = [...tree.byId.values()].find((n) => n.span.name === "fl.run" || attrs(n.span)["flowerbed.run_id"] !== undefined);
    const runId = runSpan ? attrs(runSpan.span)["flowerbed.run_id"] : undefined;
    const refresh = h("button", { class: "btn btn-ghost", "data-testid": "trace-refresh", onclick: () => void load() }, "Refresh");
    const back = typeof runId === "string" ? h("a", { class: "btn", href: href(`runs/${runId}`), "data-testid": "trace-run-link" }, "Back to run") : null;
    const services = new Set([...tree.byId.values()].map((n) => n.span.service));
    const subtitle = h(
      "span",
      { class: "subtitle-row" },
      h("span", { class: "mono trace-id", title: traceId }, traceId),
      h("span", { class: "chip", "data-testid": "trace-span-count" }, `${spanCount.toLocaleString("en-US")} spans`),
      h("span", { class: "chip" }, formatMs((tree.end - tree.start) / 1e6)),
    );
    mount(header, pageHeader("Trace", subtitle, ...([back, refresh].filter(Boolean) as Node[])));
    mount(
      legend,
      [...services].sort().map((s) => h("span", { class: "wf-legend-item" }, h("span", { class: `wf-dot svc-${serviceKind(s)}`, "aria-hidden": "true" }), s)),
      h("span", { class: "wf-legend-hint muted" }, "Click a span for its attributes and events."),
    );
  }

  function renderAxis() {
    if (!tree) return;
    const total = (tree.end - tree.start) / 1e6;
    mount(
      axis,
      h("div", { class: "wf-label wf-axis-label" }, "Span"),
      h(
        "div",
        { class: "wf-track" },
        [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { class: `wf-tick ${f === 1 ? "wf-tick-end" : ""} ${f > 0 && f < 1 ? "wf-tick-mid" : ""}`, style: `left:${f * 100}%` }, formatMs(total * f))),
      ),
    );
  }

  function row(node: SpanNode, depth: number): HTMLElement {
    const t = tree!;
    const s = node.span;
    const total = Math.max(1, t.end - t.start);
    const left = ((s.start_ns - t.start) / total) * 100;
    const width = Math.max(0, ((s.end_ns - s.start_ns) / total) * 100);
    const hasChildren = node.children.length > 0;
    const open = hasChildren && isOpen(node);
    const kind = serviceKind(s.service);
    const error = s.status === "error";
    const toggle = hasChildren
      ? h(
          "button",
          {
            class: "wf-toggle",
            type: "button",
            tabindex: -1,
            "data-testid": "span-toggle",
            "aria-label": `${open ? "Collapse" : "Expand"} ${s.name}`,
            title: open ? "Collapse" : `Expand: ${childSummary(node)}`,
            onclick: ((e: Event) => {
              e.stopPropagation();
              setOpen(node, !open);
            }) as EventListener,
          },
          open ? "▾" : "▸",
        )
      : h("span", { class: "wf-toggle wf-toggle-leaf", "aria-hidden": "true" });
    const label = hint(node);
    const events = (s.events ?? []).slice(0, 20);
    // Duration text beside the bar where there is room (after it), else inside a long bar, else before it.
    const after = 100 - left - width;
    const durPlace = after >= 30 || (after >= left && after >= 8) ? "after" : width >= 35 || left < 18 ? "inside" : "before";
    const el = h(
      "div",
      {
        class: `wf-row ${selected === s.span_id ? "selected" : ""} ${error ? "wf-error" : ""}`,
        role: "treeitem",
        tabindex: 0,
        "aria-level": depth + 1,
        "aria-expanded": hasChildren ? String(open) : null,
        "aria-selected": String(selected === s.span_id),
        "data-testid": "span-row",
        "data-name": s.name,
        "data-span-id": s.span_id,
        "data-service": kind,
        "data-depth": depth,
      },
      h(
        "div",
        { class: "wf-label", style: `--depth:${depth}` },
        toggle,
        h("span", { class: `wf-dot svc-${kind}`, title: s.service, "aria-hidden": "true" }),
        h("span", { class: "wf-name", "data-testid": "span-name" }, s.name),
        label ? h("span", { class: "wf-hint" }, label) : null,
        !open && hasChildren ? h("span", { class: "wf-count", title: childSummary(node) }, String(node.children.length)) : null,
        node.orphan ? h("span", { class: "wf-hint text-danger", title: "Its parent span is not stored" }, "orphan") : null,
      ),
      h(
        "div",
        { class: "wf-track" },
        h("div", { class: `wf-bar svc-${kind} ${error ? "wf-bar-error" : ""}`, style: `left:${left}%;width:${width}%` }),
        events.map((e) =>
          h("span", {
            class: `wf-event ${e.name.includes("fail") || e.name === "exception" ? "wf-event-bad" : ""}`,
            style: `left:${((e.time_ns - t.start) / total) * 100}%`,
            title: `${e.name} at +${formatMs((e.time_ns - t.start) / 1e6)}`,
          }),
        ),
        h("span", { class: `wf-dur ${durPlace === "inside" ? "wf-dur-inside" : ""}`, style: durPlace === "after" ? `left:calc(${left + width}% + 6px)` : durPlace === "before" ? `right:calc(${100 - left}% + 6px)` : `left:calc(${left}% + 6px)` }, formatMs(s.duration_ms ?? (s.end_ns - s.start_ns) / 1e6)),
      ),
    );
    el.addEventListener("click", () => select(s.span_id));
    el.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        select(s.span_id);
      } else if (e.key === "ArrowRight" && hasChildren && !open) setOpen(node, true);
      else if (e.key === "ArrowLeft" && hasChildren && open) setOpen(node, false);
      else if (e.key === "ArrowDown") (el.nextElementSibling as HTMLElement | null)?.focus();
      else if (e.key === "ArrowUp") (el.previousElementSibling as HTMLElement | null)?.focus();
      else return;
      e.preventDefault();
    });
    return el;
  }

  function moreRow(key: string, remaining: SpanNode[], depth: number, shownNow: number): HTMLElement {
    const names = new Set(remaining.map((n) => n.span.name));
    const what = names.size === 1 ? `${[...names][0]} span${remaining.length === 1 ? "" : "s"}` : "spans";
    const more = (n: number) => () => {
      shown.set(key, shownNow + n);
      renderRows();
    };
    return h(
      "div",
      { class: "wf-row wf-more", "data-testid": "span-more" },
      h(
        "div",
        { class: "wf-label", style: `--depth:${depth}` },
        h("span", { class: "wf-toggle wf-toggle-leaf", "aria-hidden": "true" }),
        h("span", { class: "muted" }, `${remaining.length.toLocaleString("en-US")} more ${what}`),
      ),
      h(
        "div",
        { class: "wf-more-actions" },
        h("button", { class: "btn btn-sm", type: "button", onclick: more(PAGE) }, `Show ${Math.min(PAGE, remaining.length)} more`),
        remaining.length > PAGE && remaining.length <= 2000 ? h("button", { class: "btn btn-sm btn-ghost", type: "button", onclick: more(remaining.length) }, "Show all") : null,
      ),
    );
  }

  function renderRows() {
    if (!tree) return;
    const out: HTMLElement[] = [];
    const walk = (nodes: SpanNode[], key: string, depth: number) => {
      const limit = shown.get(key) ?? PAGE;
      for (const node of nodes.slice(0, limit)) {
        out.push(row(node, depth));
        if (node.children.length && isOpen(node)) walk(node.children, node.span.span_id, depth + 1);
      }
      if (nodes.length > limit) out.push(moreRow(key, nodes.slice(limit), depth, limit));
    };
    walk(tree.roots, ROOT_KEY, 0);
    if (!out.length) out.push(stateBlock("empty", "This trace has no spans"));
    const focused = (document.activeElement as HTMLElement | null)?.dataset?.spanId;
    rowsHost.replaceChildren(...out);
    if (focused) rowsHost.querySelector<HTMLElement>(`[data-span-id="${CSS.escape(focused)}"]`)?.focus();
  }

  function setOpen(node: SpanNode, open: boolean) {
    expanded.set(node.span.span_id, open);
    renderRows();
  }

  function select(spanId: string | null) {
    selected = spanId;
    // Reveal a selected span whose ancestors are collapsed (e.g. "Parent" links in the panel).
    for (let n = spanId ? tree?.byId.get(spanId)?.parent : null; n; n = n.parent) if (!isOpen(n)) expanded.set(n.span.span_id, true);
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

  function renderDetail() {
    const node = selected && tree ? tree.byId.get(selected) : undefined;
    detail.classList.toggle("has-selection", Boolean(node));
    if (!node || !tree) {
      mount(detail, h("div", { class: "muted trace-detail-empty" }, "Select a span to see its attributes, status and events."));
      return;
    }
    const t = tree;
    const s = node.span;
    const kind = serviceKind(s.service);
    const a = attrs(s);
    const offset = (ns: number) => `+${formatMs((ns - t.start) / 1e6)}`;
    const kv = (pairs: [string, Node | string][], testid?: string) =>
      h("dl", { class: "kv trace-kv", "data-testid": testid }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-key": k, title: typeof v === "string" ? v : null }, v)]));
    const parentLink = node.parent
      ? h("button", { class: "linklike", type: "button", onclick: () => select(node.parent!.span.span_id) }, `${node.parent.span.name} (${shortId(node.parent.span.span_id)})`)
      : node.orphan
        ? h("span", { class: "text-danger" }, `${s.parent_span_id} (not stored)`)
        : "— (root)";
    const events = s.events ?? [];
    mount(
      detail,
      h(
        "div",
        { class: "card-head" },
        h("h2", { class: "trace-detail-title" }, s.name),
        h("button", { class: "btn btn-sm btn-ghost", type: "button", "aria-label": "Close details", "data-testid": "span-detail-close", onclick: () => select(null) }, "✕"),
      ),
      h(
        "div",
        { class: "subtitle-row trace-detail-badges" },
        h("span", { class: `chip chip-svc svc-${kind}` }, s.service),
        h("span", { class: `badge badge-${s.status === "error" ? "failed" : s.status === "ok" ? "completed" : "offline"}`, "data-testid": "span-status" }, `status: ${s.status || "unset"}`),
      ),
      kv([
        ["Duration", formatMs(s.duration_ms ?? (s.end_ns - s.start_ns) / 1e6)],
        ["Start", offset(s.start_ns)],
        ["End", offset(s.end_ns)],
        ["Span id", h("span", { class: "mono" }, s.span_id)],
        ["Parent", parentLink],
        ...(node.children.length ? ([["Children", childSummary(node)]] as [string, string][]) : []),
      ]),
      h("h3", { class: "trace-detail-h" }, "Attributes"),
      Object.keys(a).length
        ? kv(
            Object.keys(a)
              .sort()
              .map((k) => [k, formatValue(a[k])] as [string, string]),
            "span-attributes",
          )
        : h("div", { class: "muted" }, "None."),
      h("h3", { class: "trace-detail-h" }, `Events${events.length ? ` (${events.length})` : ""}`),
      events.length
        ? h(
            "ul",
            { class: "trace-events", "data-testid": "span-events" },
            events.map((e: TraceEvent) =>
              h(
                "li",
                { class: e.name.includes("fail") || e.name === "exception" ? "trace-event-bad" : "" },
                h("div", {}, h("strong", {}, e.name), " ", h("span", { class: "muted" }, offset(e.time_ns))),
                Object.keys(e.attributes ?? {}).length
                  ? kv(Object.entries(e.attributes ?? {}).map(([k, v]) => [k, formatValue(v)] as [string, string]))
                  : null,
              ),
            ),
          )
        : h("div", { class: "muted" }, "None."),
    );
  }

  const onKey = (e: KeyboardEvent) => {
    if (e.key === "Escape" && selected) select(null);
  };
  document.addEventListener("keydown", onKey);
  void load();

  return () => {
    alive = false;
    window.clearTimeout(timer);
    root.classList.remove("trace-sheet-open");
    document.removeEventListener("keydown", onKey);
  };
}
