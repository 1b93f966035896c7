// What the conversation screen adds for a sealed thread (TRUST.md §8): the lock line, the
// approval card's content as this device decrypted it from the agent's signed request,
// "Output incomplete" when anything is missing or refused, and why the thread cannot be read
// here (not a reader yet: add this device; added later: the key is asked for).

import { busy, h } from "../dom.js";
import { forget } from "../trust.js";
import { openSealedThread } from "../sealing/chatread.js";

const ASKED = ["command", "cwd", "changes", "reason", "request", "availableDecisions"];

/** The relay's bare approval with what the agent asked, as opened here (null: not yet). */
export function openedApproval(reader, approval) {
  const opened = reader && reader.shown ? reader.shown.approvals[approval.id] : null;
  if (!opened) return null;
  const merged = { ...approval };
  for (const key of ASKED) if (opened[key] !== undefined) merged[key] = opened[key];
  return merged;
}

/** A card for a pending approval this device has not opened (yet). */
export function unopenedCard(approval) {
  return h("section", { class: "approval-card", "aria-label": "Approval request", dataset: { approvalId: approval.id } },
    h("h3", {}, "Codex asks for an approval"),
    h("p", { class: "muted" }, "The request is sealed; it shows here once this device opens the agent's signed envelope."));
}

/** The reader, or an object holding why it could not be opened. */
export async function sealedReader(app, thread) {
  try {
    return await openSealedThread(app, thread);
  } catch (err) {
    return { failed: err.message || String(err) };
  }
}

/** Ask for the key once when the stream has begun but nothing is wrapped to this device. */
export async function askForThreadKey(reader, agentLabel) {
  if (!reader.noKey || reader.status !== "live" || reader.asked || reader.expired) return;
  try {
    await reader.requestKey();
    reader.keyNote = `Asked ${agentLabel} for this conversation's key; it opens here once the agent answers.`;
  } catch (err) {
    reader.keyNote = err.code === "agent-offline"
      ? `${agentLabel} is offline, so this conversation cannot be opened on this device until it is back.`
      : `This sealed conversation cannot be read on this device: ${err.message}`;
  }
}

/** The notices above the items; `onReader` gets a fresh reader after this device is added. */
export function sealedNotes(app, thread, reader, { agentLabel, trust, onReader }) {
  const out = [h("p", { class: "sealed-badge", role: "status" },
    reader.shown ? `Sealed · verified from ${agentLabel}` : "Sealed")];
  if (reader.failed) {
    out.push(h("p", { class: "notice error-notice cannot-read", role: "alert" }, `This sealed conversation cannot be read: ${reader.failed}`));
    return out;
  }
  if (reader.incomplete) {
    const words = reader.expired ? "the relay no longer holds the start of this conversation"
      : `${reader.missing} ${reader.missing === 1 ? "envelope" : "envelopes"} missing, out of order or refused`;
    out.push(h("p", { class: "notice error-notice output-incomplete", role: "alert" },
      `Output incomplete: ${words}. What is shown is only what verified, in order.`));
  }
  if (reader.status === "revoked") {
    out.push(h("p", { class: "notice error-notice cannot-read", role: "alert" },
      "This device was removed from the workspace's signed log, so this sealed conversation cannot be read on it."));
  } else if (reader.status === "absent" && trust) {
    const add = h("button", { type: "button", class: "primary" }, "Add this device to read sealed conversations");
    add.addEventListener("click", () => busy(add, async () => {
      await trust.device();
      forget(app.wid);
      const fresh = await sealedReader(app, thread);
      if (!fresh.failed) await askForThreadKey(fresh, agentLabel);
      onReader(fresh);
    }, { label: "Adding…" }));
    out.push(h("div", { class: "notice cannot-read" }, h("p", {},
      "This device is not in the workspace's signed log yet, so it cannot read sealed conversations. "
      + "Adding it takes your passkey; the agent then sends this conversation's key to it."), add));
  } else if (!reader.shown && reader.keyNote) {
    out.push(h("p", { class: "notice key-request", role: "status" }, reader.keyNote));
  }
  return out;
}
