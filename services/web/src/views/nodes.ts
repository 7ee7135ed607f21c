/**
 * SuperNodes known to the SuperLink, refreshed every 5 s while this tab is visible.
 * "Add a site" registers a site's public key (POST /nodes) and shows the files and the command the site
 * needs, exactly as the server wrote them; "Revoke" removes a node's key (DELETE /nodes/{id}).
 */
import { api, ApiError, type NodeData, type NodeInfo, type SiteRegistered } from "../api";
import { h, mount, stateBlock } from "../dom";
import { formatRelative, formatTimestamp } from "../format";
import { card, pageHeader, statusBadge, table, toast } from "../widgets";

export function renderNodes(root: HTMLElement): () => void {
  let alive = true;
  let loaded = false;
  const body = h("div", {}, stateBlock("loading", "Loading nodes…"));
  const updated = h("span", { class: "muted", "data-testid": "nodes-updated" });
  const addArea = h("div", { "data-testid": "add-site-area" });
  const addButton = h("button", { class: "btn btn-primary", "data-testid": "add-site", onclick: () => mount(addArea, addSiteForm(addArea, () => void load())) }, "Add a site");
  mount(
    root,
    pageHeader("Nodes", "SuperNodes connected to the SuperLink. Refreshes every 5 seconds.", addButton),
    addArea,
    card(null, [body, h("div", { class: "pager" }, updated)], { testid: "nodes-card" }),
  );

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
          ["Site", "Node id", "Status", "Last seen", { label: "Key fingerprint", hideSm: true }, "Own data (last run)", ""],
          sorted.map((n) =>
            h(
              "tr",
              { "data-testid": "node-row", "data-node": n.node_id },
              h("td", { "data-testid": "node-name" }, n.name || "—"),
              h("td", { class: "mono" }, String(n.node_id)),
              h("td", {}, statusBadge(n.status)),
              h("td", { title: formatTimestamp(n.last_seen) }, formatRelative(n.last_seen)),
              h("td", { class: "mono", "data-testid": "node-fingerprint" }, n.key_fingerprint || "—"),
              h("td", { "data-testid": "node-data" }, dataSummary(n.data)),
              h("td", {}, h("button", { class: "btn btn-danger", "data-testid": "revoke-node", onclick: () => void revoke(n) }, "Revoke")),
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

async function revoke(node: NodeInfo): Promise<void> {
  const label = node.name ? `site ${node.name} (node ${node.node_id})` : `node ${node.node_id}`;
  if (!window.confirm(`Revoke ${label}? The SuperLink refuses its key from its next request; a revoked key cannot be added again.`)) return;
  try {
    await api.revokeNode(node.node_id);
    toast(`Revoked ${label}.`);
  } catch (err) {
    toast(`Could not revoke ${label}: ${(err as Error).message}`, "error");
  }
}

/** Name and public key (pasted or read from the .pub file); the server's 422s are shown under their field. */
function addSiteForm(area: HTMLElement, onAdded: () => void): HTMLElement {
  const name = h("input", { type: "text", maxlength: "64", placeholder: "clinic-a", "data-testid": "site-name" }) as HTMLInputElement;
  const key = h("textarea", { rows: "3", class: "key-input", placeholder: "ecdsa-sha2-nistp384 AAAA… (the site's supernode.pub)", "data-testid": "site-key" }) as HTMLTextAreaElement;
  const file = h("input", { type: "file", accept: ".pub,text/plain", "data-testid": "site-key-file" }) as HTMLInputElement;
  file.addEventListener("change", async () => {
    const chosen = file.files?.[0];
    if (chosen) key.value = (await chosen.text()).trim();
  });
  const errors = { name: h("div", { class: "field-error", "data-testid": "site-name-error" }), public_key: h("div", { class: "field-error", "data-testid": "site-key-error" }) };
  const summary = h("div", { class: "field-error", "data-testid": "site-error" });
  const submit = h("button", { class: "btn btn-primary", type: "submit", "data-testid": "site-submit" }, "Add site");
  const form = h(
    "form",
    { class: "field-grid site-form", "data-testid": "add-site-form" },
    h("label", { class: "field" }, h("span", { class: "field-label" }, "Site name"), name, h("span", { class: "field-help" }, "Letters, digits, . _ -"), errors.name),
    h(
      "label",
      { class: "field site-key-field" },
      h("span", { class: "field-label" }, "SuperNode public key"),
      key,
      file,
      h("span", { class: "field-help" }, "Made on the site: ssh-keygen -t ecdsa -b 384 -N '' -f supernode.key. Only the .pub leaves the site."),
      errors.public_key,
    ),
    h("div", { class: "form-actions" }, summary, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const el of [errors.name, errors.public_key, summary]) el.textContent = "";
    submit.setAttribute("disabled", "");
    try {
      const site = await api.addSite({ name: name.value.trim(), public_key: key.value });
      mount(area, siteSetup(site, area));
      onAdded();
    } catch (err) {
      const issues = err instanceof ApiError ? err.issues : [];
      for (const issue of issues) {
        const field = issue.loc[issue.loc.length - 1] as keyof typeof errors;
        (errors[field] ?? summary).textContent = issue.msg;
      }
      if (!issues.length) summary.textContent = (err as Error).message;
    } finally {
      submit.removeAttribute("disabled");
    }
  });
  return card("Add a site", [form], { testid: "add-site-card" });
}

/** The site's files and command, as POST /nodes answered them: copy each file, then run the command on the site. */
function siteSetup(site: SiteRegistered, area: HTMLElement): HTMLElement {
  const files = site.setup.files.map((f) =>
    h(
      "div",
      { class: "site-file", "data-testid": "site-file", "data-path": f.path },
      h("div", {}, h("code", {}, f.path), f.note ? h("span", { class: "field-help" }, ` — ${f.note}`) : null),
      f.content !== null ? h("pre", { class: "site-file-content", "data-testid": "site-file-content" }, f.content) : null,
    ),
  );
  return card(
    `Site ${site.name} added (node ${site.node_id})`,
    [
      h("p", {}, "Key fingerprint ", h("code", { "data-testid": "site-fingerprint" }, site.key_fingerprint), " — compare it with ssh-keygen -lf supernode.pub on the site."),
      ...(site.setup.warnings ?? []).map((w) => h("p", { class: "field-error", "data-testid": "site-warning" }, w)),
      h("p", {}, "On the site's host, in a checkout of this repository, write these files:"),
      ...files,
      h("p", {}, "Then start the site:"),
      h("pre", { class: "site-file-content", "data-testid": "site-command" }, site.setup.command),
      h("button", { class: "btn", "data-testid": "site-done", onclick: () => mount(area) }, "Done"),
    ],
    { testid: "site-setup" },
  );
}

/** One line about a node's own data: "site-1 · table · 318 examples · 30 columns · benign 247, malignant 71". */
function dataSummary(data: NodeData | null | undefined): string {
  if (!data) return "—";
  if (data.error) return `unusable: ${data.error}`;
  const shape = data.columns ? `${data.columns.length} columns` : data.image_shape ? data.image_shape.join("×") : "";
  const classes = Object.entries(data.classes ?? {}).map(([name, count]) => `${name} ${count}`).join(", ");
  return [data.site, data.format, `${data.examples ?? "?"} examples`, shape, classes].filter(Boolean).join(" · ");
}
