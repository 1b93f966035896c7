// After a removal, the phone pushes the log it verified to every agent of the workspace
// (TRUST.md §4.10): a relay that withholds the removal from an agent's own log fetches
// cannot withhold it from this push. Each agent answers with an acknowledgement signed by
// its own key, checked here against the key in this phone's verified log; a relay that
// drops the push or forges the answer leaves that agent "pending", visibly, with a retry.

import { post, ws } from "./api.js";
import { busy, fill, h } from "./dom.js";
import { trustState } from "./trust.js";
import { concat, fromB64u, tag } from "../e2e/statements.js";

export const REMOVALS = Object.freeze(["member.remove", "passkey.revoke", "device.revoke", "agent.revoke"]);

const decoder = new TextDecoder();

async function verifyKey(agent) {
  const raw = fromB64u(agent.sigPub);
  if (agent.suite === "p256") {
    const key = await crypto.subtle.importKey("raw", raw, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    return { key, algorithm: { name: "ECDSA", hash: "SHA-256" } };
  }
  const key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
  return { key, algorithm: { name: "Ed25519" } };
}

/** The head the agent acknowledged, or null unless its signature and fields all check. */
export async function checkAck(wid, view, agent, answer) {
  try {
    const bytes = fromB64u(answer.ack);
    const { key, algorithm } = await verifyKey(agent);
    if (!(await crypto.subtle.verify(algorithm, key, fromB64u(answer.sig), concat(tag("logack"), bytes)))) return null;
    const ack = JSON.parse(decoder.decode(bytes));
    const ok = ack.v === 1 && ack.kind === "log.ack" && ack.ws === wid && ack.agent === agent.agentId
      && typeof ack.pushId === "string" && ack.pushId.length > 0 && ack.head
      && ack.head.seq === view.head.seq && ack.head.hash === view.head.hash;
    return ok ? ack.head : null;
  } catch {
    return null;
  }
}

/** Push the verified log to one agent: `{confirmed: head}` or `{pending: why}`. */
async function pushOne(wid, state, agent) {
  try {
    const body = { start: 0, entries: state.entries.map((e) => ({ entry: e.entry, sigs: e.sigs })) };
    const answer = await post(ws(wid, `/agents/${encodeURIComponent(agent.agentId)}/log-push`), body);
    if (answer.reason) return { pending: `the agent refused the entries (${answer.reason})` };
    const head = await checkAck(wid, state.view, agent, answer);
    return head ? { confirmed: head } : { pending: "its acknowledgement does not verify" };
  } catch (err) {
    return { pending: err.message };
  }
}

function agentRow(wid, state, agent) {
  const row = h("li", { class: "push-row", dataset: { agentId: agent.agentId } });
  const run = async () => {
    fill(row, h("span", { class: "muted" }, `Sending the log to ${agent.label}…`));
    const result = await pushOne(wid, state, agent);
    if (result.confirmed) {
      fill(row, h("span", { class: "push-confirmed" }, `confirmed by ${agent.label} (head #${result.confirmed.seq})`));
      return;
    }
    const retry = h("button", { type: "button", class: "secondary" }, "Retry");
    retry.addEventListener("click", () => busy(retry, run, { label: "Retrying…" }));
    fill(row, h("span", { class: "push-pending" }, `pending on ${agent.label}`), h("span", { class: "small muted" }, ` (${result.pending}) `), retry);
  };
  return { row, run };
}

/**
 * Push the workspace's freshly verified log to each of its agents (those not revoked in
 * the log) and show, per agent, whether it confirmed the new head. Fills `area`.
 */
export async function pushToAgents(app, area) {
  const state = await trustState(app.wid, { fresh: true });
  if (!state.view) {
    fill(area, h("p", { class: "error", role: "alert" }, state.error || "This workspace is not protected."));
    return;
  }
  const agents = [...state.view.agents.values()].filter((a) => a.revokedSeq === null);
  if (!agents.length) {
    fill(area);
    return;
  }
  const rows = agents.map((a) => agentRow(app.wid, state, a));
  fill(area, h("section", { class: "card log-push", "aria-label": "Agents told of the change", role: "status" },
    h("h3", {}, `Agents told of the change (head #${state.view.head.seq})`),
    h("ul", { class: "small" }, rows.map((r) => r.row))));
  await Promise.all(rows.map((r) => r.run()));
}
