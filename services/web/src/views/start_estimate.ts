/**
 * The Start form's duration estimate: the last finished runs' seconds per round and around their rounds, times the
 * rounds asked for. Pure, so it is unit-tested without a browser.
 */
import { h } from "../dom";
import type { RunDetail } from "../api";
import { formatDuration, toMillis } from "../format";

export interface Pace {
  /** Median seconds of one round (the rounds' own durations). */
  perRound: number;
  /** Median seconds a run spends outside its rounds (start-up, waiting for nodes, the end). */
  overhead: number;
  runs: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** How long the last finished runs took per round and around their rounds, or null when there is none. */
export function paceOf(runs: RunDetail[]): Pace | null {
  const perRound: number[] = [];
  const overhead: number[] = [];
  for (const r of runs) {
    const started = toMillis(r.started_at ?? null);
    const finished = toMillis(r.finished_at ?? null);
    const rounds = (r.rounds ?? []).map((x) => x.seconds).filter((v): v is number => typeof v === "number" && v > 0);
    if (started === null || finished === null || finished <= started || !rounds.length) continue;
    perRound.push(...rounds);
    overhead.push(Math.max(0, (finished - started) / 1000 - rounds.reduce((a, b) => a + b, 0)));
  }
  return perRound.length ? { perRound: median(perRound), overhead: median(overhead), runs: overhead.length } : null;
}

/** What the form shows for `rounds` rounds at this pace. */
export function estimateOf(pace: Pace | null, rounds: number): (Node | string)[] {
  if (!pace) return ["No estimate yet: no finished run to learn from."];
  if (!Number.isFinite(rounds) || rounds < 1) return ["—"];
  return [
    h("strong", {}, `≈ ${formatDuration(pace.overhead + rounds * pace.perRound)}`),
    ` for ${rounds} round${rounds === 1 ? "" : "s"}: ${pace.perRound.toFixed(1)} s per round and ${Math.round(pace.overhead)} s to start and finish, ` +
      `as the last ${pace.runs} finished run${pace.runs === 1 ? "" : "s"} took.`,
  ];
}
