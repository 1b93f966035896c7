// The workspace's audit trail for admins (B2, O4): signed, hash-chained records, newest
// first, with paging, an event filter and the signed export for offline checking. The relay
// owner can switch to the relay-wide chain (sign-ins, sessions, start-ups, rate limits).

import { get, ws } from "../api.js";
import { busy, errorLine, field, fill, h, loading, screenTitle, showError } from "../dom.js";
import { timeText } from "../format.js";

const RECOVERY_VIAS = new Set(["bootstrap", "recovery-code"]);

function actorText(actor, names) {
  if (!actor) return "unknown";
  if (actor.type === "user") {
    const who = names.get(actor.userId) || actor.userId;
    return actor.via ? `${who} (signed in with ${actor.via.replace(/-/g, " ")})` : who;
  }
  if (actor.type === "agent") return `agent ${actor.agentId || actor.agentKey}`;
  return actor.type;
}

function recordCard(record, names) {
  const actor = record.actor || {};
  const details = Object.entries(record.target || {}).filter(([, v]) => v !== null && v !== undefined && v !== "");
  return h("li", { class: "card audit-card", dataset: { seq: String(record.seq) } },
    h("div", { class: "card-row" }, h("strong", {}, record.event), h("span", { class: "muted small" }, timeText(record.time))),
    h("p", { class: "small" }, "By ", actorText(actor, names)),
    RECOVERY_VIAS.has(actor.via) ? h("p", { class: "warning small" }, "Done in a recovery session.") : null,
    details.length ? h("dl", { class: "meta compact" }, details.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])) : null,
    h("p", { class: "muted small" }, `#${record.seq}`, record.client ? ` · from ${record.client}` : ""));
}

export async function auditScreen(app, root) {
  if (!app.can("admin")) {
    fill(root, screenTitle("Audit trail"), h("p", { class: "notice" }, "The audit trail is for admins."));
    return {};
  }
  const list = h("ul", { class: "cards", "aria-label": "Audit records" });
  const body = h("div", {}, loading("Loading records…"));
  const more = h("button", { type: "button", class: "secondary wide" }, "Show older records");
  const error = errorLine();
  const filter = h("input", { type: "text", autocomplete: "off", autocapitalize: "off", spellcheck: "false", placeholder: "task.* or invite.created" });
  const apply = h("button", { type: "submit", class: "secondary" }, "Filter");
  const form = h("form", { class: "filter-row" }, field("Event", filter), apply);
  const names = new Map();
  let nextBefore = null;
  const owner = !!app.me.user.isOwner;
  const scope = h("select", {},
    h("option", { value: "workspace" }, `This workspace (${app.workspaceName()})`),
    h("option", { value: "relay" }, "The whole relay: sign-ins, sessions, start-ups"));
  const base = () => (scope.value === "relay" ? "/api/v1/audit" : ws(app.wid, "/audit"));
  const exportLink = h("a", { class: "button secondary", href: `${base()}/export`, download: "" }, "Download signed export");

  const fetchPage = async (before) => {
    const q = new URLSearchParams({ limit: "50" });
    if (filter.value.trim()) q.set("event", filter.value.trim());
    if (before) q.set("before", String(before));
    const res = await get(`${base()}?${q}`);
    nextBefore = res.nextBefore;
    more.hidden = !nextBefore;
    return res.records;
  };
  const reload = async () => {
    const records = await fetchPage(null);
    fill(list, records.map((r) => recordCard(r, names)));
    fill(body, records.length ? list : h("p", { class: "empty" }, "No records match."));
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(apply, reload, { label: "Filtering…", errLine: error });
  });
  more.addEventListener("click", () => busy(more, async () => {
    const records = await fetchPage(nextBefore);
    list.append(...records.map((r) => recordCard(r, names)));
  }, { label: "Loading…", errLine: error }));

  scope.addEventListener("change", () => {
    exportLink.href = `${base()}/export`;
    busy(apply, reload, { label: "Loading…", errLine: error });
  });

  fill(root, h("a", { href: "#/people", class: "back" }, "‹ People"), screenTitle("Audit trail"),
    h("p", { class: "hint" }, "Security events, newest first. Each record is signed and chained to the one before."),
    owner ? field("Records of", scope) : null,
    exportLink, form, error, body, more);
  more.hidden = true;
  try {
    const { members } = await get(ws(app.wid, "/members"));
    for (const m of members) names.set(m.userId, m.name);
    if (owner) for (const u of (await get("/api/v1/users")).users) names.set(u.id, u.name);
    await reload();
  } catch (err) {
    showError(error, err);
    fill(body);
  }
  return {};
}
