/**
 * A trace's spans as a tree, and the words shown for them: pure functions (spans in, tree and text out), shared by
 * the trace view's panels and unit-tested alone.
 */
import type { TraceSpan } from "../api";
import { shortId } from "../format";

export interface SpanNode {
  span: TraceSpan;
  children: SpanNode[];
  parent: SpanNode | null;
  /** Its parent span is not in the trace (not exported yet, or evicted from local storage). */
  orphan: boolean;
}

export type ServiceKind = "backend" | "serverapp" | "clientapp" | "other";

export const COLLAPSED_CHILDREN = new Set(["train.epoch", "train.step"]);
export const PAGE = 50;

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

export function formatValue(v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

export interface SpanTree {
  roots: SpanNode[];
  byId: Map<string, SpanNode>;
  /** First start and last end over all spans (ns). */
  start: number;
  end: number;
}

export function buildTree(spans: TraceSpan[]): SpanTree {
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

export function attrs(span: TraceSpan): Record<string, unknown> {
  return span.attributes ?? {};
}

/** A short qualifier beside the name, so rounds and clients read at a glance. */
export function hint(node: SpanNode): string {
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

export function childSummary(node: SpanNode): string {
  const counts = new Map<string, number>();
  for (const c of node.children) counts.set(c.span.name, (counts.get(c.span.name) ?? 0) + 1);
  return [...counts].map(([name, n]) => `${n} × ${name}`).join(", ");
}

/** A node's children show when the user opened it, or by default unless they are epochs or steps (thousands). */
export function isOpen(node: SpanNode, expanded: ReadonlyMap<string, boolean>): boolean {
  return expanded.get(node.span.span_id) ?? !node.children.some((c) => COLLAPSED_CHILDREN.has(c.span.name));
}
