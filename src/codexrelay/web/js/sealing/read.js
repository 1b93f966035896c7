// Reading sealed tasks on this device (TRUST.md §4.5, §4.7, §5, §8). The relay holds only
// ciphertext: the phone takes every task key wrapped to one of this browser's devices in its
// own verified log (a second one when the agent re-keyed a running task because a reader
// left), then opens every envelope strictly in order per (sender, epoch), each epoch under
// the key that opens its first envelope. A new key's first output names the link of the last
// output before it (`after`), so the epochs chain under the agent's signature. The submission must carry a passkey signature of the log; everything the
// agent says must carry the agent's signature by its key in the log. Whatever fails is
// dropped and counted, never glued in: the page then says "Output incomplete".
// codexrelay.e2e.sealed.read_task is the same reader in Python.

import { get, post, ws } from "../api.js";
import { deviceSign, loadKeys, publicKeys } from "../../e2e/keys.js";
import { EnvelopeError, Receiver, unwrapTaskKey } from "../../e2e/envelope.js";
import { verifyAssertion } from "../../e2e/log.js";
import { b64u, deviceMessage, digest, fromB64u, sha256, statementBytes, utf8 } from "../../e2e/statements.js";

const AGENT_KINDS = new Set(["task.out", "task.done", "key.wrap"]);
const OUTPUT_KINDS = new Set(["task.out", "task.done"]);
const TEXT_FIELDS = new Set(["outputTail", "diffText", "finalMessage"]);
const decoder = new TextDecoder("utf-8", { fatal: true });
const SIGN = { c25519: { name: "Ed25519" }, p256: { name: "ECDSA", namedCurve: "P-256" } };

const parseJson = (bytes) => JSON.parse(decoder.decode(bytes));

/** This browser's devices for the workspace (signing and chat devices) and where each
 * stands in the verified log: "live", "revoked" or "absent" (never added). */
export async function myDevices(wid, userId, view) {
  const found = [];
  for (const name of [`device:${wid}:${userId}`, `chat-device:${wid}`]) {
    const keys = await loadKeys(name).catch(() => null);
    if (!keys) continue;
    const entry = view.devices.get(keys.deviceId);
    let status = "absent";
    if (entry && entry.userId === userId) {
      status = entry.revokedSeq === null && view.members.has(userId) ? "live" : "revoked";
    }
    found.push({ keys, status });
  }
  return found;
}

/** "live" if any device of this browser can read, else "revoked" or "absent". */
export function readerStatus(devices) {
  if (devices.some((d) => d.status === "live")) return "live";
  return devices.some((d) => d.status === "revoked") ? "revoked" : "absent";
}

async function wrapsDigest(keys) {
  return b64u(await sha256(utf8(JSON.stringify({ keys: keys.map((w) => ({ to: w.to, enc: w.enc })) }))));
}

/** The agent's verify key from the verified log (null if the log has no such agent). */
async function agentKey(view, agentId) {
  const agent = view.agents.get(agentId);
  if (!agent) return null;
  const publicKey = await crypto.subtle.importKey("raw", fromB64u(agent.sigPub), SIGN[agent.suite], false, ["verify"]);
  return { suite: agent.suite, publicKey };
}

/** The record's `wraps` must name exactly the wraps beside it (or both are absent). */
async function checkWraps(wire, record) {
  const named = record.wraps === undefined ? null : record.wraps;
  if (!wire.keys && named === null) return;
  if (!Array.isArray(wire.keys) || named !== (await wrapsDigest(wire.keys))) throw new EnvelopeError("malformed");
}

function parseWire(text) {
  try {
    const wire = JSON.parse(text);
    return { wire, header: parseJson(fromB64u(wire.hdr)) };
  } catch {
    throw new EnvelopeError("malformed");
  }
}

/** One sealed task as this device reads it: feed it the relay's envelopes in order. */
export class SealedTask {
  constructor({ wid, task, view, devices }) {
    Object.assign(this, { wid, taskId: task.id, agent: task.agentId, view });
    this.devices = devices.filter((d) => d.status === "live");
    this.items = []; // envelope texts as the relay gave them: the submission, then the stream
    this.next = 0; // the stream index expected next
    this.expired = false;
    this.keys = [];
    this.queue = Promise.resolve(); // one open at a time: the receiver counts seqs in order
    this.reset();
  }

  serial(work) {
    const run = this.queue.then(work);
    this.queue = run.catch(() => {});
    return run;
  }

  reset() {
    Object.assign(this, {
      prompt: null, statement: null, signer: null, progress: [], texts: {}, done: null,
      outs: 0, lastLink: null, dropped: [], agentSeen: 0, outEpoch: null, epochs: new Map(),
      tally: { accepted: 0, duplicates: 0, gaps: 0, failed: 0 },
    });
  }

  /** Whether task.done arrived and vouches for exactly the task.out envelopes seen. */
  get complete() {
    return this.done !== null && this.done.count === this.outs
      && (this.outs === 0 || this.done.chainHead === this.lastLink);
  }

  get readable() {
    return this.keys.length > 0;
  }

  get counters() {
    return this.tally;
  }

  /** Fetch the stream from the relay (from `after`) and open what is new. */
  load(options = {}) {
    return this.serial(() => this.fetchFrom(options));
  }

  async fetchFrom({ after = -1 } = {}) {
    const path = ws(this.wid, `/tasks/${encodeURIComponent(this.taskId)}/envelopes?after=${after}`);
    const res = await get(path);
    this.expired = res.expired;
    if (after < 0) {
      this.items = res.submission ? [res.submission] : [];
      this.next = 0;
      this.keys = [];
    }
    const fresh = res.envelopes.filter((e) => e.index >= this.next).sort((a, b) => a.index - b.index);
    for (const { index, envelope } of fresh) {
      this.items.push(envelope);
      this.next = index + 1;
      if (this.readable) await this.take(envelope);
    }
    if (!this.readable) await this.openAll();
  }

  /** A live `envelope` event: in sequence it is opened; after a gap the relay is asked again. */
  add(index, envelope) {
    return this.serial(() => this.addOne(index, envelope));
  }

  async addOne(index, envelope) {
    if (index < this.next) return;
    if (index > this.next) return this.fetchFrom({ after: this.next - 1 });
    this.items.push(envelope);
    this.next = index + 1;
    if (this.readable) await this.take(envelope);
    else await this.openAll();
  }

  /** Every task key wrapped to a device of this browser in these envelope texts, in order. */
  async findKeys(texts) {
    const found = [];
    for (const text of texts) {
      let wire;
      try {
        ({ wire } = parseWire(text));
      } catch {
        continue;
      }
      for (const wrap of Array.isArray(wire.keys) ? wire.keys : []) {
        const device = this.devices.find((d) => d.keys.deviceId === wrap.to);
        if (!device) continue;
        try {
          const key = await unwrapTaskKey(wrap, device.keys.suite, device.keys.kex, { ws: this.wid, task: this.taskId });
          if (key.length === 32 && !found.some((k) => b64u(k) === b64u(key))) found.push(key);
        } catch {
          // Not openable with our key: a wrap the relay swapped. Look further.
        }
      }
    }
    return found;
  }

  async findKey() {
    return (await this.findKeys(this.items))[0] || null;
  }

  async openAll() {
    this.reset();
    this.keys = await this.findKeys(this.items);
    if (!this.keys.length) return;
    this.agentKey = await agentKey(this.view, this.agent);
    for (const text of this.items) await this.take(text);
  }

  /** The receiver of this envelope's (sender, epoch), and the envelope opened by it; an
   * epoch's first envelope picks the key that opens it. */
  async openIn(text, header, senderKey) {
    const id = `${header.from}\0${header.epoch}`;
    const known = this.epochs.get(id);
    if (known) return known.open(utf8(text), senderKey);
    let last = new EnvelopeError("no-key");
    for (const key of this.keys) {
      const receiver = new Receiver({ taskKey: key, ws: this.wid, agent: this.agent, task: this.taskId });
      try {
        const opened = await receiver.open(utf8(text), senderKey);
        this.epochs.set(id, receiver);
        return opened;
      } catch (error) {
        if (!(error instanceof EnvelopeError) || error.reason !== "decrypt-failed") throw error;
        last = error;
      }
    }
    throw last;
  }

  /** An output's epoch: the current one, or a new key's whose `after` is the last output read. */
  follow(header, after) {
    if (header.epoch === this.outEpoch) {
      if (after !== null) throw new EnvelopeError("malformed");
      return;
    }
    if (this.outEpoch !== null && (after === null || after !== this.lastLink)) throw new EnvelopeError("bad-prev");
    this.outEpoch = header.epoch;
  }

  async take(text) {
    try {
      const { wire, header } = parseWire(text);
      const fromAgent = AGENT_KINDS.has(header.kind);
      if (fromAgent && (header.from !== this.agent || !this.agentKey)) throw new EnvelopeError("bad-signature");
      if (!fromAgent && header.kind !== "task.submit") throw new EnvelopeError("malformed");
      if (wire.keys) {
        for (const key of await this.findKeys([text])) {
          if (!this.keys.some((k) => b64u(k) === b64u(key))) this.keys.push(key);
        }
      }
      const opened = await this.openIn(text, header, fromAgent ? this.agentKey : null);
      const record = parseJson(opened.plaintext);
      await checkWraps(wire, record);
      if (OUTPUT_KINDS.has(header.kind)) {
        const after = record.after === undefined ? null : record.after;
        delete record.after;
        this.follow(header, after);
      }
      if (header.kind === "task.submit") await this.submitted(record, header);
      else if (header.kind === "task.out") {
        this.output(record);
        this.outs += 1;
        this.lastLink = opened.link;
      } else if (header.kind === "task.done") {
        const { wraps, ...done } = record;
        this.done = done;
      }
      if (fromAgent) this.agentSeen += 1;
      this.tally.accepted += 1;
    } catch (err) {
      const reason = err instanceof EnvelopeError ? err.reason : "";
      if (reason === "duplicate") this.tally.duplicates += 1;
      else if (reason === "gap") this.tally.gaps += 1;
      else this.tally.failed += 1;
      this.dropped.push(reason || err.message || "malformed");
    }
  }

  async submitted(inner, header) {
    const raw = fromB64u(inner.stmt);
    const body = fromB64u(inner.body);
    const stmt = parseJson(raw);
    if (stmt.kind !== "task" || stmt.ws !== this.wid || stmt.agent !== this.agent || stmt.task !== this.taskId) {
      throw new EnvelopeError("wrong-task");
    }
    if (stmt.device !== header.from || stmt.bodyHash !== (await digest(body))) throw new EnvelopeError("malformed");
    this.signer = await this.passkeySigner(inner.auth, raw);
    this.statement = stmt;
    this.prompt = parseJson(body).prompt || null;
  }

  /** Who signed the statement: a passkey of the verified log, checked here. */
  async passkeySigner(auth, raw) {
    for (const sig of Array.isArray(auth) ? auth : []) {
      const passkey = this.view.passkeys.get(sig.credentialId);
      if (!passkey) continue;
      try {
        await verifyAssertion(sig, { tagName: "task", message: raw, rpId: this.view.rpId, origins: this.view.origins, cose: passkey.cose });
        return passkey.userId;
      } catch {
        // try the next signature
      }
    }
    throw new EnvelopeError("bad-signature");
  }

  output(record) {
    if (record.progress && typeof record.progress === "object") this.progress.push(record.progress);
    else if (record.text && TEXT_FIELDS.has(record.text.field) && typeof record.text.chunk === "string") {
      this.texts[record.text.field] = (this.texts[record.text.field] || "") + record.text.chunk;
    } else throw new EnvelopeError("malformed");
  }

  /** The task's texts in the shape the task page and the device cache use. */
  details() {
    const done = this.done || {};
    return {
      prompt: this.prompt, outputTail: this.texts.outputTail || null, diffText: this.texts.diffText || null,
      finalMessage: this.texts.finalMessage || null, error: done.error || null, exitCode: done.exitCode ?? null,
      diffTruncated: !!done.diffTruncated, codexSessionId: done.codexSessionId || null, progress: this.progress,
      cwd: this.statement ? this.statement.cwd : null, actionId: this.statement ? this.statement.actionId : null,
      logSourceId: this.statement ? this.statement.logSourceId : null,
      resumeSessionId: this.statement ? this.statement.resumeSessionId : null,
    };
  }

  /** A device-signed request for the task key (a device certified after the task). */
  async requestKey() {
    const device = this.devices[0];
    if (!device) throw new Error("No device of this browser is in the workspace's signed log.");
    const { kexPub } = await publicKeys(device.keys);
    const raw = statementBytes({
      v: 1, kind: "key.req", ws: this.wid, agent: this.agent, task: this.taskId,
      device: device.keys.deviceId, kexPub, issuedAt: Math.floor(Date.now() / 1000),
    });
    const sig = b64u(await deviceSign(device.keys, deviceMessage("key.req", raw)));
    return post(ws(this.wid, `/tasks/${encodeURIComponent(this.taskId)}/key-requests`), { stmt: b64u(raw), sig });
  }
}

/**
 * An agent's sealed session catalog (TRUST.md §4.7), opened like a task's stream: the
 * sessions, or null when nothing in it is wrapped to a device of this browser. Throws an
 * EnvelopeError when it is not this agent's, not signed by its key in the log, or altered.
 */
export async function openCatalog(envelope, { wid, agentId, view, devices }) {
  const { wire, header } = parseWire(envelope);
  if (header.kind !== "catalog" || header.from !== agentId || header.agent !== agentId || header.ws !== wid) {
    throw new EnvelopeError("wrong-task");
  }
  const reader = new SealedTask({ wid, task: { id: header.task, agentId }, view, devices });
  reader.items = [envelope];
  const key = await reader.findKey();
  if (!key) return null;
  const signer = await agentKey(view, agentId);
  if (!signer) throw new EnvelopeError("bad-signature");
  const receiver = new Receiver({ taskKey: key, ws: wid, agent: agentId, task: header.task });
  const opened = await receiver.open(utf8(envelope), signer);
  const record = parseJson(opened.plaintext);
  await checkWraps(wire, record);
  if (!Array.isArray(record.sessions)) throw new EnvelopeError("malformed");
  return record.sessions;
}
