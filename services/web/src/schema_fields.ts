/**
 * Turns the backend's pydantic JSON schema of TrainingConfig into flat field descriptions for the form:
 * `$ref`, `allOf`, `anyOf`/`oneOf` (nullable) are resolved here so the form never deals with them. Labels,
 * sections, the advanced flag and when a field matters come from the schema too (`x-label`, `x-group`,
 * `x-advanced`, `x-when`: declared once with each run setting on the server), never from a list here.
 */
import type { JsonSchema } from "./api";
import { humanize } from "./format";

export interface FieldSpec {
  name: string;
  label: string;
  description?: string;
  kind: "enum" | "integer" | "number" | "string" | "boolean";
  options?: string[];
  nullable: boolean;
  required: boolean;
  default: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  /** Form section (`x-group`). */
  group: string;
  /** Folded away under "Advanced" (`x-advanced`). */
  advanced: boolean;
  /** Matters only when every named field has one of the listed values (`x-when`). */
  when?: Record<string, unknown[]>;
}

/** Whether a field matters for the values chosen so far (its `x-when` holds). */
export function applies(f: FieldSpec, values: Record<string, unknown>): boolean {
  return Object.entries(f.when ?? {}).every(([name, allowed]) => allowed.map(String).includes(String(values[name])));
}

/** The form's sections in order (`x-groups`, with hints), then any group a field names that the list lacks. */
export function groupsOf(root: JsonSchema, fields: FieldSpec[]): { title: string; hint: string }[] {
  const listed = root["x-groups"] ?? [];
  const titles = new Set(listed.map((g) => g.title));
  const extra = [...new Set(fields.map((f) => f.group))].filter((g) => !titles.has(g)).map((title) => ({ title, hint: "" }));
  return [...listed, ...extra];
}

function resolveRef(root: JsonSchema, ref: string): JsonSchema {
  // "#/$defs/Model" → root.$defs.Model
  const parts = ref.replace(/^#\//, "").split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  let node: unknown = root;
  for (const part of parts) node = (node as Record<string, unknown> | undefined)?.[part];
  return (node as JsonSchema) ?? {};
}

/** Merge $ref and allOf into one flat schema (outer keywords win: pydantic puts `default` beside `$ref`). */
function flatten(root: JsonSchema, schema: JsonSchema, depth = 0): JsonSchema {
  if (depth > 10) return schema;
  let merged: JsonSchema = {};
  if (schema.$ref) merged = { ...flatten(root, resolveRef(root, schema.$ref), depth + 1) };
  for (const part of schema.allOf ?? []) merged = { ...merged, ...flatten(root, part, depth + 1) };
  const { $ref: _ref, allOf: _allOf, ...own } = schema;
  return { ...merged, ...own };
}

function typesOf(schema: JsonSchema): string[] {
  if (Array.isArray(schema.type)) return schema.type;
  return schema.type ? [schema.type] : [];
}

export function fieldsFromSchema(root: JsonSchema): FieldSpec[] {
  const required = new Set(root.required ?? []);
  return Object.entries(root.properties ?? {}).map(([name, raw]) => {
    const outer = flatten(root, raw);
    let nullable = typesOf(outer).includes("null");
    let inner: JsonSchema = outer;
    const alternatives = outer.anyOf ?? outer.oneOf;
    if (alternatives) {
      const resolved = alternatives.map((a) => flatten(root, a));
      nullable = nullable || resolved.some((a) => typesOf(a).includes("null"));
      inner = { ...(resolved.find((a) => !typesOf(a).includes("null") || a.enum) ?? {}), ...outer };
      delete inner.anyOf;
      delete inner.oneOf;
    }
    const types = typesOf(inner).filter((t) => t !== "null");
    if (typesOf(inner).includes("null")) nullable = true;
    let kind: FieldSpec["kind"] = "string";
    let options: string[] | undefined;
    if (inner.enum) {
      kind = "enum";
      options = inner.enum.filter((v) => v !== null).map(String);
      if (inner.enum.includes(null)) nullable = true;
    } else if (inner.const !== undefined) {
      kind = "enum";
      options = [String(inner.const)];
    } else if (types.includes("integer")) kind = "integer";
    else if (types.includes("number")) kind = "number";
    else if (types.includes("boolean")) kind = "boolean";
    return {
      name,
      label: outer["x-label"] ?? (outer.title && outer.title.toLowerCase() !== name.replace(/_/g, " ") ? outer.title : humanize(name)),
      description: outer.description ?? inner.description,
      kind,
      options,
      nullable,
      required: required.has(name),
      default: outer.default,
      minimum: inner.minimum,
      maximum: inner.maximum,
      exclusiveMinimum: inner.exclusiveMinimum,
      exclusiveMaximum: inner.exclusiveMaximum,
      group: outer["x-group"] ?? "Other",
      advanced: outer["x-advanced"] ?? false,
      when: outer["x-when"],
    };
  });
}

/** Human text for a field's bounds, e.g. "> 0", "1 – 1000". */
export function boundsText(f: FieldSpec): string {
  const lo = f.minimum !== undefined ? `≥ ${f.minimum}` : f.exclusiveMinimum !== undefined ? `> ${f.exclusiveMinimum}` : "";
  const hi = f.maximum !== undefined ? `≤ ${f.maximum}` : f.exclusiveMaximum !== undefined ? `< ${f.exclusiveMaximum}` : "";
  if (f.minimum !== undefined && f.maximum !== undefined) return `${f.minimum} – ${f.maximum}`;
  return [lo, hi].filter(Boolean).join(", ");
}
