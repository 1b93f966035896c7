// Sending a sealed task (TRUST.md §4.5, §5; tests/sealkit.py is the same in Python): the
// statement and passkey signature of a signed task, then one `task.submit` envelope whose
// fresh task key is HPKE-wrapped to the agent and to every live reader device of this
// phone's own verified log — never to whoever the relay lists. If anything here fails,
// nothing is sent: a sealed workspace's prompt never leaves the phone in the clear.

import { post, ws } from "../api.js";
import * as cache from "../cache.js";
import { Sealer, hpkeSuite, wrapTaskKey } from "../../e2e/envelope.js";
import { b64u, digest, fromB64u, utf8 } from "../../e2e/statements.js";
import { signStatement } from "../../e2e/webauthn.js";
import { myPasskeys } from "../trust.js";

/** The verified log's policy says task content travels sealed. */
export const isSealed = (view) => !!view && !!view.policy && view.policy.content === "sealed";

/** Live devices of current members (viewer and up), as this phone's verified log says. */
export function readerDevices(view) {
  return [...view.devices.values()].filter((d) => d.revokedSeq === null && view.members.has(d.userId));
}

/** The line the confirmation screen shows: who will be able to read the task. */
export function readersLine(view, agentLabel) {
  const n = readerDevices(view).length;
  return `Sealed: only ${agentLabel} and ${n} ${n === 1 ? "device" : "devices"} can read it.`;
}

/** A recipient's kex public key from the verified log, for HPKE. */
export async function kexKey(suite, kexPub) {
  return hpkeSuite(suite).kem.importKey("raw", fromB64u(kexPub).buffer, true);
}

/** b64u(H(compact JSON of the wraps as they travel)): named inside the plaintext (§5). */
export async function wrapsDigest(wraps) {
  return digest(utf8(JSON.stringify({ keys: wraps.map((w) => ({ to: w.to, enc: w.enc })) })));
}

/**
 * The `POST /sealed-tasks` body for a signed statement: `raw` and `body` are the exact
 * bytes signed, `auth` the passkey signatures. Wraps go to the statement's agent and to
 * every reader device in `view` (which must be this phone's verified view).
 */
export async function sealSubmission(view, { stmt, raw, body, auth }) {
  const agent = view.agents.get(stmt.agent);
  if (!agent || agent.revokedSeq !== null) {
    throw new Error("This agent is not in the signed log, so the task cannot be sealed to it. Nothing was sent.");
  }
  const ids = { ws: view.ws, task: stmt.task };
  const taskKey = crypto.getRandomValues(new Uint8Array(32));
  try {
    const wraps = [await wrapTaskKey(taskKey, agent.suite, await kexKey(agent.suite, agent.kexPub), { ...ids, recipientKeyId: agent.agentId })];
    for (const device of readerDevices(view)) {
      wraps.push(await wrapTaskKey(taskKey, device.suite, await kexKey(device.suite, device.kexPub), { ...ids, recipientKeyId: device.deviceId }));
    }
    const inner = { stmt: b64u(raw), body: b64u(body), auth, wraps: await wrapsDigest(wraps) };
    const sealer = new Sealer({ taskKey, ws: view.ws, agent: agent.agentId, task: stmt.task, sender: stmt.device });
    const envelope = new TextDecoder().decode(await sealer.seal("task.submit", utf8(JSON.stringify(inner)), wraps));
    const request = { agentId: agent.agentId, type: stmt.type, writeAccess: stmt.writeAccess, envelope };
    return { request, readers: wraps.map((w) => w.to) };
  } finally {
    taskKey.fill(0);
  }
}

/**
 * Passkey-sign a drafted task (trust.js draftTask), seal it and submit it. The prompt is
 * kept in this device's encrypted cache, so the sender's own task page still shows it.
 */
export async function submitSealed(app, draft, prompt, { queueTtlSec = null } = {}) {
  const auth = await signStatement({ tagName: "task", bytes: draft.raw, rpId: draft.view.rpId, credentialIds: myPasskeys(draft.view, app.me.user.id) });
  const { request } = await sealSubmission(draft.view, { ...draft, auth: [auth] });
  if (queueTtlSec) request.queueTtlSec = queueTtlSec;
  const res = await post(ws(app.wid, "/sealed-tasks"), request);
  await rememberSent(res.task, draft.stmt, prompt).catch(() => {});
  return res;
}

async function rememberSent(task, stmt, prompt) {
  const fields = { cwd: stmt.cwd, actionId: stmt.actionId, logSourceId: stmt.logSourceId, resumeSessionId: stmt.resumeSessionId };
  await cache.saveTask({ ...task, ...fields, prompt: stmt.type === "codex_exec" ? prompt : null });
}
