import { describe, expect, it } from "vitest";
import { checkpointsPanel, clientsPanel, headerPanel, liveLinePanel, roundsPanel } from "../src/views/run_panels";
import { applyEvent, initialSnapshot, mergeFetched } from "../src/views/run_state";
import { checkpoint, round, runDetail } from "./fixtures";

const noop = { onStop: () => {}, onResume: () => {}, onDelete: () => {} };
const ids = (el: Element) => [...el.querySelectorAll("[data-testid]")].map((e) => e.getAttribute("data-testid"));

describe("headerPanel", () => {
  it("offers Stop while running, and neither Resume nor Delete", () => {
    const el = headerPanel(initialSnapshot(runDetail()), noop);
    expect(ids(el)).toContain("stop-button");
    expect(ids(el)).not.toContain("delete-button");
    expect(ids(el)).not.toContain("resume-button");
  });

  it("waits for GET before offering Delete and Resume after a failure event", () => {
    const announced = applyEvent(initialSnapshot(runDetail()), "run_failed", JSON.stringify({ reason: "x" }), 0).snapshot;
    expect(ids(headerPanel(announced, noop))).not.toContain("delete-button");
    const confirmed = mergeFetched(announced, runDetail({ status: "failed" })).snapshot;
    const el = headerPanel(confirmed, noop);
    expect(ids(el)).toEqual(expect.arrayContaining(["resume-button", "delete-button"]));
    expect(ids(el)).not.toContain("stop-button");
  });

  it("calls back instead of acting itself", () => {
    let stopped = 0;
    const el = headerPanel(initialSnapshot(runDetail()), { ...noop, onStop: () => stopped++ });
    el.querySelector<HTMLButtonElement>("[data-testid=stop-button]")!.click();
    expect(stopped).toBe(1);
  });
});

describe("liveLinePanel", () => {
  it("says which round runs on how many clients", () => {
    const s = { ...initialSnapshot(runDetail()), streamState: "live" as const, live: { kind: "round" as const, round: 2, selected: 3 } };
    const line = liveLinePanel(s);
    const text = line.children.map((c) => (typeof c === "string" ? c : c.textContent)).join("|");
    expect(text).toBe("Live|Round 2 in progress on 3 clients…");
  });

  it("shows a failed run's reason", () => {
    const line = liveLinePanel(initialSnapshot(runDetail({ status: "failed", error: "out of memory" })));
    expect(line.className).toContain("live-error");
    expect(line.children[1]).toBe("out of memory");
  });
});

describe("roundsPanel", () => {
  it("adds an ε column (and goes wide) only for DP runs", () => {
    const plain = roundsPanel([round(1, { accuracy: 0.5 })], false);
    expect(plain.wide).toBe(false);
    expect(plain.body.querySelector("[data-testid=round-epsilon]")).toBeNull();
    const dp = roundsPanel([round(1, { accuracy: 0.5, privacy: { epsilon: 1.234 } })], false);
    expect(dp.wide).toBe(true);
    expect(dp.body.querySelector("[data-testid=round-epsilon]")!.textContent).toBe("1.23");
    expect(dp.body.querySelector("[data-testid=round-accuracy]")!.textContent).toBe("50.00%");
  });

  it("explains an empty table differently once the run ended", () => {
    expect(roundsPanel([], true).body.textContent).toContain("ended before its first round");
  });
});

describe("clientsPanel", () => {
  it("opens the rounds it is told to, newest first, clients by partition", () => {
    const rounds = [
      round(1, { clients: [{ node_id: "b", partition_id: 1 }, { node_id: "a", partition_id: 0 }] }),
      round(2, { clients: [] }),
    ];
    const blocks = clientsPanel(rounds, { open: new Set([1]), onSummaryClick: () => {}, onToggle: () => {} }) as HTMLDetailsElement[];
    expect(blocks.map((b) => [b.dataset.testid, b.open])).toEqual([
      ["clients-round-2", false],
      ["clients-round-1", true],
    ]);
    expect([...blocks[1].querySelectorAll("[data-testid=client-row]")].map((r) => r.getAttribute("data-node"))).toEqual(["a", "b"]);
  });
});

describe("checkpointsPanel", () => {
  it("links each checkpoint to try and resume", () => {
    const el = checkpointsPanel("r1", [checkpoint({ size: 2048 })]);
    expect(el.querySelector("[data-testid=resume-link]")!.getAttribute("href")).toContain("checkpoint=m1");
    expect(el.textContent).toContain("2.0 KB");
  });
});
