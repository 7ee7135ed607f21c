import { describe, expect, it } from "vitest";
import type { JsonSchema } from "../src/api";
import { configGroups, detailsPanel, fieldApplies, nodeDataPanel } from "../src/views/run_data_panels";
import { runDetail } from "./fixtures";

/** A schema with the form extensions `GET /training/schema` may carry. */
const schema = {
  properties: {
    strategy: { title: "Strategy", "x-label": "Strategy", "x-group": "Aggregation" },
    proximal_mu: { title: "Proximal Mu", "x-label": "FedProx μ", "x-group": "Aggregation", "x-when": { strategy: ["fedprox"] } },
    krum_num_malicious: { title: "Krum Num Malicious", "x-label": "Krum f", "x-group": "Aggregation", "x-when": { strategy: ["krum", "multikrum"] } },
    dp_noise_multiplier: { title: "Dp Noise Multiplier", "x-label": "DP noise multiplier", "x-group": "Privacy", "x-when": { dp_mode: ["central", "local"], strategy: ["fedavg", "fedprox"] } },
    dp_mode: { title: "Dp Mode", "x-label": "Privacy", "x-group": "Privacy" },
    num_rounds: { title: "Num Rounds", "x-label": "Rounds", "x-group": "Training" },
    seed: { title: "Seed", "x-advanced": true },
  },
} as unknown as JsonSchema;

describe("fieldApplies", () => {
  it("needs every field x-when names to hold one of its values", () => {
    const prop = (schema.properties as Record<string, object>).dp_noise_multiplier;
    expect(fieldApplies(prop, { dp_mode: "central", strategy: "fedavg" })).toBe(true);
    expect(fieldApplies(prop, { dp_mode: "central", strategy: "krum" })).toBe(false);
    expect(fieldApplies(prop, { dp_mode: "off", strategy: "fedavg" })).toBe(false);
    expect(fieldApplies(undefined, {})).toBe(true);
  });
});

describe("configGroups", () => {
  const config = { num_rounds: 5, strategy: "fedprox", proximal_mu: 0.1, krum_num_malicious: 0, dp_mode: "off", dp_noise_multiplier: 1.0, seed: 7, legacy_key: "x" };

  it("shows only the fields that matter, grouped and labelled by the schema, advanced last", () => {
    expect(configGroups(config, schema)).toEqual([
      { title: "Aggregation", fields: [["Strategy", "fedprox"], ["FedProx μ", "0.1"]] },
      { title: "Privacy", fields: [["Privacy", "off"]] },
      { title: "Training", fields: [["Rounds", "5"]] },
      { title: null, fields: [["Legacy key", "x"]] },
      { title: "Advanced", fields: [["Seed", "7"]] },
    ]);
  });

  it("without the extensions shows every field under its schema title", () => {
    const plain = { properties: { num_rounds: { title: "Num Rounds" }, strategy: { title: "Strategy" } } } as JsonSchema;
    expect(configGroups({ strategy: "krum", num_rounds: 2, other: null }, plain)).toEqual([
      { title: null, fields: [["Num Rounds", "2"], ["Strategy", "krum"], ["Other", "—"]] },
    ]);
  });

  it("without a schema shows every field under its humanized name", () => {
    expect(configGroups({ learning_rate: 0.05 }, null)).toEqual([{ title: null, fields: [["Learning rate", "0.05"]] }]);
  });
});

describe("detailsPanel", () => {
  it("renders group headings and leaves out the fields that do not apply", () => {
    const el = detailsPanel(runDetail({ config: { strategy: "krum", proximal_mu: 0.1, krum_num_malicious: 1 } }), schema);
    const text = el.querySelector("[data-testid=config-fields]")!.textContent;
    expect(text).toContain("Krum f");
    expect(text).not.toContain("FedProx");
    expect([...el.querySelectorAll("h3")].map((e) => e.textContent)).toEqual(["Aggregation"]);
  });
});

describe("nodeDataPanel", () => {
  it("draws one bar per class, scaled to the node's largest class", () => {
    const run = runDetail({ node_data: { nodes: [{ node_id: "7", format: "csv", examples: 30, classes: { cat: 20, dog: 10, owl: "< 5" }, columns: ["a", "b"] }], failures: [] } });
    const el = nodeDataPanel(run)!;
    const bars = [...el.querySelectorAll<HTMLElement>("[data-testid=label-histogram] .progress-bar")].map((b) => b.style.width);
    expect(bars).toEqual(["100%", "50%", "0%"]);
    expect(el.textContent).toContain("csv · 2 columns");
  });

  it("is absent for runs without node data", () => {
    expect(nodeDataPanel(runDetail())).toBeNull();
  });
});
