/**
 * One Start-form input per schema field: the element for its kind and bounds, and its value read and written as
 * the API expects it (numbers as numbers, an empty nullable field as null). Knows no field by name.
 */
import { h } from "../dom";
import type { FieldSpec } from "../schema_fields";

export type Input = HTMLInputElement | HTMLSelectElement;

export function inputFor(f: FieldSpec): Input {
  const common = { id: `field-${f.name}`, name: f.name, "data-testid": `field-${f.name}`, "aria-describedby": `help-${f.name} error-${f.name}` };
  if (f.kind === "enum") {
    const select = h(
      "select",
      common,
      f.nullable ? h("option", { value: "" }, "—") : null,
      (f.options ?? []).map((o) => h("option", { value: o }, o)),
    );
    return select;
  }
  if (f.kind === "boolean") return h("input", { ...common, type: "checkbox" });
  const numeric = f.kind === "integer" || f.kind === "number";
  const min = f.minimum ?? f.exclusiveMinimum;
  const max = f.maximum ?? f.exclusiveMaximum;
  return h("input", {
    ...common,
    type: numeric ? "number" : "text",
    inputmode: numeric ? (f.kind === "integer" ? "numeric" : "decimal") : undefined,
    step: f.kind === "integer" ? 1 : numeric ? "any" : undefined,
    min: numeric && min !== undefined ? min : undefined,
    max: numeric && max !== undefined ? max : undefined,
    required: numeric && !f.nullable ? true : undefined,
    placeholder: f.nullable ? (numeric ? "no limit" : "none") : undefined,
    autocomplete: "off",
  });
}

export function writeValue(f: FieldSpec, el: Input, value: unknown): void {
  if (f.kind === "boolean") (el as HTMLInputElement).checked = Boolean(value);
  else el.value = value === null || value === undefined ? "" : String(value);
}

export function readValue(f: FieldSpec, el: Input): unknown {
  if (f.kind === "boolean") return (el as HTMLInputElement).checked;
  const raw = el.value.trim();
  if (raw === "") return f.nullable ? null : f.kind === "string" || f.kind === "enum" ? "" : raw;
  if (f.kind === "integer") return Number.isInteger(Number(raw)) ? Number(raw) : raw;
  if (f.kind === "number") return Number.isNaN(Number(raw)) ? raw : Number(raw);
  return raw;
}
