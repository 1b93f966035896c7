// Exact-bytes statements and domain tags (TRUST.md §4, §5). A statement is the UTF-8 JSON the
// signer makes once; it travels as base64url of those bytes and is never re-serialised. The
// WebAuthn challenge is SHA-256(tag(kind) || bytes), computed here, never taken from a relay.

const encoder = new TextEncoder();

export const TAG_NAMES = Object.freeze([
  "login", "task", "turn", "decision", "log", "enroll", "devcert", "cancel", "interrupt",
  "keyreq", "loghash", "invite", "pair", "pair-claim", "pair-grant", "taskkey", "k", "salt", "msg",
  "msghash", "safety", "audit", "audithash", "logack",
]);

/** `codexrelay/v1/<name>` + NUL, as bytes. */
export function tag(name) {
  if (!TAG_NAMES.includes(name)) throw new Error(`unknown domain tag ${name}`);
  return encoder.encode(`codexrelay/v1/${name}\0`);
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function utf8(text) {
  return encoder.encode(text);
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** SHA-256(tag(name) || data). */
export async function taggedHash(name, data) {
  return sha256(concat(tag(name), data));
}

export function b64u(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const SEXTET = new Uint8Array(128);
for (let i = 0; i < ALPHABET.length; i += 1) SEXTET[ALPHABET.charCodeAt(i)] = i;

/**
 * Strict inverse of b64u: canonical unpadded base64url only (the alphabet, no length of
 * 4n+1, and zero unused bits in the last character, so one byte string has one text).
 * A table walk rather than atob: a sealed task's envelopes are megabytes of it.
 */
export function fromB64u(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new Error("not base64url");
  }
  const rest = text.length % 4;
  const last = rest ? SEXTET[text.charCodeAt(text.length - 1)] : 0;
  if ((rest === 2 && last & 15) || (rest === 3 && last & 3)) throw new Error("not canonical base64url");
  const at = (i) => SEXTET[text.charCodeAt(i)];
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  const full = text.length - rest;
  let o = 0;
  for (let i = 0; i < full; i += 4) {
    const n = (at(i) << 18) | (at(i + 1) << 12) | (at(i + 2) << 6) | at(i + 3);
    out[o] = n >> 16;
    out[o + 1] = (n >> 8) & 255;
    out[o + 2] = n & 255;
    o += 3;
  }
  if (rest) {
    const n = (at(full) << 18) | (at(full + 1) << 12) | (rest === 3 ? at(full + 2) << 6 : 0);
    out[o] = n >> 16;
    if (rest === 3) out[o + 1] = (n >> 8) & 255;
  }
  return out;
}

/** b64u(SHA-256(data)): how bodyHash, inputHash and reqHash commit to content. */
export async function digest(data) {
  return b64u(await sha256(data));
}

/** The exact bytes of a statement object this device signs (made once, kept as bytes). */
export function statementBytes(statement) {
  return utf8(JSON.stringify(statement));
}

/** Which tag signs a statement of each kind (codexrelay.e2e.statements.TAG_OF_KIND). */
export const TAG_OF_KIND = Object.freeze({
  task: "task", turn: "turn", decision: "decision", cancel: "cancel", interrupt: "interrupt",
  devcert: "devcert", "key.req": "keyreq",
});
const PASSKEY_SIGNED = new Set(["task", "turn", "decision", "devcert"]);
const DEVICE_SIGNED = new Set(["cancel", "interrupt", "key.req"]);

/** The challenge a passkey signs for a statement of `kind`: H(tag(kind) || bytes). */
export async function challengeFor(kind, bytes) {
  if (!PASSKEY_SIGNED.has(kind)) throw new Error(`${kind} statements are not passkey-signed`);
  return taggedHash(TAG_OF_KIND[kind], bytes);
}

/** What a device key signs for a statement of `kind`: tag(kind) || bytes (it can only ask
 * for a key or stop work, so no passkey touch is needed). */
export function deviceMessage(kind, bytes) {
  if (!DEVICE_SIGNED.has(kind)) throw new Error(`${kind} statements are not device-signed`);
  return concat(tag(TAG_OF_KIND[kind]), bytes);
}
