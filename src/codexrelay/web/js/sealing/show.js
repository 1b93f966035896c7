// What the task list and the task page show for a sealed task (TRUST.md §8): the lock badge
// once the agent's signed stream opened, "Output incomplete" with the counters when anything
// was dropped or the stream does not end where the agent vouched, and why a task cannot be
// read on this device. Decrypted texts are kept only in the encrypted device cache.

import * as cache from "../cache.js";
import { busy, h } from "../dom.js";
import { TERMINAL, taskTitle } from "../format.js";
import { ensureDevice, forget, trustState } from "../trust.js";
import { get, ws } from "../api.js";
import { SealedTask, myDevices, openCatalog, readerStatus } from "./read.js";

/** A sealed task's reader for this device, opened from the relay's envelopes. */
export async function openSealed(app, task) {
  const state = await trustState(app.wid, { fresh: true });
  if (!state.view) throw new Error(state.error || "This workspace's signed log cannot be read.");
  const devices = await myDevices(app.wid, app.me.user.id, state.view);
  const reader = new SealedTask({ wid: app.wid, task, view: state.view, devices });
  reader.status = readerStatus(devices);
  await reader.load();
  return reader;
}

/**
 * The task page's texts for a sealed task: opened (or caught up, keeping what verified),
 * the key asked for when this device has no wrap, the encrypted copy when the relay's
 * envelopes are gone, and nothing kept at all on a device the log revoked.
 */
export async function readSealedTask(app, task, reader, { fresh = false } = {}) {
  if (fresh || !reader) reader = await openSealed(app, task);
  else await reader.load({ after: reader.next - 1 });
  await askForKey(app, task, reader);
  let details = reader.readable ? reader.details() : {};
  let fromCache = null;
  if (reader.status === "revoked") {
    await cache.deleteTask(task.id).catch(() => {});
  } else if (reader.expired) {
    const cached = await cache.loadTask(task.id).catch(() => null);
    details = cached ? { ...cached.task, detailsExpired: true } : { detailsExpired: true };
    fromCache = cached ? cached.savedAt : null;
  } else if (!reader.readable) {
    // Not open here (yet): what this device itself sent, kept in its encrypted cache.
    const cached = await cache.loadTask(task.id).catch(() => null);
    if (cached) details = cached.task;
  } else if (TERMINAL.has(task.status)) keep(task, reader);
  return { reader, details, fromCache };
}

/** A live envelope for the open task page: its texts once readable, else null. */
export async function sealedEnvelope(app, task, reader, data) {
  await reader.add(data.index, data.envelope);
  if (!reader.readable) {
    await askForKey(app, task, reader);
    return null;
  }
  if (TERMINAL.has(task.status)) keep(task, reader);
  return reader.details();
}

/** The title for a sealed task: its prompt's first line, else what the statement names. */
export function sealedTitle(task, agent, details) {
  const first = details && details.prompt ? details.prompt.split("\n")[0].trim().slice(0, 120) : "";
  if (first) return first;
  return taskTitle(details ? { ...task, ...details } : task, agent);
}

/** Keep a finished, complete read in the encrypted device cache (never in plain). */
export function keep(task, reader) {
  if (!reader.complete) return;
  cache.saveTask({ ...task, ...reader.details(), sealedComplete: true }).catch(() => {});
}

/** Where this browser stands as a reader of the workspace's sealed tasks. */
export async function browserReaderStatus(app) {
  const state = await trustState(app.wid);
  if (!state.view) return "absent";
  return readerStatus(await myDevices(app.wid, app.me.user.id, state.view));
}

/** The list's first lines: the device cache first, else the relay's envelopes. A device
 * the log revoked reads nothing and deletes what it had kept of the task. */
export async function sealedListTitle(app, task, status) {
  if (status === "revoked") {
    await cache.deleteTask(task.id);
    return null;
  }
  const cached = await cache.loadTask(task.id).catch(() => null);
  if (cached && cached.task.prompt) return cached.task;
  const reader = await openSealed(app, task);
  if (!reader.readable || !reader.prompt) return null;
  if (TERMINAL.has(task.status)) keep(task, reader);
  return reader.details();
}

function agentLabel(app, task) {
  const agent = app.agent(task.agentId);
  return agent ? agent.label : task.agentId;
}

/** Counters in words, as the receiver kept them. */
export function counterWords(reader) {
  const c = reader.counters;
  return `${c.accepted} verified, ${c.gaps} missing or out of order, ${c.duplicates} repeated, ${c.failed} refused`;
}

/** Badge and notices for the task page. */
export function sealedNotices(app, task, reader, { onKeyRequest }) {
  const items = [];
  const label = agentLabel(app, task);
  if (reader.readable && reader.agentSeen > 0) {
    items.push(h("p", { class: "sealed-badge", role: "status" }, `Sealed · verified from ${label}`));
  } else {
    items.push(h("p", { class: "sealed-badge unverified", role: "status" }, "Sealed"));
  }
  if (reader.signer) {
    const member = reader.view.members.get(reader.signer);
    const who = reader.signer === app.me.user.id ? "you" : member ? member.name : "a former member";
    items.push(h("p", { class: "sealed-signer muted small" }, `End-to-end encrypted · signed by ${who}`));
  }
  if (reader.expired) return items;
  if (!reader.readable) {
    items.push(cannotRead(app, task, reader, onKeyRequest));
    return items;
  }
  const ended = TERMINAL.has(task.status) || reader.done !== null;
  if (!reader.complete && (ended || reader.dropped.length)) {
    items.push(h("p", { class: "notice error-notice output-incomplete", role: "alert" },
      `Output incomplete: ${counterWords(reader)}. What is shown is only what verified, in order.`));
  } else if (reader.dropped.length) {
    items.push(h("p", { class: "notice output-refused" },
      `${reader.dropped.length} repeated or altered ${reader.dropped.length === 1 ? "envelope was" : "envelopes were"} refused (${counterWords(reader)}).`));
  }
  return items;
}

function cannotRead(app, task, reader, onKeyRequest) {
  const label = agentLabel(app, task);
  if (reader.status === "revoked") {
    return h("p", { class: "notice error-notice cannot-read", role: "alert" },
      "This device was removed from the workspace's signed log, so this sealed task cannot be read on this device.");
  }
  if (reader.status === "absent") {
    const add = h("button", { type: "button", class: "primary" }, "Add this device to read sealed tasks");
    add.addEventListener("click", () => busy(add, async () => {
      await ensureDevice(app);
      forget(app.wid);
      await onKeyRequest();
    }, { label: "Adding…" }));
    return h("div", { class: "notice cannot-read" },
      h("p", {}, "This device is not in the workspace's signed log yet, so it cannot read sealed tasks. "
        + "Adding it takes your passkey; the agent then sends this task's key to it."), add);
  }
  const words = reader.keyRequest || `Waiting for ${label} to send this task's key to this device…`;
  return h("p", { class: "notice key-request", role: "status" }, words);
}

/** Ask the agent for the key (once per page) when this device has no wrap although the
 * agent's stream has begun (it wraps to every reader in its first envelope) or ended. */
export async function askForKey(app, task, reader) {
  if (reader.readable || reader.expired || reader.asked || reader.status !== "live") return;
  if (reader.next === 0 && !TERMINAL.has(task.status)) return;
  reader.asked = true;
  try {
    await reader.requestKey();
    reader.keyRequest = `Asked ${agentLabel(app, task)} for the key to read this task on this device; it opens here once the agent answers.`;
  } catch (err) {
    reader.keyRequest = err.code === "agent-offline"
      ? `${agentLabel(app, task)} is offline, so this task cannot be opened on this device until it is back.`
      : `This sealed task cannot be read on this device: ${err.message}`;
  }
}

/** On the task list: this device is not (or no longer) a reader of sealed tasks. */
export async function readerBanner(app, onAdded) {
  const state = await trustState(app.wid).catch(() => null);
  if (!state || !state.view || state.view.policy.content !== "sealed") return null;
  const status = readerStatus(await myDevices(app.wid, app.me.user.id, state.view));
  if (status === "live") return null;
  if (status === "revoked") {
    return h("p", { class: "notice error-notice reader-banner" },
      "This device was removed from the workspace's signed log: new sealed tasks cannot be read on it.");
  }
  const add = h("button", { type: "button", class: "primary" }, "Add this device to read sealed tasks");
  add.addEventListener("click", () => busy(add, async () => {
    await ensureDevice(app);
    forget(app.wid);
    await onAdded();
  }, { label: "Adding…" }));
  return h("div", { class: "notice reader-banner" },
    h("p", {}, "Tasks here are sealed end to end. This device is not in the signed log yet, so it cannot read them."), add);
}

/** An agent's sessions where the workspace seals them: `{sessions}` decrypted on this
 * device, `{note}` when this device cannot open them, or null (not sealed, none sent). */
export async function sealedSessions(app, agentId) {
  const state = await trustState(app.wid);
  if (!state.view || state.view.policy.content !== "sealed") return null;
  const { envelope } = await get(ws(app.wid, `/agents/${encodeURIComponent(agentId)}/sealed-catalog`));
  if (!envelope) return null;
  const devices = (await myDevices(app.wid, app.me.user.id, state.view)).filter((d) => d.status === "live");
  try {
    const sessions = await openCatalog(envelope, { wid: app.wid, agentId, view: state.view, devices });
    if (sessions) return { sessions };
    return { note: "The agent's sessions are sealed, and this device is not among the readers it sealed them to yet. They open here after its next update." };
  } catch (err) {
    return { note: `The agent's sealed session list did not verify on this device (${err.reason || err.message}), so it is not shown.` };
  }
}
