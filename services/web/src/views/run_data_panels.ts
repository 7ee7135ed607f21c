/**
 * The run view's data panels, pure (data in, DOM out): what each node holds, and the run's identity and
 * configuration. The configuration shows only the fields that matter for the chosen options when the schema
 * says so (`x-when`), with the schema's labels and groups (`x-label`, `x-group`, `x-advanced`); a schema without
 * those extensions shows every field under its title.
 */
import type { JsonSchema, RunDetail } from "../api";
import { h } from "../dom";
import { formatBytes, formatNumber, formatTimestamp, humanize, shortId } from "../format";
import { card, table } from "../widgets";

/** The `x-…` extensions a run-setting property may carry in `GET /training/schema`. */
export interface SettingSchema extends JsonSchema {
  "x-when"?: Record<string, unknown[]>;
  "x-label"?: string;
  "x-group"?: string;
  "x-advanced"?: boolean;
}

/** data_source=node: what each node holds (never the data): size, shape and its label histogram. */
export function nodeDataPanel(run: RunDetail): HTMLElement | null {
  const data = run.node_data;
  if (!data) return null;
  const rows = (data.nodes ?? []).map((n) => {
    const counts = Object.entries(n.classes ?? {});
    const top = Math.max(1, ...counts.map(([, c]) => (typeof c === "number" ? c : 0)));
    const histogram = h(
      "div",
      { class: "label-histogram", "data-testid": "label-histogram" },
      counts.map(([name, c]) =>
        h("div", { class: "histogram-row", title: `${name}: ${c}` }, h("span", { class: "muted" }, `${name} ${c}`), h("div", { class: "progress" }, h("div", { class: "progress-bar", style: `width:${typeof c === "number" ? (100 * c) / top : 0}%` }))),
      ),
    );
    const shape = n.columns ? `${n.columns.length} columns` : (n.image_shape ?? []).join("×");
    return h("tr", {}, h("td", { class: "mono" }, shortId(n.node_id ?? null)), h("td", {}, n.site ?? "—"), h("td", {}, `${n.format ?? "?"} · ${shape}`), h("td", { class: "num" }, formatNumber(n.examples ?? null)), h("td", {}, histogram));
  });
  const failures = (data.failures ?? []).map((f) => h("tr", { class: "failure" }, h("td", { class: "mono" }, shortId(f.node_id ?? null)), h("td", { colspan: 4 }, `left out: ${f.reason}`)));
  return card("Node data", [table(["Node", "Site", "Data", { label: "Examples", numeric: true }, "Labels"], [...rows, ...failures], "node-data-table")], { testid: "node-data-card" });
}

/** Whether a field matters for this configuration: every field its `x-when` names holds one of the listed values. */
export function fieldApplies(prop: SettingSchema | undefined, config: Record<string, unknown>): boolean {
  const when = prop?.["x-when"];
  if (!when) return true;
  return Object.entries(when).every(([field, values]) => Array.isArray(values) && values.some((v) => v === config[field]));
}

export interface ConfigGroup {
  title: string | null;
  fields: [string, string][];
}

/**
 * The configuration as labelled groups: fields the schema marks as not mattering are left out; groups keep the
 * order of their first field in the schema, advanced fields go last under "Advanced". Keys the schema does not
 * know (older runs) are kept under their own humanized name.
 */
export function configGroups(config: Record<string, unknown>, schema: JsonSchema | null): ConfigGroup[] {
  const props = (schema?.properties ?? {}) as Record<string, SettingSchema>;
  const order = Object.keys(props);
  const rank = (k: string) => (order.includes(k) ? order.indexOf(k) : order.length);
  const keys = Object.keys(config).sort((a, b) => rank(a) - rank(b));
  const groups = new Map<string | null, [string, string][]>();
  const advanced: [string, string][] = [];
  for (const key of keys) {
    const prop = props[key];
    if (!fieldApplies(prop, config)) continue;
    const v = config[key];
    const pair: [string, string] = [prop?.["x-label"] ?? prop?.title ?? humanize(key), v === null || v === undefined ? "—" : String(v)];
    if (prop?.["x-advanced"]) advanced.push(pair);
    else {
      const group = prop?.["x-group"] ?? null;
      groups.set(group, [...(groups.get(group) ?? []), pair]);
    }
  }
  const out = [...groups].map(([title, fields]) => ({ title, fields }));
  return advanced.length ? [...out, { title: "Advanced", fields: advanced }] : out;
}

const dl = (pairs: [string, string][]) => h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { title: v }, v)]));

export function detailsPanel(run: RunDetail, schema: JsonSchema | null): HTMLElement {
  const info: [string, string][] = [
    ["Run id", run.run_id],
    ["Flower run id", run.flower_run_id ?? "—"],
    ["Created", formatTimestamp(run.created_at)],
    ["Started", formatTimestamp(run.started_at ?? null)],
    ["Finished", formatTimestamp(run.finished_at ?? null)],
    ["Sent / received", `${formatBytes(run.bytes_sent)} / ${formatBytes(run.bytes_received)}`],
  ];
  const groups = configGroups(run.config ?? {}, schema);
  const config = h(
    "div",
    { "data-testid": "config-fields" },
    groups.flatMap((g) => [g.title ? h("h3", { class: "kv-group" }, g.title) : null, dl(g.fields)]),
  );
  return h("div", { class: "grid-2 grid-tight" }, dl(info), config);
}
