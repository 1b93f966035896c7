// One live conversation: the streamed items, the approval card pinned at the bottom (the
// exact command or diff, the reason, who may answer), and the composer for follow-ups,
// steering and interrupting. Terminal and exec sessions open here too (take over first).

import { get, post, ws } from "../api.js";
import { askedBy, forgetTrust, trustFor } from "../chatsign.js";
import { SOURCE_WORDS, ThreadItems, approvalWord, fileChanges, itemView, stateBadge } from "../conversation.js";
import { busy, errorLine, fill, h, loading, screenTitle, toast } from "../dom.js";
import { relative, timeText } from "../format.js";
import { markSeen, photoPicker, sealedTitles, threadTitle } from "./threads.js";
import { askForThreadKey, openedApproval, sealedNotes, sealedReader, unopenedCard } from "./sealedchat.js";
import { sealedLine, sendSealedDecision, sendSealedTurn } from "../sealing/chatsend.js";
import { sealedThreadTitle } from "../sealing/chatread.js";

const RUNNING = new Set(["running", "waitingForApproval"]);
const DECISIONS = [
  ["accept", "Accept", "primary"],
  ["acceptForSession", "Accept for session", "secondary"],
  ["decline", "Decline", "secondary"],
  ["cancel", "Stop", "danger"],
];

function nearBottom() {
  const doc = document.scrollingElement;
  return doc.scrollHeight - doc.scrollTop - window.innerHeight < 160;
}

/** What this person may do on `thread` (the relay decides; this only hides dead ends). */
function rights(app, thread) {
  const me = app.me.user.id;
  const owner = [thread.createdBy, thread.takenOverBy].includes(me);
  const admin = app.can("admin");
  const member = app.can("member");
  return {
    owner,
    drive: member && (admin || (owner && !thread.writeAccess)),
    takeOver: member && !thread.createdBy && !thread.takenOverBy && !owner,
    answer: (decision) => member && (admin || owner)
      && (!thread.writeAccess || admin || !decision.startsWith("accept")),
  };
}

export async function chatScreen(app, root, [threadId]) {
  const back = h("a", { href: "#/chats", class: "back" }, "‹ Conversations");
  fill(root, back, screenTitle("Conversation"), loading("Loading the conversation…"));
  const base = ws(app.wid, `/threads/${encodeURIComponent(threadId)}`);
  const names = new Map();
  let snapshot;
  try {
    [snapshot] = await Promise.all([
      get(base),
      get(ws(app.wid, "/members")).then((r) => r.members.forEach((m) => names.set(m.userId, m.name))).catch(() => {}),
      app.agents.length ? null : app.loadAgents().catch(() => {}),
    ]);
  } catch (err) {
    fill(root, back, screenTitle("Conversation"), h("p", { class: "error", role: "alert" }, err.message));
    return {};
  }
  let thread = snapshot.thread;
  // A protected workspace takes only signed turns, answers and interrupts (TRUST.md §4.13).
  const trust = await trustFor(app.wid, app.me.user.id).catch(() => null);
  const signedNote = h("p", { class: "muted small signed-note", role: "status" });
  const verified = (what) => {
    const agent = app.agent(thread.agentId);
    signedNote.textContent = `${what} · signed by your passkey · verified by ${agent ? agent.label : thread.agentId}`;
  };
  const signing = async (work) => {
    try {
      return await work();
    } catch (err) {
      forgetTrust(app.wid);
      throw err;
    }
  };
  // A sealed thread: items and approval requests come only from envelopes opened here.
  let sealed = thread.sealed ? await sealedReader(app, thread) : null;
  const sealedBox = h("div", { class: "sealed-notes" });
  const sealLine = h("p", { class: "muted small sealed-note", role: "status" });
  if (sealed) sealLine.textContent = await sealedLine(app, thread.agentId);
  let items = new ThreadItems();
  const approvals = new Map();
  const views = new Map();
  const header = h("header", { class: "chat-head" });
  const list = h("ol", { class: "items", "aria-label": "Conversation" });
  const announce = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const dock = h("div", { class: "dock" });
  const cards = h("div", { class: "approval-cards" });
  const composer = h("div", { class: "composer" });
  dock.append(cards, composer);
  fill(root, back, header, sealedBox, list, announce, dock);

  const who = (id) => (id === app.me.user.id ? "you" : names.get(id) || "someone");

  const drawHeader = () => {
    const r = rights(app, thread);
    const agent = app.agent(thread.agentId);
    const owner = thread.createdBy ? `Started by ${who(thread.createdBy)}`
      : thread.takenOverBy ? `${SOURCE_WORDS[thread.source]} session, taken over by ${who(thread.takenOverBy)}`
        : `Started in the ${thread.source === "exec" ? "exec runner" : "terminal"}`;
    fill(header, screenTitle(threadTitle(thread)),
      h("p", { class: "chips" }, stateBadge(thread.status), h("span", { class: "chip" }, SOURCE_WORDS[thread.source]),
        thread.model ? h("span", { class: "chip" }, thread.model) : null),
      thread.writeAccess ? h("p", { class: "warning write-banner" }, h("strong", {}, "Write mode. "),
        "Codex may change files in ", h("code", {}, thread.cwd || "the workspace"), " once a command or patch is allowed.")
        : h("p", { class: "muted small" }, "Read-only: Codex asks before anything leaves its sandbox."),
      h("p", { class: "muted small" }, owner, " · ", agent ? agent.label : thread.agentId,
        agent && !agent.online ? " (offline)" : "", thread.cwd ? [" · ", h("code", {}, thread.cwd)] : ""),
      r.takeOver ? h("div", { class: "actions" }, takeOverButton()) : null);
  };

  const takeOverButton = () => {
    const button = h("button", { type: "button", class: "primary" }, "Take over this session");
    button.addEventListener("click", () => busy(button, async () => {
      ({ thread } = await post(`${base}/resume`, { agentId: thread.agentId }));
      drawAll();
      toast("You can now drive this session from here.");
    }, { label: "Taking over…" }));
    return button;
  };

  const drawItem = (item) => {
    const view = itemView(item, thread.cwd);
    const held = views.get(item.id);
    if (held) held.replaceWith(view);
    else list.append(view);
    views.set(item.id, view);
  };

  let pending = new Set();
  let frame = 0;
  const redraw = (id) => {
    pending.add(id);
    if (frame) return;
    frame = requestAnimationFrame(() => {
      const follow = nearBottom();
      for (const itemId of pending) {
        const item = items.items.get(itemId);
        if (item) drawItem(item);
      }
      pending = new Set();
      frame = 0;
      if (follow) window.scrollTo(0, document.scrollingElement.scrollHeight);
    });
  };

  const approvalCard = (approval) => {
    if (sealed) {
      const opened = openedApproval(sealed, approval);
      if (!opened) return unopenedCard(approval);
      approval = opened;
    }
    const r = rights(app, thread);
    const offered = DECISIONS.filter(([d]) => approval.availableDecisions.includes(d));
    const allowed = offered.filter(([d]) => r.answer(d));
    const error = errorLine();
    const buttons = allowed.map(([decision, label, kind]) => {
      const button = h("button", { type: "button", class: kind, dataset: { decision } }, label);
      button.addEventListener("click", () => busy(button, async () => {
        const body = { decision };
        let answered;
        if (sealed) ({ approval: answered } = await signing(() => sendSealedDecision(app, trust, thread, approval, decision)));
        else {
          if (trust) body.signed = await signing(() => trust.decision(thread, approval, decision));
          ({ approval: answered } = await post(`${base}/approvals/${encodeURIComponent(approval.id)}`, body));
        }
        approvals.set(answered.id, answered);
        if (trust) verified(`${label}`);
        drawCards();
      }, { label: trust ? "Confirm with your passkey…" : "Sending…", errLine: error }));
      return button;
    });
    const owner = thread.createdBy || thread.takenOverBy;
    const answerers = owner ? `${who(owner)} or an admin` : "an admin";
    // Signed answers show the agent's exact request bytes, never the relay's wording.
    const asked = trust ? askedBy(approval) : null;
    if (trust && !asked) {
      return h("section", { class: "approval-card", "aria-label": "Approval request", dataset: { approvalId: approval.id } },
        h("h3", {}, "Codex asks for an approval"),
        h("p", { class: "error" }, "This request does not carry the agent's exact words, so it cannot be signed. It is declined when it expires."));
    }
    if (asked) {
      approval = { ...approval, command: asked.command, cwd: asked.cwd, changes: asked.changes, reason: asked.reason };
    }
    return h("section", { class: "approval-card", "aria-label": "Approval request", dataset: { approvalId: approval.id } },
      h("h3", {}, approval.kind === "command" ? "Codex asks to run a command" : "Codex asks to change files"),
      h("div", { class: "approval-body" },
        approval.command ? h("pre", { class: "command-box", tabindex: "0", "aria-label": "Command" }, h("code", {}, approval.command)) : null,
        approval.cwd && approval.cwd !== thread.cwd ? h("p", { class: "muted small" }, "in ", h("code", {}, approval.cwd)) : null,
        approval.changes ? fileChanges(approval.changes, { open: approval.changes.length < 3, base: thread.cwd }) : null,
        approval.reason ? h("p", { class: "reason" }, h("strong", {}, "Why: "), approval.reason) : null),
      h("p", { class: "muted small" }, "Declined automatically ", timeText(approval.expiresAt), " if nobody answers. ",
        allowed.length ? "" : `Only ${answerers} can answer.`),
      allowed.length ? h("div", { class: "actions decisions" }, buttons) : null, error);
  };

  const drawCards = () => {
    const open = [...approvals.values()].filter((a) => a.status === "pending");
    fill(cards, open.map(approvalCard));
    const settled = [...approvals.values()].filter((a) => a.status !== "pending").slice(-1);
    if (settled.length && !open.length) {
      const last = settled[0];
      cards.append(h("p", { class: "muted small settled" }, `Last approval: ${approvalWord(last)}`,
        last.decidedBy ? ` by ${who(last.decidedBy)}` : "", last.decidedAt ? [" · ", relative(last.decidedAt)] : ""));
    }
  };

  const message = h("textarea", { id: "chat-message", rows: "2", placeholder: "Message Codex" });
  const photos = photoPicker();
  const composeError = errorLine();
  const drawComposer = () => {
    const r = rights(app, thread);
    const agent = app.agent(thread.agentId);
    if (!r.drive) {
      fill(composer, h("p", { class: "muted small" }, app.can("member")
        ? "Only the person who started this conversation or an admin can send it messages."
        : "Your role can watch this conversation."));
      return;
    }
    const running = RUNNING.has(thread.status);
    const send = h("button", { type: "submit", class: "primary" }, running ? "Steer" : "Send");
    const stop = h("button", { type: "button", class: "danger" }, "Interrupt");
    stop.addEventListener("click", () => busy(stop, async () => {
      await post(`${base}/interrupt`, trust ? { signed: await signing(() => trust.interrupt(thread)) } : {});
      if (trust) verified("Interrupt");
    }, { label: "Stopping…", errLine: composeError }));
    const form = h("form", { class: `compose-form${running ? " compact" : ""}` },
      h("label", { for: "chat-message", class: "visually-hidden" }, running ? "Steer the running turn" : "Message Codex"),
      message, running ? null : photos.element,
      h("div", { class: "actions" }, send, running ? stop : null), composeError);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!message.value.trim()) return;
      busy(send, async () => {
        const body = { prompt: message.value };
        if (!running && photos.photos.length) body.images = [...photos.photos];
        const fields = {
          agentId: thread.agentId, mode: running ? "steer" : "start", threadId: thread.id,
          prompt: body.prompt, images: body.images || null, writeAccess: Boolean(thread.writeAccess),
        };
        if (sealed) await signing(() => sendSealedTurn(app, trust, fields));
        else {
          if (trust) body.signed = await signing(() => trust.turn(fields));
          await post(`${base}/${running ? "steer" : "turns"}`, body);
        }
        if (trust) verified(running ? "Steer" : "Message");
        message.value = "";
        photos.clear();
      }, { label: "Sending…", errLine: composeError });
    });
    if (agent && !agent.online) send.disabled = true;
    fill(composer, form, agent && !agent.online ? h("p", { class: "hint" }, "The agent is offline.") : null,
      sealed ? sealLine : null, trust ? signedNote : null);
  };

  const agentLabel = () => (app.agent(thread.agentId) ? app.agent(thread.agentId).label : thread.agentId);
  const drawSealed = () => {
    if (!sealed) return;
    fill(sealedBox, sealedNotes(app, thread, sealed, { agentLabel: agentLabel(), trust, onReader: (fresh) => {
      sealed = fresh;
      syncSealed();
    } }));
  };
  // What the reader opened: items by the seq rule, approval cards, the list's title.
  const syncSealed = () => {
    if (!sealed) return;
    if (sealed.shown) {
      for (const item of Object.values(sealed.shown.items)) if (items.apply(item)) redraw(item.id);
      const title = sealedThreadTitle(sealed);
      if (title && sealedTitles.get(thread.id) !== title) {
        sealedTitles.set(thread.id, title);
        drawHeader();
      }
    }
    drawSealed();
    drawCards();
  };

  const drawAll = () => {
    drawHeader();
    drawCards();
    drawComposer();
    markSeen(app, thread);
  };

  const load = (data) => {
    thread = data.thread;
    for (const item of data.items) if (!sealed) items.apply(item);
    for (const approval of data.approvals) approvals.set(approval.id, approval);
    for (const item of items.ordered().sort((a, b) => a.seq - b.seq)) drawItem(item);
  };
  const reload = (data) => {
    items = new ThreadItems();
    views.clear();
    fill(list);
    load(data);
    drawAll();
    syncSealed();
  };
  load(snapshot);
  drawAll();
  if (sealed && !sealed.failed) {
    await askForThreadKey(sealed, agentLabel());
    syncSealed();
  }
  window.scrollTo(0, document.scrollingElement.scrollHeight);

  return {
    onEvent(type, data) {
      if (type === "thread" && data.thread.id === thread.id) {
        const wasRunning = RUNNING.has(thread.status);
        thread = data.thread;
        drawHeader();
        if (wasRunning !== RUNNING.has(thread.status)) drawComposer();
        markSeen(app, thread);
        if (data.turn && data.turn.status !== "inProgress") announce.textContent = `Turn ${data.turn.status}.`;
      } else if (type === "item" && data.threadId === thread.id) {
        if (items.apply(data.item)) redraw(data.item.id);
      } else if (type === "item-delta" && data.threadId === thread.id) {
        if (items.delta(data)) redraw(data.itemId);
      } else if (type === "approval" && data.approval.threadId === thread.id) {
        approvals.set(data.approval.id, data.approval);
        drawCards();
        if (data.approval.status === "pending") announce.textContent = "Codex is waiting for your answer.";
      } else if (type === "envelope" && sealed && !sealed.failed && data.threadId === thread.id) {
        sealed.add(data.index, data.envelope).then(() => askForThreadKey(sealed, agentLabel())).then(syncSealed).catch(() => {});
      } else if (type === "agent" && data.agent.agentId === thread.agentId) {
        drawHeader();
        drawComposer();
        if (data.agent.online) get(base).then(reload).catch(() => {}); // its numbering may have restarted
        if (data.agent.online && sealed && !sealed.failed) sealed.load(sealed.next - 1).then(syncSealed).catch(() => {});
      }
    },
    dispose() {
      if (frame) cancelAnimationFrame(frame);
    },
  };
}
