/**
 * The backend's HTTP API, typed. Same-origin paths only: the backend serves this page in local mode and
 * nginx proxies these paths in compose. Requests carry the session cookie (session.ts), mutating ones its
 * CSRF token too; no URL ever carries a credential. A 401 asks for the token once (trading it for a
 * session) and retries.
 */
import { CSRF_HEADER, csrfToken, isSignedIn, refreshSession } from "./session";
import { promptForToken } from "./token";
import type { components } from "./api_types";

/** The API's own shapes, generated from the backend's OpenAPI document (`make web-types`; a test keeps them current). */
type Schemas = components["schemas"];

export type RunStatus = Schemas["RunSummary"]["status"];
export const RUN_STATUSES: RunStatus[] = ["pending", "running", "completed", "failed", "stopped"];
export const TERMINAL: ReadonlySet<string> = new Set(["completed", "failed", "stopped"]);

export type Timestamp = string | number | null;
export type TrainingConfig = Record<string, unknown>;
export type RunSummary = Schemas["RunSummary"];
export type RunDetail = Schemas["RunDetail"];
export type RoundResult = Schemas["RoundDetail"];
export type ClientResult = Schemas["ClientResult"];
export type Failure = Schemas["RoundFailure"];
export type NodeInfo = Schemas["NodeInfo"];
export type SiteRegistered = Schemas["SiteRegistered"];
export type NodeData = Schemas["NodeDescription"];
export type MlflowExport = Schemas["MlflowExport"];
export type ModelInfo = Schemas["ModelInfo"];
export type ModelInput = Schemas["ModelInputInfo"];
export type Prediction = Schemas["Prediction"];
export type PredictionResult = Schemas["PredictionResult"];
export type LineageEntry = Schemas["LineageEntry"];
export type Page<T> = Omit<Schemas["RunPage"], "items"> & { items: T[] };

/** `GET /traces/{id}` spans: the backend keeps them as stored OTLP records (not a declared model). */
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
  let data: unknown;
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
  presets: () => request<Preset[]>("GET", "/training/presets"),
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
  "x-label"?: string;
  "x-group"?: string;
  "x-advanced"?: boolean;
  "x-when"?: Record<string, unknown[]>;
  "x-groups"?: { title: string; hint: string }[];
}

/** `GET /training/presets`: a named partial configuration the Start form fills in over the defaults. */
export interface Preset {
  name: string;
  description: string;
  config: TrainingConfig;
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
