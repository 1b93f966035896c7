// Settings: notifications on this device, my passkeys and sessions (I2), the relay's feature flags (R09), clearing this
// device's data (I6), signing out, and About (the web bundle's hash).

import { del, get, patch } from "../api.js";
import * as cache from "../cache.js";
import { busy, confirmDialog, errorLine, field, fill, h, loading, screenTitle, toast } from "../dom.js";
import { plural, timeText } from "../format.js";
import { passkeysSupported, registerPasskey } from "../passkey.js";
import * as push from "../push.js";
import { aboutSection } from "./about.js";
import { devicesSection } from "./mydevices.js";
import { notificationsSection } from "./notifications.js";
import { protectionSection } from "./protection.js";
import { signEntry, trustState, withSudo } from "../trust.js";
import { firstCborItem } from "../../e2e/log.js";
import { b64u, fromB64u } from "../../e2e/statements.js";

/** In a protected workspace, a new passkey counts once an existing one signs passkey.add. */
async function addToLog(app, credId) {
  const state = await trustState(app.wid, { fresh: true }).catch(() => ({}));
  if (!state.view || !state.view.members.has(app.me.user.id)) return;
  const kept = JSON.parse(localStorage.getItem("codexrelay.cose") || "null");
  if (!kept || kept.credId !== credId) return;
  const cose = b64u(firstCborItem(fromB64u(kept.cose)));
  await signEntry(app, "passkey.add", { userId: app.me.user.id, credId, cose })
    .then(() => toast("The new passkey is in the signed log."),
      (err) => toast(`The new passkey is not in the signed log yet: ${err.message}`, "error"));
}

const FLAG_WORDS = [
  ["pairings", "Pairing new agents"],
  ["codexExec", "Codex tasks"],
  ["codexExecWrite", "Write-mode Codex tasks"],
  ["runAction", "Predefined actions"],
  ["readLog", "Log reads"],
];

const VIA_WORDS = {
  passkey: "passkey",
  bootstrap: "recovery token",
  invite: "invite",
  "recovery-code": "recovery code",
};

/** In a protected workspace the passkey stops counting in the signed log first (a
 * passkey.revoke signed by a passkey of mine), so agents refuse what it signs from then on. */
async function revokeInLog(app, credId) {
  const state = await trustState(app.wid, { fresh: true }).catch(() => ({}));
  const entry = state.view && state.view.passkeys.get(credId);
  if (!entry || entry.revokedSeq !== null || entry.userId !== app.me.user.id) return;
  await withSudo(() => signEntry(app, "passkey.revoke", { userId: app.me.user.id, credId }));
}

function passkeyCard(app, pk, reload) {
  const error = errorLine();
  const label = h("input", { type: "text", maxlength: "60", value: pk.label, autocomplete: "off", required: true });
  const save = h("button", { type: "submit", class: "primary" }, "Save name");
  const renameForm = h("form", { class: "rename", hidden: true }, field(`New name for "${pk.label}"`, label), save);
  const rename = h("button", { type: "button", class: "secondary", "aria-expanded": "false" }, "Rename");
  rename.addEventListener("click", () => {
    renameForm.hidden = !renameForm.hidden;
    rename.setAttribute("aria-expanded", String(!renameForm.hidden));
    if (!renameForm.hidden) label.focus();
  });
  renameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(save, async () => {
      await patch(`/api/v1/me/passkeys/${encodeURIComponent(pk.credentialId)}`, { label: label.value.trim() });
      toast("Passkey renamed.");
      await reload();
    }, { label: "Saving…", errLine: error });
  });
  const revoke = h("button", { type: "button", class: "danger" }, "Revoke");
  revoke.addEventListener("click", async () => {
    if (!(await confirmDialog(`Revoke the passkey "${pk.label}"? It can no longer sign you in.`, "Revoke passkey"))) return;
    await busy(revoke, async () => {
      await revokeInLog(app, pk.credentialId);
      await del(`/api/v1/me/passkeys/${encodeURIComponent(pk.credentialId)}`);
      toast("Passkey revoked.");
      await reload();
    }, { label: "Revoking…", errLine: error });
  });
  return h("li", { class: "card passkey-card", dataset: { credentialId: pk.credentialId } },
    h("div", { class: "card-row" }, h("h4", {}, pk.label), h("span", { class: "muted small" }, "last used ", timeText(pk.lastUsedAt))),
    h("p", { class: "muted small" }, "Created ", timeText(pk.createdAt)),
    h("div", { class: "actions" }, rename, revoke), renameForm, error);
}

function sessionCard(s, reload) {
  const parts = [h("div", { class: "card-row" },
    h("strong", {}, s.current ? "This device" : `Signed in with ${VIA_WORDS[s.via] || s.via}`),
    h("span", { class: "muted small" }, "active ", timeText(s.lastSeenAt))),
  h("p", { class: "muted small" }, s.current ? `Signed in with ${VIA_WORDS[s.via] || s.via} · ` : "", "started ", timeText(s.createdAt), " · ends ", timeText(s.expiresAt))];
  if (!s.current) {
    const end = h("button", { type: "button", class: "secondary" }, "Sign out this session");
    end.addEventListener("click", () => busy(end, async () => {
      await del(`/api/v1/me/sessions/${encodeURIComponent(s.id)}`);
      toast("Session ended.");
      await reload();
    }, { label: "Ending…" }));
    parts.push(h("div", { class: "actions" }, end));
  }
  return h("li", { class: "card session-row", dataset: { sessionId: s.id } }, parts);
}

export async function settingsScreen(app, root) {
  const { user, session } = app.me;
  const passkeys = h("div", {}, loading("Loading passkeys…"));
  const sessions = h("div", {}, loading("Loading sessions…"));
  const deviceStatus = h("p", { class: "muted", role: "status" });

  const reloadPasskeys = async () => {
    try {
      const res = await get("/api/v1/me/passkeys");
      fill(passkeys, res.passkeys.length ? h("ul", { class: "cards", "aria-label": "Your passkeys" }, res.passkeys.map((p) => passkeyCard(app, p, reloadPasskeys)))
        : h("p", { class: "warning" }, "You have no passkey yet. Create one below."));
    } catch (err) {
      fill(passkeys, h("p", { class: "error", role: "alert" }, err.message));
    }
  };
  let sessionList = [];
  const reloadSessions = async () => {
    try {
      sessionList = (await get("/api/v1/me/sessions")).sessions;
      fill(sessions, h("ul", { class: "cards", "aria-label": "Your sessions" }, sessionList.map((s) => sessionCard(s, reloadSessions))));
    } catch (err) {
      fill(sessions, h("p", { class: "error", role: "alert" }, err.message));
    }
  };

  const newLabel = h("input", { type: "text", maxlength: "60", autocomplete: "off", placeholder: "e.g. Work phone" });
  const add = h("button", { type: "button", class: "primary wide" }, "Create a passkey on this device");
  const addError = errorLine();
  add.addEventListener("click", () => busy(add, async () => {
    // Adding a passkey is a sensitive change: the relay may ask for a fresh passkey check.
    const made = await withSudo(() => registerPasskey(newLabel.value.trim() || undefined));
    app.passkeyMadeHere = true;
    await addToLog(app, made.passkey.credentialId);
    newLabel.value = "";
    toast("Passkey created.");
    await app.refreshMe();
    await reloadPasskeys();
    await reloadSessions();
    app.renderBanner();
  }, { label: "Waiting for your passkey…", errLine: addError }));

  const endOthers = h("button", { type: "button", class: "secondary wide" }, "Sign out all other sessions");
  endOthers.addEventListener("click", async () => {
    const others = sessionList.filter((s) => !s.current);
    if (!others.length) {
      toast("No other sessions.");
      return;
    }
    if (!(await confirmDialog(`Sign out ${plural(others.length, "other session", "other sessions")}?`, "Sign out others"))) return;
    await busy(endOthers, async () => {
      for (const s of others) await del(`/api/v1/me/sessions/${encodeURIComponent(s.id)}`);
      toast("Other sessions ended.");
      await reloadSessions();
    }, { label: "Signing out…" });
  });

  const clear = h("button", { type: "button", class: "danger wide" }, "Clear data on this device");
  clear.addEventListener("click", async () => {
    const ok = await confirmDialog("Delete the task details cached on this device, the offline copy of the app and saved settings? Your account and the relay are not affected.", "Clear data");
    if (!ok) return;
    await busy(clear, async () => {
      const mine = (await get("/api/v1/me/push-subscriptions").catch(() => ({ subscriptions: [] })))
        .subscriptions.find((s) => s.current);
      await push.disable(user.id, mine && mine.id);
      await cache.clearDevice();
      fill(deviceStatus, "Cleared: cached task details, the offline app copy and saved settings are gone from this device.");
      toast("Data on this device cleared.");
    }, { label: "Clearing…" });
  });

  const signOut = h("button", { type: "button", class: "secondary wide" }, "Sign out");
  signOut.addEventListener("click", () => busy(signOut, () => app.signOut(), { label: "Signing out…" }));

  const flags = app.features();
  const notifications = notificationsSection(app);
  const protection = protectionSection(app);
  const about = aboutSection();
  const devices = devicesSection(app);
  fill(root,
    screenTitle("Settings"),
    h("section", { class: "detail-section" }, h("h3", {}, "Account"),
      h("p", {}, "Signed in as ", h("strong", {}, user.name), user.isOwner ? " (relay owner)" : "", "."),
      h("p", { class: "muted small" }, `This session: ${VIA_WORDS[session.via] || session.via}, ends `, timeText(session.expiresAt), ".")),
    h("section", { class: "detail-section" }, h("h3", {}, "Passkeys"), passkeys,
      passkeysSupported() ? [field("Name for a new passkey", newLabel), add, addError] : h("p", { class: "warning" }, "This browser does not support passkeys.")),
    protection.section,
    devices.section,
    notifications.section,
    h("section", { class: "detail-section" }, h("h3", {}, "Sessions"), sessions, endOthers),
    h("section", { class: "detail-section" }, h("h3", {}, "Relay features"),
      h("ul", { class: "flags", "aria-label": "Relay features" }, FLAG_WORDS.map(([key, words]) =>
        h("li", { class: flags[key] ? "on" : "off" }, h("span", {}, words), h("span", { class: `chip ${flags[key] ? "on" : "off"}` }, flags[key] ? "on" : "off")))),
      h("p", { class: "hint" }, "Each agent has its own switches too; a task runs only if both sides allow it.")),
    h("section", { class: "detail-section" }, h("h3", {}, "This device"),
      h("p", {}, "Task details you open are kept on this device, encrypted with a key of this device inside one only your signed-in account can fetch."),
      clear, deviceStatus, signOut),
    about.section);
  await Promise.all([reloadPasskeys(), reloadSessions(), notifications.reload(), protection.reload().catch(() => {}),
    devices.reload().catch(() => {}),
    about.reload().catch((err) => fill(about.section, h("p", { class: "error", role: "alert" }, err.message)))]);
  return {};
}
