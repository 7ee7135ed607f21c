/**
 * Display formatting in one place, so every screen (and the tests) agree on how a number looks.
 * Accuracy is shown as a percentage with two decimals, e.g. 0.8123 → "81.23%".
 */

/** API timestamps are ISO strings or epoch seconds (float); both become milliseconds. */
export function toMillis(value: string | number | null | undefined): number | null {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value > 1e12 ? value : value * 1000;
  const asNumber = Number(value);
  if (!Number.isNaN(asNumber)) return toMillis(asNumber);
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? null : parsed;
}

/** Any value: a checkpoint's metrics are whatever the run recorded; only a number is shown. */
export function formatAccuracy(value: unknown): string {
  return typeof value !== "number" || Number.isNaN(value) ? "—" : `${(value * 100).toFixed(2)}%`;
}

export function formatLoss(value: unknown): string {
  return typeof value !== "number" || Number.isNaN(value) ? "—" : value.toFixed(4);
}

export function formatNumber(value: number | null | undefined, digits = 0): string {
  return value === null || value === undefined ? "—" : value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export function formatSeconds(value: number | null | undefined): string {
  return value === null || value === undefined ? "—" : `${value.toFixed(value < 10 ? 2 : 1)} s`;
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KB", "MB", "GB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatTimestamp(value: string | number | null | undefined): string {
  const ms = toMillis(value);
  if (ms === null) return "—";
  const d = new Date(ms);
  const sameDay = new Date().toDateString() === d.toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleString([], { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export function formatRelative(value: string | number | null | undefined, now = Date.now()): string {
  const ms = toMillis(value);
  if (ms === null) return "never";
  const diff = Math.round((now - ms) / 1000);
  if (diff < 5) return "just now";
  if (diff < 60) return `${diff} s ago`;
  if (diff < 3600) return `${Math.floor(diff / 60)} min ago`;
  if (diff < 86400) return `${Math.floor(diff / 3600)} h ago`;
  return `${Math.floor(diff / 86400)} d ago`;
}

export function shortId(id: string | null | undefined, length = 8): string {
  return id ? (id.length > length + 1 ? id.slice(0, length) : id) : "—";
}

/** "learning_rate" → "Learning rate" */
export function humanize(name: string): string {
  const s = name.replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}
