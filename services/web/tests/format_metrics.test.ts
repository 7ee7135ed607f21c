import { describe, expect, it } from "vitest";
import { formatAccuracy, formatBytes, formatDuration, formatRelative, humanize, shortId, toMillis } from "../src/format";
import { round } from "./fixtures";
import { centralizedAccuracy, federatedAccuracy, roundAccuracy, roundSource, sortedRounds } from "../src/run_metrics";

describe("format", () => {
  it("reads ISO strings and epoch seconds as milliseconds", () => {
    expect(toMillis(1700000000)).toBe(1700000000000);
    expect(toMillis("1700000000")).toBe(1700000000000);
    expect(toMillis("2026-01-01T00:00:00Z")).toBe(Date.UTC(2026, 0, 1));
    expect(toMillis("")).toBeNull();
  });

  it("formats numbers the way the browser tests expect", () => {
    expect(formatAccuracy(0.8123)).toBe("81.23%");
    expect(formatAccuracy(null)).toBe("—");
    expect([formatDuration(59.4), formatDuration(61), formatDuration(3700)]).toEqual(["59s", "1m 01s", "1h 01m"]);
    expect([formatBytes(512), formatBytes(1536), formatBytes(5 * 1024 ** 3)]).toEqual(["512 B", "1.5 KB", "5.0 GB"]);
    expect(formatRelative(1_700_000_000, 1_700_000_090_000)).toBe("1 min ago");
    expect(humanize("learning_rate")).toBe("Learning rate");
    expect([shortId("abcdefghijk"), shortId("abcdefghi"), shortId(null)]).toEqual(["abcdefgh", "abcdefghi", "—"]);
  });
});

describe("run_metrics", () => {
  it("falls back from the server's test set to the clients' example-weighted validation", () => {
    const fed = round(1, { clients: [{ node_id: "a", val_accuracy: 0.5, num_examples: 100 }, { node_id: "b", val_accuracy: 1.0, num_examples: 300 }] });
    expect(roundAccuracy(fed)).toBeCloseTo(0.875);
    expect(roundSource(fed)).toBe("federated");
    expect(centralizedAccuracy(fed)).toBeNull();
    const central = round(2, { accuracy: 0.9, train: { "val-accuracy": 0.7 } });
    expect([roundAccuracy(central), federatedAccuracy(central), roundSource(central)]).toEqual([0.9, 0.7, "centralized"]);
  });

  it("treats a node-data run's accuracy as federated", () => {
    const r = round(1, { accuracy: 0.6, accuracy_kind: "federated" });
    expect([centralizedAccuracy(r), federatedAccuracy(r), roundSource(r)]).toEqual([null, 0.6, "federated"]);
  });

  it("sorts rounds without changing the input", () => {
    const input = [round(3), round(1)];
    expect(sortedRounds(input).map((r) => r.round)).toEqual([1, 3]);
    expect(input[0].round).toBe(3);
  });
});
