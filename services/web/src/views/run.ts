/**
 * Live run view: status, progress, timing, accuracy/loss chart, per-round per-client results, checkpoints.
 * `RunStream` (run_stream.ts) turns `GET /training/{id}` and the SSE stream into snapshots; each panel is a pure
 * function of a snapshot (run_panels.ts, run_data_panels.ts); this module only wires them to the page and
 * holds what is the user's, not the run's: which rounds are unfolded.
 */
import { ApiError, TERMINAL, api, type JsonSchema } from "../api";
import { MetricsChart, SERIES_COLORS } from "../charts";
import { h, mount, stateBlock } from "../dom";
import { href, type Route } from "../router";
import { sortedRounds } from "../run_metrics";
import { card, toast } from "../widgets";
import { detailsPanel, nodeDataPanel } from "./run_data_panels";
import { chartPoints, checkpointsPanel, clientsPanel, headerPanel, liveLinePanel, mlflowPanel, roundsPanel, statsPanel } from "./run_panels";
import type { RunSnapshot } from "./run_state";
import { RunStream } from "./run_stream";

export function renderRun(root: HTMLElement, route: Route): () => void {
  const runId = route.path[1];
  const openRounds = new Set<number>();
  let followLatest = true; // the newest round stays open until the user opens or closes one
  let schema: JsonSchema | null = null;
  let laidOut = false;

  // Persistent containers: re-rendering fills them, the chart instance survives updates.
  const header = h("div");
  const stats = h("div", { class: "stats" });
  const liveLine = h("div", { class: "live-line", "data-testid": "live-line" });
  const mlflowNotice = h("div");
  const chartHost = h("div", { class: "chart", "data-testid": "metrics-chart", "data-rounds": "" });
  const chartEmpty = h("div", { class: "chart-empty muted" }, "The chart fills in as rounds finish.");
  const roundsBody = h("div");
  // Rounds and checkpoints side by side; stacked when the rounds table grows ε / bytes columns.
  const roundsRow = h("div", { class: "grid-2 grid-even", "data-testid": "rounds-row" });
  const clientsBody = h("div");
  const checkpointsBody = h("div");
  const detailsBody = h("div");
  const nodeDataCard = h("div");
  const chart = new MetricsChart(chartHost);
  // What the two families of series measure; the legend names stay short enough for a phone.
  const keyItem = (color: string, title: string, text: string) =>
    h("div", { class: "chart-key-item" }, h("span", { class: "chart-key-swatch", style: `background:${color}`, "aria-hidden": "true" }), h("div", {}, h("strong", {}, title), " ", h("span", { class: "muted" }, text)));
  const chartKey = h(
    "div",
    { class: "chart-key", "data-testid": "chart-key" },
    keyItem(SERIES_COLORS.centralized, "Centralized (test set)", "— the server evaluates the aggregated global model on its held-out test set after each round."),
    keyItem(SERIES_COLORS.federated, "Federated (clients' validation, global model before local training)", "— each client's validation split, weighted by its number of examples."),
    h("div", { class: "chart-key-note muted" }, "Solid lines: accuracy (left axis). Dashed: loss (right axis)."),
  );

  mount(root, stateBlock("loading", "Loading run…"));

  const onLoadError = (err: unknown) => {
    const notFound = err instanceof ApiError && err.status === 404;
    mount(
      root,
      stateBlock("error", notFound ? "No such run" : "Could not load the run", notFound ? `There is no run with id ${runId}.` : (err as Error).message, h("a", { class: "btn", href: href("runs") }, "All runs")),
    );
  };

  const stream = new RunStream(runId, (s) => render(s), onLoadError);
  // The configuration's labels and which fields matter; without it every field shows under its own name.
  api.schema().then(
    (fetched) => {
      schema = fetched;
      if (stream.snapshot) render(stream.snapshot);
    },
    () => undefined,
  );

  function layout() {
    mount(roundsRow, card("Rounds", [roundsBody], { testid: "rounds-card" }), card("Checkpoints", [checkpointsBody], { testid: "checkpoints-card" }));
    mount(
      root,
      header,
      stats,
      liveLine,
      mlflowNotice,
      card("Accuracy and loss per round", [chartHost, chartEmpty, chartKey], { testid: "chart-card" }),
      roundsRow,
      card("Clients per round", [clientsBody], { testid: "clients-card" }),
      nodeDataCard,
      card("Configuration", [detailsBody], { testid: "config-card" }),
    );
  }

  function renderLive(s: RunSnapshot) {
    mount(stats, statsPanel(s, Date.now()));
    const line = liveLinePanel(s);
    liveLine.className = line.className;
    mount(liveLine, line.children);
  }

  function render(s: RunSnapshot) {
    if (!laidOut) {
      layout();
      laidOut = true;
    }
    const run = s.run;
    const ended = TERMINAL.has(run.status);
    mount(header, headerPanel(s, { onStop: confirmStop, onResume: () => void resume(), onDelete: () => void remove() }));
    renderLive(s);
    mount(mlflowNotice, mlflowPanel(run));
    const rounds = sortedRounds(run.rounds);
    chart.update(chartPoints(rounds), run.num_rounds ?? Number(run.config?.num_rounds ?? rounds.length));
    chartEmpty.hidden = rounds.length > 0;
    chartKey.hidden = rounds.length === 0;
    chartHost.classList.toggle("chart-waiting", rounds.length === 0);
    const table = roundsPanel(rounds, ended);
    roundsRow.classList.toggle("grid-stacked", table.wide);
    mount(roundsBody, table.body);
    if (followLatest && rounds.length) {
      openRounds.clear();
      openRounds.add(rounds[rounds.length - 1].round);
    }
    mount(
      clientsBody,
      clientsPanel(rounds, {
        open: openRounds,
        onSummaryClick: () => (followLatest = false),
        onToggle: (round, open) => {
          if (followLatest) return;
          if (open) openRounds.add(round);
          else openRounds.delete(round);
        },
      }),
    );
    mount(checkpointsBody, checkpointsPanel(runId, s.models));
    mount(nodeDataCard, nodeDataPanel(run));
    mount(detailsBody, detailsPanel(run, schema));
  }

  async function resume() {
    try {
      const next = await api.resume(runId);
      toast("Resumed from the last checkpoint as a new run.");
      window.location.hash = href(`runs/${next.run_id}`);
    } catch (err) {
      toast(`Could not resume: ${(err as Error).message}`, "error");
    }
  }

  async function remove() {
    if (!window.confirm("Delete this run, its history, logs and checkpoints? This cannot be undone.")) return;
    try {
      await api.remove(runId);
      toast("Run deleted.");
      window.location.hash = href("runs");
    } catch (err) {
      toast(`Could not delete: ${(err as Error).message}`, "error");
    }
  }

  function confirmStop() {
    const close = () => overlay.remove();
    const yes = h("button", { class: "btn btn-danger", "data-testid": "stop-confirm" }, "Stop run");
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      yes.textContent = "Stopping…";
      try {
        await api.stop(runId);
        toast("Stop requested. The run ends after the current step.");
        stream.stopRequested();
      } catch (err) {
        toast(err instanceof ApiError && err.status === 409 ? "The run had already finished." : `Could not stop: ${(err as Error).message}`, "error");
      }
      close();
      void stream.refresh();
    });
    const overlay = h(
      "div",
      { class: "modal-overlay", "data-testid": "stop-modal" },
      h(
        "div",
        { class: "modal", role: "dialog", "aria-modal": "true" },
        h("h2", {}, "Stop this run?"),
        h("p", { class: "muted" }, "The federation stops after the current step. Checkpoints already saved are kept and can be resumed."),
        h("div", { class: "modal-actions" }, h("button", { class: "btn btn-ghost", onclick: close }, "Cancel"), yes),
      ),
    );
    document.body.appendChild(overlay);
    yes.focus();
  }

  // Elapsed/ETA tick.
  const tick = window.setInterval(() => {
    if (stream.snapshot && !TERMINAL.has(stream.snapshot.run.status)) renderLive(stream.snapshot);
  }, 1000);

  return () => {
    window.clearInterval(tick);
    stream.dispose();
    chart.destroy();
    document.querySelectorAll("[data-testid=stop-modal]").forEach((m) => m.remove());
  };
}
