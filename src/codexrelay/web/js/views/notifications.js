// Settings › Notifications: this device's permission and switch, what it is told about,
// a test notification, and every device of mine that receives notifications.

import { del, get, patch, post } from "../api.js";
import { busy, confirmDialog, errorLine, fill, h, loading, toast } from "../dom.js";
import { timeText } from "../format.js";
import * as push from "../push.js";

const WHY_NOT = {
  "ios-home-screen": "On iPhone and iPad, notifications work only in the app installed on the Home Screen: tap Share, then Add to Home Screen, open the app from there and come back to Settings.",
  unsupported: "This browser cannot receive notifications. Use a current Chrome, Edge, Firefox or Safari.",
  insecure: "Notifications need the relay's https address.",
};

function deviceCard(sub, reload) {
  const remove = h("button", { type: "button", class: "secondary" }, "Remove");
  remove.addEventListener("click", async () => {
    const name = sub.current ? "this device" : push.deviceWords(sub.userAgent);
    if (!(await confirmDialog(`Stop notifications to ${name}?`, "Remove", { danger: false }))) return;
    await busy(remove, async () => {
      await del(`/api/v1/me/push-subscriptions/${encodeURIComponent(sub.id)}`);
      toast("Device removed.");
      await reload();
    }, { label: "Removing…" });
  });
  const delivered = sub.lastSuccessAt ? ["last notified ", timeText(sub.lastSuccessAt)] : "not notified lately";
  return h("li", { class: "card push-device", dataset: { subscriptionId: sub.id } },
    h("div", { class: "card-row" },
      h("strong", {}, sub.current ? "This device" : push.deviceWords(sub.userAgent)),
      h("span", { class: "muted small" }, delivered)),
    h("p", { class: "muted small" }, sub.current ? `${push.deviceWords(sub.userAgent)} · ` : "",
      `via ${push.serviceWords(sub.service)} · added `, timeText(sub.createdAt)),
    h("div", { class: "actions" }, remove));
}

function kindSwitches(sub, onChange) {
  return h("fieldset", { class: "push-kinds" }, h("legend", {}, "Tell this device when"),
    push.KINDS.map(([kind, words, hint]) => {
      const box = h("input", {
        type: "checkbox", name: "push-kind", value: kind,
        checked: sub.kinds.includes(kind), disabled: kind === push.ALWAYS_ON,
      });
      box.addEventListener("change", onChange);
      return h("label", { class: "check" }, box, h("span", {}, h("span", {}, words), h("span", { class: "hint" }, hint)));
    }));
}

/** The Notifications section of Settings; `app.me` is the signed-in user. */
export function notificationsSection(app) {
  const section = h("section", { class: "detail-section", id: "notifications", "aria-labelledby": "notifications-title" });
  const body = h("div", {}, loading("Loading notifications…"));
  const devices = h("div", {});
  const error = errorLine();
  const userId = app.me.user.id;
  let list = [];

  const reload = async () => {
    try {
      list = (await get("/api/v1/me/push-subscriptions")).subscriptions;
    } catch (err) {
      fill(body, h("p", { class: "error", role: "alert" }, err.message));
      return;
    }
    fill(body, deviceState(list.find((s) => s.current) || null));
    fill(devices, list.length
      ? h("ul", { class: "cards", "aria-label": "Devices that receive notifications" }, list.map((s) => deviceCard(s, reload)))
      : h("p", { class: "muted" }, "No device of yours receives notifications yet."));
  };

  function deviceState(mine) {
    const can = push.support();
    const permission = push.permission();
    if (!can.ok) return h("p", { class: "warning", id: "push-state" }, WHY_NOT[can.reason]);
    if (permission === "denied") {
      return h("p", { class: "warning", id: "push-state" },
        "Notifications are blocked for this site. Allow them in the browser's site settings (the icon beside the address), then come back here.");
    }
    if (!mine) {
      const on = h("button", { type: "button", class: "primary wide", id: "push-enable" }, "Turn on notifications");
      on.addEventListener("click", () => busy(on, async () => {
        await push.enable(userId);
        toast("Notifications are on for this device.");
        await reload();
      }, { label: "Asking your browser…", errLine: error }));
      return [h("p", { id: "push-state" }, permission === "granted"
        ? "Off on this device."
        : "Off on this device. Your browser will ask whether this site may show notifications."), on];
    }
    const save = async () => {
      const kinds = [...body.querySelectorAll("input[name=push-kind]:checked")].map((b) => b.value);
      try {
        const res = await patch(`/api/v1/me/push-subscriptions/${encodeURIComponent(mine.id)}`, { kinds });
        push.rememberKinds(userId, res.subscription.kinds);
        toast("Saved.");
      } catch (err) {
        error.textContent = err.message;
      }
    };
    const test = h("button", { type: "button", class: "secondary wide", id: "push-test" }, "Send a test notification");
    test.addEventListener("click", () => busy(test, async () => {
      await post(`/api/v1/me/push-subscriptions/${encodeURIComponent(mine.id)}/test`);
      toast("Test notification sent. It should arrive in a few seconds.");
    }, { label: "Sending…", errLine: error }));
    const off = h("button", { type: "button", class: "secondary wide", id: "push-disable" }, "Turn off on this device");
    off.addEventListener("click", () => busy(off, async () => {
      await push.disable(userId, mine.id);
      toast("Notifications are off for this device.");
      await reload();
    }, { label: "Turning off…", errLine: error }));
    return [h("p", { id: "push-state" }, "On for this device. Notifications say only what happened and where; open them to see the details."),
      kindSwitches(mine, save), test, off];
  }

  fill(section, h("h3", { id: "notifications-title" }, "Notifications"), body, error,
    h("h4", {}, "Your devices"), devices);
  return { section, reload };
}
