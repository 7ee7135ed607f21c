/**
 * Start Training: a form generated from `GET /training/schema`, posted to `POST /training/start`.
 *
 * Everything about a field comes from the schema (declared once with each run setting on the server): its
 * label (`x-label`), section (`x-group`, in the order of `x-groups`), whether it is folded under "Advanced"
 * (`x-advanced`) and when it matters (`x-when`): a field that does not matter for the chosen strategy, privacy
 * mode, compression, selection or data source is hidden, left out of the request (the server's default
 * applies) and shown again as soon as it matters. Presets (`GET /training/presets`) fill the form over the
 * defaults. The duration estimate (start_estimate.ts) uses the last finished runs' seconds per round and start-up time. The submit button
 * lives in a side column (below the form on narrow screens), so it never covers a field. The server stays the
 * authority on what is valid: its 422s are shown next to their fields.
 */
import { ApiError, api, type JsonSchema, type Preset, type RunDetail, type TrainingConfig } from "../api";
import { h, mount, stateBlock } from "../dom";
import type { Route } from "../router";
import { navigate } from "../router";
import { applies, boundsText, fieldsFromSchema, groupsOf, type FieldSpec } from "../schema_fields";
import { card, pageHeader } from "../widgets";
import { estimateOf, paceOf, type Pace } from "./start_estimate";
import { inputFor, readValue, writeValue, type Input } from "./start_fields";

export function renderStart(root: HTMLElement, route: Route): () => void {
  let alive = true;
  mount(root, pageHeader("Start training", "Configure a federated run on the connected SuperNodes."), stateBlock("loading", "Loading the training schema…"));

  const resumeRun = route.query.get("resume");
  const checkpoint = route.query.get("checkpoint");

  Promise.all([
    api.schema(),
    api.presets().catch(() => [] as Preset[]),
    api
      .runs({ status: "completed", limit: 5, offset: 0 })
      .then((p) => Promise.all(p.items.map((r) => api.run(r.run_id).catch(() => null))))
      .then((details) => details.filter((d): d is RunDetail => d !== null))
      .catch(() => [] as RunDetail[]),
    resumeRun ? api.run(resumeRun).catch(() => null) : Promise.resolve(null),
  ])
    .then(([schema, presets, recent, previous]) => {
      if (!alive) return;
      const fields = fieldsFromSchema(schema);
      const initial: TrainingConfig = {};
      for (const f of fields) initial[f.name] = f.default ?? null;
      if (previous?.config) Object.assign(initial, previous.config);
      if (checkpoint) initial.from_checkpoint = checkpoint;
      buildForm(root, schema, fields, initial, presets, paceOf(recent), checkpoint);
    })
    .catch((err: unknown) => {
      if (!alive) return;
      const retry = h("button", { class: "btn", onclick: () => renderStart(root, route) }, "Retry");
      mount(root, pageHeader("Start training"), stateBlock("error", "Could not load the training schema", (err as Error).message, retry));
    });
  return () => {
    alive = false;
  };
}

function buildForm(
  root: HTMLElement,
  schema: JsonSchema,
  fields: FieldSpec[],
  initial: TrainingConfig,
  presets: Preset[],
  pace: Pace | null,
  checkpoint: string | null,
): void {
  const inputs = new Map<string, Input>();
  const blocks = new Map<string, HTMLElement>();
  const errors = new Map<string, HTMLElement>();
  const byName = new Map(fields.map((f) => [f.name, f]));
  const summary = h("div", { class: "form-summary", "data-testid": "form-errors", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-lg", "data-testid": "start-submit" }, "Start training");
  const estimate = h("p", { class: "start-estimate", "data-testid": "duration-estimate" });
  const presetNote = h("p", { class: "card-hint", "data-testid": "preset-note" }, "Fill the form with a tried configuration, then adjust it.");

  const fieldBlock = (f: FieldSpec) => {
    const input = inputFor(f);
    writeValue(f, input, initial[f.name]);
    inputs.set(f.name, input);
    const error = h("div", { class: "field-error", id: `error-${f.name}`, "data-testid": `error-${f.name}`, hidden: true });
    errors.set(f.name, error);
    const bounds = boundsText(f);
    const help = [f.description, bounds ? `Range ${bounds}` : ""].filter(Boolean).join(" · ");
    input.addEventListener("input", () => setFieldError(f.name, null));
    input.addEventListener("change", refresh);
    input.addEventListener("input", refresh);
    const block = h(
      "div",
      { class: `field field-${f.kind}`, "data-field": f.name },
      h("label", { for: `field-${f.name}`, class: "field-label" }, f.label),
      input,
      help ? h("div", { class: "field-help", id: `help-${f.name}` }, help) : null,
      error,
    );
    blocks.set(f.name, block);
    return block;
  };

  const current = (): Record<string, unknown> => Object.fromEntries(fields.map((f) => [f.name, readValue(f, inputs.get(f.name)!)]));

  /** Show exactly the fields that matter for the values chosen now; hide sections left empty. */
  function refresh(): void {
    const values = current();
    for (const f of fields) {
      const on = applies(f, values);
      blocks.get(f.name)!.hidden = !on;
      inputs.get(f.name)!.disabled = !on; // a hidden field is neither validated nor sent
    }
    for (const section of form.querySelectorAll<HTMLElement>("[data-section]")) {
      section.hidden = ![...section.querySelectorAll<HTMLElement>("[data-field]")].some((b) => !b.hidden);
    }
    mount(estimate, ...estimateOf(pace, Number(values.num_rounds)));
  }

  const setFieldError = (name: string, message: string | null) => {
    const el = errors.get(name);
    const input = inputs.get(name);
    if (!el || !input) return;
    el.textContent = message ?? "";
    el.hidden = !message;
    input.classList.toggle("invalid", Boolean(message));
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };

  const showSummary = (title: string, lines: string[]) => {
    mount(summary, h("strong", {}, title), lines.length ? h("ul", {}, lines.map((l) => h("li", {}, l))) : null);
    summary.hidden = false;
  };

  const groups = groupsOf(schema, fields);
  const section = (title: string, specs: FieldSpec[], hint: string, advanced: boolean) =>
    advanced
      ? h("div", { class: "advanced-section", "data-section": title }, h("h3", {}, title), h("div", { class: "field-grid" }, specs.map(fieldBlock)))
      : card(title, [hint ? h("p", { class: "card-hint" }, hint) : null, h("div", { class: "field-grid" }, specs.map(fieldBlock))], { class: "form-group" });
  const basic = groups
    .map((g) => ({ g, specs: fields.filter((f) => f.group === g.title && !f.advanced) }))
    .filter((x) => x.specs.length)
    .map(({ g, specs }) => {
      const el = section(g.title, specs, g.hint, false);
      el.setAttribute("data-section", g.title);
      return el;
    });
  const advancedSections = groups
    .map((g) => ({ g, specs: fields.filter((f) => f.group === g.title && f.advanced) }))
    .filter((x) => x.specs.length)
    .map(({ g, specs }) => section(g.title, specs, g.hint, true));
  const advanced = h(
    "details",
    { class: "card advanced-fold", "data-testid": "advanced-fold" },
    h("summary", { "data-testid": "advanced-toggle" }, "Advanced settings"),
    h("p", { class: "card-hint" }, "Timeouts, seeds, schedules and fine-tuning; the defaults suit most runs."),
    advancedSections,
  );
  if (fields.some((f) => f.advanced && JSON.stringify(initial[f.name] ?? null) !== JSON.stringify(f.default ?? null))) advanced.open = true;

  const applyPreset = (preset: Preset) => {
    for (const f of fields) writeValue(f, inputs.get(f.name)!, preset.config[f.name] ?? f.default ?? null);
    for (const name of inputs.keys()) setFieldError(name, null);
    summary.hidden = true;
    mount(presetNote, h("strong", {}, preset.name), ` — ${preset.description}`);
    refresh();
  };
  const presetCard = presets.length
    ? card(
        "Presets",
        [
          h(
            "div",
            { class: "preset-row" },
            presets.map((p) =>
              h("button", { type: "button", class: "btn", title: p.description, "data-testid": "preset-button", "data-preset": p.name, onclick: () => applyPreset(p) }, p.name),
            ),
          ),
          presetNote,
        ],
        { class: "form-group", testid: "presets" },
      )
    : null;

  const form = h(
    "form",
    { class: "start-form", "data-testid": "start-form", novalidate: false },
    h(
      "div",
      { class: "start-layout" },
      h("div", { class: "start-main" }, summary, presetCard, basic, advanced),
      h(
        "aside",
        { class: "start-aside", "data-testid": "submit-bar" },
        h("div", { class: "card start-aside-card" }, h("h2", {}, "Duration"), estimate, submit, h("p", { class: "muted start-hint" }, "The run starts as soon as enough nodes are connected.")),
      ),
    ),
  );
  refresh();

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const invalid = form.querySelector<HTMLElement>(":invalid:not(fieldset)");
    if (invalid && invalid.closest("details") === advanced) advanced.open = true; // the browser can only point at a visible field
    if (!form.reportValidity()) return;
    for (const name of inputs.keys()) setFieldError(name, null);
    summary.hidden = true;
    const values = current();
    const config: TrainingConfig = {};
    for (const f of fields) if (applies(f, values)) config[f.name] = values[f.name];
    submit.disabled = true;
    submit.textContent = "Starting…";
    try {
      const run = await api.start(config);
      navigate(`runs/${run.run_id}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 422 && err.issues.length) {
        const lines: string[] = [];
        let first: HTMLElement | null = null;
        for (const issue of err.issues) {
          const name = String(issue.loc[issue.loc.length - 1] ?? "");
          const label = byName.get(name)?.label ?? (issue.loc.filter((p) => p !== "body").join(".") || "Request");
          if (inputs.has(name)) {
            const prev = errors.get(name)!.textContent;
            setFieldError(name, prev ? `${prev}; ${issue.msg}` : issue.msg);
            if (byName.get(name)?.advanced) advanced.open = true;
            first ??= inputs.get(name)!;
          }
          lines.push(`${label}: ${issue.msg}`);
        }
        showSummary("The server rejected this configuration. Fix the highlighted fields:", lines);
        (first ?? summary).scrollIntoView({ block: "center" });
        first?.focus({ preventScroll: true });
      } else if (err instanceof ApiError && err.status === 401) {
        showSummary("Not authorised: the API token is missing or wrong.", ["Use the “Token” button in the top bar, then submit again."]);
      } else {
        showSummary("Could not start the run.", [(err as Error).message]);
      }
    } finally {
      submit.disabled = false;
      submit.textContent = "Start training";
    }
  });

  mount(
    root,
    pageHeader("Start training", checkpoint ? `Resuming from checkpoint ${checkpoint}` : "Configure a federated run on the connected SuperNodes."),
    form,
  );
}
