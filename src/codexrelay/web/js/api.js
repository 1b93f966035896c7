// The relay's JSON API. Errors come back as the API's own human sentence (`message`);
// the stable code stays on the error for the app's logic.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const OFFLINE = "Cannot reach the relay. Check the connection and try again.";

function fallbackMessage(status) {
  if (status === 401) return "Your session has ended. Sign in again.";
  if (status === 403) return "You are not allowed to do that.";
  if (status === 404) return "That no longer exists.";
  if (status === 429) return "Too many attempts. Wait a minute and try again.";
  if (status >= 500) return "The relay had a problem. Try again in a moment.";
  return `The relay refused the request (status ${status}).`;
}

// Where the API is: the page's own origin when the relay serves the app, or the relay named
// by the static host's relay.json when the app comes from a separate static origin (the
// session cookie is SameSite=Strict, so the two are on one site and the cookie goes along).
let base = "";
const REMEMBERED = "codexrelay.relayOrigin";

/** Find the relay before the first API call; offline, the last origin this device used. */
export async function locateRelay() {
  let origin = null;
  try {
    const res = await fetch("/relay.json", { cache: "no-store", credentials: "omit" });
    if (res.ok) origin = (await res.json()).relayOrigin;
  } catch {
    origin = localStorage.getItem(REMEMBERED);
  }
  if (typeof origin !== "string" || !/^https?:\/\/[^/?#@]+$/.test(origin)) origin = location.origin;
  localStorage.setItem(REMEMBERED, origin);
  base = origin === location.origin ? "" : origin;
}

/** An API path as the browser must fetch it, and whether the cookie must be asked for. */
export const apiUrl = (path) => `${base}${path}`;
export const crossOrigin = () => base !== "";

/** Call the API; resolves to the JSON body (null for 204), rejects with ApiError. */
export async function api(method, path, body) {
  const init = { method, credentials: base ? "include" : "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(apiUrl(path), init);
  } catch {
    throw new ApiError(0, "offline", OFFLINE);
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    let message = (data && data.message) || fallbackMessage(res.status);
    const retry = res.headers.get("Retry-After");
    if (res.status === 429 && retry && !/\d/.test(message)) message += ` Try again in ${retry} seconds.`;
    const error = new ApiError(res.status, (data && data.error) || "error", message);
    if (res.status === 401 && !path.startsWith("/api/v1/auth/")) {
      window.dispatchEvent(new CustomEvent("codexrelay:unauthenticated"));
    } else if (error.code === "enrollment-required") {
      window.dispatchEvent(new CustomEvent("codexrelay:enrollment-required"));
    }
    throw error;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body = {}) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

/** Paths under the current workspace. */
export function ws(wid, rest = "") {
  return `/api/v1/workspaces/${encodeURIComponent(wid)}${rest}`;
}
