import { describe, expect, it } from "vitest";
import { estimateOf, paceOf } from "../src/views/start_estimate";
import { round, runDetail } from "./fixtures";

const text = (parts: (Node | string)[]) => parts.map((p) => (typeof p === "string" ? p : p.textContent)).join("");

describe("start estimate", () => {
  it("takes the median round and the time spent around the rounds from finished runs", () => {
    const finished = (seconds: number[], total: number) =>
      runDetail({
        status: "completed",
        started_at: "2026-01-01T00:00:00Z",
        finished_at: new Date(Date.UTC(2026, 0, 1) + total * 1000).toISOString(),
        rounds: seconds.map((s, i) => round(i + 1, { seconds: s })),
      });
    const pace = paceOf([finished([2, 4], 16), finished([3], 8), runDetail({ finished_at: null, rounds: [round(1, { seconds: 99 })] })]);
    expect(pace).toEqual({ perRound: 3, overhead: 7.5, runs: 2 });
    expect(text(estimateOf(pace, 10))).toBe(
      "≈ 38s for 10 rounds: 3.0 s per round and 8 s to start and finish, as the last 2 finished runs took.",
    );
  });

  it("says when it cannot estimate", () => {
    expect(paceOf([runDetail()])).toBeNull();
    expect(text(estimateOf(null, 3))).toBe("No estimate yet: no finished run to learn from.");
    expect(text(estimateOf({ perRound: 1, overhead: 1, runs: 1 }, 0))).toBe("—");
  });
});
