/**
 * The run view's panels, one pure function each: a snapshot (or part of it) in, DOM out. No fetch, no timers;
 * what a button does comes in as a callback, so `run.ts` wires them and the unit tests render them alone.
 */
import { TERMINAL, downloadUrl, type ModelInfo, type RoundResult, type RunDetail } from "../api";
import type { MetricsPoint } from "../charts";
import { h, stateBlock } from "../dom";
import { formatAccuracy, formatBytes, formatDuration, formatLoss, formatNumber, formatSeconds, formatTimestamp, shortId } from "../format";
import { href } from "../router";
import { centralizedAccuracy, centralizedLoss, federatedAccuracy, federatedLoss, roundAccuracy, roundLoss, roundSource, sortedRounds } from "../run_metrics";
import { pageHeader, stat, statusBadge, table, traceAnchor } from "../widgets";
import { settled, timing, type RunSnapshot } from "./run_state";

export interface HeaderActions {
  onStop: () => void;
  onResume: () => void;
  onDelete: () => void;
}

export function headerPanel(s: RunSnapshot, actions: HeaderActions): HTMLElement {
  const r = s.run;
  const stopBtn = !TERMINAL.has(r.status) && h("button", { class: "btn btn-danger", "data-testid": "stop-button", onclick: () => actions.onStop() }, "Stop run");
  const subtitle = h(
    "span",
    { class: "subtitle-row" },
    statusBadge(r.status, "run-status"),
    h("span", { class: "muted" }, `Created ${formatTimestamp(r.created_at)}`),
    r.config?.model ? h("span", { class: "chip" }, String(r.config.model)) : null,
    r.config?.strategy ? h("span", { class: "chip" }, String(r.config.strategy)) : null,
    r.config?.secure_aggregation === "secaggplus" ? h("span", { class: "chip", "data-testid": "secure-aggregation-badge" }, "secure aggregation") : null,
    r.from_checkpoint ? h("span", { class: "chip" }, `from ${shortId(r.from_checkpoint, 12)}`) : null,
    r.resumed_from ? h("a", { class: "chip", href: href(`runs/${r.resumed_from}`) }, `continues ${shortId(r.resumed_from)}`) : null,
  );
  const again = h("a", { class: "btn btn-ghost", href: href("start", { resume: r.run_id }) }, "Run again");
  const done = settled(s);
  const resumeBtn =
    done &&
    (r.status === "failed" || r.status === "stopped") &&
    h("button", { class: "btn", "data-testid": "resume-button", title: "Continue from the last checkpoint as a new run", onclick: () => actions.onResume() }, "Resume");
  const deleteBtn = done && h("button", { class: "btn btn-ghost", "data-testid": "delete-button", onclick: () => actions.onDelete() }, "Delete");
  return pageHeader(`Run ${shortId(r.run_id)}`, subtitle, ...([traceAnchor(r, "View trace", "btn"), again, resumeBtn, deleteBtn, stopBtn].filter(Boolean) as Node[]));
}

export function statsPanel(s: RunSnapshot, now: number): HTMLElement[] {
  const run = s.run;
  const total = run.num_rounds ?? Number(run.config?.num_rounds ?? 0);
  const done = Math.max(run.rounds.length, run.rounds_completed ?? 0);
  const pct = total ? Math.min(100, (done / total) * 100) : 0;
  const rounds = sortedRounds(run.rounds);
  const last = rounds[rounds.length - 1];
  const acc = run.accuracy ?? (last ? roundAccuracy(last) : null);
  const loss = run.loss ?? (last ? roundLoss(last) : null);
  const { elapsed, eta } = timing(s, now);
  const ended = TERMINAL.has(run.status);
  const progress = h(
    "div",
    {},
    h("span", { "data-testid": "run-progress" }, `${done}/${total || "?"}`),
    h("div", { class: "progress", role: "progressbar", "aria-valuenow": done, "aria-valuemin": 0, "aria-valuemax": total }, h("div", { class: `progress-bar progress-${run.status}`, style: `width:${pct}%` })),
  );
  const source = last ? roundSource(last) : "none";
  return [
    stat("Rounds", progress, undefined, undefined, "stat-wide"),
    stat("Elapsed", formatDuration(elapsed), "run-elapsed"),
    stat("ETA", ended ? "done" : eta === null ? "—" : `~${formatDuration(eta)}`, "run-eta"),
    stat(ended ? "Final accuracy" : "Accuracy", formatAccuracy(acc), "run-accuracy", source === "federated" ? "federated evaluation" : source === "centralized" ? "server test set" : undefined),
    stat("Loss", formatLoss(loss), "run-loss"),
  ];
}

/** The line under the stats: what the federation does right now, or how the run ended. */
export function liveLinePanel(s: RunSnapshot): { className: string; children: (Node | string)[] } {
  const run = s.run;
  if (run.status === "failed") return { className: "live-line live-error", children: [h("strong", {}, "Run failed: "), run.error || "no reason given"] };
  if (TERMINAL.has(run.status)) {
    const finished = run.finished_at ? ` at ${formatTimestamp(run.finished_at)}` : "";
    const completed = run.status === "completed";
    return { className: `live-line ${completed ? "live-done" : "live-stopped"}`, children: [completed ? `Completed${finished}.` : `Stopped${finished}.`] };
  }
  const connection =
    s.streamState === "live"
      ? h("span", { class: "live-dot", title: "Live updates connected" }, "Live")
      : h("span", { class: "live-dot live-dot-off", title: "Reconnecting to the event stream" }, s.streamState === "connecting" ? "Connecting…" : "Reconnecting…");
  const live = s.live;
  let text: string;
  if (live.kind === "waiting") text = `Waiting for nodes: ${live.connected} of ${live.needed} connected`;
  else if (live.kind === "round") text = `Round ${live.round} in progress${live.selected ? ` on ${live.selected} client${live.selected === 1 ? "" : "s"}` : ""}…`;
  else text = run.status === "pending" ? "Queued: waiting for the SuperLink to start the run…" : "Running…";
  return { className: "live-line", children: [connection, h("span", {}, text)] };
}

/** The MLflow mirror's trouble (server unreachable…): the run is unaffected, the backend retries. */
export function mlflowPanel(run: RunDetail): HTMLElement | null {
  const warning = run.mlflow?.warning;
  if (!warning) return null;
  return h(
    "div",
    { class: "live-line live-warning", role: "alert", "data-testid": "mlflow-warning" },
    h("strong", {}, "MLflow export behind:"),
    h("span", { "data-testid": "mlflow-warning-text" }, warning),
  );
}

/** The chart's series: centralized and federated accuracy and loss per round. */
export function chartPoints(rounds: RoundResult[]): MetricsPoint[] {
  return sortedRounds(rounds).map((r) => ({ round: r.round, accuracy: centralizedAccuracy(r), loss: centralizedLoss(r), fedAccuracy: federatedAccuracy(r), fedLoss: federatedLoss(r) }));
}

/** The rounds table; `wide` when it grows ε / bytes columns (the card then stacks above the checkpoints). */
export function roundsPanel(rounds: RoundResult[], ended: boolean): { body: HTMLElement; wide: boolean } {
  if (!rounds.length) return { body: stateBlock("empty", "No rounds yet", ended ? "This run ended before its first round finished." : "Results appear here after each round."), wide: false };
  const showPrivacy = rounds.some((r) => r.privacy?.epsilon != null);
  const showBytes = rounds.some((r) => r.bytes?.sent_compressed != null);
  const rows = [...rounds].reverse().map((r) =>
    h(
      "tr",
      { "data-testid": `round-row-${r.round}`, "data-round": r.round },
      h("td", {}, String(r.round)),
      h("td", { class: "num", "data-testid": "round-accuracy" }, formatAccuracy(roundAccuracy(r))),
      h("td", { class: "num" }, formatLoss(roundLoss(r))),
      h("td", { class: "num" }, String(r.clients?.length ?? 0)),
      h("td", { class: "num" }, r.failures?.length ? h("span", { class: "text-danger" }, String(r.failures.length)) : "0"),
      h("td", { class: "num" }, formatSeconds(r.seconds)),
      ...(showPrivacy ? [h("td", { class: "num", "data-testid": "round-epsilon" }, r.privacy?.epsilon != null ? r.privacy.epsilon.toFixed(2) : "—")] : []),
      ...(showBytes ? [h("td", { class: "num", "data-testid": "round-bytes" }, r.bytes?.sent_compressed != null ? `${(r.bytes.sent_compressed / 1e6).toFixed(2)} MB${r.bytes.ratio ? ` (${r.bytes.ratio.toFixed(1)}×)` : ""}` : "—")] : []),
    ),
  );
  const extra = [...(showPrivacy ? [{ label: "ε", numeric: true }] : []), ...(showBytes ? [{ label: "Update bytes", numeric: true, hideSm: true }] : [])];
  const body = table(["Round", { label: "Accuracy", numeric: true }, { label: "Loss", numeric: true }, { label: "Clients", numeric: true, hideSm: true }, { label: "Failures", numeric: true }, { label: "Time", numeric: true, hideSm: true }, ...extra], rows, "rounds-table");
  return { body, wide: showPrivacy || showBytes };
}

export interface ClientsFold {
  /** Rounds whose client table is open. */
  open: ReadonlySet<number>;
  /** The user clicked a round's summary (the newest round stops following). */
  onSummaryClick: () => void;
  onToggle: (round: number, open: boolean) => void;
}

export function clientsPanel(rounds: RoundResult[], fold: ClientsFold): HTMLElement[] | HTMLElement {
  if (!rounds.length) return stateBlock("empty", "No client results yet", "Each round lists the clients that trained, with their metrics and failures.");
  return [...rounds].reverse().map((r) => {
    const clients = [...(r.clients ?? [])].sort((a, b) => (a.partition_id ?? 0) - (b.partition_id ?? 0));
    const rows = clients.map((c) =>
      h(
        "tr",
        { "data-testid": "client-row", "data-node": c.node_id },
        h("td", { class: "mono", title: c.node_id }, shortId(String(c.node_id), 12)),
        h("td", { class: "num" }, c.partition_id ?? "—"),
        h("td", { class: "num" }, formatNumber(c.num_examples)),
        h("td", { class: "num" }, formatLoss(c.train_loss)),
        h("td", { class: "num" }, formatAccuracy(c.train_accuracy)),
        h("td", { class: "num" }, formatLoss(c.val_loss)),
        h("td", { class: "num" }, formatAccuracy(c.val_accuracy)),
        h("td", { class: "num" }, formatSeconds(c.train_seconds)),
      ),
    );
    const failures = (r.failures ?? []).map((f) =>
      h(
        "tr",
        { class: "row-failure", "data-testid": "failure-row" },
        h("td", { class: "mono" }, shortId(f.node_id ? String(f.node_id) : "—", 12)),
        h("td", { colspan: 7 }, h("span", { class: "badge badge-failed" }, f.phase ? `${f.phase} failed` : "failed"), " ", f.reason ?? "no reason given"),
      ),
    );
    const summary = h(
      "summary",
      { onclick: () => fold.onSummaryClick() },
      h("strong", {}, `Round ${r.round}`),
      h("span", { class: "muted" }, ` · ${clients.length} client${clients.length === 1 ? "" : "s"}`),
      r.failures?.length ? h("span", { class: "text-danger" }, ` · ${r.failures.length} failed`) : null,
      r.seconds ? h("span", { class: "muted" }, ` · ${formatSeconds(r.seconds)}`) : null,
    );
    const details = h(
      "details",
      { class: "round-details", "data-testid": `clients-round-${r.round}`, open: fold.open.has(r.round) },
      summary,
      table(
        ["Node", { label: "Partition", numeric: true }, { label: "Examples", numeric: true }, { label: "Train loss", numeric: true }, { label: "Train acc.", numeric: true }, { label: "Val loss", numeric: true }, { label: "Val acc.", numeric: true }, { label: "Train time", numeric: true }],
        [...rows, ...failures],
        `clients-table-${r.round}`,
      ),
    );
    details.addEventListener("toggle", () => fold.onToggle(r.round, details.open));
    return details;
  });
}

export function checkpointsPanel(runId: string, models: ModelInfo[]): HTMLElement {
  if (!models.length) return stateBlock("empty", "No checkpoints yet", "The server stores the global model after every round.");
  const rows = models.map((m) =>
    h(
      "tr",
      { "data-testid": "checkpoint-row" },
      h("td", {}, h("div", {}, `Round ${m.round}`), h("div", { class: "cell-sub mono", title: m.sha256 ?? "" }, `${formatBytes(m.size)}${m.sha256 ? ` · ${m.sha256.slice(0, 8)}` : ""}`)),
      h("td", { class: "num" }, formatAccuracy(m.metrics?.accuracy ?? null)),
      h(
        "td",
        { class: "actions" },
        h("a", { class: "btn btn-sm", href: downloadUrl(m.model_id), download: "" }, "Download"),
        h("a", { class: "btn btn-sm btn-ghost", "data-testid": "try-link", href: href("models", { run_id: runId, try: m.model_id }) }, "Try it"),
        h("a", { class: "btn btn-sm btn-ghost", "data-testid": "resume-link", href: href("start", { resume: runId, checkpoint: m.model_id }) }, "Resume from here"),
      ),
    ),
  );
  return table(["Checkpoint", { label: "Accuracy", numeric: true, hideSm: true }, ""], rows, "checkpoints-table");
}
