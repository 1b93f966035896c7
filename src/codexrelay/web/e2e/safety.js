// Safety numbers (TRUST.md §7): libsignal's iterated SHA-512 fingerprint over
// stableId = tag(safety) || genesisHash || id and the raw signing key, shown as 12 groups of
// five digits. The agent CLI and offline verifiers compute the same digits (codexrelay.e2e.safety).

import { concat, tag, utf8 } from "./statements.js";

export const ITERATIONS = 5200;

async function sha512(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-512", bytes));
}

/** libsignal's Fingerprint::get_fingerprint. */
export async function signalFingerprint(stableId, key, iterations = ITERATIONS) {
  let digest = await sha512(concat(new Uint8Array([0, 0]), key, stableId, key));
  for (let i = 1; i < iterations; i += 1) digest = await sha512(concat(digest, key));
  return digest;
}

export function chunks(digest, groups) {
  const out = [];
  for (let i = 0; i < groups; i += 1) {
    let value = 0;
    for (let j = 0; j < 5; j += 1) value = value * 256 + digest[i * 5 + j];
    out.push(String(value % 100000).padStart(5, "0"));
  }
  return out;
}

/** Twelve 5-digit groups for an agent or device key within one workspace. */
export async function safetyNumber(genesisHash, id, sigPub) {
  if (genesisHash.length !== 32) throw new Error("the genesis hash is 32 bytes");
  const stableId = concat(tag("safety"), genesisHash, utf8(id));
  return chunks(await signalFingerprint(stableId, sigPub), 12);
}
