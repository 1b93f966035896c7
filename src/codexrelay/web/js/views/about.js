// Settings › About: the app version and the web bundle's hash (TRUST.md tier B).
//
// The relay serves this code, so a relay that changes it can read what the phone shows after
// its next load. The release publishes one hash of the bundle; here the phone hashes the files
// it is served, the same way `codexrelay verify-web` does (webbundle.py), and names any file
// that differs from the relay's own list. Code a hostile relay changed could also change this
// check: `codexrelay verify-web URL` from another machine is the independent one.

import { apiUrl, crossOrigin, get } from "../api.js";
import { busy, errorLine, fill, h } from "../dom.js";

const enc = new TextEncoder();

const hex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));

/** webbundle.bundle_hash: SHA-256 over `path ‖ NUL ‖ SHA-256(bytes) ‖ LF` in path order. */
export async function bundleHash(files) {
  const parts = [];
  for (const path of Object.keys(files).sort()) {
    parts.push(enc.encode(`${path}\0`), Uint8Array.from(files[path].match(/../g), (x) => parseInt(x, 16)), enc.encode("\n"));
  }
  const total = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    total.set(p, at);
    at += p.length;
  }
  return hex(await sha256(total));
}

/** The bundle as this phone is served it now: path -> SHA-256 hex of the bytes received. */
async function servedFiles(paths) {
  const found = {};
  for (const path of paths) {
    const res = await fetch(`/${path}`, { cache: "no-store", credentials: "same-origin" });
    if (!res.ok) throw new Error(`${path}: the relay answered ${res.status}`);
    found[path] = hex(await sha256(await res.arrayBuffer()));
  }
  return found;
}

/** A long hex hash in groups of eight, easier to compare by eye with release notes. */
const grouped = (value) => value.match(/.{1,8}/g).join(" ");

export function aboutSection() {
  const facts = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const result = h("p", { id: "bundle-check", role: "status" });
  const check = h("button", { type: "button", class: "secondary wide" }, "Hash the app this phone is served");
  const error = errorLine();
  let stated = null;

  check.addEventListener("click", () => busy(check, async () => {
    const files = await servedFiles(Object.keys(stated.files));
    const got = await bundleHash(files);
    const changed = Object.keys(stated.files).filter((p) => files[p] !== stated.files[p]);
    result.className = got === stated.bundleHash ? "ok" : "warning";
    fill(result,
      got === stated.bundleHash ? "Matches: this phone is served the bundle the relay states. " : "Differs from what the relay states. ",
      changed.length ? `Files that differ: ${changed.join(", ")}. ` : "",
      "Computed here: ", h("code", { class: "hash" }, grouped(got)));
  }, { label: "Hashing…", errLine: error }));

  const section = h("section", { class: "detail-section", id: "about" }, h("h3", {}, "About"), facts, check, result, error,
    h("p", { class: "hint" },
      "Compare the hash with the one published with this release. The relay serves this app, so a relay that changed it could change this check too: run ",
      h("code", {}, "codexrelay verify-web <relay URL>"), " from a computer you trust for an independent check."));

  const reload = async () => {
    stated = await get("/api/v1/web-bundle");
    const tier = crossOrigin()
      ? ["This app comes from its own address (", h("code", {}, location.origin), "), not from the relay (",
        h("code", {}, new URL(apiUrl("/")).origin),
        "). A relay that is taken over cannot change this code: it cannot read what this phone shows or make it sign something else."]
      : ["The relay serves this app itself. If the relay is taken over and its code changed, the changed app can read what this phone shows after its next load, and could show one task while asking you to sign another; agents still run only what a member's passkey signed. Serving the app from a separate static address closes this (see DEPLOYMENT.md)."];
    fill(facts,
      h("p", {}, "codexrelay ", h("strong", { id: "app-version" }, stated.version)),
      h("p", { id: "app-tier", class: crossOrigin() ? "" : "notice" }, ...tier),
      h("p", {}, "Web bundle hash stated by the relay: ", h("code", { class: "hash", id: "bundle-hash" }, grouped(stated.bundleHash))));
  };
  return { section, reload };
}
