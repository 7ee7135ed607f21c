/**
 * One definition of "a round's accuracy and loss" for every chart and table: the centralized evaluation
 * when the server ran one, else the federated evaluation, else the mean of the clients' validation metrics.
 */
import type { RoundResult } from "./api";

function pick(record: Record<string, unknown> | null | undefined, keys: string[]): number | null {
  if (!record) return null;
  for (const key of keys) {
    const v = record[key];
    if (typeof v === "number" && Number.isFinite(v)) return v;
  }
  return null;
}

function clientMean(round: RoundResult, key: "val_accuracy" | "val_loss"): number | null {
  const values = (round.clients ?? []).map((c) => c[key]).filter((v): v is number => typeof v === "number");
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

export function roundAccuracy(r: RoundResult): number | null {
  if (typeof r.accuracy === "number") return r.accuracy;
  return pick(r.federated_evaluation, ["accuracy", "val_accuracy", "eval_accuracy"]) ?? clientMean(r, "val_accuracy");
}

export function roundLoss(r: RoundResult): number | null {
  if (typeof r.loss === "number") return r.loss;
  return pick(r.federated_evaluation, ["loss", "val_loss", "eval_loss"]) ?? clientMean(r, "val_loss");
}

/** Whether the round's numbers came from the server's own test set or from the clients. */
export function roundSource(r: RoundResult): "centralized" | "federated" | "none" {
  if (typeof r.accuracy === "number") return "centralized";
  return roundAccuracy(r) === null ? "none" : "federated";
}

export function sortedRounds(rounds: RoundResult[] | undefined): RoundResult[] {
  return [...(rounds ?? [])].sort((a, b) => a.round - b.round);
}
