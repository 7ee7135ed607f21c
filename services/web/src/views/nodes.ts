/** SuperNodes known to the SuperLink, refreshed every 5 s while this tab is visible. */
import { api, type NodeData, type NodeInfo } from "../api";
import { h, mount, stateBlock } from "../dom";
import { formatRelative, formatTimestamp } from "../format";
import { card, pageHeader, statusBadge, table } from "../widgets";

export function renderNodes(root: HTMLElement): () => void {
  let alive = true;
  let loaded = false;
  const body = h("div", {}, stateBlock("loading", "Loading nodes…"));
  const updated = h("span", { class: "muted", "data-testid": "nodes-updated" });
  mount(root, pageHeader("Nodes", "SuperNodes connected to the SuperLink. Refreshes every 5 seconds."), card(null, [body, h("div", { class: "pager" }, updated)], { testid: "nodes-card" }));

  const load = async () => {
    if (document.visibilityState !== "visible") return;
    try {
      const { items } = await api.nodes();
      if (!alive) return;
      loaded = true;
      updated.textContent = `Updated ${formatTimestamp(Date.now() / 1000)}`;
      if (!items.length) {
        mount(body, stateBlock("empty", "No nodes yet", "Start SuperNodes (`make run` starts three) and they appear here."));
        return;
      }
      const online = items.filter((n) => n.status === "online").length;
      const sorted = [...items].sort((a: NodeInfo, b: NodeInfo) => (a.status === b.status ? String(a.node_id).localeCompare(String(b.node_id)) : a.status === "online" ? -1 : 1));
      mount(
        body,
        h("p", { class: "summary-line", "data-testid": "nodes-summary" }, h("strong", {}, `${online} online`), h("span", { class: "muted" }, ` of ${items.length} known`)),
        table(
          ["Node id", "Status", "Last seen", { label: "Online until", hideSm: true }, "Own data (last run)"],
          sorted.map((n) =>
            h(
              "tr",
              { "data-testid": "node-row", "data-node": n.node_id },
              h("td", { class: "mono" }, String(n.node_id)),
              h("td", {}, statusBadge(n.status)),
              h("td", { title: formatTimestamp(n.last_seen) }, formatRelative(n.last_seen)),
              h("td", {}, formatTimestamp(n.online_until ?? null)),
              h("td", { "data-testid": "node-data" }, dataSummary(n.data)),
            ),
          ),
          "nodes-table",
        ),
      );
    } catch (err) {
      if (!alive) return;
      if (!loaded) mount(body, stateBlock("error", "Could not load nodes", (err as Error).message));
      else updated.textContent = `Refresh failed: ${(err as Error).message}`;
    }
  };

  void load();
  const timer = window.setInterval(() => void load(), 5000);
  const onVisible = () => document.visibilityState === "visible" && void load();
  document.addEventListener("visibilitychange", onVisible);
  return () => {
    alive = false;
    clearInterval(timer);
    document.removeEventListener("visibilitychange", onVisible);
  };
}

/** One line about a node's own data: "site-1 · table · 318 examples · 30 columns · benign 247, malignant 71". */
function dataSummary(data: NodeData | null | undefined): string {
  if (!data) return "—";
  if (data.error) return `unusable: ${data.error}`;
  const shape = data.columns ? `${data.columns.length} columns` : data.image_shape ? data.image_shape.join("×") : "";
  const classes = Object.entries(data.classes ?? {}).map(([name, count]) => `${name} ${count}`).join(", ");
  return [data.site, data.format, `${data.examples ?? "?"} examples`, shape, classes].filter(Boolean).join(" · ");
}
