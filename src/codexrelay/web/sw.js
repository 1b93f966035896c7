// Service worker: keeps the app shell available offline. It never caches or answers API
// requests: task data and sessions always come from the relay (or the encrypted IndexedDB
// cache the page keeps itself, B5).

const VERSION = "codexrelay-shell-v2";
const SHELL = [
  "/",
  "/app.css",
  "/app.js",
  "/manifest.webmanifest",
  "/icons/icon.svg",
  "/icons/icon-192.png",
  "/icons/tab-agents.svg",
  "/icons/tab-chats.svg",
  "/icons/tab-new.svg",
  "/icons/tab-people.svg",
  "/icons/tab-settings.svg",
  "/icons/tab-tasks.svg",
  "/js/api.js",
  "/js/cache.js",
  "/js/conversation.js",
  "/js/dom.js",
  "/js/format.js",
  "/js/live.js",
  "/js/markdown.js",
  "/js/passkey.js",
  "/js/photo.js",
  "/js/views/agents.js",
  "/js/views/audit.js",
  "/js/views/chat.js",
  "/js/views/newtask.js",
  "/js/views/pair.js",
  "/js/views/people.js",
  "/js/views/settings.js",
  "/js/views/signin.js",
  "/js/views/tasks.js",
  "/js/views/threads.js",
  "/vendor/dompurify/purify.es.mjs",
  "/vendor/marked/marked.esm.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== VERSION).map((n) => caches.delete(n))))
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
