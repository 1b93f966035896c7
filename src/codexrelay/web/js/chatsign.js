// Signed conversations in a protected workspace (TRUST.md §4.8, §4.13): each thread start,
// turn, steer and approval answer is a passkey signature (user verification) over the exact
// statement bytes this phone makes; an interrupt is signed by this device's key. The agent
// checks each against the log it pinned, so a relay cannot start, steer or approve anything.
//
// The phone reads the workspace's log from the relay and walks its hash chain itself (seq,
// prev, and each entry's hash) to find the head it signs on, its own passkeys and devices.
// A device that is not in the log yet adds itself with a `device.add` entry signed by the
// person's passkey (§4.4), once.

import { get, post, ws } from "./api.js";
import { deleteKeys, deviceSign, generateDeviceKeys, loadKeys, publicKeys, saveKeys } from "../e2e/keys.js";
import { b64u, concat, digest, fromB64u, statementBytes, tag, taggedHash } from "../e2e/statements.js";
import { signStatement } from "../e2e/webauthn.js";

const TTL_SEC = 300;
const decoder = new TextDecoder();
const cache = new Map(); // wid -> Promise<Trust|null>

const now = () => Math.floor(Date.now() / 1000);
const uuid4 = () => crypto.randomUUID();
const salt = () => b64u(crypto.getRandomValues(new Uint8Array(16)));

function parseBytes(bytes) {
  return JSON.parse(decoder.decode(bytes));
}

/** Who holds which passkeys and devices, as the chain of entries says. */
function readLog(entries) {
  const state = { rpId: "", ws: "", passkeys: new Map(), devices: new Map(), members: new Set(), head: null };
  let prev = null;
  return (async () => {
    for (const [seq, item] of entries.entries()) {
      const bytes = fromB64u(item.entry);
      const entry = parseBytes(bytes);
      const hash = b64u(await taggedHash("loghash", bytes));
      if (item.seq !== seq || item.hash !== hash || (seq > 0 && (entry.seq !== seq || entry.prev !== prev))) {
        throw new Error("The relay's copy of the membership log does not chain; nothing was signed.");
      }
      apply(state, seq === 0 ? { op: "genesis", body: entry } : entry);
      prev = hash;
      state.head = { seq, hash };
    }
    return state;
  })();
}

function apply(state, { op, body }) {
  const addPasskey = (userId, { credId }) => state.passkeys.set(credId, userId);
  const addDevice = (userId, d) => state.devices.set(d.deviceId, userId);
  if (op === "genesis") {
    state.rpId = body.rpId;
    state.ws = body.ws;
    state.members.add(body.owner.userId);
    body.owner.passkeys.forEach((p) => addPasskey(body.owner.userId, p));
    body.devices.forEach((d) => addDevice(body.owner.userId, d));
  } else if (op === "member.add") {
    state.members.add(body.userId);
    body.passkeys.forEach((p) => addPasskey(body.userId, p));
    body.devices.forEach((d) => addDevice(body.userId, d));
  } else if (op === "member.remove") {
    state.members.delete(body.userId);
  } else if (op === "passkey.add") {
    addPasskey(body.userId, body);
  } else if (op === "passkey.revoke") {
    state.passkeys.delete(body.credId);
  } else if (op === "device.add") {
    addDevice(body.userId, body);
  } else if (op === "device.revoke") {
    state.devices.delete(body.deviceId);
  }
}

async function fetchLog(wid) {
  const entries = [];
  for (;;) {
    const page = await get(ws(wid, `/e2e/log?from=${entries.length}`));
    if (!page.protected) return null;
    entries.push(...page.entries);
    if (!page.entries.length || !page.head || entries.length > page.head.seq) return readLog(entries);
  }
}

/** A protected workspace's signing context for this person, or null if unprotected. */
export function trustFor(wid, userId) {
  if (!cache.has(wid)) {
    cache.set(wid, fetchLog(wid).then((log) => (log ? new Trust(wid, userId, log) : null)));
    cache.get(wid).catch(() => cache.delete(wid));
  }
  return cache.get(wid);
}

/** Forget what was read (after an entry was added, or a stale-log-head answer). */
export function forgetTrust(wid) {
  cache.delete(wid);
}

class Trust {
  constructor(wid, userId, log) {
    this.wid = wid;
    this.userId = userId;
    this.log = log;
  }

  get credentialIds() {
    return [...this.log.passkeys].filter(([, user]) => user === this.userId).map(([id]) => id);
  }

  async passkey(tagName, bytes) {
    if (!this.log.members.has(this.userId) || !this.credentialIds.length) {
      throw new Error("None of your passkeys is in this workspace's membership log, so you cannot sign here.");
    }
    return signStatement({ tagName, bytes, rpId: this.log.rpId, credentialIds: this.credentialIds });
  }

  /** This browser's device in the log: made and added (one passkey prompt) on first use. */
  async device() {
    const name = `chat-device:${this.wid}`;
    let device = await loadKeys(name);
    if (device && this.log.devices.get(device.deviceId) === this.userId) return device;
    if (!device) {
      device = { ...(await generateDeviceKeys()), deviceId: `dv_${b64u(crypto.getRandomValues(new Uint8Array(9)))}` };
      await saveKeys(name, device);
    }
    const keys = await publicKeys(device);
    const body = { userId: this.userId, deviceId: device.deviceId, label: "Phone (chats)", sigPub: keys.sigPub, kexPub: keys.kexPub, suite: keys.suite };
    const entry = statementBytes({ v: 1, ws: this.wid, seq: this.log.head.seq + 1, prev: this.log.head.hash, op: "device.add", body, issuedAt: now() });
    const sig = await this.passkey("log", entry);
    const res = await post(ws(this.wid, "/e2e/log"), { entry: b64u(entry), sigs: [sig] });
    this.log.devices.set(device.deviceId, this.userId);
    this.log.head = res.head;
    return device;
  }

  async statement(kind, fields) {
    const device = await this.device();
    const issuedAt = now();
    return { v: 1, kind, ws: this.wid, ...fields, device: device.deviceId, logHead: this.log.head, issuedAt, expiresAt: issuedAt + TTL_SEC };
  }

  /** `{stmt, input, auth}` for a new thread, a follow-up ("start") or a steer. */
  async turn({ agentId, mode, threadId = null, prompt, images = null, cwd = null, model = null, effort = null, writeAccess = false }) {
    const input = statementBytes({ prompt, images, cwd, model, effort, salt: salt() });
    const stmt = await this.statement("turn", {
      agent: agentId, thread: threadId || uuid4(), turn: uuid4(), mode, inputHash: await digest(input), writeAccess,
    });
    const bytes = statementBytes(stmt);
    return { stmt: b64u(bytes), input: b64u(input), auth: [await this.passkey("turn", bytes)] };
  }

  /** `{stmt, auth}`: this answer to the exact request bytes the agent sent. */
  async decision(thread, approval, decision) {
    const stmt = await this.statement("decision", {
      agent: thread.agentId, task: thread.id, requestId: approval.id,
      reqHash: await digest(fromB64u(approval.request)), decision,
    });
    const bytes = statementBytes(stmt);
    return { stmt: b64u(bytes), auth: [await this.passkey("decision", bytes)] };
  }

  /** `{stmt, sig}`: stop the running turn, signed by this device (no passkey needed). */
  async interrupt(thread) {
    const device = await this.device();
    const bytes = statementBytes({
      v: 1, kind: "interrupt", ws: this.wid, agent: thread.agentId, thread: thread.id,
      turn: thread.activeTurnId, device: device.deviceId, issuedAt: now(),
    });
    return { stmt: b64u(bytes), sig: b64u(await deviceSign(device, concat(tag("interrupt"), bytes))) };
  }
}

/** The approval as the agent asked it: decoded from its exact request bytes, so the card
 * never shows a relay's rewording (null if there are none to show). */
export function askedBy(approval) {
  if (!approval.request) return null;
  try {
    const asked = parseBytes(fromB64u(approval.request));
    if (asked.kind !== "approval.req" || asked.requestId !== approval.id) return null;
    return asked;
  } catch {
    return null;
  }
}

/** Drop this browser's chat device for a workspace (its keys never leave IndexedDB). */
export const forgetDevice = (wid) => deleteKeys(`chat-device:${wid}`);
