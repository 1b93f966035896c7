// Agents of the workspace (online state, what each allows, revoke with confirmation: R07,
// I1) and an agent's recent Codex sessions with "Continue" (R12, R13: the agent filters them).

import { del, get, ws } from "../api.js";
import { busy, confirmDialog, fill, h, loading, screenTitle, toast } from "../dom.js";
import { relative, timeText } from "../format.js";
import { takeOver } from "./threads.js";
import { safetyNumber } from "../../e2e/safety.js";
import { fromB64u } from "../../e2e/statements.js";
import { pushToAgents } from "../logpush.js";
import { signEntry, trustState } from "../trust.js";
import { sealedSessions } from "../sealing/show.js";

const FEATURES = [
  ["codexExec", "Codex"],
  ["codexExecWrite", "Write mode"],
  ["runAction", "Actions"],
  ["readLog", "Logs"],
  ["conversations", "Conversations"],
];

function presence(agent) {
  if (agent.revokedAt) return h("span", { class: "presence revoked" }, h("span", { class: "dot", "aria-hidden": "true" }), "Revoked ", timeText(agent.revokedAt));
  if (agent.online) return h("span", { class: "presence online" }, h("span", { class: "dot", "aria-hidden": "true" }), "Online");
  return h("span", { class: "presence offline" }, h("span", { class: "dot", "aria-hidden": "true" }),
    agent.lastSeenAt ? `Offline · last seen ${relative(agent.lastSeenAt)}` : "Offline · never connected");
}

function listOf(title, items) {
  if (!items.length) return h("p", { class: "muted small" }, `${title}: none`);
  return h("div", { class: "catalog" }, h("span", { class: "muted small" }, `${title}:`),
    h("ul", { class: "tags" }, items.map((i) => h("li", { class: "chip", title: i.id }, i.label))));
}

/** What the agent says it pinned and the heads to note off the host (TRUST.md §8). */
function trustBlock(view, agent) {
  if (!view) return null;
  const pinned = view.agents.get(agent.agentId);
  const t = agent.trust;
  if (!pinned || pinned.revokedSeq !== null || !t || t.genesisHash !== view.genesisHash) {
    return h("p", { class: "notice not-pinned" }, "Not pinned to this protected workspace: it refuses signed tasks. ",
      "Pin it with a code from Pair an agent (", h("code", {}, "codexrelay agent trust pin"), ").");
  }
  const safety = h("code", { class: "safety-number" }, "…");
  safetyNumber(fromB64u(view.genesisHash), agent.agentId, fromB64u(pinned.sigPub))
    .then((digits) => { safety.textContent = digits.join(" "); }, () => { safety.textContent = "unavailable"; });
  const stale = t.logHead && t.logHead.seq < view.head.seq;
  return h("div", { class: "agent-trust" },
    h("p", { class: "pinned" }, `${agent.label} pinned this workspace (head #${t.logHead ? t.logHead.seq : 0})`,
      stale ? ` · ${view.head.seq - t.logHead.seq} newer log ${view.head.seq - t.logHead.seq === 1 ? "entry" : "entries"} not acknowledged yet` : ""),
    h("dl", { class: "meta compact" },
      h("dt", {}, "Safety number"), h("dd", {}, safety),
      h("dt", {}, "Audit log head"), h("dd", {}, t.auditHead ? h("code", { class: "audit-head" }, `${t.auditHead.seq}:${t.auditHead.hash}`) : "no records yet")),
    h("p", { class: "hint" }, "Note the audit head somewhere off the server: ", h("code", {}, "codexrelay audit verify --expect-head SEQ:HASH"), " then proves no record was cut."));
}

function agentCard(app, agent, onRevoke, view = null) {
  const features = h("ul", { class: "tags", "aria-label": "Allowed on this agent" }, FEATURES.map(([key, word]) =>
    h("li", { class: `chip ${agent.features[key] ? "on" : "off"}` }, `${word}: ${agent.features[key] ? "on" : "off"}`)));
  const buttons = [];
  if (!agent.revokedAt) {
    buttons.push(h("a", { class: "button secondary", href: `#/agents/${encodeURIComponent(agent.agentId)}/sessions` }, "Sessions"));
    if (agent.features.conversations) buttons.push(h("a", { class: "button secondary", href: `#/chats?agent=${encodeURIComponent(agent.agentId)}` }, "Conversations"));
    if (app.can("member")) buttons.push(h("a", { class: "button secondary", href: `#/new?agent=${encodeURIComponent(agent.agentId)}` }, "New task"));
    if (app.can("admin")) {
      const revoke = h("button", { type: "button", class: "danger" }, "Revoke");
      revoke.addEventListener("click", async () => {
        const ok = await confirmDialog(
          `Revoke agent "${agent.label}"? Its token stops working at once and it disconnects. To use it again, pair it anew.`,
          "Revoke agent",
        );
        if (ok) await busy(revoke, () => onRevoke(agent), { label: "Revoking…" });
      });
      buttons.push(revoke);
    }
  }
  return h("li", { class: `card agent-card${agent.revokedAt ? " is-revoked" : ""}`, dataset: { agentId: agent.agentId } },
    h("div", { class: "card-row" }, h("h3", {}, agent.label), presence(agent)),
    h("dl", { class: "meta compact" },
      h("dt", {}, "Agent id"), h("dd", {}, h("code", {}, agent.agentId)),
      h("dt", {}, "Host"), h("dd", {}, agent.hostname || "unknown"),
      h("dt", {}, "Workspace folder"), h("dd", {}, agent.workspaceRootName || "unknown")),
    trustBlock(view, agent),
    features,
    listOf("Actions", agent.actions),
    listOf("Logs", agent.logSources),
    buttons.length ? h("div", { class: "actions" }, buttons) : null);
}

export async function agentsScreen(app, root) {
  const body = h("div", {}, loading("Loading agents…"));
  const pushArea = h("div", { id: "log-push" });
  fill(root, h("div", { class: "screen-head" }, screenTitle("Agents"),
    app.can("admin") ? h("a", { href: "#/pair", class: "button primary" }, "Pair an agent") : null), pushArea, body);

  let view = null;
  const revoke = async (agent) => {
    // In a protected workspace the revocation is a signed log entry the agents act on.
    const signed = view && view.agents.has(agent.agentId);
    if (signed) await signEntry(app, "agent.revoke", { agentId: agent.agentId });
    else await del(ws(app.wid, `/agents/${encodeURIComponent(agent.agentId)}`));
    toast(`Agent "${agent.label}" was revoked.`);
    await app.loadAgents();
    draw();
    if (signed) await pushToAgents(app, pushArea);
  };
  const draw = () => {
    const live = app.agents.filter((a) => !a.revokedAt);
    const revoked = app.agents.filter((a) => a.revokedAt);
    fill(body,
      live.length ? h("ul", { class: "cards", "aria-label": "Agents" }, live.map((a) => agentCard(app, a, revoke, view)))
        : h("p", { class: "empty" }, "No agents yet.", app.can("admin") ? " Pair one to get started." : ""),
      revoked.length ? h("details", { class: "panel" }, h("summary", {}, `Revoked agents (${revoked.length})`),
        h("ul", { class: "cards" }, revoked.map((a) => agentCard(app, a, revoke)))) : null);
  };
  try {
    await app.loadAgents();
    view = (await trustState(app.wid).catch(() => ({}))).view || null;
  } catch (err) {
    fill(body, h("p", { class: "error", role: "alert" }, err.message));
    return {};
  }
  draw();
  return {
    onEvent(type) {
      if (type === "log") trustState(app.wid, { fresh: true }).then((s) => { view = s.view || null; draw(); }, () => {});
      if (type === "agent") draw();
    },
  };
}

const REFRESH_MS = 5000;

/** Continue a session: as a live conversation where the agent runs them, else a task. */
function continueButton(app, agent, session, query) {
  if (!agent || !agent.features.conversations) {
    return h("a", { class: "button primary", href: `#/new?${query}` }, "Continue");
  }
  const button = h("button", { type: "button", class: "primary" }, "Continue");
  button.addEventListener("click", () => busy(button, () => takeOver(app, agent.agentId, session.sessionId), { label: "Opening…" }));
  return button;
}

export async function sessionsScreen(app, root, [agentId]) {
  const body = h("div", {}, loading("Loading sessions…"));
  const status = h("p", { class: "muted small", role: "status" });
  if (!app.agent(agentId)) await app.loadAgents().catch(() => {});
  const agent = app.agent(agentId);
  fill(root, h("a", { href: "#/agents", class: "back" }, "‹ Agents"),
    screenTitle(`Codex sessions on ${agent ? agent.label : agentId}`),
    h("p", { class: "hint" }, "Recent sessions under the agent's workspace, as the agent last reported them."),
    status, body);
  let timer = null;
  let shown = null;
  const load = async () => {
    let res;
    try {
      res = await get(ws(app.wid, `/agents/${encodeURIComponent(agentId)}/sessions`));
    } catch (err) {
      fill(body, h("p", { class: "error", role: "alert" }, err.message));
      return;
    }
    // A sealed workspace: the relay holds an empty list and the agent's signed envelope.
    const sealed = res.sessions.length ? null : await sealedSessions(app, agentId).catch(() => null);
    if (sealed && sealed.sessions) res = { ...res, sessions: sealed.sessions };
    const fingerprint = JSON.stringify([res, sealed]);
    if (fingerprint === shown) return; // unchanged: keep the page still under the finger
    shown = fingerprint;
    fill(status, res.agentOnline ? "Agent online" : "Agent offline", res.updatedAt ? [" · updated ", timeText(res.updatedAt)] : "",
      sealed && sealed.sessions ? " · sealed, verified on this device" : "");
    if (sealed && sealed.note) {
      fill(body, h("p", { class: "notice sealed-sessions" }, sealed.note));
      return;
    }
    if (!res.sessions.length) {
      fill(body, h("p", { class: "empty" }, res.agentOnline ? "No Codex sessions under this agent's workspace yet."
        : "The agent is offline, so its sessions are not known right now."));
      return;
    }
    fill(body, h("ul", { class: "cards", "aria-label": "Sessions" }, res.sessions.map((s) => {
      // The session's cwd is absolute on the agent; a task's cwd is relative to the
      // workspace root, so "Continue" starts at the root rather than guess a path.
      const q = new URLSearchParams({ agent: agentId, resume: s.sessionId, title: s.title || s.sessionId });
      return h("li", { class: "card session-card", dataset: { sessionId: s.sessionId } },
        h("div", { class: "card-row" }, h("h3", {}, s.title || "Untitled session"), h("span", { class: "muted small" }, timeText(s.updatedAt))),
        (s.preview || []).length ? h("ul", { class: "preview-lines" }, s.preview.map((p) =>
          h("li", { class: `preview-${p.role}` }, h("span", { class: "prog-kind" }, p.role === "user" ? "You" : "Codex"), " ", p.text))) : null,
        app.can("member") && res.agentOnline ? h("div", { class: "actions" }, continueButton(app, agent, s, q)) : null);
    })));
  };
  await load();
  timer = setInterval(load, REFRESH_MS);
  return {
    dispose: () => clearInterval(timer),
    // A sealed catalog update: open it now rather than at the next poll.
    onEvent: (type, data) => type === "catalog" && data.agentId === agentId && load(),
  };
}
