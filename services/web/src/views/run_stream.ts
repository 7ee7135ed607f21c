/**
 * The run view's data stream: `GET /training/{id}` (the source of truth), its checkpoints, and the SSE stream
 * that only makes it live, turned into a sequence of snapshots (run_state.ts). After a terminal event, a dropped
 * stream, or a reconnect, it re-fetches the run instead of trusting what it pieced together.
 */
import { api, eventsUrl, type ModelInfo, type RunDetail } from "../api";
import { applyEvent, isTerminal, mergeFetched, type Effect, type RunSnapshot } from "./run_state";

const EVENTS = ["run_started", "waiting_for_nodes", "round_started", "round_finished", "checkpoint_saved", "mlflow_warning", "mlflow_synced", "status", "run_finished", "run_failed"];
/** A terminal status an event announced is re-checked every 2 s for a minute. */
const CONFIRM_MS = 2000;
const CONFIRM_TRIES = 30;

export class RunStream {
  snapshot: RunSnapshot | null = null;
  private models: ModelInfo[] = [];
  private source: EventSource | null = null;
  private alive = true;
  private confirmTries = 0;
  private mlflowRecheck: number | null = null;
  private readonly timers: number[] = [];

  constructor(
    private readonly runId: string,
    private readonly onSnapshot: (s: RunSnapshot) => void,
    /** Only while nothing was loaded yet: later failures keep the shown run (the next event or poll retries). */
    private readonly onLoadError: (err: unknown) => void,
  ) {
    void this.refresh();
    void this.refreshModels();
    // A slow safety poll in case a proxy swallows the stream silently.
    this.timers.push(window.setInterval(() => this.snapshot && !isTerminal(this.snapshot.run) && void this.refresh(), 15000));
  }

  async refresh(): Promise<void> {
    let fetched: RunDetail;
    try {
      fetched = await api.run(this.runId);
    } catch (err) {
      if (this.alive && this.snapshot === null) this.onLoadError(err);
      return;
    }
    if (!this.alive) return;
    const { snapshot, recheck } = mergeFetched(this.snapshot, fetched);
    if (recheck && this.confirmTries++ < CONFIRM_TRIES) this.later(() => void this.refresh(), CONFIRM_MS);
    this.emit(snapshot);
    if (isTerminal(snapshot.run)) this.close();
    else if (!this.source) this.open();
  }

  async refreshModels(): Promise<void> {
    try {
      const page = await api.models(this.runId);
      this.models = page.items.sort((a, b) => b.round - a.round);
      if (this.alive && this.snapshot) this.emit(this.snapshot);
    } catch {
      /* the list keeps its previous content; the next event retries */
    }
  }

  /** After a stop request: the live line no longer claims a round is running. */
  stopRequested(): void {
    if (this.snapshot && !isTerminal(this.snapshot.run)) this.emit({ ...this.snapshot, live: { kind: "idle" } });
  }

  dispose(): void {
    this.alive = false;
    this.close();
    this.timers.forEach((t) => (clearInterval(t), clearTimeout(t)));
  }

  private emit(snapshot: RunSnapshot): void {
    const s = { ...snapshot, models: this.models };
    this.snapshot = s;
    // The MLflow mirror's warning on an ended run (no event stream any more): re-read every 10 s so it clears.
    if (s.run.mlflow?.warning && isTerminal(s.run) && this.mlflowRecheck === null && this.alive) {
      this.mlflowRecheck = this.later(() => {
        this.mlflowRecheck = null;
        void this.refresh();
      }, 10_000);
    }
    this.onSnapshot(s);
  }

  private later(fn: () => void, ms: number): number {
    const t = window.setTimeout(fn, ms);
    this.timers.push(t);
    return t;
  }

  private setStreamState(streamState: RunSnapshot["streamState"]): void {
    if (this.snapshot) this.emit({ ...this.snapshot, streamState });
  }

  private open(): void {
    if (!this.alive || this.source || !this.snapshot || isTerminal(this.snapshot.run)) return;
    const source = new EventSource(eventsUrl(this.runId));
    this.source = source;
    this.setStreamState("connecting");
    source.onopen = () => {
      const wasReconnect = this.snapshot?.streamState === "reconnecting";
      this.setStreamState("live");
      if (wasReconnect) void this.refresh();
    };
    source.onerror = () => {
      if (this.source !== source) return;
      if (this.snapshot && isTerminal(this.snapshot.run)) return this.close();
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an HTTP error): reopen ourselves after a pause.
        this.source = null;
        this.later(() => void this.refresh(), 3000);
      } // else EventSource retries itself and sends Last-Event-ID.
      this.setStreamState("reconnecting");
    };
    for (const name of EVENTS) source.addEventListener(name, (e) => this.onEvent(name, (e as MessageEvent).data));
  }

  private onEvent(name: string, raw: string): void {
    if (!this.snapshot) return;
    const { snapshot, effects } = applyEvent(this.snapshot, name, raw, Date.now());
    if (effects.includes("close")) this.close();
    this.emit(snapshot);
    this.run(effects);
  }

  private run(effects: Effect[]): void {
    if (effects.includes("refresh")) void this.refresh();
    if (effects.includes("models")) void this.refreshModels();
  }

  private close(): void {
    this.source?.close();
    this.source = null;
    if (this.snapshot && this.snapshot.streamState !== "closed") this.snapshot = { ...this.snapshot, streamState: "closed" };
  }
}
