/** Small reusable pieces of UI shared by several views (badges, tables, page headers). */
import { traceLink } from "./api";
import { h } from "./dom";

const STATUS_LABEL: Record<string, string> = {
  pending: "Pending",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  stopped: "Stopped",
  online: "Online",
  offline: "Offline",
};

export function statusBadge(status: string, testid = "status-badge"): HTMLElement {
  const s = (status || "unknown").toLowerCase();
  return h("span", { class: `badge badge-${s}`, "data-testid": testid, "data-status": s }, h("span", { class: "dot", "aria-hidden": "true" }), STATUS_LABEL[s] ?? s);
}

export function pageHeader(title: string, subtitle?: string | Node, ...actions: Node[]): HTMLElement {
  return h(
    "header",
    { class: "page-header" },
    h("div", { class: "page-title" }, h("h1", {}, title), subtitle ? h("div", { class: "page-subtitle" }, subtitle) : null),
    actions.length ? h("div", { class: "page-actions" }, actions) : null,
  );
}

/** A horizontally scrollable table (phones) with a header row. */
export type Column = string | { label: string; numeric?: boolean; hideSm?: boolean };

/** `hideSm` columns are dropped on phones (the cells of each row get the same class). */
export function table(headers: Column[], rows: HTMLTableRowElement[], testid?: string): HTMLElement {
  headers.forEach((c, i) => {
    if (typeof c !== "string" && c.hideSm) for (const row of rows) if (row.cells.length === headers.length) row.cells[i]?.classList.add("hide-sm");
  });
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "table", "data-testid": testid },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headers.map((c) => (typeof c === "string" ? h("th", {}, c) : h("th", { class: `${c.numeric ? "num" : ""} ${c.hideSm ? "hide-sm" : ""}` }, c.label))),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

export function card(title: string | null, body: (Node | null)[], opts: { testid?: string; actions?: Node[]; class?: string } = {}): HTMLElement {
  return h(
    "section",
    { class: `card ${opts.class ?? ""}`, "data-testid": opts.testid },
    title || opts.actions ? h("div", { class: "card-head" }, title ? h("h2", {}, title) : null, opts.actions ? h("div", { class: "card-actions" }, opts.actions) : null) : null,
    body,
  );
}

export function stat(label: string, value: string | Node, testid?: string, hint?: string, extraClass = ""): HTMLElement {
  return h("div", { class: `stat ${extraClass}` }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value", "data-testid": testid }, value), hint ? h("div", { class: "stat-hint" }, hint) : null);
}

export function toast(message: string, kind: "info" | "error" = "info"): void {
  const el = h("div", { class: `toast toast-${kind}`, role: "status" }, message);
  document.body.appendChild(el);
  setTimeout(() => el.classList.add("toast-out"), 3500);
  setTimeout(() => el.remove(), 4000);
}

/** A run's "View trace" link (see `traceLink`): Grafana opens in a new tab, the built-in view in place. */
export function traceAnchor(run: { trace_id?: string | null; trace_url?: string | null }, label: string, cls?: string): HTMLElement | null {
  const link = traceLink(run);
  if (!link) return null;
  return h(
    "a",
    {
      class: cls,
      href: link.href,
      target: link.external ? "_blank" : null,
      rel: link.external ? "noopener" : null,
      title: link.external ? "Opens Grafana in a new tab" : "This run's trace: every request, round, client and step",
      "data-testid": "trace-link",
      onclick: ((e: Event) => e.stopPropagation()) as EventListener,
    },
    link.external ? `${label} ↗` : label,
  );
}
