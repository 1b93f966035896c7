// Service worker: keeps the app shell available offline and shows notifications. It never
// caches or answers API requests: task data and sessions always come from the relay (or
// the encrypted IndexedDB cache the page keeps itself, B5). A notification carries only
// {kind, ws, id}: the title is made here, and a tap opens the screen, which fetches the
// details over the signed-in connection.

const VERSION = "codexrelay-shell-v12";
const LABELS = "codexrelay-push-labels"; // workspace names the page leaves (js/push.js)
const SHELL = [
  "/",
  "/app.css",
  "/app.js",
  "/manifest.webmanifest",
  "/icons/icon.svg",
  "/icons/icon-192.png",
  "/icons/lock.svg",
  "/icons/tab-agents.svg",
  "/icons/tab-chats.svg",
  "/icons/tab-new.svg",
  "/icons/tab-people.svg",
  "/icons/tab-settings.svg",
  "/icons/tab-tasks.svg",
  "/e2e/envelope.js",
  "/e2e/keys.js",
  "/e2e/log.js",
  "/e2e/pairing.js",
  "/e2e/safety.js",
  "/e2e/statements.js",
  "/e2e/vendor/hpke-common/_dnt.shims.js",
  "/e2e/vendor/hpke-common/mod.js",
  "/e2e/vendor/hpke-common/src/algorithm.js",
  "/e2e/vendor/hpke-common/src/consts.js",
  "/e2e/vendor/hpke-common/src/curve/curve.js",
  "/e2e/vendor/hpke-common/src/curve/modular.js",
  "/e2e/vendor/hpke-common/src/curve/montgomery.js",
  "/e2e/vendor/hpke-common/src/errors.js",
  "/e2e/vendor/hpke-common/src/hash/hash.js",
  "/e2e/vendor/hpke-common/src/hash/hmac.js",
  "/e2e/vendor/hpke-common/src/hash/md.js",
  "/e2e/vendor/hpke-common/src/hash/sha2.js",
  "/e2e/vendor/hpke-common/src/hash/sha3.js",
  "/e2e/vendor/hpke-common/src/hash/u64.js",
  "/e2e/vendor/hpke-common/src/identifiers.js",
  "/e2e/vendor/hpke-common/src/interfaces/aeadEncryptionContext.js",
  "/e2e/vendor/hpke-common/src/interfaces/dhkemPrimitives.js",
  "/e2e/vendor/hpke-common/src/interfaces/kemInterface.js",
  "/e2e/vendor/hpke-common/src/kdfs/hkdf.js",
  "/e2e/vendor/hpke-common/src/kems/dhkem.js",
  "/e2e/vendor/hpke-common/src/kems/dhkemPrimitives/ec.js",
  "/e2e/vendor/hpke-common/src/kems/dhkemPrimitives/xCurve.js",
  "/e2e/vendor/hpke-common/src/kems/hybridkem.js",
  "/e2e/vendor/hpke-common/src/utils/bignum.js",
  "/e2e/vendor/hpke-common/src/utils/misc.js",
  "/e2e/vendor/hpke-common/src/utils/noble.js",
  "/e2e/vendor/hpke-common/src/xCryptoKey.js",
  "/e2e/vendor/hpke-core/mod.js",
  "/e2e/vendor/hpke-core/src/aeads/aesGcm.js",
  "/e2e/vendor/hpke-core/src/aeads/exportOnly.js",
  "/e2e/vendor/hpke-core/src/cipherSuiteNative.js",
  "/e2e/vendor/hpke-core/src/encryptionContext.js",
  "/e2e/vendor/hpke-core/src/exporterContext.js",
  "/e2e/vendor/hpke-core/src/kems/dhkemNative.js",
  "/e2e/vendor/hpke-core/src/kems/dhkemPrimitives/x25519.js",
  "/e2e/vendor/hpke-core/src/kems/dhkemPrimitives/x448.js",
  "/e2e/vendor/hpke-core/src/kems/dhkemX25519.js",
  "/e2e/vendor/hpke-core/src/kems/dhkemX448.js",
  "/e2e/vendor/hpke-core/src/mutex.js",
  "/e2e/vendor/hpke-core/src/native.js",
  "/e2e/vendor/hpke-core/src/recipientContext.js",
  "/e2e/vendor/hpke-core/src/senderContext.js",
  "/e2e/vendor/hpke-core/src/utils/emitNotSupported.js",
  "/e2e/webauthn.js",
  "/js/api.js",
  "/js/cache.js",
  "/js/chatsign.js",
  "/js/conversation.js",
  "/js/dom.js",
  "/js/format.js",
  "/js/limits.js",
  "/js/live.js",
  "/js/logpush.js",
  "/js/markdown.js",
  "/js/passkey.js",
  "/js/photo.js",
  "/js/push.js",
  "/js/sealing/send.js",
  "/js/sealing/threads.js",
  "/js/trust.js",
  "/js/trustpair.js",
  "/js/views/about.js",
  "/js/views/agents.js",
  "/js/views/audit.js",
  "/js/views/chat.js",
  "/js/views/confirmtask.js",
  "/js/views/keycard.js",
  "/js/views/mydevices.js",
  "/js/views/logmembers.js",
  "/js/views/newtask.js",
  "/js/views/notifications.js",
  "/js/views/pair.js",
  "/js/views/pendingtasks.js",
  "/js/views/people.js",
  "/js/views/protection.js",
  "/js/views/settings.js",
  "/js/views/signin.js",
  "/js/views/tasks.js",
  "/js/views/threads.js",
  "/js/views/workspaces.js",
  "/js/sealing/read.js",
  "/js/sealing/show.js",
  "/js/sealing/chatsend.js",
  "/js/sealing/chatread.js",
  "/js/views/sealedchat.js",
  "/vendor/dompurify/purify.es.mjs",
  "/vendor/marked/marked.esm.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== VERSION && n !== LABELS).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

function isShell(url) {
  if (url.origin !== self.location.origin) return false;
  if (url.pathname.startsWith("/api/") || url.pathname === "/healthz" || url.pathname === "/openapi.json") return false;
  return true;
}

// Network first, so a fresh relay always serves its own current app; the cached shell is
// the fallback when the phone is offline.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (!isShell(url)) return;
  const key = request.mode === "navigate" ? "/" : url.pathname;
  event.respondWith((async () => {
    try {
      const response = await fetch(request);
      if (response.ok && response.type === "basic" && SHELL.includes(key)) {
        const copy = response.clone();
        caches.open(VERSION).then((cache) => cache.put(key, copy)).catch(() => {});
      }
      return response;
    } catch (err) {
      const cached = await caches.match(key);
      if (cached) return cached;
      throw err;
    }
  })());
});

// ---- notifications ----

const WORDS = {
  "approval-needed": ["Approval needed", "Something waits for your decision. Tap to review it."],
  finished: ["Finished", "Your work is done. Tap to see the result."],
  failed: ["Did not finish", "Your work stopped. Tap to see what happened."],
  "pair-request": ["Pairing request", "An agent asks to join. Tap to review it."],
  "new-device": ["New passkey on your account", "If this was not you, tap to review your passkeys and sessions."],
  test: ["Test notification", "Notifications work on this device."],
};
const DEFAULT_WORDS = ["codexrelay", "Something happened. Tap to open the app."];
const ID = /^[A-Za-z0-9_.-]{1,128}$/;

async function workspaceNames() {
  try {
    const cached = await caches.match("/push/workspace-names", { cacheName: LABELS });
    return cached ? await cached.json() : {};
  } catch {
    return {};
  }
}

function fields(data) {
  const pick = (v) => (typeof v === "string" && ID.test(v) ? v : "");
  return { kind: pick(data && data.kind), ws: pick(data && data.ws), id: pick(data && data.id) };
}

// The screen a notification opens: a task by its id, a conversation by its thread id.
function pathFor({ kind, id }) {
  if (id && (kind === "finished" || kind === "failed" || kind === "approval-needed")) {
    return id.startsWith("tsk_") ? `/tasks/${id}` : `/chats/${id}`;
  }
  if (kind === "pair-request") return "/pair";
  if (kind === "new-device" || kind === "test") return "/settings";
  return "/tasks";
}

function targetUrl(data) {
  return `/#${pathFor(data)}${data.ws ? `?ws=${encodeURIComponent(data.ws)}` : ""}`;
}

self.addEventListener("push", (event) => {
  let raw = {};
  try {
    raw = event.data ? event.data.json() : {};
  } catch {
    raw = {};
  }
  const data = fields(raw);
  event.waitUntil((async () => {
    const names = await workspaceNames();
    const [title, body] = WORDS[data.kind] || DEFAULT_WORDS;
    const where = data.ws && typeof names[data.ws] === "string" ? ` in ${names[data.ws]}` : "";
    // One notification per task or thread: a newer one replaces it in place.
    const tag = data.id ? `${data.ws}/${data.id}` : data.kind || "codexrelay";
    await self.registration.showNotification(title + where, {
      body, tag, renotify: true, icon: "/icons/icon-192.png", data,
    });
  })());
});

async function openTarget(data) {
  const url = targetUrl(fields(data));
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((c) => new URL(c.url).origin === self.location.origin);
  if (open) {
    open.postMessage({ type: "codexrelay:open", url });
    try {
      await open.focus();
    } catch {
      // Focus needs the tap's permission; the screen changes anyway.
    }
    return;
  }
  await self.clients.openWindow(url);
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openTarget(event.notification.data || {}));
});
