// Reading a sealed conversation (TRUST.md §4.7, §4.8; codexrelay.e2e.sealedthreads is the
// same in Python). A thread's stream is the agent's alone, signed, one epoch per key or agent
// run; the first envelope of an epoch (or a later `key.wrap`) wraps the thread key to this
// device. Every envelope must verify under the agent's key in this phone's own verified log,
// open under a key wrapped to this device, and come next in its epoch's sequence and chain;
// anything else is dropped and counted, never shown.

import { EnvelopeError, Receiver, unwrapTaskKey } from "../../e2e/envelope.js";
import { b64u, fromB64u } from "../../e2e/statements.js";
import { wrapsDigest } from "./send.js";

const AGENT_KINDS = new Set(["task.out", "approval.req", "key.wrap"]);
const decoder = new TextDecoder("utf-8", { fatal: true });

function parse(bytes) {
  const wire = JSON.parse(decoder.decode(bytes));
  return { wire, header: JSON.parse(decoder.decode(fromB64u(wire.hdr))) };
}

async function verifyKey(agent) {
  const algorithm = agent.suite === "c25519" ? { name: "Ed25519" } : { name: "ECDSA", namedCurve: "P-256" };
  return { suite: agent.suite, publicKey: await crypto.subtle.importKey("raw", fromB64u(agent.sigPub), algorithm, false, ["verify"]) };
}

/** Every thread key wrapped to this device (`me`) in these envelopes, one per key change. */
export async function threadKeys(envelopes, { kexKey, suite, me, ws, thread }) {
  const found = new Map();
  for (const bytes of envelopes) {
    try {
      for (const wrap of parse(bytes).wire.keys || []) {
        if (wrap.to !== me) continue;
        const key = await unwrapTaskKey(wrap, suite, kexKey, { ws, task: thread });
        found.set(b64u(key), key);
      }
    } catch {
      // not for this device, or malformed: its envelope is dropped below anyway
    }
  }
  return [...found.values()];
}

/** One opened record, by the `seq` rule of docs/PROTOCOL.md (newest state per item). */
export function applyRecord(shown, record) {
  if (record.thread) {
    shown.thread = record.thread;
    if (record.turn) shown.turns[record.turn.id] = record.turn;
  } else if (record.item) {
    const held = shown.items[record.item.id];
    if (!held || held.seq < record.item.seq) shown.items[record.item.id] = record.item;
  } else if (record.delta) {
    const { itemId, seq, field, delta } = record.delta;
    const held = shown.items[itemId];
    if (held && held.seq < seq) {
      held[field] = (held[field] || "") + delta;
      held.seq = seq;
    }
  } else if (record.approval) {
    shown.approvals[record.approval.id] = record.approval;
  } else {
    throw new EnvelopeError("malformed");
  }
}

/**
 * What this device shows for a sealed thread. `kexKey` is its kex key pair (non-extractable
 * works), `view` this phone's verified log view; envelopes are bytes in the relay's order.
 */
export async function readThread(envelopes, { kexKey, suite, me, view, agent, thread }) {
  const member = view.agents.get(agent);
  if (!member || member.revokedSeq !== null) throw new EnvelopeError("bad-signature");
  const agentKey = await verifyKey(member);
  const keys = await threadKeys(envelopes, { kexKey, suite, me, ws: view.ws, thread });
  if (!keys.length) throw new EnvelopeError("no-key");
  const shown = { thread: null, turns: {}, items: {}, approvals: {}, opened: 0, dropped: [] };
  const epochs = new Map();
  for (const bytes of envelopes) {
    try {
      const { wire, header } = parse(bytes);
      if (!AGENT_KINDS.has(header.kind) || header.from !== agent) throw new EnvelopeError("bad-signature");
      let receiver = epochs.get(header.epoch);
      let opened;
      if (receiver) {
        opened = await receiver.open(bytes, agentKey);
      } else {
        [receiver, opened] = await firstOfEpoch(keys, bytes, agentKey, { ws: view.ws, agent, task: thread });
        epochs.set(header.epoch, receiver);
      }
      const record = JSON.parse(decoder.decode(opened.plaintext));
      if (!record || typeof record !== "object") throw new EnvelopeError("malformed");
      const named = record.wraps;
      if ((wire.keys || named) && named !== (wire.keys ? await wrapsDigest(wire.keys) : undefined)) {
        throw new EnvelopeError("malformed");
      }
      delete record.wraps;
      shown.opened += 1;
      if (header.kind !== "key.wrap") applyRecord(shown, record);
    } catch (error) {
      shown.dropped.push(error instanceof EnvelopeError ? error.reason : "malformed");
    }
  }
  return shown;
}

async function firstOfEpoch(keys, bytes, agentKey, ids) {
  let last = new EnvelopeError("no-key");
  for (const taskKey of keys) {
    const receiver = new Receiver({ taskKey, ...ids });
    try {
      return [receiver, await receiver.open(bytes, agentKey)];
    } catch (error) {
      if (error.reason !== "decrypt-failed") throw error;
      last = error;
    }
  }
  throw last;
}

