// Device keys (TRUST.md §3): non-extractable WebCrypto keys kept in IndexedDB. Ed25519 for
// signatures and X25519 for key agreement where the browser has them ("c25519"), else ECDSA
// and ECDH on P-256 ("p256"). Public keys travel as base64url of exportKey("raw").

import { b64u } from "./statements.js";

const DB = "codexrelay-e2e";
const STORE = "keys";

async function generate(suite) {
  if (suite === "c25519") {
    const sig = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const kex = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    return { suite, sig, kex };
  }
  const sig = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  const kex = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  return { suite, sig, kex };
}

/** New device keys: Curve25519 if this browser can, P-256 otherwise (or if forced). */
export async function generateDeviceKeys(forceSuite) {
  if (forceSuite) return generate(forceSuite);
  try {
    return await generate("c25519");
  } catch {
    return generate("p256");
  }
}

export async function publicKeys(device) {
  const raw = async (key) => b64u(new Uint8Array(await crypto.subtle.exportKey("raw", key)));
  return { suite: device.suite, sigPub: await raw(device.sig.publicKey), kexPub: await raw(device.kex.publicKey) };
}

/** Sign with the device key: Ed25519, or ECDSA P-256/SHA-256 (64-byte r||s). */
export async function deviceSign(device, message) {
  const algorithm = device.suite === "c25519" ? { name: "Ed25519" } : { name: "ECDSA", hash: "SHA-256" };
  return new Uint8Array(await crypto.subtle.sign(algorithm, device.sig.privateKey, message));
}

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, action) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** Keep the CryptoKeys (still non-extractable) under `name`, e.g. "device:<workspace>". */
export const saveKeys = (name, device) => run("readwrite", (store) => store.put(device, name));
export const loadKeys = (name) => run("readonly", (store) => store.get(name));
export const deleteKeys = (name) => run("readwrite", (store) => store.delete(name));
