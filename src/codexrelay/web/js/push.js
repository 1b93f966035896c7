// Notifications on this device: Web Push that carries no content. The relay sends only
// {kind, ws, id}; the service worker turns that into a generic title ("Approval needed in
// acme") with the workspace names this page leaves for it, and a tap opens the screen,
// which fetches the details over the signed-in connection.

import { del, get, post } from "./api.js";

export const KINDS = [
  ["approval-needed", "An approval waits for you", "Conversation approvals, two-person requests and write-mode tasks."],
  ["finished", "Your task finished", "A task or turn you started is done."],
  ["failed", "Your task failed or stopped", "It failed, was refused, interrupted or cancelled by someone else."],
  ["pair-request", "An agent asks to pair", "For admins and owners of the workspace."],
  ["new-device", "A new passkey on your account", "Always on, so you hear if someone else adds one."],
];
export const ALWAYS_ON = "new-device";
const LABELS = "codexrelay-push-labels";
const LABELS_KEY = "/push/workspace-names";
const prefKey = (userId) => `codexrelay.push.${userId}`;

/** Whether this browser can receive push here, and if not, why. */
export function support() {
  const ua = navigator.userAgent;
  const ios = /iPad|iPhone|iPod/.test(ua) || (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
  const standalone = window.matchMedia("(display-mode: standalone)").matches || navigator.standalone === true;
  const api = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
  if (ios && !standalone) return { ok: false, reason: "ios-home-screen" };
  if (!api) return { ok: false, reason: "unsupported" };
  if (!window.isSecureContext) return { ok: false, reason: "insecure" };
  return { ok: true, reason: "" };
}

/** "granted", "denied", "default" or "unsupported". */
export function permission() {
  return "Notification" in window ? Notification.permission : "unsupported";
}

function keyBytes(b64) {
  const text = atob(b64.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function sameKey(buffer, b64) {
  if (!buffer) return false;
  const a = new Uint8Array(buffer);
  const b = keyBytes(b64);
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function registration() {
  const existing = await navigator.serviceWorker.getRegistration("/");
  return existing || navigator.serviceWorker.register("/sw.js");
}

/** The browser's own subscription for this app, if any. */
export async function browserSubscription() {
  if (!support().ok) return null;
  return (await registration()).pushManager.getSubscription();
}

/** Ask for permission (if not yet given), subscribe with the relay's key and register this
 * device; returns the relay's view of the subscription. */
export async function enable(userId, kinds) {
  if (permission() !== "granted") {
    const answer = await Notification.requestPermission();
    if (answer !== "granted") {
      throw new Error(answer === "denied"
        ? "Notifications are blocked for this site. Allow them in the browser's site settings, then try again."
        : "Notifications were not allowed. Tap the button again and choose Allow.");
    }
  }
  const { publicKey } = await get("/api/v1/push/vapid-public-key");
  const reg = await registration();
  let sub = await reg.pushManager.getSubscription();
  if (sub && !sameKey(sub.options && sub.options.applicationServerKey, publicKey)) {
    await sub.unsubscribe(); // made for an older relay key
    sub = null;
  }
  if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(publicKey) });
  const body = { subscription: sub.toJSON() };
  if (kinds) body.kinds = kinds;
  const res = await post("/api/v1/me/push-subscriptions", body);
  localStorage.setItem(prefKey(userId), JSON.stringify({ kinds: res.subscription.kinds }));
  return res.subscription;
}

/** Turn notifications off on this device: the relay forgets it, the browser unsubscribes. */
export async function disable(userId, subscriptionId) {
  localStorage.removeItem(prefKey(userId));
  if (subscriptionId) await del(`/api/v1/me/push-subscriptions/${encodeURIComponent(subscriptionId)}`).catch(() => {});
  const sub = await browserSubscription().catch(() => null);
  if (sub) await sub.unsubscribe().catch(() => {});
}

/** Remember the kinds chosen on this device (so a new sign-in keeps them). */
export function rememberKinds(userId, kinds) {
  localStorage.setItem(prefKey(userId), JSON.stringify({ kinds }));
}

/** At start: leave the workspace names for the service worker, and if this device had
 * notifications on but the relay no longer knows it (a new session, a workspace left, a
 * rotated relay key), subscribe again quietly: permission was given before. */
export async function resync(me) {
  await rememberWorkspaces(me.memberships).catch(() => {});
  const saved = JSON.parse(localStorage.getItem(prefKey(me.user.id)) || "null");
  if (!saved || !support().ok || permission() !== "granted") return;
  const { subscriptions } = await get("/api/v1/me/push-subscriptions");
  if (subscriptions.some((s) => s.current)) return;
  await enable(me.user.id, saved.kinds);
}

/** Workspace names by id, kept where only this origin's service worker reads them. */
export async function rememberWorkspaces(memberships) {
  if (!window.caches) return;
  const names = Object.fromEntries(memberships.map((m) => [m.workspaceId, m.workspaceName]));
  const cache = await caches.open(LABELS);
  await cache.put(LABELS_KEY, new Response(JSON.stringify(names), { headers: { "Content-Type": "application/json" } }));
}

/** On sign-out: the names go, and this device stops receiving (the relay already forgot
 * the subscription with the session). */
export async function forgetDevice(userId) {
  if (window.caches) await caches.delete(LABELS).catch(() => {});
  if (userId) localStorage.removeItem(prefKey(userId));
  const sub = await browserSubscription().catch(() => null);
  if (sub) await sub.unsubscribe().catch(() => {});
}

/** "Chrome on Android" from a User-Agent, for the device list. */
export function deviceWords(userAgent) {
  const ua = userAgent || "";
  const os = /iPhone/.test(ua) ? "iPhone" : /iPad/.test(ua) ? "iPad" : /Android/.test(ua) ? "Android"
    : /Mac OS X|Macintosh/.test(ua) ? "Mac" : /Windows/.test(ua) ? "Windows" : /Linux/.test(ua) ? "Linux" : "";
  const browser = /Edg\//.test(ua) ? "Edge" : /Firefox\//.test(ua) ? "Firefox" : /Chrom(e|ium)\//.test(ua) ? "Chrome"
    : /Safari\//.test(ua) ? "Safari" : "";
  if (browser && os) return `${browser} on ${os}`;
  return browser || os || "A browser";
}

/** The push service's owner, from its host. */
export function serviceWords(host) {
  if (host === "fcm.googleapis.com") return "Google";
  if (host.endsWith(".push.apple.com")) return "Apple";
  if (host.endsWith("mozilla.com")) return "Mozilla";
  if (host.endsWith(".notify.windows.com")) return "Microsoft";
  return host;
}
