// Joining a protected workspace's signed log (TRUST.md §4.3, without relay trust): the new
// member's phone makes a key card — their passkey's public key, read from the authenticator
// at registration, and this device's keys — signed by that passkey. It travels out of band
// (a message, a copy and paste); the admin's phone checks the signature, shows a safety
// number both can compare, and signs member.add. The relay never carries the card.

import { busy, copyButton, errorLine, fill, h, toast } from "../dom.js";
import { firstCborItem, verifyAssertion } from "../../e2e/log.js";
import { safetyNumber } from "../../e2e/safety.js";
import { b64u, fromB64u, statementBytes } from "../../e2e/statements.js";
import { signStatement } from "../../e2e/webauthn.js";
import { myDeviceCard, signEntry } from "../trust.js";

function storedPasskey() {
  try {
    const kept = JSON.parse(localStorage.getItem("codexrelay.cose") || "null");
    return kept && { credId: kept.credId, cose: b64u(firstCborItem(fromB64u(kept.cose))) };
  } catch {
    return null;
  }
}

async function deviceSafety(view, userId, device) {
  return (await safetyNumber(fromB64u(view.genesisHash), userId, fromB64u(device.sigPub))).join(" ");
}

/** For a member the log does not list yet: make and show this device's key card. */
export function keyCardSection(app, view) {
  const passkey = storedPasskey();
  const area = h("div", {});
  const make = h("button", { type: "button", class: "primary wide" }, "Make my key card");
  const error = errorLine();
  make.disabled = !passkey;
  make.addEventListener("click", () => busy(make, async () => {
    const device = await myDeviceCard(app.wid, app.me.user.id);
    const card = statementBytes({ v: 1, ws: app.wid, userId: app.me.user.id, name: app.me.user.name, passkey, device });
    const sig = await signStatement({ tagName: "enroll", bytes: card, rpId: view.rpId, credentialIds: [passkey.credId] });
    const text = b64u(statementBytes({ card: b64u(card), sig }));
    const shown = h("code", { class: "key-card-text" }, text);
    fill(area, h("p", {}, "Send this to an admin of the workspace (a message is fine: it holds public keys only):"),
      h("pre", { class: "command-box" }, shown), copyButton(text, "Copy key card", shown),
      h("p", {}, "Safety number to compare with theirs: ", h("code", { class: "safety-number" }, await deviceSafety(view, app.me.user.id, device))));
  }, { label: "Waiting for your passkey…", errLine: error }));
  return h("section", { class: "detail-section key-card", "aria-label": "Join the signed log" },
    h("p", { class: "notice" }, "You are not in this workspace's signed log yet, so agents refuse your tasks and approvals until an admin adds you."),
    passkey ? make : h("p", { class: "hint" }, "Create a passkey on this device first (Settings): its public key goes on the card."),
    error, area);
}

async function readCard(view, text) {
  const outer = JSON.parse(new TextDecoder().decode(fromB64u(text.trim())));
  const raw = fromB64u(outer.card);
  const card = JSON.parse(new TextDecoder().decode(raw));
  if (card.ws !== view.ws) throw new Error("This key card is for another workspace.");
  if (outer.sig.credentialId !== card.passkey.credId) throw new Error("The key card is not signed by its own passkey.");
  await verifyAssertion(outer.sig, { tagName: "enroll", message: raw, rpId: view.rpId, origins: view.origins, cose: card.passkey.cose });
  return card;
}

/** For an admin: paste a key card, check it, compare the safety number, sign member.add. */
export function confirmMemberSection(app, view, relayMembers, reload) {
  const input = h("textarea", { rows: "3", "aria-label": "Key card", spellcheck: "false" });
  const check = h("button", { type: "button", class: "secondary wide" }, "Check key card");
  const area = h("div", {});
  const error = errorLine();
  check.addEventListener("click", () => busy(check, async () => {
    let card;
    try {
      card = await readCard(view, input.value);
    } catch (err) {
      throw new Error(`This key card does not verify: ${err.message}`);
    }
    const member = relayMembers.find((m) => m.userId === card.userId);
    if (!member) throw new Error("The key card names someone who is not a member of this workspace.");
    const add = h("button", { type: "button", class: "primary wide" }, `Add ${member.name} to the log with Face ID`);
    add.addEventListener("click", () => busy(add, async () => {
      await signEntry(app, "member.add", { userId: card.userId, name: member.name, role: member.role, passkeys: [card.passkey], devices: [card.device] });
      toast(`${member.name} is in the signed log.`);
      await reload();
    }, { label: "Waiting for your passkey…", errLine: error }));
    fill(area, h("div", { class: "trust-badge verified", role: "status" },
      h("strong", {}, `Key card of ${member.name} (${member.role}), signed by their passkey`),
      h("p", { class: "small" }, "Safety number: ", h("code", { class: "safety-number" }, await deviceSafety(view, card.userId, card.device)),
        ". Compare it with theirs before adding them.")), add);
  }, { label: "Checking…", errLine: error }));
  return h("section", { class: "detail-section confirm-member", "aria-label": "Add someone to the signed log" },
    h("h3", {}, "Add someone to the signed log"),
    h("p", { class: "hint" }, "Paste the key card a member made on their phone."), input, check, error, area);
}
