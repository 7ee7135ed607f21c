/**
 * The run view's state as plain data, and the pure steps that move it: a fetched run merged into what the
 * stream already showed, and one server-sent event applied. No fetch, no DOM, no timers — `run_stream.ts`
 * owns those — so every rule here (the `settled` logic included) is unit-tested in isolation.
 */
import { TERMINAL, type ModelInfo, type RoundResult, type RunDetail } from "../api";
import { toMillis } from "../format";
import { sortedRounds } from "../run_metrics";

export type Live = { kind: "idle" } | { kind: "waiting"; connected: number; needed: number } | { kind: "round"; round: number; selected: number | null };
export type StreamState = "connecting" | "live" | "reconnecting" | "closed";

export interface RunSnapshot {
  run: RunDetail;
  models: ModelInfo[];
  live: Live;
  streamState: StreamState;
  /** A terminal status an event announced and `GET` has not confirmed yet (kept over fetched data until it does). */
  terminalHint: Partial<RunDetail> | null;
  /** When the terminal event arrived (ms): stands in for `finished_at` until the database has it. */
  terminalAt: number | null;
}

/** What the stream must do after a step: re-read the run, re-read its checkpoints, or close the event stream. */
export type Effect = "refresh" | "models" | "close";

export function isTerminal(run: { status: string }): boolean {
  return TERMINAL.has(run.status);
}

/** Resume and Delete act on the stored run: offered once the database, not only the event stream, says it ended
 * (the backend refuses both, 409, for a run it still records as active). */
export function settled(s: RunSnapshot): boolean {
  return isTerminal(s.run) && s.terminalHint === null;
}

export function initialSnapshot(run: RunDetail): RunSnapshot {
  return { run, models: [], live: { kind: "idle" }, streamState: "connecting", terminalHint: null, terminalAt: null };
}

/**
 * A fresh `GET /training/{id}` over the previous snapshot. The stream can be ahead of the database by a moment:
 * rounds already seen are kept, and a terminal status an event announced stays (`recheck`: ask again) until
 * `GET` agrees.
 */
export function mergeFetched(prev: RunSnapshot | null, fetched: RunDetail): { snapshot: RunSnapshot; recheck: boolean } {
  const fresh: RunDetail = { ...fetched };
  const seen = new Set(fresh.rounds.map((r) => r.round));
  fresh.rounds = sortedRounds([...fresh.rounds, ...(prev?.run.rounds ?? []).filter((r) => !seen.has(r.round))]);
  const base = prev ?? initialSnapshot(fresh);
  let terminalHint = base.terminalHint;
  let recheck = false;
  if (terminalHint && !isTerminal(fresh)) {
    Object.assign(fresh, terminalHint);
    recheck = true;
  } else if (isTerminal(fresh)) terminalHint = null;
  return { snapshot: { ...base, run: fresh, terminalHint, live: isTerminal(fresh) ? { kind: "idle" } : base.live }, recheck };
}

function upsertRound(run: RunDetail, r: RoundResult): RunDetail {
  if (typeof r.round !== "number") return run;
  const rounds = sortedRounds([...run.rounds.filter((x) => x.round !== r.round), r]);
  return { ...run, rounds, rounds_completed: Math.max(run.rounds_completed ?? 0, rounds.length) };
}

/** The run ended by an event: remember what it said until `GET` confirms it. */
function terminal(s: RunSnapshot, now: number): { snapshot: RunSnapshot; effects: Effect[] } {
  const { status, accuracy, loss, error } = s.run;
  const hint = Object.fromEntries(Object.entries({ status, accuracy, loss, error }).filter(([, v]) => v !== null && v !== undefined));
  return { snapshot: { ...s, terminalAt: s.terminalAt ?? now, terminalHint: hint, live: { kind: "idle" }, streamState: "closed" }, effects: ["close", "refresh", "models"] };
}

/**
 * One server-sent event applied to the snapshot. An event that is not JSON must not become a half-empty round
 * or status: the API is the source of truth, so the answer is a re-read instead.
 */
export function applyEvent(s: RunSnapshot, name: string, raw: string, now: number): { snapshot: RunSnapshot; effects: Effect[] } {
  let d: Record<string, unknown>;
  try {
    d = JSON.parse(raw || "{}");
  } catch {
    return { snapshot: s, effects: ["refresh"] };
  }
  const next: RunSnapshot = { ...s, run: { ...s.run }, streamState: "live" };
  const run = next.run;
  switch (name) {
    case "run_started":
      if (run.status === "pending") run.status = "running";
      if (!run.started_at) run.started_at = new Date(now).toISOString();
      break;
    case "waiting_for_nodes":
      next.live = { kind: "waiting", connected: Number(d.connected ?? 0), needed: Number(d.needed ?? 0) };
      break;
    case "round_started":
      run.status = "running";
      next.live = { kind: "round", round: Number(d.round), selected: Array.isArray(d.selected) ? d.selected.length : typeof d.selected === "number" ? d.selected : null };
      break;
    case "round_finished":
      next.run = upsertRound(run, d as unknown as RoundResult);
      next.live = { kind: "idle" };
      break;
    case "checkpoint_saved":
      return { snapshot: next, effects: ["models"] };
    case "mlflow_warning":
      run.mlflow = { ...(run.mlflow ?? { exported_seq: 0 }), warning: String(d.warning ?? "unknown problem") };
      break;
    case "mlflow_synced":
      run.mlflow = { mlflow_run_id: (d.mlflow_run_id as string | undefined) ?? null, exported_seq: Number(d.exported_seq ?? 0), warning: (d.warning as string | null | undefined) ?? null };
      break;
    case "status":
      if (typeof d.status === "string") run.status = d.status as RunDetail["status"];
      if (TERMINAL.has(String(d.status))) return terminal(next, now);
      break;
    case "run_finished":
      run.status = "completed";
      if (typeof d.accuracy === "number") run.accuracy = d.accuracy;
      if (typeof d.loss === "number") run.loss = d.loss;
      return terminal(next, now);
    case "run_failed":
      run.status = "failed";
      run.error = String(d.reason ?? run.error ?? "");
      return terminal(next, now);
  }
  return { snapshot: next, effects: [] };
}

/** Elapsed seconds and the estimate of what is left, from the wall clock per completed round. */
export function timing(s: RunSnapshot, now: number): { elapsed: number | null; eta: number | null } {
  const run = s.run;
  const start = toMillis(run.started_at ?? null) ?? toMillis(run.created_at);
  // Terminal by an event but not yet in the database: the event's arrival stands in for finished_at.
  const end = toMillis(run.finished_at ?? null) ?? (isTerminal(run) ? s.terminalAt : now);
  const elapsed = start !== null && end !== null ? (end - start) / 1000 : null;
  const total = run.num_rounds ?? Number(run.config?.num_rounds ?? 0);
  const done = run.rounds.length || run.rounds_completed || 0;
  let eta: number | null = null;
  if (!isTerminal(run) && done > 0 && total > done) {
    // A round's own `seconds` run until its evaluation is done, which overlaps the next round, so their sum
    // overstates how fast rounds follow each other.
    eta = elapsed !== null ? (elapsed / done) * (total - done) : null;
  } else if (isTerminal(run)) eta = 0;
  return { elapsed, eta };
}
