// Conversations of an agent (state badges, unread marks, newest first) and the form that
// starts one: prompt, folder, write mode, model and reasoning effort, photos (R09, R17).

import { get, post, ws } from "../api.js";
import { forgetTrust, trustFor } from "../chatsign.js";
import { sealedLine, sendSealedTurn } from "../sealing/chatsend.js";
import { openSealedThread, sealedThreadTitle } from "../sealing/chatread.js";
import { isSealed } from "../sealing/send.js";
import { trustState } from "../trust.js";
import { SOURCE_WORDS, stateBadge } from "../conversation.js";
import { busy, errorLine, field, fill, h, loading, screenTitle, toast } from "../dom.js";
import { plural, timeText } from "../format.js";
import { MAX_PHOTOS, photoDataUrl } from "../photo.js";
import { writeBlock } from "./newtask.js";

// ---- what this device has seen (unread marks) ----

function seenKey(app) {
  return `codexrelay.seen.${app.me.user.id}`;
}

function seenMap(app) {
  try {
    return JSON.parse(localStorage.getItem(seenKey(app)) || "{}");
  } catch {
    return {};
  }
}

/** Remember that this person has seen `thread` as it is now. */
export function markSeen(app, thread) {
  const seen = seenMap(app);
  seen[thread.id] = thread.updatedAt;
  const keys = Object.keys(seen);
  for (const old of keys.slice(0, Math.max(0, keys.length - 500))) delete seen[old];
  localStorage.setItem(seenKey(app), JSON.stringify(seen));
}

function isUnread(seen, thread) {
  const at = seen[thread.id];
  return !at || new Date(thread.updatedAt) > new Date(at);
}

export function conversationAgents(app) {
  return app.agents.filter((a) => !a.revokedAt && a.features.conversations);
}

// Titles of sealed threads, decrypted on this device: in memory only, never stored.
export const sealedTitles = new Map();

function threadTitle(thread) {
  if (thread.sealed) return sealedTitles.get(thread.id) || "Sealed conversation";
  const first = (thread.preview || "").split("\n")[0].trim();
  if (first) return first.length > 90 ? `${first.slice(0, 90)}…` : first;
  return thread.source === "phone" ? "Conversation" : `${SOURCE_WORDS[thread.source]} session`;
}

export { threadTitle };

function threadCard(thread, seen) {
  const unread = isUnread(seen, thread);
  const chips = [stateBadge(thread.status)];
  if (thread.source !== "phone") chips.push(h("span", { class: "chip" }, SOURCE_WORDS[thread.source]));
  if (thread.writeAccess) chips.push(h("span", { class: "chip write-chip" }, "Write mode"));
  if (thread.sealed) chips.push(h("span", { class: "chip sealed-chip" }, "Sealed"));
  return h("li", { dataset: { threadId: thread.id } },
    h("a", { href: `#/chats/${encodeURIComponent(thread.id)}`, class: `card thread-card${unread ? " unread" : ""}` },
      h("span", { class: "card-row" },
        h("strong", { class: "thread-title" }, unread ? h("span", { class: "unread-dot", "aria-label": "Unread" }) : null, threadTitle(thread)),
        h("span", { class: "chips" }, chips)),
      thread.pendingApprovals ? h("span", { class: "approval-note" }, plural(thread.pendingApprovals, "approval waits", "approvals wait"), " for an answer") : null,
      h("span", { class: "muted small" }, timeText(thread.updatedAt))));
}

export async function threadListScreen(app, root, _params, query) {
  const body = h("div", {}, loading("Loading conversations…"));
  const head = h("div", { class: "screen-head" }, screenTitle("Conversations"));
  fill(root, head, body);
  await app.loadAgents().catch(() => {});
  const agents = conversationAgents(app);
  if (!agents.length) {
    fill(body, h("p", { class: "empty" }, "No agent in this workspace runs live conversations yet. ",
      "Turn on features.conversations in an agent's config to talk to Codex from here."));
    return {};
  }
  let agentId = query.get("agent") || localStorage.getItem("codexrelay.chats.agent") || agents[0].agentId;
  if (!agents.some((a) => a.agentId === agentId)) agentId = agents[0].agentId;
  const select = h("select", { id: "chat-agent" }, agents.map((a) => h("option", { value: a.agentId, selected: a.agentId === agentId },
    `${a.label}${a.online ? "" : " (offline)"}`)));
  const newLink = h("a", { class: "button primary", href: `#/chats/new?agent=${encodeURIComponent(agentId)}` }, "New conversation");
  if (app.can("member")) head.append(newLink);
  const list = h("ul", { class: "cards", "aria-label": "Conversations" });
  let threads = [];
  const draw = () => {
    const seen = seenMap(app);
    fill(list, threads.map((t) => threadCard(t, seen)));
    fill(body, field("Agent", select), threads.length ? list
      : h("p", { class: "empty" }, "No conversations on this agent yet."));
  };
  const load = async () => {
    try {
      ({ threads } = await get(`${ws(app.wid, "/threads")}?agentId=${encodeURIComponent(agentId)}`));
    } catch (err) {
      fill(body, field("Agent", select), h("p", { class: "error", role: "alert" }, err.message));
      return;
    }
    draw();
    readTitles();
  };
  // Sealed threads: the first message, opened from the agent's envelopes on this device.
  const readTitles = async () => {
    for (const thread of threads.filter((t) => t.sealed && !sealedTitles.has(t.id)).slice(0, 10)) {
      const reader = await openSealedThread(app, thread).catch(() => null);
      const title = reader && sealedThreadTitle(reader);
      if (!title) continue;
      sealedTitles.set(thread.id, title);
      draw();
    }
  };
  select.addEventListener("change", () => {
    agentId = select.value;
    localStorage.setItem("codexrelay.chats.agent", agentId);
    newLink.href = `#/chats/new?agent=${encodeURIComponent(agentId)}`;
    load();
  });
  await load();
  return {
    onEvent(type, data) {
      if (type === "agent") draw();
      if (type !== "thread" || data.thread.agentId !== agentId) return;
      threads = [data.thread, ...threads.filter((t) => t.id !== data.thread.id)];
      threads.sort((a, b) => new Date(b.updatedAt) - new Date(a.updatedAt));
      draw();
    },
  };
}

// ---- starting a conversation ----

/** The photo picker: up to four pictures, re-encoded on the phone, each removable. */
export function photoPicker() {
  const photos = [];
  const input = h("input", { type: "file", accept: "image/*", multiple: true, class: "photo-input", id: `photo-${Math.random().toString(36).slice(2)}` });
  const pick = h("label", { for: input.id, class: "attach" }, "Attach photos (metadata is removed on this phone)");
  const shelf = h("ul", { class: "photo-shelf", "aria-label": "Attached photos" });
  const draw = () => fill(shelf, photos.map((url, i) => h("li", {},
    h("img", { src: url, alt: `Attached photo ${i + 1}`, width: "64", height: "64" }),
    h("button", { type: "button", class: "secondary", onclick: () => { photos.splice(i, 1); draw(); } }, "Remove"))));
  input.addEventListener("change", async () => {
    for (const file of [...input.files]) {
      if (photos.length >= MAX_PHOTOS) {
        toast(`At most ${MAX_PHOTOS} photos per message.`, "error");
        break;
      }
      try {
        photos.push(await photoDataUrl(file));
      } catch (err) {
        toast(err.message, "error");
      }
    }
    input.value = "";
    draw();
  });
  return { element: h("div", { class: "photos" }, pick, input, shelf), photos, clear: () => { photos.length = 0; draw(); } };
}

function modelPicker(app, agentId) {
  const model = h("select", { name: "model" }, h("option", { value: "" }, "The agent's default"));
  const effort = h("select", { name: "effort" }, h("option", { value: "" }, "Default"));
  let models = [];
  const fillEfforts = () => {
    const chosen = models.find((m) => m.id === model.value);
    fill(effort, h("option", { value: "" }, chosen && chosen.defaultEffort ? `Default (${chosen.defaultEffort})` : "Default"),
      (chosen ? chosen.efforts : []).map((e) => h("option", { value: e }, e)));
  };
  model.addEventListener("change", fillEfforts);
  get(ws(app.wid, `/agents/${encodeURIComponent(agentId)}/models`)).then((res) => {
    models = res.models;
    fill(model, h("option", { value: "" }, "The agent's default"),
      models.map((m) => h("option", { value: m.id }, m.isDefault ? `${m.displayName} (default)` : m.displayName)));
    fillEfforts();
  }).catch(() => {});
  return { model, effort };
}

export async function newThreadScreen(app, root, _params, query) {
  fill(root, h("a", { href: "#/chats", class: "back" }, "‹ Conversations"), screenTitle("New conversation"), loading());
  await app.loadAgents().catch(() => {});
  const agent = app.agent(query.get("agent")) || conversationAgents(app)[0];
  if (!agent || !app.can("member")) {
    fill(root, h("a", { href: "#/chats", class: "back" }, "‹ Conversations"), screenTitle("New conversation"),
      h("p", { class: "notice" }, agent ? `Your role (${app.role}) can read conversations but not start them.` : "No agent here runs conversations."));
    return {};
  }
  const prompt = h("textarea", { name: "prompt", rows: "5", required: true });
  const cwd = h("input", { type: "text", name: "cwd", autocomplete: "off", autocapitalize: "off", spellcheck: "false", placeholder: "src/app" });
  const write = h("input", { type: "checkbox", role: "switch", id: "chat-write", name: "write" });
  const blocked = writeBlock(app, agent, false);
  write.disabled = Boolean(blocked);
  const writeNote = h("p", { class: "hint", id: "chat-write-note" }, blocked || "Codex asks before it runs a command or changes a file; with write mode its sandbox may write inside the folder.");
  write.setAttribute("aria-describedby", "chat-write-note");
  const { model, effort } = modelPicker(app, agent.agentId);
  const photos = photoPicker();
  const submit = h("button", { type: "submit", class: "primary wide" }, "Start");
  const error = errorLine();
  const state = await trustState(app.wid).catch(() => null);
  const sealed = Boolean(state && isSealed(state.view));
  const sealedNote = sealed ? h("p", { class: "sealed-note hint", role: "status" }, await sealedLine(app, agent.agentId)) : null;
  const form = h("form", { class: "new-thread" },
    h("p", { class: "muted" }, "On ", h("strong", {}, agent.label), agent.online ? "" : " (offline)"),
    field("Message", prompt),
    photos.element,
    field("Folder (inside the agent's workspace)", cwd, "Leave empty for the workspace root."),
    h("div", { class: "switch-row" }, write, h("label", { for: "chat-write" }, "Write mode: let Codex change files")), writeNote,
    h("details", { class: "panel" }, h("summary", {}, "Model and reasoning"), field("Model", model), field("Reasoning effort", effort)),
    sealedNote, error, submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      const body = { agentId: agent.agentId, prompt: prompt.value, writeAccess: write.checked };
      if (cwd.value.trim()) body.cwd = cwd.value.trim();
      if (model.value) body.model = model.value;
      if (effort.value) body.effort = effort.value;
      if (photos.photos.length) body.images = [...photos.photos];
      const trust = await trustFor(app.wid, app.me.user.id);
      let thread;
      if (trust) { // a protected workspace: the passkey signs exactly this (TRUST.md §4.13)
        const fields = {
          agentId: agent.agentId, mode: "new", prompt: body.prompt, images: body.images || null,
          cwd: body.cwd || null, model: body.model || null, effort: body.effort || null, writeAccess: body.writeAccess,
        };
        try {
          // Sealed: the signed start travels only inside an envelope to the agent.
          if (sealed) ({ thread } = await sendSealedTurn(app, trust, fields));
          else body.signed = await trust.turn(fields);
        } catch (err) {
          forgetTrust(app.wid);
          throw err;
        }
      }
      if (!thread) ({ thread } = await post(ws(app.wid, "/threads"), body));
      app.go(`/chats/${encodeURIComponent(thread.id)}`);
    }, { label: "Starting…", errLine: error });
  });
  fill(root, h("a", { href: "#/chats", class: "back" }, "‹ Conversations"), screenTitle("New conversation"), form);
  return {};
}

/** "Continue" on a Codex session: take it over as a conversation and open it. */
export async function takeOver(app, agentId, threadId) {
  const { thread } = await post(ws(app.wid, `/threads/${encodeURIComponent(threadId)}/resume`), { agentId });
  app.go(`/chats/${encodeURIComponent(thread.id)}`);
}
