/**
 * The trace view's panels, one pure function each: the span tree and the user's view state (what is open,
 * revealed, selected) in, DOM out. What a click does comes in as a callback; `trace.ts` wires them.
 */
import type { TraceEvent } from "../api";
import { h, stateBlock } from "../dom";
import { shortId } from "../format";
import { href } from "../router";
import { pageHeader } from "../widgets";
import { PAGE, attrs, childSummary, formatMs, formatValue, hint, isOpen, serviceKind, type SpanNode, type SpanTree } from "./trace_tree";

const ROOT_KEY = "\u0000root";

export interface TreeView {
  /** The user's choice per span; absent = the default (isOpen). */
  expanded: ReadonlyMap<string, boolean>;
  /** Children revealed per node (pagination); ROOT_KEY for the roots. */
  shown: ReadonlyMap<string, number>;
  selected: string | null;
}

export interface TreeActions {
  onToggle: (node: SpanNode, open: boolean) => void;
  onSelect: (spanId: string | null) => void;
  onShowMore: (key: string, count: number) => void;
}

export function headerPanel(tree: SpanTree, traceId: string, spanCount: number, onRefresh: () => void): HTMLElement {
  const runSpan = [...tree.byId.values()].find((n) => n.span.name === "fl.run" || attrs(n.span)["flowerbed.run_id"] !== undefined);
  const runId = runSpan ? attrs(runSpan.span)["flowerbed.run_id"] : undefined;
  const refresh = h("button", { class: "btn btn-ghost", "data-testid": "trace-refresh", onclick: () => onRefresh() }, "Refresh");
  const back = typeof runId === "string" ? h("a", { class: "btn", href: href(`runs/${runId}`), "data-testid": "trace-run-link" }, "Back to run") : null;
  const subtitle = h(
    "span",
    { class: "subtitle-row" },
    h("span", { class: "mono trace-id", title: traceId }, traceId),
    h("span", { class: "chip", "data-testid": "trace-span-count" }, `${spanCount.toLocaleString("en-US")} spans`),
    h("span", { class: "chip" }, formatMs((tree.end - tree.start) / 1e6)),
  );
  return pageHeader("Trace", subtitle, ...([back, refresh].filter(Boolean) as Node[]));
}

export function legendPanel(tree: SpanTree): HTMLElement[] {
  const services = new Set([...tree.byId.values()].map((n) => n.span.service));
  return [
    ...[...services].sort().map((s) => h("span", { class: "wf-legend-item" }, h("span", { class: `wf-dot svc-${serviceKind(s)}`, "aria-hidden": "true" }), s)),
    h("span", { class: "wf-legend-hint muted" }, "Click a span for its attributes and events."),
  ];
}

export function axisPanel(tree: SpanTree): HTMLElement[] {
  const total = (tree.end - tree.start) / 1e6;
  return [
    h("div", { class: "wf-label wf-axis-label" }, "Span"),
    h(
      "div",
      { class: "wf-track" },
      [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { class: `wf-tick ${f === 1 ? "wf-tick-end" : ""} ${f > 0 && f < 1 ? "wf-tick-mid" : ""}`, style: `left:${f * 100}%` }, formatMs(total * f))),
    ),
  ];
}

function spanRow(t: SpanTree, node: SpanNode, depth: number, view: TreeView, actions: TreeActions): HTMLElement {
  const s = node.span;
  const total = Math.max(1, t.end - t.start);
  const left = ((s.start_ns - t.start) / total) * 100;
  const width = Math.max(0, ((s.end_ns - s.start_ns) / total) * 100);
  const hasChildren = node.children.length > 0;
  const open = hasChildren && isOpen(node, view.expanded);
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
            actions.onToggle(node, !open);
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
      class: `wf-row ${view.selected === s.span_id ? "selected" : ""} ${error ? "wf-error" : ""}`,
      role: "treeitem",
      tabindex: 0,
      "aria-level": depth + 1,
      "aria-expanded": hasChildren ? String(open) : null,
      "aria-selected": String(view.selected === s.span_id),
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
  el.addEventListener("click", () => actions.onSelect(s.span_id));
  el.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      actions.onSelect(s.span_id);
    } else if (e.key === "ArrowRight" && hasChildren && !open) actions.onToggle(node, true);
    else if (e.key === "ArrowLeft" && hasChildren && open) actions.onToggle(node, false);
    else if (e.key === "ArrowDown") (el.nextElementSibling as HTMLElement | null)?.focus();
    else if (e.key === "ArrowUp") (el.previousElementSibling as HTMLElement | null)?.focus();
    else return;
    e.preventDefault();
  });
  return el;
}

function moreRow(key: string, remaining: SpanNode[], depth: number, shownNow: number, actions: TreeActions): HTMLElement {
  const names = new Set(remaining.map((n) => n.span.name));
  const what = names.size === 1 ? `${[...names][0]} span${remaining.length === 1 ? "" : "s"}` : "spans";
  const more = (n: number) => () => actions.onShowMore(key, shownNow + n);
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

/** Only expanded subtrees become rows, and a node shows at most PAGE children until more are asked for. */
export function rowsPanel(tree: SpanTree, view: TreeView, actions: TreeActions): HTMLElement[] {
  const out: HTMLElement[] = [];
  const walk = (nodes: SpanNode[], key: string, depth: number) => {
    const limit = view.shown.get(key) ?? PAGE;
    for (const node of nodes.slice(0, limit)) {
      out.push(spanRow(tree, node, depth, view, actions));
      if (node.children.length && isOpen(node, view.expanded)) walk(node.children, node.span.span_id, depth + 1);
    }
    if (nodes.length > limit) out.push(moreRow(key, nodes.slice(limit), depth, limit, actions));
  };
  walk(tree.roots, ROOT_KEY, 0);
  if (!out.length) out.push(stateBlock("empty", "This trace has no spans"));
  return out;
}

/** The selected span's attributes, status and events (or a hint to select one). */
export function detailPanel(tree: SpanTree, node: SpanNode | undefined, onSelect: (spanId: string | null) => void): HTMLElement[] {
  if (!node) return [h("div", { class: "muted trace-detail-empty" }, "Select a span to see its attributes, status and events.")];
  const s = node.span;
  const kind = serviceKind(s.service);
  const a = attrs(s);
  const offset = (ns: number) => `+${formatMs((ns - tree.start) / 1e6)}`;
  const kv = (pairs: [string, Node | string][], testid?: string) =>
    h("dl", { class: "kv trace-kv", "data-testid": testid }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-key": k, title: typeof v === "string" ? v : null }, v)]));
  const parentLink = node.parent
    ? h("button", { class: "linklike", type: "button", onclick: () => onSelect(node.parent!.span.span_id) }, `${node.parent.span.name} (${shortId(node.parent.span.span_id)})`)
    : node.orphan
      ? h("span", { class: "text-danger" }, `${s.parent_span_id} (not stored)`)
      : "— (root)";
  const events = s.events ?? [];
  return [
    h(
      "div",
      { class: "card-head" },
      h("h2", { class: "trace-detail-title" }, s.name),
      h("button", { class: "btn btn-sm btn-ghost", type: "button", "aria-label": "Close details", "data-testid": "span-detail-close", onclick: () => onSelect(null) }, "✕"),
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
              Object.keys(e.attributes ?? {}).length ? kv(Object.entries(e.attributes ?? {}).map(([k, v]) => [k, formatValue(v)] as [string, string])) : null,
            ),
          ),
        )
      : h("div", { class: "muted" }, "None."),
  ];
}
