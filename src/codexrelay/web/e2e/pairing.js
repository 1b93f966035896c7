// Pairing secrets and MACs (TRUST.md §4.2). The phone adds an 80-bit secret s to the relay's
// code; K_pair = HKDF-SHA256(s, salt=H(code), info=tag(pair)) is a non-extractable HMAC key
// that checks the agent's claim MAC and makes the grant MAC. The relay never sees s.

import { b64u, concat, fromB64u, sha256, tag, utf8 } from "./statements.js";

export const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

export function newSecret() {
  return crypto.getRandomValues(new Uint8Array(10));
}

/** KQ7M-R2XD-9TPF-WC3H: 80 bits in 16 Crockford base32 characters. */
export function formatSecret(secret) {
  if (secret.length !== 10) throw new Error("a pairing secret is 80 bits");
  let number = 0n;
  for (const byte of secret) number = (number << 8n) | BigInt(byte);
  let text = "";
  for (let i = 15; i >= 0; i -= 1) text += ALPHABET[Number((number >> BigInt(5 * i)) & 31n)];
  return text.match(/.{4}/g).join("-");
}

export function parseSecret(text) {
  const cleaned = text.toUpperCase().replace(/[- ]/g, "").replace(/O/g, "0").replace(/[IL]/g, "1");
  if (cleaned.length !== 16 || [...cleaned].some((c) => !ALPHABET.includes(c))) {
    throw new Error("the secret is 16 characters of Crockford base32");
  }
  let number = 0n;
  for (const c of cleaned) number = (number << 5n) | BigInt(ALPHABET.indexOf(c));
  const out = new Uint8Array(10);
  for (let i = 9; i >= 0; i -= 1) {
    out[i] = Number(number & 255n);
    number >>= 8n;
  }
  return out;
}

/** K_pair as an HMAC-SHA256 CryptoKey that cannot be exported. */
export async function pairingKey(secret, code) {
  const ikm = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: await sha256(utf8(code)), info: tag("pair") },
    ikm,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    ["sign", "verify"],
  );
}

async function mac(key, tagName, bytes) {
  return b64u(new Uint8Array(await crypto.subtle.sign("HMAC", key, concat(tag(tagName), bytes))));
}

export const claimMac = (key, claimBytes) => mac(key, "pair-claim", claimBytes);
export const grantMac = (key, grantBytes) => mac(key, "pair-grant", grantBytes);

/** Constant-time check of the agent's claim MAC (green badge) via WebCrypto's verify. */
export async function verifyClaim(key, claimBytes, macText) {
  let given;
  try {
    given = fromB64u(macText);
  } catch {
    return false;
  }
  return crypto.subtle.verify("HMAC", key, given, concat(tag("pair-claim"), claimBytes));
}
