import { describe, expect, it } from "vitest";
import type { RunDetail } from "../src/api";
import { applyEvent, initialSnapshot, mergeFetched, settled, timing, type RunSnapshot } from "../src/views/run_state";
import { round, runDetail } from "./fixtures";


const live = (over: Partial<RunDetail> = {}): RunSnapshot => ({ ...initialSnapshot(runDetail(over)), streamState: "live" });

describe("applyEvent", () => {
  it("a terminal event ends the stream, asks for the run and its checkpoints, and is not settled yet", () => {
    const { snapshot, effects } = applyEvent(live(), "run_finished", JSON.stringify({ accuracy: 0.8, loss: 0.5 }), 5_000_000);
    expect(effects).toEqual(["close", "refresh", "models"]);
    expect(snapshot.run.status).toBe("completed");
    expect(snapshot.run.accuracy).toBe(0.8);
    expect(snapshot.terminalHint).toEqual({ status: "completed", accuracy: 0.8, loss: 0.5 });
    expect(snapshot.terminalAt).toBe(5_000_000);
    expect(settled(snapshot)).toBe(false);
  });

  it("an event that is not JSON changes nothing and asks for a re-read", () => {
    const before = live();
    const { snapshot, effects } = applyEvent(before, "round_finished", "{not json", 0);
    expect(snapshot).toBe(before);
    expect(effects).toEqual(["refresh"]);
  });

  it("round_finished replaces a round of the same number and keeps rounds sorted", () => {
    let s = live({ rounds: [round(2, { accuracy: 0.2 })] });
    s = applyEvent(s, "round_finished", JSON.stringify({ round: 1, accuracy: 0.1 }), 0).snapshot;
    s = applyEvent(s, "round_finished", JSON.stringify({ round: 2, accuracy: 0.25 }), 0).snapshot;
    expect(s.run.rounds.map((r) => [r.round, r.accuracy])).toEqual([
      [1, 0.1],
      [2, 0.25],
    ]);
    expect(s.run.rounds_completed).toBe(2);
  });

  it("round_started shows the round and how many clients were selected", () => {
    const { snapshot } = applyEvent(live({ status: "pending" }), "round_started", JSON.stringify({ round: 3, selected: ["a", "b"] }), 0);
    expect(snapshot.live).toEqual({ kind: "round", round: 3, selected: 2 });
    expect(snapshot.run.status).toBe("running");
  });

  it("does not change the snapshot it was given", () => {
    const before = live();
    applyEvent(before, "run_failed", JSON.stringify({ reason: "boom" }), 0);
    expect(before.run.status).toBe("running");
    expect(before.terminalHint).toBeNull();
  });
});

describe("mergeFetched", () => {
  it("keeps an announced terminal status over a GET that still says running, and asks again", () => {
    const ended = applyEvent(live(), "run_finished", JSON.stringify({ accuracy: 0.8 }), 0).snapshot;
    const { snapshot, recheck } = mergeFetched(ended, runDetail({ status: "running" }));
    expect(recheck).toBe(true);
    expect(snapshot.run.status).toBe("completed");
    expect(settled(snapshot)).toBe(false);
  });

  it("settles once GET confirms the terminal status (Delete and Resume may show)", () => {
    const ended = applyEvent(live(), "run_failed", JSON.stringify({ reason: "x" }), 0).snapshot;
    const { snapshot, recheck } = mergeFetched(ended, runDetail({ status: "failed" }));
    expect(recheck).toBe(false);
    expect(snapshot.terminalHint).toBeNull();
    expect(settled(snapshot)).toBe(true);
  });

  it("keeps rounds the stream delivered that the database does not have yet", () => {
    const prev = live({ rounds: [round(1), round(2)] });
    const { snapshot } = mergeFetched(prev, runDetail({ rounds: [round(1, { accuracy: 0.5 })] }));
    expect(snapshot.run.rounds.map((r) => [r.round, r.accuracy])).toEqual([
      [1, 0.5],
      [2, null],
    ]);
  });
});

describe("timing", () => {
  it("estimates what is left from the wall clock per completed round", () => {
    const s = live({ started_at: new Date(100_000).toISOString(), rounds: [round(1)] });
    expect(timing(s, 110_000)).toEqual({ elapsed: 10, eta: 20 });
  });

  it("uses the terminal event's arrival while finished_at is unknown", () => {
    const s = { ...live({ status: "completed", started_at: new Date(100_000).toISOString() }), terminalAt: 130_000 };
    expect(timing(s, 999_000_000)).toEqual({ elapsed: 30, eta: 0 });
  });
});
