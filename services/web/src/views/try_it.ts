/**
 * "Try it": drop or choose an image and see a checkpoint's most probable classes (POST /models/{id}/predict).
 * The file goes to the server as it is — the server checks its format and size and says what is wrong
 * (a 422 naming the problem), so the page shows the server's reason instead of guessing its rules.
 */
import { api, ApiError, type ModelInfo, type Prediction } from "../api";
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
  const file = h("input", { type: "file", accept: "image/png,image/jpeg", class: "drop-input", "data-testid": "try-file" });
  const zone = h("label", { class: "drop-zone", "data-testid": "try-drop" }, h("span", {}, "Drop a 28×28 PNG or JPEG here, or ", h("u", {}, "choose a file")), file);
  const preview = h("img", { class: "try-preview", alt: "The image sent", hidden: true, "data-testid": "try-preview" });
  const result = h("div", { class: "try-result", "data-testid": "try-result", "aria-live": "polite" });
  let image: File | null = null;
  let previewUrl: string | null = null;
  let attempt = 0;

  async function predict(): Promise<void> {
    if (!image || !select.value) return;
    const mine = ++attempt;
    mount(result, stateBlock("loading", "Asking the model…"));
    try {
      const answer = await api.predict(select.value, image);
      if (mine === attempt) mount(result, ranking(answer.predictions.slice(0, TOP)));
    } catch (err) {
      if (mine !== attempt) return;
      const detail = err instanceof ApiError && err.issues.length ? err.issues.map((i) => i.msg).join("; ") : (err as Error).message;
      mount(result, stateBlock("error", "The model could not use this image", detail));
    }
  }

  function choose(chosen: File | undefined): void {
    if (!chosen) return;
    image = chosen;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(chosen);
    preview.src = previewUrl;
    preview.hidden = false;
    void predict();
  }

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
  select.addEventListener("change", () => void predict());

  return card(
    "Try it",
    [
      h("p", { class: "card-hint" }, "Class probabilities of one Fashion-MNIST-like image (28×28, grey or colour) from the checkpoint you pick."),
      h("div", { class: "toolbar" }, h("label", { class: "toolbar-label" }, "Checkpoint", select)),
      h("div", { class: "try-row" }, zone, preview, result),
    ],
    { testid: "try-card" },
  );
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
