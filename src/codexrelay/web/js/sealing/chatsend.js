// Sending in a sealed conversation (TRUST.md §4.7, §4.8, §4.13; tests/sealthreads.py is the
// same in Python): the passkey-signed turn or decision statement chatsign.js makes, sealed in
// a one-envelope stream of this device whose fresh key is HPKE-wrapped to the agent only, as
// this phone's own verified log names its kex key. If sealing fails, nothing is sent.

import { post, ws } from "../api.js";
import { Sealer, wrapTaskKey } from "../../e2e/envelope.js";
import { fromB64u, utf8 } from "../../e2e/statements.js";
import { trustState } from "../trust.js";
import { kexKey, readerDevices, wrapsDigest } from "./send.js";

const decoder = new TextDecoder();

async function verifiedView(wid) {
  const state = await trustState(wid, { fresh: true });
  if (!state.view) throw new Error(state.error || "This workspace's signed log cannot be read, so nothing was sent.");
  return state.view;
}

/** `inner` sealed to the agent: the envelope as JSON text (`task` names the stream). */
export async function sealToAgent(view, agentId, task, sender, kind, inner) {
  const agent = view.agents.get(agentId);
  if (!agent || agent.revokedSeq !== null) {
    throw new Error("This agent is not in the signed log, so nothing can be sealed to it. Nothing was sent.");
  }
  const key = crypto.getRandomValues(new Uint8Array(32));
  try {
    const recipient = await kexKey(agent.suite, agent.kexPub);
    const wraps = [await wrapTaskKey(key, agent.suite, recipient, { ws: view.ws, task, recipientKeyId: agentId })];
    const record = { ...inner, wraps: await wrapsDigest(wraps) };
    const sealer = new Sealer({ taskKey: key, ws: view.ws, agent: agentId, task, sender });
    return decoder.decode(await sealer.seal(kind, utf8(JSON.stringify(record)), wraps));
  } finally {
    key.fill(0);
  }
}

const statementOf = (signed) => JSON.parse(decoder.decode(fromB64u(signed.stmt)));

/**
 * A sealed thread start (`mode: "new"`, `threadId` null), follow-up (`start`) or steer:
 * `trust` is chatsign.js's signing context. Returns the relay's answer.
 */
export async function sendSealedTurn(app, trust, fields) {
  const signed = await trust.turn(fields);
  const stmt = statementOf(signed);
  const view = await verifiedView(app.wid);
  const envelope = await sealToAgent(view, fields.agentId, stmt.turn, stmt.device, "task.submit", signed);
  const body = { writeAccess: Boolean(fields.writeAccess), envelope };
  if (fields.mode === "new") return post(ws(app.wid, "/sealed-threads"), { ...body, agentId: fields.agentId });
  const path = `/threads/${encodeURIComponent(fields.threadId)}/sealed-turns`;
  return post(ws(app.wid, path), { ...body, mode: fields.mode });
}

/** A sealed answer to `approval` as this device decrypted it (its exact `request` bytes). */
export async function sendSealedDecision(app, trust, thread, approval, decision) {
  const signed = await trust.decision(thread, approval, decision);
  const stmt = statementOf(signed);
  const view = await verifiedView(app.wid);
  const envelope = await sealToAgent(view, thread.agentId, approval.id, stmt.device, "approval.decision", signed);
  const path = `/threads/${encodeURIComponent(thread.id)}/approvals/${encodeURIComponent(approval.id)}/sealed`;
  return post(ws(app.wid, path), { envelope });
}

/** The composer's line in a sealed workspace: who can read what is sent. */
export async function sealedLine(app, agentId) {
  const { view } = await trustState(app.wid).catch(() => ({ view: null }));
  const agent = app.agent(agentId);
  const label = agent ? agent.label : agentId;
  if (!view) return `Sealed end to end: only ${label} and this workspace's reader devices can read it.`;
  const n = readerDevices(view).length;
  return `Sealed: only ${label} and ${n} reader ${n === 1 ? "device" : "devices"} can read this conversation.`;
}
