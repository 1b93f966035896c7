// Task details cached on this device (R11), encrypted per user and per device (B5).
//
// Two keys, both non-extractable WebCrypto keys: the user's key comes from the relay
// (GET /api/v1/me/cache-key, signed-in users only) and is held in memory only, so one user's
// records are unreadable to another user of the same browser and to anyone holding the phone
// without a session; the device key is made here and never leaves this browser (IndexedDB),
// so the relay's key alone opens nothing, decrypted sealed content included. A record is
// AES-GCM under the device key inside AES-GCM under the user's key, the record name as AAD
// of both. Record names are an HMAC of the task id under the user's key, so another user
// cannot even find which tasks are cached. "Clear data on this device" destroys it all (I6),
// and a device the signed log revoked deletes its records.

import { get } from "./api.js";
import { toB64url, toBytes } from "./passkey.js";

const DB_NAME = "codexrelay-device";
const STORE = "details";
const MAX_RECORDS = 300;
const enc = new TextEncoder();
const dec = new TextDecoder();

const DEVICE_STORE = "device";

let keys = null; // { userId, aes, index, device }
let dbPromise = null;

/** Derive the AES-GCM and index keys from the relay's 32 bytes (non-extractable). */
export async function deriveKeys(rawBytes) {
  const base = await crypto.subtle.importKey("raw", rawBytes, "HKDF", false, ["deriveKey"]);
  const params = (info) => ({ name: "HKDF", hash: "SHA-256", salt: enc.encode("codexrelay/device-cache"), info: enc.encode(info) });
  const aes = await crypto.subtle.deriveKey(
    params("codexrelay/device-cache/aes-gcm/v1"), base, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"],
  );
  const index = await crypto.subtle.deriveKey(
    params("codexrelay/device-cache/index/v1"), base, { name: "HMAC", hash: "SHA-256", length: 256 }, false, ["sign"],
  );
  return { aes, index };
}

/** Fetch this user's key from the relay and hold it in memory. */
export async function unlock(userId) {
  if (keys && keys.userId === userId) return;
  keys = null;
  const { key } = await get("/api/v1/me/cache-key");
  const raw = toBytes(key);
  const derived = await deriveKeys(raw);
  raw.fill(0);
  keys = { userId, ...derived, device: await deviceKey(userId) };
}

/** Forget the key (sign-out): the records stay, unreadable without a session. */
export function lock() {
  keys = null;
}

export function isUnlocked() {
  return keys !== null;
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function openDb() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, 2);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains(STORE)) {
          db.createObjectStore(STORE, { keyPath: "k" }).createIndex("t", "t");
        }
        if (!db.objectStoreNames.contains(DEVICE_STORE)) db.createObjectStore(DEVICE_STORE);
      };
      req.onsuccess = () => {
        const db = req.result;
        db.onversionchange = () => {
          db.close();
          dbPromise = null;
        };
        resolve(db);
      };
      req.onerror = () => {
        dbPromise = null;
        reject(req.error);
      };
    });
  }
  return dbPromise;
}

async function recordName(index, taskId) {
  return toB64url(await crypto.subtle.sign("HMAC", index, enc.encode(`task:${taskId}`)));
}

/** This device's own key for `userId`'s records: made once, never exported. */
export async function deviceKey(userId) {
  const db = await openDb();
  const name = `user:${userId}`;
  const found = await request(db.transaction(DEVICE_STORE).objectStore(DEVICE_STORE).get(name));
  if (found) return found;
  const made = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
  const tx = db.transaction(DEVICE_STORE, "readwrite");
  const store = tx.objectStore(DEVICE_STORE);
  // Another tab may have made one meanwhile: the first one stored wins everywhere.
  const again = await request(store.get(name));
  if (again) return again;
  store.put(made, name);
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
  return made;
}

/** Decrypt one stored record with `derived` keys ({aes, device}); null when they are not
 * the owner's on this device (records from before the device layer read as absent). */
export async function decryptRecord(derived, record) {
  try {
    const aad = enc.encode(record.k);
    const inner = await crypto.subtle.decrypt({ name: "AES-GCM", iv: record.iv, additionalData: aad }, derived.aes, record.ct);
    if (!record.iv2 || !derived.device) return null;
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: record.iv2, additionalData: aad }, derived.device, inner);
    return JSON.parse(dec.decode(plain));
  } catch {
    return null;
  }
}

/** Save a task's details for the signed-in user (no-op while locked). */
export async function saveTask(task) {
  if (!keys) return;
  const { aes, index, device } = keys;
  const k = await recordName(index, task.id);
  const aad = enc.encode(k);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const iv2 = crypto.getRandomValues(new Uint8Array(12));
  const body = enc.encode(JSON.stringify({ task, savedAt: new Date().toISOString() }));
  const inner = await crypto.subtle.encrypt({ name: "AES-GCM", iv: iv2, additionalData: aad }, device, body);
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad }, aes, inner);
  const db = await openDb();
  const tx = db.transaction(STORE, "readwrite");
  tx.objectStore(STORE).put({ k, iv, iv2, ct, t: Date.now() });
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
  await prune(db);
}

async function prune(db) {
  const tx = db.transaction(STORE, "readwrite");
  const store = tx.objectStore(STORE);
  const total = await request(store.count());
  if (total <= MAX_RECORDS) return;
  let extra = total - MAX_RECORDS;
  const cursorReq = store.index("t").openCursor();
  cursorReq.onsuccess = () => {
    const cursor = cursorReq.result;
    if (!cursor || extra <= 0) return;
    cursor.delete();
    extra -= 1;
    cursor.continue();
  };
}

/** The signed-in user's cached copy of a task: { task, savedAt } or null. */
export async function loadTask(taskId) {
  if (!keys) return null;
  const snapshot = keys;
  const k = await recordName(snapshot.index, taskId);
  const db = await openDb();
  const record = await request(db.transaction(STORE).objectStore(STORE).get(k));
  return record ? decryptRecord(snapshot, record) : null;
}

/** Delete the signed-in user's copy of a task (a device the log revoked keeps nothing). */
export async function deleteTask(taskId) {
  if (!keys) return;
  const k = await recordName(keys.index, taskId);
  const db = await openDb();
  const tx = db.transaction(STORE, "readwrite");
  tx.objectStore(STORE).delete(k);
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
}

/** How many records this device holds (for every user; they cannot be told apart). */
export async function countRecords() {
  const db = await openDb();
  return request(db.transaction(STORE).objectStore(STORE).count());
}

/** Delete every cached task detail on this device (its device keys were revoked). */
export async function clearDetails() {
  const db = await openDb();
  const tx = db.transaction(STORE, "readwrite");
  tx.objectStore(STORE).clear();
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
}

/** I6: delete IndexedDB, Cache Storage, the service worker and local/session storage. */
export async function clearDevice() {
  if (dbPromise) {
    const db = await dbPromise.catch(() => null);
    if (db) db.close();
    dbPromise = null;
  }
  // The cached details and this device's workspace keys (a device the log still lists can
  // then no longer read; revoke it from another device's Settings if it is gone for good).
  for (const name of [DB_NAME, "codexrelay-e2e"]) {
    await new Promise((resolve, reject) => {
      const req = indexedDB.deleteDatabase(name);
      req.onsuccess = resolve;
      req.onerror = () => reject(req.error);
      req.onblocked = resolve; // deleted once the last other tab lets go
    });
  }
  // The worker goes first so it cannot refill the cache while the cache is deleted.
  if (navigator.serviceWorker) {
    for (const reg of await navigator.serviceWorker.getRegistrations()) await reg.unregister();
  }
  if (window.caches) {
    for (const name of await caches.keys()) await caches.delete(name);
  }
  localStorage.clear();
  sessionStorage.clear();
}
