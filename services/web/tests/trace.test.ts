import { describe, expect, it } from "vitest";
import type { TraceSpan } from "../src/api";
import { detailPanel, rowsPanel, type TreeActions } from "../src/views/trace_panels";
import { buildTree, formatMs, hint, isOpen, serviceKind } from "../src/views/trace_tree";

function span(id: string, parent: string | null, name: string, start: number, end: number, attributes: Record<string, unknown> = {}): TraceSpan {
  return { span_id: id, parent_span_id: parent, name, service: "flowerbed-serverapp", start_ns: start, end_ns: end, duration_ms: (end - start) / 1e6, status: "ok", attributes };
}

const noop: TreeActions = { onToggle: () => {}, onSelect: () => {}, onShowMore: () => {} };
const names = (rows: HTMLElement[]) => rows.map((r) => r.dataset.name ?? r.dataset.testid);

describe("buildTree", () => {
  it("nests spans under their parents in start order and marks spans whose parent is missing", () => {
    const tree = buildTree([span("r2", "run", "fl.round", 50, 90), span("run", null, "fl.run", 0, 100), span("r1", "run", "fl.round", 10, 40), span("x", "gone", "aggregate", 5, 6)]);
    expect(tree.roots.map((n) => [n.span.span_id, n.orphan])).toEqual([
      ["run", false],
      ["x", true],
    ]);
    expect(tree.byId.get("run")!.children.map((n) => n.span.span_id)).toEqual(["r1", "r2"]);
    expect([tree.start, tree.end]).toEqual([0, 100]);
  });

  it("starts nodes of epochs or steps collapsed, others open", () => {
    const tree = buildTree([span("t", null, "fl.client.train", 0, 10), span("e", "t", "train.epoch", 1, 9), span("r", null, "fl.round", 0, 10), span("c", "r", "fl.client.train", 1, 2)]);
    expect(isOpen(tree.byId.get("t")!, new Map())).toBe(false);
    expect(isOpen(tree.byId.get("r")!, new Map())).toBe(true);
    expect(isOpen(tree.byId.get("t")!, new Map([["t", true]]))).toBe(true);
  });
});

describe("words", () => {
  it("names rounds and steps", () => {
    const tree = buildTree([span("s", null, "train.step", 0, 1, { step: 3, loss: 0.12345 }), span("r", null, "fl.round", 0, 1, { "fl.round": 2, "fl.failures": 1 })]);
    expect(hint(tree.byId.get("s")!)).toBe("step 3 · loss 0.123");
    expect(hint(tree.byId.get("r")!)).toBe("round 2 · 1 failed");
  });

  it("formats durations and services", () => {
    expect([formatMs(0.5), formatMs(12.345), formatMs(2500), formatMs(125_000)]).toEqual(["500 µs", "12.3 ms", "2.50 s", "2m 05s"]);
    expect([serviceKind("flowerbed-backend"), serviceKind("flowerbed-clientapp"), serviceKind("x")]).toEqual(["backend", "clientapp", "other"]);
  });
});

describe("rowsPanel", () => {
  const steps = Array.from({ length: 120 }, (_, i) => span(`s${i}`, "t", "train.step", i, i + 1));
  const tree = buildTree([span("t", null, "fl.client.train", 0, 200), ...steps]);

  it("hides a collapsed subtree", () => {
    expect(names(rowsPanel(tree, { expanded: new Map(), shown: new Map(), selected: null }, noop))).toEqual(["fl.client.train"]);
  });

  it("shows an opened node's children a page at a time", () => {
    const rows = rowsPanel(tree, { expanded: new Map([["t", true]]), shown: new Map(), selected: null }, noop);
    expect(rows).toHaveLength(1 + 50 + 1);
    expect(rows[rows.length - 1].textContent).toContain("70 more train.step spans");
    expect(rowsPanel(tree, { expanded: new Map([["t", true]]), shown: new Map([["t", 120]]), selected: null }, noop)).toHaveLength(121);
  });

  it("asks for the next page through its callback", () => {
    let asked: [string, number] | null = null;
    const rows = rowsPanel(tree, { expanded: new Map([["t", true]]), shown: new Map(), selected: null }, { ...noop, onShowMore: (k, n) => (asked = [k, n]) });
    rows[rows.length - 1].querySelector("button")!.click();
    expect(asked).toEqual(["t", 100]);
  });
});

describe("detailPanel", () => {
  it("lists a span's sorted attributes and links its parent", () => {
    const tree = buildTree([span("p", null, "fl.round", 0, 10), span("c", "p", "aggregate", 1, 2, { z: 1, a: "x" })]);
    let selected: string | null = "c";
    const el = document.createElement("div");
    el.append(...detailPanel(tree, tree.byId.get("c"), (id) => (selected = id)));
    expect([...el.querySelectorAll("[data-testid=span-attributes] dt")].map((d) => d.textContent)).toEqual(["a", "z"]);
    el.querySelector<HTMLButtonElement>("button.linklike")!.click();
    expect(selected).toBe("p");
  });
});
