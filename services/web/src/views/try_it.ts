/**
 * "Try it": a checkpoint's most probable classes (POST /models/{id}/predict) for an image dropped or chosen
 * (image models) or a table row typed into a form (tabular models: one field per column the model was
 * trained on, from GET /models' `input`). What is sent is what the user gave — the server checks it and
 * says what is wrong (a 422 naming the problem, or the column), so the page shows the server's reason
 * instead of guessing its rules, and marks the fields it names.
 */
import { api, ApiError, type ModelInfo, type Prediction, type PredictionResult } from "../api";
import { h, mount, stateBlock } from "../dom";
import { formatAccuracy, shortId } from "../format";
import { card } from "../widgets";

const TOP = 3;

export function tryItCard(models: ModelInfo[], selected?: string): HTMLElement {
  const select = h(
    "select",
    { class: "select-inline", "data-testid": "try-model", "aria-label": "Checkpoint to try" },
    models.map((m) =>
      h("option", { value: m.model_id, selected: m.model_id === selected }, `${shortId(m.run_id)} · round ${m.round} · ${m.model ?? "?"} · ${formatAccuracy(m.metrics?.accuracy ?? null)}`),
    ),
  );
  const hint = h("p", { class: "card-hint" });
  const input = h("div", { class: "try-input" });
  const result = h("div", { class: "try-result", "data-testid": "try-result", "aria-live": "polite" });
  let attempt = 0;
  let resend: (() => void) | null = null; // the image shown, sent again to another image model
  let shownFor = ""; // what the input in place was built for: its kind and columns

  /** Ask the model; the latest request wins, an older answer arriving late is dropped. */
  async function ask(send: () => Promise<PredictionResult>, onIssues: (err: ApiError | null) => void): Promise<void> {
    const mine = ++attempt;
    mount(result, stateBlock("loading", "Asking the model…"));
    try {
      const answer = await send();
      if (mine !== attempt) return;
      onIssues(null);
      mount(result, ranking(answer.predictions.slice(0, TOP)));
    } catch (err) {
      if (mine !== attempt) return;
      const apiError = err instanceof ApiError ? err : null;
      onIssues(apiError);
      const detail = apiError && apiError.issues.length ? apiError.issues.map((i) => i.msg).join("; ") : (err as Error).message;
      mount(result, stateBlock("error", "The model could not use this input", detail));
    }
  }

  function imageInput(model: ModelInfo): void {
    const [, height = 28, width = 28] = model.input?.shape ?? [];
    hint.textContent = `Class probabilities of one image (${width}×${height}, grey or colour) from the checkpoint you pick.`;
    const file = h("input", { type: "file", accept: "image/png,image/jpeg", class: "drop-input", "data-testid": "try-file" });
    const zone = h("label", { class: "drop-zone", "data-testid": "try-drop" }, h("span", {}, `Drop a ${width}×${height} PNG or JPEG here, or `, h("u", {}, "choose a file")), file);
    const preview = h("img", { class: "try-preview", alt: "The image sent", hidden: true, "data-testid": "try-preview" });
    let image: File | null = null;
    let previewUrl: string | null = null;
    const send = (): void => {
      if (image && select.value) void ask(() => api.predict(select.value, image as File), () => undefined);
    };
    const choose = (chosen: File | undefined): void => {
      if (!chosen) return;
      image = chosen;
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = URL.createObjectURL(chosen);
      preview.src = previewUrl;
      preview.hidden = false;
      send();
    };
    file.addEventListener("change", () => choose(file.files?.[0]));
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      zone.classList.add("drop-over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("drop-over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("drop-over");
      choose(e.dataTransfer?.files[0]);
    });
    resend = send;
    mount(input, h("div", { class: "try-row" }, zone, preview));
  }

  function rowInput(model: ModelInfo): void {
    const columns = model.input?.columns ?? [];
    const means = model.input?.feature_mean ?? [];
    hint.textContent = `Class probabilities of one table row: a value for each of the ${columns.length} columns the model was trained on (raw values; the server standardises them as in training). Empty fields show the federation's mean.`;
    const fields = columns.map((column, i) =>
      h("input", {
        type: "text",
        inputmode: "decimal",
        class: "try-field",
        "data-testid": "try-feature",
        "data-column": column,
        "aria-label": column,
        placeholder: means[i] === undefined ? "" : formatValue(means[i]),
        autocomplete: "off",
      }),
    );
    const notes = columns.map(() => h("span", { class: "try-field-error", "aria-live": "polite" }));
    const typical = h("button", { type: "button", class: "btn", "data-testid": "try-typical" }, "Fill with the mean row");
    const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "try-submit" }, "Predict");
    const form = h(
      "form",
      { class: "try-form", "data-testid": "try-form", novalidate: true },
      h("div", { class: "try-fields" }, columns.map((column, i) => h("label", { class: "try-field-label" }, h("span", {}, column), fields[i], notes[i]))),
      h("div", { class: "toolbar" }, submit, typical),
    );
    typical.addEventListener("click", () => fields.forEach((f, i) => (f.value = means[i] === undefined ? "" : String(means[i]))));
    const mark = (err: ApiError | null): void => {
      fields.forEach((f, i) => {
        const issue = err?.issues.find((x) => x.loc.length === 3 && x.loc[1] === "features" && x.loc[2] === columns[i]);
        if (issue) f.setAttribute("aria-invalid", "true");
        else f.removeAttribute("aria-invalid");
        notes[i].textContent = issue ? issue.msg : "";
      });
    };
    const send = (): void => {
      if (!select.value) return;
      // A number when the text is one; otherwise the text as typed, for the server to name and explain.
      const row: Record<string, number | string> = {};
      fields.forEach((f, i) => {
        const text = f.value.trim();
        const number = Number(text);
        row[columns[i]] = text !== "" && Number.isFinite(number) ? number : text;
      });
      void ask(() => api.predictRow(select.value, row), mark);
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      send();
    });
    resend = null; // a row is sent when asked (Predict), its values kept across checkpoints with the same columns
    mount(input, form);
  }

  const inputKey = (model: ModelInfo | undefined): string => JSON.stringify([model?.input?.kind ?? "images", model?.input?.columns ?? [], model?.input?.shape ?? []]);

  /** The input for the selected checkpoint: rebuilt only when it takes another kind of input. */
  function show(): void {
    const model = models.find((m) => m.model_id === select.value);
    if (!model) return;
    const key = inputKey(model);
    if (key === shownFor) {
      if (resend) resend();
      else mount(result);
      return;
    }
    shownFor = key;
    attempt++;
    mount(result);
    if (model.input?.kind === "table") rowInput(model);
    else imageInput(model);
  }

  select.addEventListener("change", show);
  show();

  return card(
    "Try it",
    [hint, h("div", { class: "toolbar" }, h("label", { class: "toolbar-label" }, "Checkpoint", select)), h("div", { class: "try-row" }, input, result)],
    { testid: "try-card" },
  );
}

function formatValue(value: number): string {
  return Math.abs(value) >= 1000 || Math.abs(value) < 0.01 ? value.toPrecision(4) : value.toFixed(3);
}

function ranking(top: Prediction[]): HTMLElement {
  return h(
    "ol",
    { class: "try-ranking", "data-testid": "try-ranking" },
    top.map((p) =>
      h(
        "li",
        { "data-testid": "try-class", "data-label": p.label },
        h("span", { class: "try-label" }, p.label),
        h("progress", { max: 1, value: p.probability, "aria-label": `${p.label} probability` }),
        h("span", { class: "num" }, `${(p.probability * 100).toFixed(1)} %`),
      ),
    ),
  );
}
