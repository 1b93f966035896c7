// Settings › Your devices in the signed log (protected workspaces): each of my devices as the
// verified log holds it, with its safety number (the same digits `codexrelay verify-log`
// prints), and a passkey-signed device.revoke for any that is lost or no longer used. A
// revoked device gets no new task keys; when this device finds itself revoked it deletes its
// keys and cached task details.

import * as cache from "../cache.js";
import { busy, confirmDialog, errorLine, fill, h, toast } from "../dom.js";
import { deleteKeys, loadKeys } from "../../e2e/keys.js";
import { safetyNumber } from "../../e2e/safety.js";
import { fromB64u } from "../../e2e/statements.js";
import { signEntry, trustState, withSudo } from "../trust.js";

const keysName = (wid, userId) => `device:${wid}:${userId}`;

/** If the log revoked this device's keys for `wid`, delete them and the cached details. */
export async function dropIfRevoked(app, view) {
  const name = keysName(app.wid, app.me.user.id);
  const mine = await loadKeys(name).catch(() => null);
  const entry = mine && view.devices.get(mine.deviceId);
  if (!entry || entry.revokedSeq === null) return false;
  await deleteKeys(name);
  await cache.clearDetails();
  return true;
}

function deviceCard(app, view, device, current, reload) {
  const safety = h("code", { class: "safety-number" }, "…");
  safetyNumber(fromB64u(view.genesisHash), device.deviceId, fromB64u(device.sigPub))
    .then((digits) => { safety.textContent = digits.join(" "); }, () => { safety.textContent = "unavailable"; });
  const error = errorLine();
  const revoked = device.revokedSeq !== null;
  const parts = [
    h("div", { class: "card-row" },
      h("h4", {}, device.label || "Device", current ? " (this device)" : ""),
      h("span", { class: `chip ${revoked ? "off" : "on"}` }, revoked ? `revoked at #${device.revokedSeq}` : `added at #${device.addedSeq}`)),
    h("dl", { class: "meta compact" }, h("dt", {}, "Safety number"), h("dd", {}, safety)),
  ];
  if (!revoked) {
    const revoke = h("button", { type: "button", class: "danger" }, "Revoke device");
    revoke.addEventListener("click", async () => {
      const words = current
        ? "Revoke this device? It stops receiving task keys, and its keys and cached task details are deleted here."
        : `Revoke "${device.label || device.deviceId}"? It stops receiving task keys from the moment each agent sees the change.`;
      if (!(await confirmDialog(words, "Revoke device"))) return;
      await busy(revoke, async () => {
        await withSudo(() => signEntry(app, "device.revoke", { userId: app.me.user.id, deviceId: device.deviceId }));
        const state = await trustState(app.wid, { fresh: true });
        if (current && state.view) await dropIfRevoked(app, state.view);
        toast(current ? "This device is revoked; its keys are deleted." : "Device revoked in the signed log.");
        await reload();
      }, { label: "Waiting for your passkey…", errLine: error });
    });
    parts.push(h("div", { class: "actions" }, revoke), error);
  }
  return h("li", { class: `card device-card${revoked ? " is-revoked" : ""}`, dataset: { deviceId: device.deviceId } }, parts);
}

export function devicesSection(app) {
  const body = h("div", {});
  const section = h("section", { class: "detail-section", id: "my-devices", hidden: true },
    h("h3", {}, "Your devices in the signed log"), body,
    h("p", { class: "hint" }, "Each device has its own keys for this workspace. Compare a safety number with ",
      h("code", {}, "codexrelay verify-log"), " or with the device itself."));

  const reload = async () => {
    const state = await trustState(app.wid, { fresh: true });
    if (!state.protected || !state.view) {
      section.hidden = true;
      return;
    }
    const view = state.view;
    await dropIfRevoked(app, view);
    const mine = await loadKeys(keysName(app.wid, app.me.user.id)).catch(() => null);
    const devices = [...view.devices.values()].filter((d) => d.userId === app.me.user.id);
    section.hidden = false;
    fill(body, devices.length
      ? h("ul", { class: "cards", "aria-label": "Your devices" }, devices.map((d) => deviceCard(app, view, d, Boolean(mine && mine.deviceId === d.deviceId), reload)))
      : h("p", { class: "muted" }, "No device of yours is in this workspace's log yet. One is added the first time this browser signs or reads something here."));
  };
  return { section, reload };
}
