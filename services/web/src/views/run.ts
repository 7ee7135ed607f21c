/**
 * Live run view: status, progress, timing, accuracy/loss chart, per-round per-client results, checkpoints.
 * `GET /training/{id}` is the source of truth; the SSE stream only makes it live. After a terminal event, a
 * dropped stream, or a reconnect, the view re-fetches the run instead of trusting what it pieced together.
 */
import { ApiError, TERMINAL, api, downloadUrl, eventsUrl, type ModelInfo, type RoundResult, type RunDetail } from "../api";
import { MetricsChart, SERIES_COLORS } from "../charts";
import { h, mount, stateBlock } from "../dom";
import { formatAccuracy, formatBytes, formatDuration, formatLoss, formatNumber, formatSeconds, formatTimestamp, humanize, shortId, toMillis } from "../format";
import { href, type Route } from "../router";
import { centralizedAccuracy, centralizedLoss, federatedAccuracy, federatedLoss, roundAccuracy, roundLoss, roundSource, sortedRounds } from "../run_metrics";
import { card, pageHeader, stat, statusBadge, table, toast, traceAnchor } from "../widgets";

type Live = { kind: "idle" } | { kind: "waiting"; connected: number; needed: number } | { kind: "round"; round: number; selected: number | null };

export function renderRun(root: HTMLElement, route: Route): () => void {
  const runId = route.path[1];
  let run: RunDetail | null = null;
  let models: ModelInfo[] = [];
  let live: Live = { kind: "idle" };
  let stream: EventSource | null = null;
  let streamState: "connecting" | "live" | "reconnecting" | "closed" = "connecting";
  let alive = true;
  let terminalHint: Partial<RunDetail> | null = null;
  let confirmTries = 0;
  let terminalAt: number | null = null;
  const openRounds = new Set<number>();
  let followLatest = true; // the newest round stays open until the user opens or closes one
  const timers: number[] = [];

  // Persistent containers: re-rendering fills them, the chart instance survives updates.
  const header = h("div");
  const stats = h("div", { class: "stats" });
  const liveLine = h("div", { class: "live-line", "data-testid": "live-line" });
  const mlflowNotice = h("div");
  let mlflowRecheck: number | null = null;
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

  const refresh = async () => {
    try {
      const fresh = await api.run(runId);
      if (!alive) return;
      const first = run === null;
      // The stream can be ahead of the database by a moment: keep rounds we already saw, and a terminal
      // status an event announced, until `GET` agrees (re-checked every 2 s for a minute).
      const seen = new Set(fresh.rounds.map((r) => r.round));
      fresh.rounds = sortedRounds([...fresh.rounds, ...(run?.rounds ?? []).filter((r) => !seen.has(r.round))]);
      if (terminalHint && !TERMINAL.has(fresh.status)) {
        Object.assign(fresh, terminalHint);
        if (confirmTries++ < 30) timers.push(window.setTimeout(() => void refresh(), 2000));
      } else if (TERMINAL.has(fresh.status)) terminalHint = null;
      run = fresh;
      if (TERMINAL.has(fresh.status)) live = { kind: "idle" };
      if (first) layout();
      render();
      if (TERMINAL.has(fresh.status)) closeStream();
      else if (!stream) openStream();
    } catch (err) {
      if (!alive) return;
      if (run === null) {
        const notFound = err instanceof ApiError && err.status === 404;
        mount(
          root,
          stateBlock(
            "error",
            notFound ? "No such run" : "Could not load the run",
            notFound ? `There is no run with id ${runId}.` : (err as Error).message,
            h("a", { class: "btn", href: href("runs") }, "All runs"),
          ),
        );
      }
    }
  };

  const refreshModels = async () => {
    try {
      const page = await api.models(runId);
      if (!alive) return;
      models = page.items.sort((a, b) => b.round - a.round);
      renderCheckpoints();
    } catch {
      /* the list keeps its previous content; the next event retries */
    }
  };

  const upsertRound = (r: RoundResult) => {
    if (!run || typeof r.round !== "number") return;
    const others = run.rounds.filter((x) => x.round !== r.round);
    run.rounds = sortedRounds([...others, r]);
    run.rounds_completed = Math.max(run.rounds_completed ?? 0, run.rounds.length);
  };

  const on = (name: string, handler: (data: Record<string, unknown>) => void) => {
    stream?.addEventListener(name, (e) => {
      let data: Record<string, unknown>;
      try {
        data = JSON.parse((e as MessageEvent).data || "{}");
      } catch {
        // An event we cannot read must not become a half-empty round or status: the API is
        // the source of truth, so re-read the run from it instead.
        void refresh();
        return;
      }
      if (streamState !== "live") {
        streamState = "live";
      }
      handler(data);
      render();
    });
  };

  function openStream() {
    if (!alive || stream || (run && TERMINAL.has(run.status))) return;
    streamState = "connecting";
    stream = new EventSource(eventsUrl(runId));
    stream.onopen = () => {
      const wasReconnect = streamState === "reconnecting";
      streamState = "live";
      renderLiveLine();
      if (wasReconnect) void refresh();
    };
    stream.onerror = () => {
      if (!stream) return;
      if (run && TERMINAL.has(run.status)) {
        closeStream();
        return;
      }
      if (stream.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an HTTP error): reopen ourselves after a pause.
        stream = null;
        streamState = "reconnecting";
        timers.push(window.setTimeout(() => void refresh(), 3000));
      } else {
        streamState = "reconnecting"; // EventSource retries itself and sends Last-Event-ID.
      }
      renderLiveLine();
    };
    on("run_started", () => {
      if (run && run.status === "pending") run.status = "running";
      if (run && !run.started_at) run.started_at = Date.now() / 1000;
    });
    on("waiting_for_nodes", (d) => {
      live = { kind: "waiting", connected: Number(d.connected ?? 0), needed: Number(d.needed ?? 0) };
    });
    on("round_started", (d) => {
      if (run) run.status = "running";
      live = { kind: "round", round: Number(d.round), selected: Array.isArray(d.selected) ? d.selected.length : typeof d.selected === "number" ? d.selected : null };
    });
    on("round_finished", (d) => {
      upsertRound(d as unknown as RoundResult);
      live = { kind: "idle" };
    });
    on("checkpoint_saved", () => void refreshModels());
    on("mlflow_warning", (d) => {
      if (run) run.mlflow = { ...(run.mlflow ?? { exported_seq: 0 }), warning: String(d.warning ?? "unknown problem") };
    });
    on("mlflow_synced", (d) => {
      if (run) run.mlflow = { mlflow_run_id: (d.mlflow_run_id as string | undefined) ?? null, exported_seq: Number(d.exported_seq ?? 0), warning: (d.warning as string | null | undefined) ?? null };
    });
    on("status", (d) => {
      if (run && typeof d.status === "string") run.status = d.status as RunDetail["status"];
      if (TERMINAL.has(String(d.status))) terminal();
    });
    on("run_finished", (d) => {
      if (run) {
        run.status = "completed";
        if (typeof d.accuracy === "number") run.accuracy = d.accuracy;
        if (typeof d.loss === "number") run.loss = d.loss;
      }
      terminal();
    });
    on("run_failed", (d) => {
      if (run) {
        run.status = "failed";
        run.error = String(d.reason ?? run.error ?? "");
      }
      terminal();
    });
  }

  function terminal() {
    terminalAt ??= Date.now();
    if (run) {
      const { status, accuracy, loss, error } = run;
      terminalHint = Object.fromEntries(Object.entries({ status, accuracy, loss, error }).filter(([, v]) => v !== null && v !== undefined));
    }
    live = { kind: "idle" };
    closeStream();
    void refresh();
    void refreshModels();
  }

  function closeStream() {
    stream?.close();
    stream = null;
    streamState = "closed";
  }

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

  function render() {
    if (!run) return;
    renderHeader();
    renderStats();
    renderLiveLine();
    renderMlflow();
    const rounds = sortedRounds(run.rounds);
    const total = run.num_rounds ?? Number(run.config?.num_rounds ?? rounds.length);
    chart.update(
      rounds.map((r) => ({ round: r.round, accuracy: centralizedAccuracy(r), loss: centralizedLoss(r), fedAccuracy: federatedAccuracy(r), fedLoss: federatedLoss(r) })),
      total,
    );
    chartEmpty.hidden = rounds.length > 0;
    chartKey.hidden = rounds.length === 0;
    chartHost.classList.toggle("chart-waiting", rounds.length === 0);
    renderRounds(rounds);
    renderClients(rounds);
    renderNodeData();
    renderDetails();
  }

  /** The MLflow mirror's trouble (server unreachable…): the run is unaffected, the backend retries. While a
   * warning stands on an ended run (no event stream any more), the run is re-read every 10 s so it clears. */
  function renderMlflow() {
    const warning = run?.mlflow?.warning;
    if (!warning) {
      mount(mlflowNotice);
      return;
    }
    mount(
      mlflowNotice,
      h(
        "div",
        { class: "live-line live-warning", role: "alert", "data-testid": "mlflow-warning" },
        h("strong", {}, "MLflow export behind:"),
        h("span", { "data-testid": "mlflow-warning-text" }, warning),
      ),
    );
    if (run && TERMINAL.has(run.status) && mlflowRecheck === null && alive) {
      mlflowRecheck = window.setTimeout(() => {
        mlflowRecheck = null;
        void refresh();
      }, 10_000);
      timers.push(mlflowRecheck);
    }
  }

  /** data_source=node: what each node holds (never the data): size, shape and its label histogram. */
  function renderNodeData() {
    const data = run?.node_data;
    if (!data) {
      mount(nodeDataCard);
      return;
    }
    const rows = data.nodes.map((n) => {
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
      return h("tr", {}, h("td", { class: "mono" }, shortId(n.node_id)), h("td", {}, n.site ?? "—"), h("td", {}, `${n.format ?? "?"} · ${shape}`), h("td", { class: "num" }, formatNumber(n.examples ?? null)), h("td", {}, histogram));
    });
    const failures = data.failures.map((f) => h("tr", { class: "failure" }, h("td", { class: "mono" }, shortId(f.node_id)), h("td", { colspan: 4 }, `left out: ${f.reason}`)));
    mount(nodeDataCard, card("Node data", [table(["Node", "Site", "Data", { label: "Examples", numeric: true }, "Labels"], [...rows, ...failures], "node-data-table")], { testid: "node-data-card" }));
  }

  function renderHeader() {
    if (!run) return;
    const r = run;
    const stopBtn =
      !TERMINAL.has(r.status) &&
      h("button", { class: "btn btn-danger", "data-testid": "stop-button", onclick: () => confirmStop() }, "Stop run");
    const trace = traceAnchor(r, "View trace", "btn");
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
    // Resume and Delete act on the stored run: offered once the database, not only the event stream, says it
    // ended (the backend refuses both, 409, for a run it still records as active).
    const settled = TERMINAL.has(r.status) && terminalHint === null;
    const resumeBtn =
      settled &&
      (r.status === "failed" || r.status === "stopped") &&
      h("button", { class: "btn", "data-testid": "resume-button", title: "Continue from the last checkpoint as a new run", onclick: () => void resume() }, "Resume");
    const deleteBtn =
      settled &&
      h("button", { class: "btn btn-ghost", "data-testid": "delete-button", onclick: () => void remove() }, "Delete");
    mount(header, pageHeader(`Run ${shortId(r.run_id)}`, subtitle, ...([trace, again, resumeBtn, deleteBtn, stopBtn].filter(Boolean) as Node[])));
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

  function timing() {
    if (!run) return { elapsed: null as number | null, eta: null as number | null };
    const start = toMillis(run.started_at ?? null) ?? toMillis(run.created_at);
    // Terminal by an event but not yet in the database: the event's arrival stands in for finished_at.
    const end = toMillis(run.finished_at ?? null) ?? (TERMINAL.has(run.status) ? terminalAt : Date.now());
    const elapsed = start !== null && end !== null ? (end - start) / 1000 : null;
    const total = run.num_rounds ?? Number(run.config?.num_rounds ?? 0);
    const done = run.rounds.length || run.rounds_completed || 0;
    let eta: number | null = null;
    if (!TERMINAL.has(run.status) && done > 0 && total > done) {
      // Wall clock per completed round: a round's own `seconds` run until its evaluation is done, which
      // overlaps the next round, so their sum overstates how fast rounds follow each other.
      const perRound = elapsed !== null ? elapsed / done : null;
      eta = perRound !== null ? perRound * (total - done) : null;
    } else if (TERMINAL.has(run.status)) eta = 0;
    return { elapsed, eta };
  }

  function renderStats() {
    if (!run) return;
    const total = run.num_rounds ?? Number(run.config?.num_rounds ?? 0);
    const done = Math.max(run.rounds.length, run.rounds_completed ?? 0);
    const pct = total ? Math.min(100, (done / total) * 100) : 0;
    const rounds = sortedRounds(run.rounds);
    const last = rounds[rounds.length - 1];
    const acc = run.accuracy ?? (last ? roundAccuracy(last) : null);
    const loss = run.loss ?? (last ? roundLoss(last) : null);
    const { elapsed, eta } = timing();
    const progress = h(
      "div",
      {},
      h("span", { "data-testid": "run-progress" }, `${done}/${total || "?"}`),
      h("div", { class: "progress", role: "progressbar", "aria-valuenow": done, "aria-valuemin": 0, "aria-valuemax": total }, h("div", { class: `progress-bar progress-${run.status}`, style: `width:${pct}%` })),
    );
    const source = last ? roundSource(last) : "none";
    mount(
      stats,
      stat("Rounds", progress, undefined, undefined, "stat-wide"),
      stat("Elapsed", formatDuration(elapsed), "run-elapsed"),
      stat("ETA", TERMINAL.has(run.status) ? "done" : eta === null ? "—" : `~${formatDuration(eta)}`, "run-eta"),
      stat(TERMINAL.has(run.status) ? "Final accuracy" : "Accuracy", formatAccuracy(acc), "run-accuracy", source === "federated" ? "federated evaluation" : source === "centralized" ? "server test set" : undefined),
      stat("Loss", formatLoss(loss), "run-loss"),
    );
  }

  function renderLiveLine() {
    if (!run) return;
    liveLine.className = "live-line";
    if (run.status === "failed") {
      liveLine.classList.add("live-error");
      mount(liveLine, h("strong", {}, "Run failed: "), run.error || "no reason given");
      return;
    }
    if (TERMINAL.has(run.status)) {
      liveLine.classList.add(run.status === "completed" ? "live-done" : "live-stopped");
      const finished = run.finished_at ? ` at ${formatTimestamp(run.finished_at)}` : "";
      mount(liveLine, run.status === "completed" ? `Completed${finished}.` : `Stopped${finished}.`);
      return;
    }
    const connection =
      streamState === "live"
        ? h("span", { class: "live-dot", title: "Live updates connected" }, "Live")
        : h("span", { class: "live-dot live-dot-off", title: "Reconnecting to the event stream" }, streamState === "connecting" ? "Connecting…" : "Reconnecting…");
    let text: string;
    if (live.kind === "waiting") text = `Waiting for nodes: ${live.connected} of ${live.needed} connected`;
    else if (live.kind === "round") text = `Round ${live.round} in progress${live.selected ? ` on ${live.selected} client${live.selected === 1 ? "" : "s"}` : ""}…`;
    else text = run.status === "pending" ? "Queued: waiting for the SuperLink to start the run…" : "Running…";
    mount(liveLine, connection, h("span", {}, text));
  }

  function renderRounds(rounds: RoundResult[]) {
    if (!rounds.length) {
      mount(roundsBody, stateBlock("empty", "No rounds yet", TERMINAL.has(run?.status ?? "") ? "This run ended before its first round finished." : "Results appear here after each round."));
      return;
    }
    const showPrivacy = rounds.some((r) => r.privacy?.epsilon != null);
    const showBytes = rounds.some((r) => r.bytes?.sent_compressed != null);
    roundsRow.classList.toggle("grid-stacked", showPrivacy || showBytes);
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
    const extra = [
      ...(showPrivacy ? [{ label: "ε", numeric: true }] : []),
      ...(showBytes ? [{ label: "Update bytes", numeric: true, hideSm: true }] : []),
    ];
    mount(roundsBody, table(["Round", { label: "Accuracy", numeric: true }, { label: "Loss", numeric: true }, { label: "Clients", numeric: true, hideSm: true }, { label: "Failures", numeric: true }, { label: "Time", numeric: true, hideSm: true }, ...extra], rows, "rounds-table"));
  }

  function renderClients(rounds: RoundResult[]) {
    if (!rounds.length) {
      mount(clientsBody, stateBlock("empty", "No client results yet", "Each round lists the clients that trained, with their metrics and failures."));
      return;
    }
    if (followLatest) {
      openRounds.clear();
      openRounds.add(rounds[rounds.length - 1].round);
    }
    const blocks = [...rounds].reverse().map((r) => {
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
      const details = h(
        "details",
        { class: "round-details", "data-testid": `clients-round-${r.round}`, open: openRounds.has(r.round) },
        h(
          "summary",
          {},
          h("strong", {}, `Round ${r.round}`),
          h("span", { class: "muted" }, ` · ${clients.length} client${clients.length === 1 ? "" : "s"}`),
          r.failures?.length ? h("span", { class: "text-danger" }, ` · ${r.failures.length} failed`) : null,
          r.seconds ? h("span", { class: "muted" }, ` · ${formatSeconds(r.seconds)}`) : null,
        ),
        table(
          ["Node", { label: "Partition", numeric: true }, { label: "Examples", numeric: true }, { label: "Train loss", numeric: true }, { label: "Train acc.", numeric: true }, { label: "Val loss", numeric: true }, { label: "Val acc.", numeric: true }, { label: "Train time", numeric: true }],
          [...rows, ...failures],
          `clients-table-${r.round}`,
        ),
      );
      details.querySelector("summary")!.addEventListener("click", () => (followLatest = false));
      details.addEventListener("toggle", () => {
        if (followLatest) return;
        if (details.open) openRounds.add(r.round);
        else openRounds.delete(r.round);
      });
      return details;
    });
    mount(clientsBody, blocks);
  }

  function renderCheckpoints() {
    if (!models.length) {
      mount(checkpointsBody, stateBlock("empty", "No checkpoints yet", "The server stores the global model after every round."));
      return;
    }
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
    mount(checkpointsBody, table(["Checkpoint", { label: "Accuracy", numeric: true, hideSm: true }, ""], rows, "checkpoints-table"));
  }

  function renderDetails() {
    if (!run) return;
    const info: [string, string][] = [
      ["Run id", run.run_id],
      ["Flower run id", run.flower_run_id ?? "—"],
      ["Created", formatTimestamp(run.created_at)],
      ["Started", formatTimestamp(run.started_at ?? null)],
      ["Finished", formatTimestamp(run.finished_at ?? null)],
      ["Sent / received", `${formatBytes(run.bytes_sent)} / ${formatBytes(run.bytes_received)}`],
    ];
    const config = Object.entries(run.config ?? {}).map(([k, v]) => [humanize(k), v === null || v === undefined ? "—" : String(v)] as [string, string]);
    const dl = (pairs: [string, string][]) => h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { title: v }, v)]));
    mount(detailsBody, h("div", { class: "grid-2 grid-tight" }, dl(info), dl(config)));
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
        if (run && !TERMINAL.has(run.status)) live = { kind: "idle" };
      } catch (err) {
        toast(err instanceof ApiError && err.status === 409 ? "The run had already finished." : `Could not stop: ${(err as Error).message}`, "error");
      }
      close();
      void refresh();
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

  void refresh();
  void refreshModels();
  // Elapsed/ETA tick; a slow safety poll in case a proxy swallows the stream silently.
  timers.push(window.setInterval(() => run && !TERMINAL.has(run.status) && (renderStats(), renderLiveLine()), 1000));
  timers.push(window.setInterval(() => run && !TERMINAL.has(run.status) && void refresh(), 15000));

  return () => {
    alive = false;
    closeStream();
    chart.destroy();
    timers.forEach((t) => (clearInterval(t), clearTimeout(t)));
    document.querySelectorAll("[data-testid=stop-modal]").forEach((m) => m.remove());
  };
}

