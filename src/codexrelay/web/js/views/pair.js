// Pair an agent (R06): an admin creates a one-time code, runs the shown command on the
// development server, and approves the agent's request here. Requests arrive live over SSE.

import { get, post, ws } from "../api.js";
import { busy, copyButton, errorLine, field, fill, h, loading, qrImage, screenTitle, toast } from "../dom.js";
import { timeText } from "../format.js";
import { keepSecret, protectedCodeCard, requestTrust, signedApprove, trustBadge } from "../trustpair.js";
import { signBlock, trustState, withSudo } from "../trust.js";

const TTLS = [
  [300, "5 minutes"],
  [600, "10 minutes"],
  [1800, "30 minutes"],
  [3600, "1 hour"],
];

function countdown(expiresAt, el) {
  const tick = () => {
    const left = Math.max(0, Math.round((new Date(expiresAt).getTime() - Date.now()) / 1000));
    el.textContent = left > 0
      ? `Expires in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`
      : "This code has expired. Create a new one.";
    return left;
  };
  tick();
  const timer = setInterval(() => {
    if (tick() <= 0 || !el.isConnected) clearInterval(timer);
  }, 1000);
  return timer;
}

function codeCard(res) {
  const command = h("code", { class: "command-text" }, res.command);
  const expiry = h("p", { class: "muted", role: "timer" });
  const timer = countdown(res.pairing.expiresAt, expiry);
  const qr = qrImage(res.qrSvg, `QR code of the command: ${res.command}`);
  const card = h("div", { class: "card code-card", "aria-label": "Pairing code", dataset: { pairingId: res.pairing.id } },
    h("p", { class: "muted" }, "Pairing code"),
    h("p", { class: "big-code", "aria-label": `Pairing code ${res.code.split("").join(" ")}` }, res.code),
    expiry,
    h("p", {}, "Run this on the development server, with the agent's config in place:"),
    h("pre", { class: "command-box" }, command),
    copyButton(res.command, "Copy command", command),
    qr,
    h("p", { class: "hint" }, "Then approve the agent below when it asks to join. The code works once."));
  return { card, timer };
}

/** The code was claimed (it works once): no countdown, no command, just who used it. */
function usedCard(code, req) {
  return h("div", { class: "card code-card used", "aria-label": "Pairing code (used)" },
    h("p", { class: "muted" }, "Pairing code"),
    h("p", { class: "big-code used-code", "aria-label": `Pairing code ${code.split("").join(" ")}, used` }, code),
    h("p", { class: "used-note", role: "status" },
      `Used by "${req.label}" (${req.agentId}). The code no longer works. `,
      req.status === "pending" ? "Approve or reject the request below." : ""));
}

function requestCard(req, decide, check) {
  const approve = h("button", { type: "button", class: "primary", disabled: !!check && !check.verified }, "Approve");
  const reject = h("button", { type: "button", class: "secondary" }, "Reject");
  approve.addEventListener("click", () => busy(approve, () => decide(req, "approve"), { label: "Approving…" }));
  reject.addEventListener("click", () => busy(reject, () => decide(req, "reject"), { label: "Rejecting…" }));
  return h("li", { class: "card request-card", dataset: { requestId: req.id } },
    h("div", { class: "card-row" }, h("h3", {}, req.label), h("span", { class: "muted small" }, "asked ", timeText(req.createdAt))),
    req.replacesAgent ? h("p", { class: "warning" }, `This replaces an existing agent with the id "${req.agentId}". Its old token stops working.`) : null,
    req.kind === "pin" ? h("p", { class: "notice" }, "An agent paired before protection was on asks to pin this workspace: approving signs its keys into the log.") : null,
    h("dl", { class: "meta compact" },
      h("dt", {}, "Agent id"), h("dd", {}, h("code", {}, req.agentId)),
      h("dt", {}, "Host"), h("dd", {}, req.hostname || "unknown"),
      h("dt", {}, "Workspace folder"), h("dd", {}, req.workspaceRootName || "unknown"),
      h("dt", {}, "Expires"), h("dd", {}, timeText(req.expiresAt))),
    check ? trustBadge(check) : null,
    h("p", { class: "hint" }, "Approve only if you just started this agent yourself."),
    h("div", { class: "actions" }, approve, reject));
}

export async function pairScreen(app, root) {
  if (!app.can("admin")) {
    fill(root, screenTitle("Pair an agent"), h("p", { class: "notice" }, "Pairing agents needs the admin role."));
    return {};
  }
  if (!app.features().pairings) {
    fill(root, screenTitle("Pair an agent"), h("p", { class: "notice" }, "Pairing new agents is turned off on the relay."));
    return {};
  }
  const trust = await trustState(app.wid, { fresh: true });
  if (trust.protected && (trust.error || signBlock(app))) {
    fill(root, screenTitle("Pair an agent"), h("p", { class: "notice", role: "status" }, trust.error || signBlock(app)));
    return {};
  }
  const view = trust.view || null;
  let timer = null;
  let shown = null; // the code on screen: { code, pairingId }
  const note = h("input", { type: "text", maxlength: "200", autocomplete: "off", placeholder: "e.g. build server" });
  const ttl = h("select", {}, TTLS.map(([sec, words]) => h("option", { value: String(sec), selected: sec === 600 }, words)));
  const create = h("button", { type: "submit", class: "primary wide" }, "Create pairing code");
  const error = errorLine();
  const codeArea = h("div", { "aria-live": "polite" });
  const form = h("form", {}, field("Note (optional)", note), field("Code valid for", ttl), create, error);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(create, async () => {
      const body = { ttlSec: Number(ttl.value) };
      if (note.value.trim()) body.note = note.value.trim();
      const res = await withSudo(() => post(ws(app.wid, "/pairings"), body));
      clearInterval(timer);
      const made = view ? protectedCodeCard(res, await keepSecret(res), countdown) : codeCard(res);
      timer = made.timer;
      shown = { code: res.code, pairingId: res.pairing.id };
      fill(codeArea, made.card);
      made.card.scrollIntoView({ block: "start" });
    }, { label: "Creating…", errLine: error });
  });

  const requestList = h("ul", { class: "cards", "aria-label": "Pending requests" });
  const requestsBody = h("div", {}, loading("Loading requests…"));
  let requests = [];
  const checks = new Map(); // request id -> the phone's own check of the agent's key claim
  const drawRequests = async () => {
    const pending = requests.filter((r) => r.status === "pending");
    if (view) {
      for (const r of pending) if (!checks.has(r.id)) checks.set(r.id, await requestTrust(view, r));
    }
    fill(requestList, pending.map((r) => requestCard(r, decide, view ? checks.get(r.id) : null)));
    fill(requestsBody, pending.length ? requestList : h("p", { class: "empty" }, "No agent is waiting. Requests appear here by themselves."));
  };
  const decide = async (req, verdict) => {
    const path = ws(app.wid, `/pair-requests/${encodeURIComponent(req.id)}/${verdict}`);
    const { pairRequest } = view && verdict === "approve"
      ? await withSudo(() => signedApprove(app, req, checks.get(req.id), path))
      : await post(path);
    requests = requests.map((r) => (r.id === pairRequest.id ? pairRequest : r));
    drawRequests();
    toast(verdict === "approve" ? `Approved "${req.label}". It connects in a moment.` : `Rejected "${req.label}".`);
  };

  fill(root, h("a", { href: "#/agents", class: "back" }, "‹ Agents"), screenTitle("Pair an agent"),
    h("p", {}, "A pairing code lets one agent ask to join this workspace. Nothing joins until you approve it here."),
    form, codeArea, h("h3", {}, "Waiting for approval"), requestsBody);
  try {
    ({ pairRequests: requests } = await get(ws(app.wid, "/pair-requests")));
    await drawRequests();
  } catch (err) {
    fill(requestsBody, h("p", { class: "error", role: "alert" }, err.message));
  }
  return {
    onEvent(type, data) {
      if (type !== "pair-request") return;
      const req = data.pairRequest;
      const index = requests.findIndex((r) => r.id === req.id);
      if (index >= 0) requests[index] = req;
      else requests.unshift(req);
      drawRequests();
      if (shown && req.pairingId === shown.pairingId) {
        clearInterval(timer);
        fill(codeArea, usedCard(shown.code, req));
      }
    },
    dispose: () => clearInterval(timer),
  };
}
