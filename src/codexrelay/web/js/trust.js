// The phone's side of a protected workspace (TRUST.md §4): it reads and verifies the
// membership log itself, keeps this device's keys, and signs the genesis, log entries,
// tasks and cancels. Nothing the relay says about members, keys or heads is used unverified.

import { ApiError, get, post, ws } from "./api.js";
import { confirmDialog } from "./dom.js";
import { confirmWithPasskey } from "./passkey.js";
import { generateDeviceKeys, deviceSign, loadKeys, publicKeys, saveKeys } from "../e2e/keys.js";
import { chainHash, verifyAssertion, verifyLog } from "../e2e/log.js";
import { b64u, concat, digest, fromB64u, statementBytes, tag } from "../e2e/statements.js";
import { signStatement } from "../e2e/webauthn.js";

const views = new Map(); // wid -> { protected, view, error }
const PIN_KEY = (wid) => `codexrelay.genesis.${wid}`;

export const DEFAULT_POLICY = Object.freeze({
  e2e: "required",
  taskTtlSec: 600,
  codexRead: { minRole: "member" },
  codexWrite: { minRole: "admin" },
  actionDefault: { minRole: "member" },
  actions: {},
  logDefault: { minRole: "member" },
  logs: {},
  approvals: { minRole: "member" },
});

const now = () => Math.floor(Date.now() / 1000);

async function fetchEntries(wid) {
  const entries = [];
  for (;;) {
    const page = await get(ws(wid, `/e2e/log?from=${entries.length}`));
    entries.push(...page.entries);
    if (!page.protected || page.entries.length < 500) return { protected: page.protected, entries };
  }
}

/**
 * The workspace's verified log: `{protected:false}`, `{protected:true, view, entries}` (the
 * entries as the relay stored them, all verified), or
 * `{protected:true, error}` when the relay's log does not verify from the genesis this
 * device pinned (then nothing may be signed on top of it).
 */
export async function trustState(wid, { fresh = false } = {}) {
  if (!fresh && views.has(wid)) return views.get(wid);
  const { protected: isProtected, entries } = await fetchEntries(wid);
  let state = { protected: false };
  if (isProtected) {
    try {
      const view = await verifyLog(entries, { pinned: localStorage.getItem(PIN_KEY(wid)) });
      localStorage.setItem(PIN_KEY(wid), view.genesisHash);
      state = { protected: true, view, entries };
    } catch (err) {
      state = { protected: true, error: `The membership log does not verify (${err.message}). Nothing can be signed until this is resolved.` };
    }
  }
  views.set(wid, state);
  return state;
}

export function forget(wid) {
  views.delete(wid);
}

/** Why this session cannot sign anything, or "" (a recovery-token session alone cannot). */
export function signBlock(app) {
  const { session, user } = app.me;
  if (!session.isRecovery) return "";
  if (user.hasPasskey && app.passkeyMadeHere) return "";
  return "You signed in with the recovery token. In a protected workspace every task and "
    + "change is signed by your passkey, and a recovery sign-in holds none: sign in with "
    + "your passkey (or create one in Settings) to run tasks here.";
}

export function myPasskeys(view, userId) {
  return [...view.passkeys.values()].filter((p) => p.userId === userId && p.revokedSeq === null).map((p) => p.credId);
}

// ---- this device's keys ----

async function device(wid, userId) {
  const name = `device:${wid}:${userId}`;
  let found = await loadKeys(name);
  if (!found) {
    const keys = await generateDeviceKeys();
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    found = { ...keys, deviceId: `dv_${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}` };
    await saveKeys(name, found);
  }
  return found;
}

/** This device's public keys for a workspace, as a log entry names them. */
export async function myDeviceCard(wid, userId) {
  return deviceCard(await device(wid, userId), deviceLabel());
}

async function deviceCard(keys, label) {
  return { deviceId: keys.deviceId, label, ...(await publicKeys(keys)) };
}

function deviceLabel() {
  const ua = navigator.userAgent;
  if (/iPhone|iPad/.test(ua)) return "iPhone browser";
  if (/Android/.test(ua)) return "Android browser";
  return "Browser";
}

// ---- the log ----

async function postEntry(wid, raw, sig) {
  return post(ws(wid, "/e2e/log"), { entry: b64u(raw), sigs: [sig] });
}

/** Turn protection on (§4.1): the owner's passkey signs the genesis. */
export async function protectWorkspace(app, { policy = DEFAULT_POLICY, credentialId = null, wid = app.wid } = {}) {
  const draft = await get(ws(wid, "/e2e/genesis-draft"));
  // Which passkey this device holds: the one just made here, or the one a sudo ceremony uses.
  const credId = credentialId || (await confirmWithPasskey());
  const passkey = draft.owner.passkeys.find((p) => p.credId === credId);
  if (!passkey) throw new Error("The relay does not list the passkey you just used. Try again.");
  const keys = await device(wid, app.me.user.id);
  const genesis = {
    v: 1, op: "genesis", ws: wid, name: draft.name, origins: [location.origin], rpId: location.hostname,
    owner: { userId: draft.owner.userId, name: draft.owner.name, passkeys: [passkey] },
    devices: [await deviceCard(keys, deviceLabel())], policy, createdAt: now(),
  };
  const raw = statementBytes(genesis);
  const sig = await signStatement({ tagName: "log", bytes: raw, rpId: genesis.rpId, credentialIds: [credId] });
  // A relay that lied about the key must not end up pinned: check the signature with it.
  await verifyAssertion(sig, { tagName: "log", message: raw, rpId: genesis.rpId, origins: genesis.origins, cose: passkey.cose })
    .catch((err) => { throw new Error(`The relay gave a passkey key that does not match your passkey (${err.message}). Protection was not turned on.`); });
  const res = await postEntry(wid, raw, sig);
  localStorage.setItem(PIN_KEY(wid), await chainHash(raw));
  forget(wid);
  return res;
}

/** Sign `op`/`body` as the next entry on the verified head; re-signs once on a stale head. */
export async function signEntry(app, op, body, { onEntry = null } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const state = await trustState(app.wid, { fresh: true });
    if (!state.view) throw new Error(state.error || "This workspace is not protected.");
    const view = state.view;
    const entry = { v: 1, ws: app.wid, seq: view.head.seq + 1, prev: view.head.hash, op, body, issuedAt: now() };
    const raw = statementBytes(entry);
    const sig = await signStatement({ tagName: "log", bytes: raw, rpId: view.rpId, credentialIds: myPasskeys(view, app.me.user.id) });
    try {
      const posted = { entry: b64u(raw), sigs: [sig] };
      const res = onEntry ? await onEntry(posted, raw, view) : await post(ws(app.wid, "/e2e/log"), posted);
      forget(app.wid);
      return res;
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== "stale-log-head" || attempt > 0) throw err;
    }
  }
}

/** This device, certified in the log (a device.add self-signed by the user's passkey). */
export async function ensureDevice(app) {
  const keys = await device(app.wid, app.me.user.id);
  const state = await trustState(app.wid);
  const known = state.view && state.view.devices.get(keys.deviceId);
  if (known && known.revokedSeq === null) return keys;
  await signEntry(app, "device.add", { userId: app.me.user.id, ...(await deviceCard(keys, deviceLabel())) });
  return keys;
}

/** Run `work`; if the relay answers that sudo mode is needed, confirm with the passkey and retry. */
export async function withSudo(work) {
  try {
    return await work();
  } catch (err) {
    if (!(err instanceof ApiError) || err.code !== "reauth-required") throw err;
    const ok = await confirmDialog(`${err.message} Confirm it is you with your passkey: it counts for five minutes on this device.`,
      "Confirm with passkey", { danger: false });
    if (!ok) throw new Error("Not confirmed, so nothing was changed.");
    await confirmWithPasskey();
    return work();
  }
}

// ---- tasks (§4.5) and cancel (§4.9) ----

/** policy.rule_for: the rule a task falls under (a named action or log, else the default). */
export function ruleFor(policy, { type, writeAccess, actionId, logSourceId }) {
  if (type === "run_action") return policy.actions[actionId] || policy.actionDefault;
  if (type === "read_log") return policy.logs[logSourceId] || policy.logDefault;
  return writeAccess ? policy.codexWrite : policy.codexRead;
}

/** The statement and body the confirmation screen shows, not yet signed. */
export async function draftTask(app, fields, prompt) {
  const keys = await ensureDevice(app);
  const { view } = await trustState(app.wid);
  const body = statementBytes({ prompt, salt: b64u(crypto.getRandomValues(new Uint8Array(16))) });
  const issuedAt = now();
  const rule = ruleFor(view.policy, fields);
  const ttl = Math.min(view.policy.taskTtlSec, rule.twoPerson ? rule.twoPerson.within : Infinity);
  const stmt = {
    v: 1, kind: "task", ws: app.wid, agent: fields.agent, task: crypto.randomUUID(), type: fields.type,
    writeAccess: !!fields.writeAccess, cwd: fields.cwd || null, resumeSessionId: fields.resumeSessionId || null,
    actionId: fields.actionId || null, logSourceId: fields.logSourceId || null, bodyHash: await digest(body),
    device: keys.deviceId, logHead: view.head, issuedAt, expiresAt: issuedAt + ttl,
  };
  return { stmt, raw: statementBytes(stmt), body, view };
}

/** Passkey-sign a drafted task and submit it: `{task}` or `{pendingTask}` (two-person rule). */
export async function submitTask(app, draft) {
  const auth = await signStatement({ tagName: "task", bytes: draft.raw, rpId: draft.view.rpId, credentialIds: myPasskeys(draft.view, app.me.user.id) });
  return post(ws(app.wid, "/signed-tasks"), { stmt: b64u(draft.raw), body: b64u(draft.body), auth: [auth] });
}

/** A pending task another person submitted, decoded and checked against its body hash. */
export async function readPending(pending) {
  const raw = fromB64u(pending.stmt);
  const body = fromB64u(pending.body);
  const stmt = JSON.parse(new TextDecoder().decode(raw));
  if (stmt.bodyHash !== (await digest(body))) throw new Error("The task's text does not match what was signed.");
  return { stmt, raw, prompt: JSON.parse(new TextDecoder().decode(body)).prompt };
}

/** Co-sign the same statement bytes (a second approver). */
export async function approvePending(app, pending) {
  const { raw } = await readPending(pending);
  const { view } = await trustState(app.wid);
  const auth = await signStatement({ tagName: "task", bytes: raw, rpId: view.rpId, credentialIds: myPasskeys(view, app.me.user.id) });
  return post(ws(app.wid, `/signed-tasks/${encodeURIComponent(pending.id)}/approve`), { auth });
}

/** A cancel signed with this device's key: no passkey touch, it can only stop work. */
export async function signedCancel(app, task) {
  const keys = await device(app.wid, app.me.user.id);
  const stmt = { v: 1, kind: "cancel", ws: app.wid, agent: task.agentId, task: task.id, device: keys.deviceId, issuedAt: now() };
  const raw = statementBytes(stmt);
  const sig = b64u(await deviceSign(keys, concat(tag("cancel"), raw)));
  return post(ws(app.wid, `/tasks/${encodeURIComponent(task.id)}/signed-cancel`), { stmt: b64u(raw), sig });
}
