/**
 * The backend's HTTP API, typed. Same-origin paths only: the backend serves this page in local mode and
 * nginx proxies these paths in compose. Requests carry the session cookie (session.ts), mutating ones its
 * CSRF token too; no URL ever carries a credential. A 401 asks for the token once (trading it for a
 * session) and retries.
 */
import { CSRF_HEADER, csrfToken, isSignedIn, refreshSession } from "./session";
import { promptForToken } from "./token";

export type RunStatus = "pending" | "running" | "completed" | "failed" | "stopped";
export const RUN_STATUSES: RunStatus[] = ["pending", "running", "completed", "failed", "stopped"];
export const TERMINAL: ReadonlySet<string> = new Set(["completed", "failed", "stopped"]);

export type Timestamp = string | number | null;
export type TrainingConfig = Record<string, unknown>;

export interface RunSummary {
  run_id: string;
  status: RunStatus;
  created_at: Timestamp;
  started_at?: Timestamp;
  finished_at?: Timestamp;
  config?: TrainingConfig;
  accuracy?: number | null;
  /** centralized: the server's test split; federated: the nodes' own validation data (data_source=node). */
  accuracy_kind?: "centralized" | "federated";
  loss?: number | null;
  rounds_completed?: number | null;
  num_rounds?: number | null;
  flower_run_id?: string | null;
  error?: string | null;
  from_checkpoint?: string | null;
  /** The failed or stopped run this one continues (POST /training/{id}/resume). */
  resumed_from?: string | null;
  trace_id?: string | null;
  /** `/#/traces/<id>` (local mode's built-in view) or an absolute Grafana Explore URL (compose). */
  trace_url?: string | null;
}

export interface ClientResult {
  node_id: string;
  partition_id?: number | null;
  num_examples?: number | null;
  train_loss?: number | null;
  train_accuracy?: number | null;
  train_seconds?: number | null;
  val_loss?: number | null;
  val_accuracy?: number | null;
}

export interface Failure {
  node_id?: string | null;
  phase?: string | null;
  reason?: string | null;
}

export interface RoundResult {
  round: number;
  accuracy?: number | null;
  accuracy_kind?: "centralized" | "federated";
  loss?: number | null;
  train?: Record<string, unknown> | null;
  federated_evaluation?: Record<string, unknown> | null;
  clients?: ClientResult[];
  failures?: Failure[];
  seconds?: number | null;
  timeline?: unknown;
  /** Update traffic of the round (compression runs report the dense equivalent too). */
  bytes?: { sent_compressed?: number; dense_equivalent?: number; ratio?: number };
  /** Differential privacy spent so far (DP runs). */
  privacy?: { epsilon?: number; delta?: number; mode?: string };
  model_id?: string | null;
}

export interface RunDetail extends RunSummary {
  rounds: RoundResult[];
  /** data_source=node: each node's data description before round 1, and the nodes left out. */
  node_data?: { nodes: (NodeData & { node_id: string })[]; failures: { node_id: string; reason: string }[] } | null;
  bytes_sent?: number | null;
  bytes_received?: number | null;
  /** Only when the backend mirrors runs into MLflow (FLOWERBED_MLFLOW_TRACKING_URI). */
  mlflow?: MlflowExport | null;
}

export interface MlflowExport {
  mlflow_run_id?: string | null;
  /** The last of the run's events exported to MLflow. */
  exported_seq: number;
  /** Why the export is behind (server unreachable…); the backend retries it. */
  warning?: string | null;
}

export interface TraceEvent {
  name: string;
  time_ns: number;
  attributes?: Record<string, unknown> | null;
}

export interface TraceSpan {
  span_id: string;
  parent_span_id: string | null;
  name: string;
  service: string;
  start_ns: number;
  end_ns: number;
  duration_ms: number;
  status: string;
  attributes?: Record<string, unknown> | null;
  events?: TraceEvent[] | null;
}

export interface Trace {
  trace_id: string;
  spans: TraceSpan[];
}

export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

export interface NodeInfo {
  node_id: string;
  status: string;
  last_seen: Timestamp;
  online_until?: Timestamp;
  /** The site's name given when it was added (POST /nodes); empty for nodes that registered themselves. */
  name?: string;
  /** SHA256 fingerprint of the node's public key, as `ssh-keygen -lf` prints it. */
  key_fingerprint?: string;
  registered_at?: string;
  /** data_source=node: the node's data description from the newest run that asked it, or `error`. */
  data?: NodeData | null;
}

/** POST /nodes: what a new site copies and types (deploy/remote-supernode filled in for it). */
export interface SiteRegistered {
  node_id: string;
  name: string;
  key_fingerprint: string;
  setup: { files: { path: string; content: string | null; note: string }[]; command: string; warnings: string[] };
}

export interface NodeData {
  run_id?: string;
  site?: string;
  format?: string;
  examples?: number;
  classes?: Record<string, number | string>;
  columns?: string[];
  image_shape?: number[];
  error?: string;
}

export interface ModelInfo {
  model_id: string;
  run_id: string;
  round: number;
  model?: string | null;
  metrics?: Record<string, number | null> | null;
  sha256?: string | null;
  size?: number | null;
  created_at?: Timestamp;
  /** The checkpoint this one's run started from (resume, from_checkpoint). */
  parent?: string | null;
  /** What the model takes (null when the checkpoint's metadata names no known model). */
  input?: ModelInput | null;
}

export interface ModelInput {
  /** images: send an image file; table: a JSON row of `columns`. */
  kind: "images" | "table";
  classes: string[];
  /** [channels, height, width] of images, or [number of features]. */
  shape: number[];
  columns: string[];
  /** The federation's mean of each column: a typical row. */
  feature_mean: number[];
}

export interface Prediction {
  class_index: number;
  label: string;
  probability: number;
}

export interface PredictionResult {
  model_id: string;
  model: string;
  /** Every class, most probable first. */
  predictions: Prediction[];
}

export interface LineageEntry {
  model_id: string;
  run_id: string;
  round: number;
  /** False once the checkpoint was pruned or its run deleted. */
  available: boolean;
  model?: ModelInfo | null;
}

export interface ValidationIssue {
  loc: (string | number)[];
  msg: string;
  type?: string;
}

/** An HTTP error with the server's `detail` kept as is (a string, or pydantic's list of issues). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown,
  ) {
    super(ApiError.describe(status, detail));
  }

  get issues(): ValidationIssue[] {
    return Array.isArray(this.detail) ? (this.detail as ValidationIssue[]) : [];
  }

  static describe(status: number, detail: unknown): string {
    if (typeof detail === "string" && detail) return detail;
    if (Array.isArray(detail)) return detail.map((d) => (d as ValidationIssue).msg).join("; ");
    if (status === 0) return "The server cannot be reached. Is the backend running?";
    return `The server answered ${status}.`;
  }
}

function csrfHeaders(method: string): Record<string, string> {
  const token = method === "GET" ? null : csrfToken();
  return token ? { [CSRF_HEADER]: token } : {};
}

function contentType(body: unknown): Record<string, string> {
  if (body === undefined) return {};
  return { "Content-Type": body instanceof Blob ? body.type || "application/octet-stream" : "application/json" };
}

async function request<T>(method: string, path: string, body?: unknown, retried = false): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", ...csrfHeaders(method), ...contentType(body) },
      // A file (an image to predict on) goes as the body itself, with its own type; anything else as JSON.
      body: body instanceof Blob ? body : body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new ApiError(0, null);
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (response.status === 401 && !retried) {
    const reason = isSignedIn() ? "The session ended or the token changed. Paste the current API token." : undefined;
    if (await promptForToken(reason)) return request<T>(method, path, body, true);
  }
  if (response.status === 403 && !retried) {
    await refreshSession(); // a session from another tab or a restarted page: fetch its CSRF token
    if (isSignedIn()) return request<T>(method, path, body, true);
  }
  if (!response.ok) {
    const detail = data && typeof data === "object" && "detail" in data ? (data as { detail: unknown }).detail : data;
    throw new ApiError(response.status, detail);
  }
  return data as T;
}

const enc = encodeURIComponent;

export const api = {
  schema: () => request<JsonSchema>("GET", "/training/schema"),
  start: (config: TrainingConfig) => request<RunSummary>("POST", "/training/start", config),
  runs: (params: { status?: string; limit: number; offset: number }) => {
    const q = new URLSearchParams({ limit: String(params.limit), offset: String(params.offset) });
    if (params.status) q.set("status", params.status);
    return request<Page<RunSummary>>("GET", `/training?${q}`);
  },
  run: (id: string) => request<RunDetail>("GET", `/training/${enc(id)}`),
  stop: (id: string) => request<unknown>("POST", `/training/${enc(id)}/stop`),
  resume: (id: string) => request<RunSummary>("POST", `/training/${enc(id)}/resume`),
  remove: (id: string) => request<unknown>("DELETE", `/training/${enc(id)}`),
  nodes: () => request<{ items: NodeInfo[] }>("GET", "/nodes"),
  addSite: (site: { name: string; public_key: string }) => request<SiteRegistered>("POST", "/nodes", site),
  revokeNode: (nodeId: string) => request<unknown>("DELETE", `/nodes/${enc(nodeId)}`),
  trace: (traceId: string) => request<Trace>("GET", `/traces/${enc(traceId)}`),
  models: (runId?: string) => request<{ items: ModelInfo[] }>("GET", runId ? `/models?run_id=${enc(runId)}` : "/models"),
  /** The image file as the body (PNG or JPEG, 28×28): POST /models/{id}/predict takes no form. */
  predict: (modelId: string, image: Blob) => request<PredictionResult>("POST", `/models/${enc(modelId)}/predict`, image),
  /** One table row for a tabular model (mlp): {"features": {column: value}}; values the server cannot use are named in its 422. */
  predictRow: (modelId: string, features: Record<string, number | string>) =>
    request<PredictionResult>("POST", `/models/${enc(modelId)}/predict`, { features }),
  lineage: (modelId: string) => request<{ model_id: string; chain: LineageEntry[] }>("GET", `/models/${enc(modelId)}/lineage`),
};

/** EventSource sends the session cookie by itself (same origin): the URL carries no credential. */
export function eventsUrl(runId: string): string {
  return `/training/${enc(runId)}/events`;
}

/** A plain link: the browser sends the session cookie with the download. */
export function downloadUrl(modelId: string): string {
  return `/models/${enc(modelId)}/download`;
}


export interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  $defs?: Record<string, JsonSchema>;
  definitions?: Record<string, JsonSchema>;
  $ref?: string;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  title?: string;
  description?: string;
}

/**
 * Where "View trace" goes: the API's `trace_url` — local mode's `/#/traces/<id>` (kept relative so the page
 * works under any path) or an absolute Grafana Explore URL (compose), opened in a new tab.
 */
export function traceLink(run: { trace_id?: string | null; trace_url?: string | null }): { href: string; external: boolean } | null {
  const url = run.trace_url ?? (run.trace_id ? `/#/traces/${enc(run.trace_id)}` : null);
  if (!url) return null;
  if (/^https?:\/\//i.test(url)) return { href: url, external: true };
  const hash = url.indexOf("#/");
  return { href: hash >= 0 ? url.slice(hash) : url, external: false };
}
