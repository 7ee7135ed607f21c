/**
 * Start Training: a form generated from `GET /training/schema` (defaults, enums, bounds), posted to
 * `POST /training/start`. Server-side validation errors are shown next to their fields; the server stays
 * the authority on what is valid (the browser's min/max only catch typos early).
 */
import { ApiError, api, type TrainingConfig } from "../api";
import { h, mount, stateBlock } from "../dom";
import type { Route } from "../router";
import { navigate } from "../router";
import { boundsText, fieldsFromSchema, type FieldSpec } from "../schema_fields";
import { card, pageHeader } from "../widgets";

const GROUPS: { title: string; hint: string; fields: string[] }[] = [
  { title: "Model & schedule", hint: "What to train and for how long.", fields: ["model", "strategy", "num_rounds", "evaluate_every", "seed"] },
  { title: "Clients", hint: "How many SuperNodes take part in each round.", fields: ["fraction_train", "fraction_evaluate", "min_nodes", "min_available_nodes", "node_wait_timeout", "round_timeout"] },
  { title: "Data", hint: "Fashion-MNIST split across clients (partitions), or each node's own data directory (node).", fields: ["data_source", "label_column", "partitioner", "alpha", "max_train_examples", "batch_size"] },
  { title: "Local training", hint: "Optimiser settings on every client.", fields: ["learning_rate", "momentum", "local_epochs"] },
  { title: "Strategy parameters", hint: "Each strategy reads the ones it has.", fields: ["proximal_mu", "server_learning_rate", "server_momentum", "server_eta", "tau", "beta_1", "beta_2", "trim_beta", "krum_num_malicious"] },
  { title: "Client selection", hint: "Who trains each round.", fields: ["selection", "selection_explore"] },
  { title: "Privacy", hint: "Differential privacy, local (Opacus in every client) or central (server-side).", fields: ["dp", "dp_noise_multiplier", "dp_max_grad_norm", "dp_delta", "dp_clipping_norm"] },
  { title: "Compression", hint: "Client updates sent compressed, with error feedback.", fields: ["compression", "compression_ratio"] },
  { title: "Secure aggregation", hint: "SecAgg+: every update masked, the server sees only their sum.", fields: ["secure_aggregation", "secagg_num_shares", "secagg_reconstruction_threshold", "secagg_clipping_range", "secagg_quantization_range"] },
  { title: "Checkpoints", hint: "What this run keeps, and a stored checkpoint to continue from (leave empty to start fresh).", fields: ["keep_checkpoints", "from_checkpoint"] },
];

/** Friendlier labels than the schema's titles ("Num Rounds"); unknown fields fall back to the schema. */
const LABELS: Record<string, string> = {
  num_rounds: "Rounds",
  fraction_train: "Train fraction",
  fraction_evaluate: "Evaluate fraction",
  min_nodes: "Min. nodes per round",
  min_available_nodes: "Min. connected nodes",
  alpha: "Dirichlet alpha",
  round_timeout: "Round timeout (s)",
  node_wait_timeout: "Node wait timeout (s)",
  max_train_examples: "Max. train examples per client",
  from_checkpoint: "From checkpoint (model id)",
  keep_checkpoints: "Checkpoints to keep",
  data_source: "Data source",
  label_column: "Label column (tables)",
};

function inputFor(f: FieldSpec, value: unknown): HTMLInputElement | HTMLSelectElement {
  const common = { id: `field-${f.name}`, name: f.name, "data-testid": `field-${f.name}`, "aria-describedby": `help-${f.name} error-${f.name}` };
  if (f.kind === "enum") {
    const select = h(
      "select",
      common,
      f.nullable ? h("option", { value: "" }, "—") : null,
      (f.options ?? []).map((o) => h("option", { value: o }, o)),
    );
    select.value = value === null || value === undefined ? "" : String(value);
    return select;
  }
  if (f.kind === "boolean") {
    const box = h("input", { ...common, type: "checkbox" });
    box.checked = Boolean(value);
    return box;
  }
  const numeric = f.kind === "integer" || f.kind === "number";
  const min = f.minimum ?? f.exclusiveMinimum;
  const max = f.maximum ?? f.exclusiveMaximum;
  const input = h("input", {
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
  input.value = value === null || value === undefined ? "" : String(value);
  return input;
}

function readValue(f: FieldSpec, el: HTMLInputElement | HTMLSelectElement): unknown {
  if (f.kind === "boolean") return (el as HTMLInputElement).checked;
  const raw = el.value.trim();
  if (raw === "") return f.nullable ? null : f.kind === "string" || f.kind === "enum" ? "" : raw;
  if (f.kind === "integer") return Number.isInteger(Number(raw)) ? Number(raw) : raw;
  if (f.kind === "number") return Number.isNaN(Number(raw)) ? raw : Number(raw);
  return raw;
}

export function renderStart(root: HTMLElement, route: Route): () => void {
  let alive = true;
  mount(root, pageHeader("Start training", "Configure a federated run on the connected SuperNodes."), stateBlock("loading", "Loading the training schema…"));

  const resumeRun = route.query.get("resume");
  const checkpoint = route.query.get("checkpoint");

  Promise.all([api.schema(), resumeRun ? api.run(resumeRun).catch(() => null) : Promise.resolve(null)])
    .then(([schema, previous]) => {
      if (!alive) return;
      const fields = fieldsFromSchema(schema);
      const initial: TrainingConfig = {};
      for (const f of fields) initial[f.name] = f.default ?? null;
      if (previous?.config) Object.assign(initial, previous.config);
      if (checkpoint) initial.from_checkpoint = checkpoint;
      buildForm(root, fields, initial, checkpoint);
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

function buildForm(root: HTMLElement, fields: FieldSpec[], initial: TrainingConfig, checkpoint: string | null): void {
  const inputs = new Map<string, HTMLInputElement | HTMLSelectElement>();
  const errors = new Map<string, HTMLElement>();
  const summary = h("div", { class: "form-summary", "data-testid": "form-errors", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-lg", "data-testid": "start-submit" }, "Start training");

  const fieldBlock = (f: FieldSpec) => {
    const input = inputFor(f, initial[f.name]);
    inputs.set(f.name, input);
    const error = h("div", { class: "field-error", id: `error-${f.name}`, "data-testid": `error-${f.name}`, hidden: true });
    errors.set(f.name, error);
    const bounds = boundsText(f);
    const help = [f.description, bounds ? `Range ${bounds}` : ""].filter(Boolean).join(" · ");
    input.addEventListener("input", () => setFieldError(f.name, null));
    return h(
      "div",
      { class: `field field-${f.kind}`, "data-field": f.name },
      h("label", { for: `field-${f.name}`, class: "field-label" }, LABELS[f.name] ?? f.label),
      input,
      help ? h("div", { class: "field-help", id: `help-${f.name}` }, help) : null,
      error,
    );
  };

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

  const known = new Set(GROUPS.flatMap((g) => g.fields));
  const byName = new Map(fields.map((f) => [f.name, f]));
  const groups = [...GROUPS, { title: "Other", hint: "", fields: fields.map((f) => f.name).filter((n) => !known.has(n)) }]
    .map((g) => ({ ...g, specs: g.fields.map((n) => byName.get(n)).filter((f): f is FieldSpec => Boolean(f)) }))
    .filter((g) => g.specs.length);

  const form = h(
    "form",
    { class: "start-form", "data-testid": "start-form", novalidate: false },
    summary,
    groups.map((g) =>
      card(g.title, [g.hint ? h("p", { class: "card-hint" }, g.hint) : null, h("div", { class: "field-grid" }, g.specs.map(fieldBlock))], {
        class: "form-group",
      }),
    ),
    h("div", { class: "form-actions" }, h("span", { class: "muted form-actions-hint" }, "The run starts as soon as enough nodes are connected."), submit),
  );

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!form.reportValidity()) return;
    for (const name of inputs.keys()) setFieldError(name, null);
    summary.hidden = true;
    const config: TrainingConfig = {};
    for (const f of fields) config[f.name] = readValue(f, inputs.get(f.name)!);
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
          const label = LABELS[name] ?? byName.get(name)?.label ?? (issue.loc.filter((p) => p !== "body").join(".") || "Request");
          if (inputs.has(name)) {
            const prev = errors.get(name)!.textContent;
            setFieldError(name, prev ? `${prev}; ${issue.msg}` : issue.msg);
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
