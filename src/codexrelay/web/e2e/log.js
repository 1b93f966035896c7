// The membership log as the phone verifies it (TRUST.md §4.1, §4.11): chain links, the role
// rules, and every passkey signature checked with WebCrypto against the keys the log held
// before the entry. The relay's member list is only a cache; screens show this view.

import { b64u, concat, fromB64u, sha256, tag, taggedHash, utf8 } from "./statements.js";

const RANK = { viewer: 0, member: 1, admin: 2, owner: 3 };
const SELF_OPS = new Set(["member.remove", "passkey.add", "passkey.revoke", "device.add", "device.revoke"]);
const PERSON_OPS = new Set(["member.add", "member.remove", "member.role", "passkey.add", "passkey.revoke", "device.add", "device.revoke"]);
const decoder = new TextDecoder("utf-8", { fatal: true });

export class LogError extends Error {
  constructor(seq, reason) {
    super(`entry #${seq}: ${reason}`);
    this.seq = seq;
    this.reason = reason;
  }
}

export const atLeast = (role, minimum) => RANK[role] >= RANK[minimum];

function manages(signer, target) {
  return atLeast(signer, RANK[target] >= RANK.admin ? "owner" : "admin");
}

/** logrules.may_sign, line for line. */
export function maySign(op, signer, target = null, { own = false, newRole = null } = {}) {
  if (op === "policy.set" || op === "checkpoint") return signer === "owner";
  if (op === "agent.add" || op === "agent.revoke") return atLeast(signer, "admin");
  if (!PERSON_OPS.has(op) || target === null) return false;
  if (op === "device.add" || (own && SELF_OPS.has(op))) return own;
  if (op === "member.role") return newRole !== null && manages(signer, target) && manages(signer, newRole);
  return manages(signer, target);
}

/** `b64u(H(tag(loghash) ‖ bytes))`: the link the next entry's `prev` names. */
export async function chainHash(bytes) {
  return b64u(await taggedHash("loghash", bytes));
}

// ---- COSE keys and assertions (ES256, what platform passkeys make) ----

/** A small CBOR reader for COSE keys: unsigned and negative ints, byte strings, maps. */
function readCbor(bytes, at = 0) {
  const head = bytes[at];
  const major = head >> 5;
  let info = head & 31;
  let next = at + 1;
  if (info === 24) [info, next] = [bytes[next], next + 1];
  else if (info === 25) [info, next] = [(bytes[next] << 8) | bytes[next + 1], next + 2];
  else if (info > 25) throw new Error("unsupported CBOR length");
  if (major === 0) return [info, next];
  if (major === 1) return [-1 - info, next];
  if (major === 2) return [bytes.slice(next, next + info), next + info];
  if (major !== 5) throw new Error("unsupported CBOR type");
  const map = new Map();
  for (let i = 0; i < info; i += 1) {
    const [key, afterKey] = readCbor(bytes, next);
    const [value, afterValue] = readCbor(bytes, afterKey);
    map.set(key, value);
    next = afterValue;
  }
  return [map, next];
}

/** The first CBOR item of `bytes` (a COSE key without the extensions that may follow it). */
export function firstCborItem(bytes) {
  return bytes.slice(0, readCbor(bytes)[1]);
}

/**
 * A verify key from a COSE_Key: ES256 (P-256), EdDSA (Ed25519) or RS256, the algorithms
 * py_webauthn accepts. Returns `{key, algorithm, der}` (`der`: the signature is DER ECDSA).
 */
export async function coseKey(coseBytes) {
  const [map] = readCbor(coseBytes);
  if (!(map instanceof Map)) throw new Error("unsupported-key");
  const [kty, alg] = [map.get(1), map.get(3)];
  if (kty === 2 && alg === -7 && map.get(-1) === 1) {
    const raw = concat(new Uint8Array([4]), map.get(-2), map.get(-3));
    const key = await crypto.subtle.importKey("raw", raw, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    return { key, algorithm: { name: "ECDSA", hash: "SHA-256" }, der: true };
  }
  if (kty === 1 && alg === -8 && map.get(-1) === 6) {
    const key = await crypto.subtle.importKey("raw", map.get(-2), { name: "Ed25519" }, false, ["verify"]);
    return { key, algorithm: { name: "Ed25519" }, der: false };
  }
  if (kty === 3 && alg === -257) {
    const jwk = { kty: "RSA", n: b64u(map.get(-1)), e: b64u(map.get(-2)), alg: "RS256", ext: true };
    const algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    return { key: await crypto.subtle.importKey("jwk", jwk, algorithm, false, ["verify"]), algorithm, der: false };
  }
  throw new Error("unsupported-key");
}

/** DER ECDSA signature to the 64-byte r‖s WebCrypto verifies. */
function derToRaw(der) {
  const out = new Uint8Array(64);
  let at = 2;
  for (let i = 0; i < 2; i += 1) {
    if (der[at] !== 2) throw new Error("bad-signature");
    const len = der[at + 1];
    let int = der.slice(at + 2, at + 2 + len);
    while (int.length > 32 && int[0] === 0) int = int.slice(1);
    out.set(int, 32 * i + (32 - int.length));
    at += 2 + len;
  }
  return out;
}

/**
 * The §4 preamble on the phone: the challenge is H(tag ‖ message), the origin one of the
 * log's, no cross-origin, the rp id hash, user presence and verification, then the signature.
 */
export async function verifyAssertion(sig, { tagName, message, rpId, origins, cose }) {
  const response = sig.assertion && sig.assertion.response;
  if (!response || sig.assertion.id !== sig.credentialId) throw new Error("credential-mismatch");
  const clientBytes = fromB64u(response.clientDataJSON);
  const client = JSON.parse(decoder.decode(clientBytes));
  if (client.type !== "webauthn.get") throw new Error("wrong-ceremony");
  if (client.challenge !== b64u(await taggedHash(tagName, message))) throw new Error("challenge-mismatch");
  if (!origins.includes(client.origin)) throw new Error("origin-mismatch");
  if (client.crossOrigin || "topOrigin" in client) throw new Error("cross-origin");
  const authData = fromB64u(response.authenticatorData);
  if (b64u(authData.slice(0, 32)) !== b64u(await sha256(utf8(rpId)))) throw new Error("rp-id-mismatch");
  if (!(authData[32] & 0x01)) throw new Error("user-not-present");
  if (!(authData[32] & 0x04)) throw new Error("user-not-verified");
  const { key, algorithm, der } = await coseKey(fromB64u(cose));
  const signed = concat(authData, await sha256(clientBytes));
  const signature = fromB64u(response.signature);
  const ok = await crypto.subtle.verify(algorithm, key, der ? derToRaw(signature) : signature, signed);
  if (!ok) throw new Error("bad-signature");
}

// ---- the view ----

function emptyView(genesis, hash) {
  const view = {
    ws: genesis.ws, name: genesis.name, rpId: genesis.rpId, origins: genesis.origins,
    genesisHash: hash, policy: genesis.policy, members: new Map(), passkeys: new Map(),
    devices: new Map(), agents: new Map(), history: [], head: { seq: 0, hash },
  };
  const owner = genesis.owner;
  view.members.set(owner.userId, { userId: owner.userId, name: owner.name, role: "owner", sinceSeq: 0 });
  for (const p of owner.passkeys) view.passkeys.set(p.credId, { credId: p.credId, cose: p.cose, userId: owner.userId, addedSeq: 0, revokedSeq: null });
  for (const d of genesis.devices) view.devices.set(d.deviceId, { ...d, userId: owner.userId, addedSeq: 0, revokedSeq: null });
  return view;
}

function addKeys(view, userId, passkeys, devices, seq) {
  for (const p of passkeys) view.passkeys.set(p.credId, { credId: p.credId, cose: p.cose, userId, addedSeq: seq, revokedSeq: null });
  for (const d of devices) view.devices.set(d.deviceId, { ...d, userId, addedSeq: seq, revokedSeq: null });
}

function revokeAll(view, userId, seq) {
  for (const item of [...view.passkeys.values(), ...view.devices.values()]) {
    if (item.userId === userId && item.revokedSeq === null) item.revokedSeq = seq;
  }
}

const APPLY = {
  "member.add": (v, b, seq) => {
    v.members.set(b.userId, { userId: b.userId, name: b.name, role: b.role, sinceSeq: seq });
    addKeys(v, b.userId, b.passkeys, b.devices, seq);
  },
  "member.remove": (v, b, seq) => { v.members.delete(b.userId); revokeAll(v, b.userId, seq); },
  "member.role": (v, b) => { v.members.get(b.userId).role = b.role; },
  "passkey.add": (v, b, seq) => addKeys(v, b.userId, [b], [], seq),
  "passkey.revoke": (v, b, seq) => { const p = v.passkeys.get(b.credId); if (p) p.revokedSeq = seq; },
  "device.add": (v, b, seq) => addKeys(v, b.userId, [], [b], seq),
  "device.revoke": (v, b, seq) => { const d = v.devices.get(b.deviceId); if (d) d.revokedSeq = seq; },
  "agent.add": (v, b, seq) => v.agents.set(b.agentId, { ...b, addedSeq: seq, revokedSeq: null }),
  "agent.revoke": (v, b, seq) => { const a = v.agents.get(b.agentId); if (a) a.revokedSeq = seq; },
  "agent.rotate": (v, b) => Object.assign(v.agents.get(b.agentId), { sigPub: b.sigPub, kexPub: b.kexPub, suite: b.suite }),
  "policy.set": (v, b) => { v.policy = b.policy; },
  checkpoint: () => {},
};

function parseBytes(bytes, seq) {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch {
    throw new LogError(seq, "malformed");
  }
}

async function signersOf(view, posted, raw, seq) {
  const signers = [];
  for (const sig of posted.sigs) {
    const passkey = view.passkeys.get(sig.credentialId);
    if (!passkey) throw new LogError(seq, "unknown-signer");
    if (passkey.revokedSeq !== null) throw new LogError(seq, "revoked-signer");
    if (!view.members.has(passkey.userId)) throw new LogError(seq, "former-member");
    try {
      await verifyAssertion(sig, { tagName: "log", message: raw, rpId: view.rpId, origins: view.origins, cose: passkey.cose });
    } catch (err) {
      throw new LogError(seq, `bad-signature (${err.message})`);
    }
    signers.push(passkey.userId);
  }
  return signers;
}

function allowed(view, op, body, signer) {
  const role = view.members.get(signer).role;
  if (!body.userId) return maySign(op, role);
  if (op === "member.add") return maySign(op, role, body.role);
  const target = view.members.get(body.userId);
  if (!target) return false;
  return maySign(op, role, target.role, { own: body.userId === signer, newRole: op === "member.role" ? body.role : null });
}

async function verifyAgentRotate(view, posted, raw, body, seq) {
  const agent = view.agents.get(body.agentId);
  const sig = posted.sigs[0];
  if (!agent || agent.revokedSeq !== null || posted.sigs.length !== 1 || sig.agentKey !== body.agentId) {
    throw new LogError(seq, "not-allowed");
  }
  const key = await crypto.subtle.importKey("raw", fromB64u(agent.sigPub), { name: "Ed25519" }, false, ["verify"]);
  if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, fromB64u(sig.sig), concat(tag("log"), raw)))) {
    throw new LogError(seq, "bad-signature");
  }
  return [`agent:${body.agentId}`];
}

async function applyEntry(view, posted) {
  const seq = view.head.seq + 1;
  const raw = fromB64u(posted.entry);
  const entry = parseBytes(raw, seq);
  if (entry.ws !== view.ws) throw new LogError(seq, "wrong-workspace");
  if (entry.seq !== seq) throw new LogError(seq, "bad-seq");
  if (entry.prev !== view.head.hash) throw new LogError(seq, "bad-prev");
  if (!APPLY[entry.op] || typeof entry.body !== "object") throw new LogError(seq, "malformed");
  const body = entry.body;
  let signers;
  if (entry.op === "agent.rotate") signers = await verifyAgentRotate(view, posted, raw, body, seq);
  else {
    if (body.userId && entry.op !== "member.add" && !view.members.has(body.userId)) throw new LogError(seq, "invalid-target");
    signers = await signersOf(view, posted, raw, seq);
    if (!signers.some((u) => allowed(view, entry.op, body, u))) throw new LogError(seq, "not-allowed");
  }
  APPLY[entry.op](view, body, seq);
  const hash = await chainHash(raw);
  view.history.push({ seq, op: entry.op, body, signers, issuedAt: entry.issuedAt, hash });
  view.head = { seq, hash };
}

/**
 * Verify a whole log (the relay's `entries`, genesis first). `pinned` is the genesis hash
 * this device trusts (kept since it first verified this workspace); a different one throws.
 */
export async function verifyLog(entries, { pinned = null } = {}) {
  if (!entries.length) throw new LogError(0, "empty");
  const raw = fromB64u(entries[0].entry);
  const genesis = parseBytes(raw, 0);
  if (genesis.op !== "genesis") throw new LogError(0, "not-genesis");
  const hash = await chainHash(raw);
  if (pinned && pinned !== hash) throw new LogError(0, "genesis-mismatch");
  const view = emptyView(genesis, hash);
  const signers = await signersOf(view, entries[0], raw, 0);
  if (!signers.every((u) => u === genesis.owner.userId)) throw new LogError(0, "not-allowed");
  view.history.push({ seq: 0, op: "genesis", body: {}, signers, issuedAt: genesis.createdAt, hash });
  for (const posted of entries.slice(1)) await applyEntry(view, posted);
  return view;
}
