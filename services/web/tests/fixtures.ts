import type { ModelInfo, RoundResult, RunDetail } from "../src/api";

/** A running 3-round run; tests override what they look at. */
export function runDetail(over: Partial<RunDetail> = {}): RunDetail {
  return {
    run_id: "r1",
    status: "running",
    created_at: "2026-01-01T00:00:00Z",
    started_at: "2026-01-01T00:00:00Z",
    finished_at: null,
    config: { num_rounds: 3 },
    accuracy: null,
    accuracy_kind: "centralized",
    loss: null,
    rounds_completed: 0,
    num_rounds: 3,
    flower_run_id: null,
    error: null,
    from_checkpoint: null,
    rounds: [],
    bytes_sent: null,
    bytes_received: null,
    ...over,
  };
}

/** A round with no evaluation; tests add what they look at. */
export function round(n: number, over: Partial<RoundResult> = {}): RoundResult {
  return { round: n, accuracy: null, accuracy_kind: "centralized", loss: null, ...over };
}

export function checkpoint(over: Partial<ModelInfo> = {}): ModelInfo {
  return { model_id: "m1", run_id: "r1", round: 1, model: "cnn", metrics: {}, sha256: "ab".repeat(32), size: 0, created_at: null, ...over };
}
