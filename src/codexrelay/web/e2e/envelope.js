// Sealed envelopes (TRUST.md §5), the browser half of codexrelay.e2e.envelope: HPKE-wrapped
// task keys (vendored @hpke/core), per-sender HKDF keys, AES-256-GCM with counter nonces and
// the exact header bytes as AAD, sender signatures over tag(msg) || hdr || ct, padding, and a
// receiver that accepts each (sender, epoch) stream strictly in order.

import {
  Aes256Gcm,
  CipherSuite,
  DhkemP256HkdfSha256,
  DhkemX25519HkdfSha256,
  HkdfSha256,
} from "./vendor/hpke-core/mod.js";
import { b64u, concat, fromB64u, sha256, tag, utf8 } from "./statements.js";

const FIRST_PREV = b64u(new Uint8Array(32));

export function hpkeSuite(suite) {
  const kem = suite === "c25519" ? new DhkemX25519HkdfSha256() : new DhkemP256HkdfSha256();
  return new CipherSuite({ kem, kdf: new HkdfSha256(), aead: new Aes256Gcm() });
}

export function taskkeyInfo(ws, task, recipientKeyId) {
  return concat(tag("taskkey"), utf8(ws), new Uint8Array([0]), utf8(task), new Uint8Array([0]), utf8(recipientKeyId));
}

/** Wrap K_t to a recipient's kex public key (CryptoKey): {to, enc: b64u(enc || ct)}. */
export async function wrapTaskKey(taskKey, suite, recipientPublicKey, { ws, task, recipientKeyId }) {
  const sealed = await hpkeSuite(suite).seal(
    { recipientPublicKey, info: taskkeyInfo(ws, task, recipientKeyId) },
    taskKey,
  );
  return { to: recipientKeyId, enc: b64u(concat(new Uint8Array(sealed.enc), new Uint8Array(sealed.ct))) };
}

/** Open K_t with our kex key pair ({privateKey, publicKey}; non-extractable works). */
export async function unwrapTaskKey(wrap, suite, recipientKey, { ws, task }) {
  const hpke = hpkeSuite(suite);
  const blob = fromB64u(wrap.enc);
  const encLength = suite === "c25519" ? 32 : 65;
  const key = await hpke.open(
    { recipientKey, enc: blob.slice(0, encLength), info: taskkeyInfo(ws, task, wrap.to) },
    blob.slice(encLength),
  );
  return new Uint8Array(key);
}

export async function senderKey(taskKey, { ws, task, sender, epoch }) {
  const ikm = await crypto.subtle.importKey("raw", taskKey, "HKDF", false, ["deriveKey"]);
  const salt = await sha256(concat(tag("salt"), utf8(ws), new Uint8Array([0]), utf8(task)));
  const info = concat(tag("k"), utf8(sender), new Uint8Array([0]), epoch);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt, info },
    ikm,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

export function nonce(seq) {
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setBigUint64(4, BigInt(seq));
  return iv;
}

export function paddedSize(length) {
  const n = length + 1;
  const step = n <= 16384 ? 1024 : 16384;
  return Math.ceil(n / step) * step;
}

export function pad(data) {
  const out = new Uint8Array(paddedSize(data.length));
  out.set(data);
  out[data.length] = 0x80;
  return out;
}

export function unpad(padded) {
  let end = padded.length;
  while (end > 0 && padded[end - 1] === 0) end -= 1;
  if (end === 0 || padded[end - 1] !== 0x80 || paddedSize(end - 1) !== padded.length) {
    throw new EnvelopeError("bad-padding");
  }
  return padded.slice(0, end - 1);
}

export class EnvelopeError extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

async function chainLink(hdr, ct) {
  return b64u(await sha256(concat(tag("msghash"), hdr, ct)));
}

const SIGN_ALGORITHMS = { c25519: { name: "Ed25519" }, p256: { name: "ECDSA", hash: "SHA-256" } };

/** One sender's stream for one task. `signer` is {suite, privateKey} or null. */
export class Sealer {
  constructor({ taskKey, ws, agent, task, sender, signer = null, epoch = null }) {
    Object.assign(this, { taskKey, ws, agent, task, sender, signer });
    this.epoch = epoch || crypto.getRandomValues(new Uint8Array(8));
    this.seq = 0;
    this.prev = FIRST_PREV;
  }

  async seal(kind, plaintext, wraps = []) {
    this.key ??= await senderKey(this.taskKey, this);
    const padded = pad(plaintext);
    const header = {
      v: 1, kind, ws: this.ws, agent: this.agent, task: this.task, from: this.sender,
      epoch: b64u(this.epoch), seq: this.seq, prev: this.prev, pad: padded.length,
    };
    const hdr = utf8(JSON.stringify(header));
    const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce(this.seq), additionalData: hdr }, this.key, padded));
    const wire = { v: 1, hdr: b64u(hdr) };
    if (wraps.length) wire.keys = wraps;
    wire.ct = b64u(ct);
    if (this.signer) {
      const sig = await crypto.subtle.sign(SIGN_ALGORITHMS[this.signer.suite], this.signer.privateKey, concat(tag("msg"), hdr, ct));
      wire.sig = b64u(new Uint8Array(sig));
    }
    this.seq += 1;
    this.prev = await chainLink(hdr, ct);
    return utf8(JSON.stringify(wire));
  }
}

/** Accepts one task's envelopes, each (sender, epoch) strictly in order (§5 receiver rules). */
export class Receiver {
  constructor({ taskKey, ws, agent, task }) {
    Object.assign(this, { taskKey, ws, agent, task });
    this.counters = { accepted: 0, duplicates: 0, gaps: 0, failed: 0 };
    this.streams = new Map();
  }

  /** `senderKey` is {suite, publicKey} (a signature is then required) or null. */
  async open(bytes, senderKeyInfo) {
    try {
      const opened = await this.#open(bytes, senderKeyInfo);
      this.counters.accepted += 1;
      return opened;
    } catch (error) {
      const reason = error instanceof EnvelopeError ? error.reason : "malformed";
      if (reason === "duplicate") this.counters.duplicates += 1;
      else if (reason === "gap") this.counters.gaps += 1;
      else this.counters.failed += 1;
      throw error instanceof EnvelopeError ? error : new EnvelopeError(reason);
    }
  }

  async #open(bytes, senderKeyInfo) {
    const wire = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    const hdr = fromB64u(wire.hdr);
    const ct = fromB64u(wire.ct);
    const header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(hdr));
    if (wire.v !== 1 || header.v !== 1 || ct.length !== header.pad + 16) throw new EnvelopeError("malformed");
    if (header.ws !== this.ws || header.agent !== this.agent || header.task !== this.task) {
      throw new EnvelopeError("wrong-task");
    }
    if (senderKeyInfo) {
      if (!wire.sig) throw new EnvelopeError("missing-signature");
      const ok = await crypto.subtle.verify(SIGN_ALGORITHMS[senderKeyInfo.suite], senderKeyInfo.publicKey, fromB64u(wire.sig), concat(tag("msg"), hdr, ct));
      if (!ok) throw new EnvelopeError("bad-signature");
    }
    const id = `${header.from}\0${header.epoch}`;
    const stream = this.streams.get(id) || { next: 0, prev: FIRST_PREV, key: null };
    if (header.seq < stream.next) throw new EnvelopeError("duplicate");
    if (header.seq > stream.next) throw new EnvelopeError("gap");
    if (header.prev !== stream.prev) throw new EnvelopeError("bad-prev");
    stream.key ??= await senderKey(this.taskKey, { ws: this.ws, task: this.task, sender: header.from, epoch: fromB64u(header.epoch) });
    let padded;
    try {
      padded = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: nonce(header.seq), additionalData: hdr }, stream.key, ct));
    } catch {
      throw new EnvelopeError("decrypt-failed");
    }
    const plaintext = unpad(padded);
    stream.next = header.seq + 1;
    stream.prev = await chainLink(hdr, ct);
    this.streams.set(id, stream);
    return { header, plaintext, link: stream.prev };
  }
}
