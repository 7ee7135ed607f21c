/**
 * One definition of "a round's accuracy and loss" for every chart and table: the centralized evaluation
 * when the server ran one, else the federated evaluation, else the example-weighted mean of the clients' validation metrics.
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

/** Both spellings: Flower's aggregate keeps the clients' kebab-case keys (`val-accuracy`), the API's client rows are snake_case. */
function pickMetric(record: Record<string, unknown> | null | undefined, key: string): number | null {
  return pick(record, [key, key.replace(/_/g, "-")]);
}

/** Example-weighted mean of the clients' metric (`num_examples` weights; a plain mean if no client reports them). */
function clientMean(round: RoundResult, key: "val_accuracy" | "val_loss"): number | null {
  const rows = (round.clients ?? [])
    .map((c) => ({ v: pickMetric(c as unknown as Record<string, unknown>, key), w: pickMetric(c as unknown as Record<string, unknown>, "num_examples") }))
    .filter((x): x is { v: number; w: number | null } => x.v !== null);
  if (!rows.length) return null;
  const weighted = rows.every((x) => x.w !== null && x.w > 0);
  const total = weighted ? rows.reduce((a, x) => a + (x.w as number), 0) : rows.length;
  return rows.reduce((a, x) => a + x.v * (weighted ? (x.w as number) : 1), 0) / total;
}

/**
 * Federated metric of a round: the clients' validation of the global model they received (measured before
 * local training), example-weighted. Flower's own aggregate (`train`) when present, else computed from `clients`.
 */
export function federatedAccuracy(r: RoundResult): number | null {
  if (r.accuracy_kind === "federated" && typeof r.accuracy === "number" && Number.isFinite(r.accuracy)) return r.accuracy;
  return pickMetric(r.train, "val_accuracy") ?? clientMean(r, "val_accuracy");
}

export function federatedLoss(r: RoundResult): number | null {
  if (r.accuracy_kind === "federated" && typeof r.loss === "number" && Number.isFinite(r.loss)) return r.loss;
  return pickMetric(r.train, "val_loss") ?? clientMean(r, "val_loss");
}

/** Centralized metric: the server's evaluation of the aggregated model on its held-out test set. */
export function centralizedAccuracy(r: RoundResult): number | null {
  if (r.accuracy_kind === "federated") return null; // nodes' own data: no server test set
  return typeof r.accuracy === "number" && Number.isFinite(r.accuracy) ? r.accuracy : null;
}

export function centralizedLoss(r: RoundResult): number | null {
  if (r.accuracy_kind === "federated") return null;
  return typeof r.loss === "number" && Number.isFinite(r.loss) ? r.loss : null;
}

export function roundAccuracy(r: RoundResult): number | null {
  if (typeof r.accuracy === "number") return r.accuracy;
  return pick(r.federated_evaluation, ["accuracy", "val_accuracy", "eval_accuracy", "val-accuracy", "eval-accuracy"]) ?? federatedAccuracy(r);
}

export function roundLoss(r: RoundResult): number | null {
  if (typeof r.loss === "number") return r.loss;
  return pick(r.federated_evaluation, ["loss", "val_loss", "eval_loss", "val-loss", "eval-loss"]) ?? federatedLoss(r);
}

/** Whether the round's numbers came from the server's own test set or from the clients. */
export function roundSource(r: RoundResult): "centralized" | "federated" | "none" {
  if (typeof r.accuracy === "number") return r.accuracy_kind === "federated" ? "federated" : "centralized";
  return roundAccuracy(r) === null ? "none" : "federated";
}

export function sortedRounds(rounds: RoundResult[] | undefined): RoundResult[] {
  return [...(rounds ?? [])].sort((a, b) => a.round - b.round);
}
