// People of the workspace: members and roles, invites (code shown once), recovery codes,
// and leaving the workspace (O5, B7, I2).

import { del, get, patch, post, ws } from "../api.js";
import { busy, confirmDialog, copyButton, errorLine, field, fill, h, loading, qrImage, screenTitle, toast } from "../dom.js";
import { ROLES, roleAtLeast, timeText } from "../format.js";
import { pushToAgents } from "../logpush.js";
import { signEntry, trustState, withSudo } from "../trust.js";
import { logSection } from "./logmembers.js";
import { confirmMemberSection, keyCardSection } from "./keycard.js";

const INVITE_TTLS = [
  [86400, "1 day"],
  [259200, "3 days"],
  [604800, "7 days"],
  [2592000, "30 days"],
];

/** Roles the signed-in person may hand out: admins move people between viewer and member. */
function grantable(app) {
  return app.can("owner") ? ROLES : ROLES.filter((r) => !roleAtLeast(r, "admin"));
}

function shownOnce(title, { code, url, qrSvg }, note) {
  const codeEl = h("p", { class: "big-code" }, code);
  const urlEl = h("code", { class: "command-text" }, url);
  return h("div", { class: "card code-card", role: "region", "aria-label": title },
    h("h3", {}, title),
    h("p", { class: "warning" }, "Shown once. Send it now over a channel you trust; it cannot be shown again."),
    codeEl, copyButton(code, "Copy code", codeEl),
    h("pre", { class: "command-box" }, urlEl), copyButton(url, "Copy link", urlEl),
    qrImage(qrSvg, `QR code of the link: ${url}`),
    note ? h("p", { class: "hint" }, note) : null);
}

let logView = null; // the verified log of the workspace on screen, when protected

function memberCard(app, member, reload, areas) {
  const me = member.userId === app.me.user.id;
  const canManage = !me && app.can("admin") && (app.can("owner") || !roleAtLeast(member.role, "admin"));
  const parts = [h("div", { class: "card-row" }, h("h3", {}, member.name, me ? " (you)" : ""),
    h("span", { class: `chip role-${member.role}` }, member.role))];
  if (member.status !== "active") parts.push(h("p", { class: "muted small" }, member.status === "enrollment-locked" ? "Has not created a passkey yet." : `Account ${member.status}.`));
  const error = errorLine();
  if (canManage) {
    const select = h("select", { "aria-label": `Role of ${member.name}` },
      grantable(app).map((r) => h("option", { value: r, selected: r === member.role }, r)));
    const save = h("button", { type: "button", class: "secondary" }, "Change role");
    save.addEventListener("click", () => busy(save, async () => {
      if (logView && logView.members.has(member.userId)) {
        await signEntry(app, "member.role", { userId: member.userId, role: select.value });
      } else {
        await withSudo(() => patch(ws(app.wid, `/members/${encodeURIComponent(member.userId)}`), { role: select.value }));
      }
      toast(`${member.name} is now ${select.value}.`);
      await reload();
    }, { label: "Saving…", errLine: error }));
    const remove = h("button", { type: "button", class: "danger" }, "Remove");
    remove.addEventListener("click", async () => {
      if (!(await confirmDialog(`Remove ${member.name} from this workspace? They lose access at once.`, "Remove"))) return;
      await busy(remove, async () => {
        // In a protected workspace the removal is a signed log entry, pushed to each agent.
        const signed = logView && logView.members.has(member.userId);
        if (signed) await signEntry(app, "member.remove", { userId: member.userId });
        else await del(ws(app.wid, `/members/${encodeURIComponent(member.userId)}`));
        toast(`${member.name} was removed.`);
        await reload();
        if (signed) await pushToAgents(app, areas.pushed);
      }, { label: "Removing…", errLine: error });
    });
    const recovery = h("button", { type: "button", class: "secondary" }, "Recovery code");
    recovery.addEventListener("click", async () => {
      if (!(await confirmDialog(`Make a one-time recovery code for ${member.name}? It lets whoever holds it register a new passkey as ${member.name}.`, "Make code", { danger: false }))) return;
      await busy(recovery, async () => {
        const res = await post(ws(app.wid, `/members/${encodeURIComponent(member.userId)}/recovery-code`), {});
        fill(areas.shown, shownOnce(`Recovery code for ${member.name}`, res, "Earlier unused codes for this person stop working."));
        areas.shown.scrollIntoView({ block: "nearest" });
      }, { label: "Making…", errLine: error });
    });
    parts.push(h("div", { class: "actions" }, h("div", { class: "field inline" }, select), save, remove, recovery));
  }
  parts.push(error);
  return h("li", { class: "card member-card", dataset: { userId: member.userId } }, parts);
}

function inviteRow(app, invite, reload) {
  const parts = [h("div", { class: "card-row" }, h("strong", {}, `${invite.role} invite`), h("span", { class: `chip invite-${invite.status}` }, invite.status))];
  if (invite.note) parts.push(h("p", {}, invite.note));
  parts.push(h("p", { class: "muted small" }, invite.status === "pending" ? ["Expires ", timeText(invite.expiresAt)] : ["Made ", timeText(invite.createdAt)]));
  if (invite.status === "pending") {
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel invite");
    cancel.addEventListener("click", () => busy(cancel, async () => {
      await del(ws(app.wid, `/invites/${encodeURIComponent(invite.id)}`));
      toast("Invite cancelled.");
      await reload();
    }, { label: "Cancelling…" }));
    parts.push(h("div", { class: "actions" }, cancel));
  }
  return h("li", { class: "card invite-card", dataset: { inviteId: invite.id } }, parts);
}

/** The leave button, or, for a workspace's only owner, what to do instead (the relay would
 * refuse with last-owner: a workspace always keeps an owner). */
function leaving(app, members, leave, leaveError) {
  const owners = members.filter((m) => m.role === "owner");
  if (app.role !== "owner" || owners.length > 1) return [leave, leaveError];
  const others = members.filter((m) => m.userId !== app.me.user.id);
  return h("p", { class: "notice", id: "sole-owner" },
    "You are the only owner of this workspace, so you cannot leave it: a workspace always keeps an owner. ",
    others.length
      ? "To leave, first make another member an owner with Change role above, then come back here."
      : "To hand it over, invite someone as owner (Invite someone, role owner); once they have joined, you can leave.");
}

export async function peopleScreen(app, root) {
  const members = h("div", {}, loading("Loading members…"));
  const shownArea = h("div", { "aria-live": "polite" });
  const pushArea = h("div", { id: "log-push" });
  const invites = h("div", {});
  const leaveError = errorLine();
  const leave = h("button", { type: "button", class: "danger" }, "Leave this workspace");
  leave.addEventListener("click", async () => {
    if (!(await confirmDialog(`Leave "${app.workspaceName()}"? You lose access until someone invites you again.`, "Leave"))) return;
    await busy(leave, async () => {
      await del(ws(app.wid, `/members/${encodeURIComponent(app.me.user.id)}`));
      toast("You left the workspace.");
      location.hash = "";
      await app.start();
    }, { label: "Leaving…", errLine: leaveError });
  });

  const you = h("div", {}, h("p", { class: "muted" }, `Your role here: ${app.role}.`));
  const logArea = h("div", { id: "log-members" });
  const reload = async () => {
    try {
      const res = await get(ws(app.wid, "/members"));
      const trust = await trustState(app.wid, { fresh: true }).catch((err) => ({ protected: true, error: err.message }));
      logView = trust.view || null;
      if (trust.view) {
        const view = trust.view;
        const unlisted = res.members.some((m) => !view.members.has(m.userId));
        fill(logArea, logSection(app, view, res.members),
          view.members.has(app.me.user.id) ? null : keyCardSection(app, view),
          unlisted && app.can("admin") && view.members.has(app.me.user.id) ? confirmMemberSection(app, view, res.members, reload) : null);
      }
      else if (trust.error) fill(logArea, h("p", { class: "error", role: "alert" }, trust.error));
      fill(members, h("ul", { class: "cards", "aria-label": "Members" }, res.members.map((m) => memberCard(app, m, reload, { shown: shownArea, pushed: pushArea }))));
      fill(you, h("p", { class: "muted" }, `Your role here: ${app.role}.`), leaving(app, res.members, leave, leaveError));
    } catch (err) {
      fill(members, h("p", { class: "error", role: "alert" }, err.message));
    }
    if (!app.can("admin")) return;
    try {
      const res = await get(ws(app.wid, "/invites"));
      fill(invites, res.invites.length ? h("ul", { class: "cards", "aria-label": "Invites" }, res.invites.map((i) => inviteRow(app, i, reload)))
        : h("p", { class: "empty" }, "No invites yet."));
    } catch (err) {
      fill(invites, h("p", { class: "error", role: "alert" }, err.message));
    }
  };

  const parts = [screenTitle("People"), pushArea, logArea, h("h3", {}, "Members"), members, shownArea];
  if (app.can("admin")) {
    const role = h("select", {}, grantable(app).map((r) => h("option", { value: r, selected: r === "member" }, r)));
    const ttl = h("select", {}, INVITE_TTLS.map(([sec, words]) => h("option", { value: String(sec), selected: sec === 259200 }, words)));
    const note = h("input", { type: "text", maxlength: "200", autocomplete: "off", placeholder: "e.g. Ada's phone" });
    const submit = h("button", { type: "submit", class: "primary wide" }, "Create invite");
    const error = errorLine();
    const form = h("form", { class: "invite-form" }, field("Role", role), field("Valid for", ttl), field("Note (optional)", note), submit, error);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(submit, async () => {
        const body = { role: role.value, ttlSec: Number(ttl.value) };
        if (note.value.trim()) body.note = note.value.trim();
        const res = await post(ws(app.wid, "/invites"), body);
        note.value = "";
        fill(shownArea, shownOnce("New invite", res, "The person opens the link or scans the code with their phone, gives a name and creates a passkey."));
        await reload();
        shownArea.scrollIntoView({ block: "nearest" });
      }, { label: "Creating…", errLine: error });
    });
    parts.push(h("h3", {}, "Invite someone"), form, h("h3", {}, "Invites"), invites,
      h("h3", {}, "Audit trail"), h("p", { class: "hint" }, "Who did what here: sign-ins, invites, pairings, tasks."),
      h("a", { class: "button secondary", href: "#/audit" }, "Open the audit trail"));
  }
  parts.push(h("h3", {}, "You"), you);
  fill(root, parts);
  await reload();
  return {};
}
