// Task list and task detail: live status and progress over SSE, final message, output,
// coloured diff, redaction count, reasons, cancel, and the device cache (R11, B5) when the
// relay no longer holds the details.

import { get, post, ws } from "../api.js";
import * as cache from "../cache.js";
import { busy, fill, h, loading, screenTitle } from "../dom.js";
import { TERMINAL, plural, reasonSentence, statusWord, taskTitle, timeText, waitingWords } from "../format.js";
import { signedCancel, trustState } from "../trust.js";
import { pendingSection, signedLine } from "./pendingtasks.js";
import {
  browserReaderStatus, readSealedTask, readerBanner, sealedEnvelope, sealedListTitle, sealedNotices, sealedTitle,
} from "../sealing/show.js";

/** Whether `next` is a later state of the task than `current` (events can be replayed). */
function isNewer(next, current) {
  if (TERMINAL.has(current.status) && !TERMINAL.has(next.status)) return false;
  return new Date(next.updatedAt).getTime() >= new Date(current.updatedAt).getTime();
}

function statusChip(status) {
  return h("span", { class: `chip status status-${status}` }, statusWord(status));
}

// ---- list ----

function taskCard(app, task, preview, sealed) {
  const agent = app.agent(task.agentId);
  const title = task.sealed ? sealedTitle(task, agent, sealed) : taskTitle(task, agent);
  return h("li", { dataset: { taskId: task.id } },
    h("a", { href: `#/tasks/${encodeURIComponent(task.id)}`, class: "card task-card" },
      h("span", { class: "card-row" }, h("strong", {}, title), statusChip(task.status)),
      task.sealed ? h("span", { class: "muted small sealed-chip" }, sealed ? "Sealed" : "Sealed · not read on this device yet") : null,
      preview ? h("span", { class: "preview" }, preview) : null,
      waitingWords(task, agent) ? h("span", { class: "waiting small" }, waitingWords(task, agent)) : null,
      h("span", { class: "muted small" }, agent ? agent.label : task.agentId, " · ", timeText(task.createdAt))));
}

export async function taskListScreen(app, root) {
  const list = h("ul", { class: "cards", "aria-label": "Tasks" });
  const body = h("div", {}, loading("Loading tasks…"));
  const pending = pendingSection(app);
  const banner = h("div", {});
  fill(root,
    h("div", { class: "screen-head" }, screenTitle("Tasks"),
      app.can("member") ? h("a", { href: "#/new", class: "button primary" }, "New task") : null),
    banner, pending.section, body);
  pending.reload().catch(() => {});
  let tasks = [];
  const previews = new Map();
  const sealed = new Map(); // task id -> its decrypted details, for the titles
  const draw = () => {
    fill(list, tasks.map((t) => taskCard(app, t, previews.get(t.id), sealed.get(t.id))));
    fill(body, tasks.length ? list : h("p", { class: "empty" }, app.can("member")
      ? "No tasks yet. Start one with New task."
      : "No tasks yet."));
  };
  try {
    if (!app.agents.length) await app.loadAgents().catch(() => {});
    ({ tasks } = await get(ws(app.wid, "/tasks")));
  } catch (err) {
    fill(body, h("p", { class: "error", role: "alert" }, err.message));
    return {};
  }
  draw();
  // Sealed tasks: their first lines, decrypted on this device (the relay has none).
  const readSealed = async () => {
    const status = await browserReaderStatus(app).catch(() => "absent");
    for (const task of tasks.slice(0, 30).filter((t) => t.sealed && !sealed.has(t.id))) {
      const found = await sealedListTitle(app, task, status).catch(() => null);
      if (found) sealed.set(task.id, found);
    }
    if (sealed.size && root.isConnected) draw();
  };
  const drawBanner = async () => fill(banner, await readerBanner(app, async () => {
    await drawBanner();
    await readSealed();
  }));
  drawBanner().catch(() => {});
  readSealed().catch(() => {});
  // First prompt lines from this device's cache, for the newest tasks only.
  (async () => {
    for (const task of tasks.slice(0, 30).filter((t) => t.type === "codex_exec" && !t.sealed)) {
      const cached = await cache.loadTask(task.id).catch(() => null);
      const prompt = cached && cached.task.prompt;
      if (prompt) previews.set(task.id, prompt.split("\n")[0].slice(0, 120));
    }
    if (previews.size && root.isConnected) draw();
  })();
  return {
    onEvent(type, data) {
      if (type === "agent") draw();
      if (type === "pending-task") pending.reload().catch(() => {});
      if (type !== "task") return;
      const index = tasks.findIndex((t) => t.id === data.task.id);
      if (index >= 0 && !isNewer(data.task, tasks[index])) return;
      if (index >= 0) tasks[index] = data.task;
      else tasks.unshift(data.task);
      draw();
      if (data.task.sealed && (!sealed.has(data.task.id) || TERMINAL.has(data.task.status))) {
        sealed.delete(data.task.id);
        readSealed().catch(() => {});
      }
    },
  };
}

// ---- detail ----

const KIND_WORDS = {
  message: "Message",
  reasoning: "Thinking",
  command: "Command",
  file_change: "File changes",
  web_search: "Web search",
  error: "Error",
  output: "Output",
};

/** An item's state line; one left open is marked so it can be closed when the task ends. */
function stepStatus(step, ended, extra = []) {
  const open = step.status === "in_progress";
  const word = open && ended ? ended : step.status && step.status.replace(/_/g, " ");
  const bits = [word, ...extra].filter(Boolean);
  if (!bits.length) return null;
  return h("span", { class: "muted small prog-status", dataset: open && !ended ? { open: "" } : {} }, bits.join(" · "));
}

function progressItem(step, ended = null) {
  const parts = [h("span", { class: "prog-kind" }, KIND_WORDS[step.kind] || step.kind)];
  if (step.kind === "command") {
    parts.push(h("code", { class: "command" }, `$ ${step.command || step.text || ""}`));
    const code = step.exitCode !== undefined && step.exitCode !== null ? [`exit ${step.exitCode}`] : [];
    parts.push(stepStatus(step, ended, code));
    if (step.text && step.command) parts.push(h("pre", { class: "out small" }, step.text));
  } else if (step.kind === "file_change") {
    parts.push(h("ul", { class: "changes" }, (step.changes || []).map((c) => h("li", {}, h("span", { class: "chip" }, c.kind), " ", c.path))));
    parts.push(stepStatus(step, ended));
  } else if (step.kind === "output") {
    parts.push(h("pre", { class: "out small" }, step.text));
  } else {
    parts.push(h("p", { class: "prog-text" }, step.text));
  }
  return h("li", { class: `prog prog-${step.kind}`, dataset: { seq: String(step.seq) } }, parts);
}

function diffView(text) {
  const code = h("code", {});
  for (const line of text.split("\n")) {
    let kind = "ctx";
    if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ") || line.startsWith("index ")) kind = "meta";
    else if (line.startsWith("@@")) kind = "hunk";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    code.append(h("span", { class: `diff-line diff-${kind}` }, line || " "));
  }
  return h("pre", { class: "diff", tabindex: "0", "aria-label": "Diff" }, code);
}

function section(title, ...content) {
  return h("section", { class: "detail-section" }, h("h3", {}, title), content);
}

/** Who cancelled the task, as a name ("you" for the signed-in person), or null when the
 * task does not say (older relays) or the person is no longer a member. */
async function whoCancelled(app, task) {
  const by = task.cancelledBy;
  if (!by || task.status !== "cancelled") return null;
  const userId = typeof by === "object" ? by.userId || by.id : by;
  if (userId === app.me.user.id) return "you";
  if (typeof by === "object" && by.name) return by.name;
  try {
    const { members } = await get(ws(app.wid, "/members"));
    const member = members.find((m) => m.userId === userId);
    return member ? member.name : null;
  } catch {
    return null;
  }
}

/** An exit code in words: a negative one is the signal that stopped the process. */
function exitWords(code) {
  return code < 0 ? `Stopped by signal ${-code}` : String(code);
}

/** What an item left "in progress" became once its task ended. */
function endedWord(task) {
  return task.status === "cancelled" ? "stopped: the task was cancelled" : "did not finish";
}

function metaList(app, task, canceller) {
  const agent = app.agent(task.agentId);
  const rows = [
    ["Status", statusChip(task.status)],
    ["Agent", agent ? `${agent.label} (${task.agentId})` : task.agentId],
    ["Created", timeText(task.createdAt)],
  ];
  if (task.startedAt) rows.push(["Started", timeText(task.startedAt)]);
  if (task.finishedAt) rows.push(["Finished", timeText(task.finishedAt)]);
  if (task.createdBy === app.me.user.id) rows.push(["Started by", "you"]);
  if (task.type === "codex_exec") {
    rows.push(["Folder", task.cwd || "workspace root"]);
    rows.push(["Write mode", task.writeAccess ? "On" : "Off (read-only)"]);
  }
  if (task.resumeSessionId) rows.push(["Continues session", h("code", {}, task.resumeSessionId)]);
  if (canceller) rows.push(["Cancelled by", canceller]);
  // A cancelled task was stopped on purpose: its exit code (a signal) says nothing more.
  if (task.exitCode !== null && task.exitCode !== undefined && task.status !== "cancelled") {
    rows.push(["Exit code", exitWords(task.exitCode)]);
  }
  return h("dl", { class: "meta" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export async function taskDetailScreen(app, root, [taskId]) {
  const header = h("div", {});
  const notices = h("div", { class: "notices" });
  const actions = h("div", { class: "actions" });
  const progressList = h("ol", { class: "progress-list", "aria-label": "Progress", "aria-live": "polite" });
  const body = h("div", {}, loading("Loading the task…"));
  fill(root, h("a", { href: "#/tasks", class: "back" }, "‹ Tasks"), header, notices, actions, body);

  let task = null; // metadata, kept fresh from events
  let details = null; // texts: from the relay, or from the device cache
  let fromCache = null; // savedAt when the texts come from this device
  const seen = new Set();
  const progress = [];

  const canCancel = () => task && !TERMINAL.has(task.status)
    && (task.createdBy === app.me.user.id || app.can("admin"));

  let canceller = null; // who cancelled it, once known
  let reader = null; // a sealed task's reader on this device
  const trust = await trustState(app.wid).catch(() => ({ protected: false }));
  const drawHeader = () => {
    const agent = app.agent(task.agentId);
    const shown = reader && reader.readable ? { ...task, ...reader.details() } : task;
    const title = task.sealed ? sealedTitle(task, agent, details) : taskTitle(task, agent);
    fill(header, screenTitle(title), metaList(app, shown, canceller));
    const items = [];
    if (reader) items.push(sealedNotices(app, task, reader, { onKeyRequest: reopen }));
    if (trust.view && !(reader && reader.signer)) items.push(signedLine(app, trust.view, task));
    const waiting = waitingWords(task, app.agent(task.agentId));
    if (waiting) {
      items.push(h("p", { class: "running-note waiting", role: "status" },
        `${waiting}. It starts when the agent connects, or expires.`));
    } else if (!TERMINAL.has(task.status)) {
      items.push(h("p", { class: "running-note", role: "status" },
        h("progress", { "aria-label": "Task in progress" }), ` ${statusWord(task.status)}…`));
    }
    if (task.cancelRequested && !TERMINAL.has(task.status)) items.push(h("p", { class: "muted" }, "Cancel requested; waiting for the agent to stop it."));
    if (task.reason && ["rejected", "interrupted", "expired"].includes(task.status)) {
      items.push(h("p", { class: "notice error-notice" }, reasonSentence(task.reason)));
    }
    if (task.redactions > 0) {
      items.push(h("p", { class: "notice redaction-notice" },
        `${plural(task.redactions, "secret was", "secrets were")} redacted on the server before leaving it.`));
    }
    if (fromCache) {
      items.push(h("p", { class: "notice cache-notice" },
        "Details expired on the relay. Showing the copy saved on this device ", timeText(fromCache), "."));
    } else if (details && details.detailsExpired) {
      items.push(h("p", { class: "notice cache-notice" },
        "Details expired on the relay, and no copy is saved on this device."));
    }
    fill(notices, items);
    const buttons = [];
    if (canCancel()) {
      const cancel = h("button", { type: "button", class: "danger" }, "Cancel task");
      cancel.addEventListener("click", () => busy(cancel, async () => {
        const res = trust.protected ? await signedCancel(app, task)
          : await post(ws(app.wid, `/tasks/${encodeURIComponent(task.id)}/cancel`));
        task = res.task;
        drawHeader();
      }, { label: "Cancelling…" }));
      buttons.push(cancel);
    }
    if (task.type === "codex_exec" && task.codexSessionId && TERMINAL.has(task.status) && app.can("member")) {
      const q = new URLSearchParams({ agent: task.agentId, resume: task.codexSessionId });
      buttons.push(h("a", { class: "button secondary", href: `#/new?${q}` }, "Continue this session"));
    }
    fill(actions, buttons);
  };

  const openCommands = new Map(); // command text -> its "in progress" item, replaced when done
  const addProgress = (step) => {
    if (seen.has(step.seq)) return;
    seen.add(step.seq);
    progress.push(step);
    const item = progressItem(step, task && TERMINAL.has(task.status) ? endedWord(task) : null);
    const key = step.kind === "command" ? step.command || step.text : null;
    const open = key !== null && openCommands.get(key);
    if (open && open.isConnected) open.replaceWith(item);
    else progressList.append(item);
    if (key !== null) {
      if (step.status === "in_progress") openCommands.set(key, item);
      else openCommands.delete(key);
    }
  };

  // Once the task has ended, nothing in it is still going: open items say how they ended.
  const closeOpenItems = () => {
    if (!TERMINAL.has(task.status)) return;
    for (const el of progressList.querySelectorAll(".prog-status[data-open]")) {
      const rest = el.textContent.split(" · ").slice(1);
      el.textContent = [endedWord(task), ...rest].join(" · ");
      delete el.dataset.open;
    }
  };

  const drawBody = () => {
    closeOpenItems();
    const d = details || {};
    const parts = [];
    if (d.error) parts.push(section("Error", h("p", { class: "error-text" }, d.error)));
    if (d.finalMessage) parts.push(section("Final message", h("div", { class: "final-message" }, d.finalMessage)));
    // For actions and logs the live output is the progress; once the tail is in, it says it all.
    const tailCoversProgress = task.type !== "codex_exec" && d.outputTail && TERMINAL.has(task.status);
    if ((progress.length || !TERMINAL.has(task.status)) && !tailCoversProgress) {
      parts.push(section("Progress", progress.length ? progressList : h("p", { class: "muted" }, "Waiting for the agent…")));
    }
    if (d.diffText) {
      parts.push(section("Changes", diffView(d.diffText),
        d.diffTruncated ? h("p", { class: "muted small" }, "The diff was cut to its first part.") : null));
    }
    if (d.outputTail) parts.push(section(task.type === "codex_exec" ? "Output (last lines)" : "Output", h("pre", { class: "out output-tail", tabindex: "0" }, d.outputTail)));
    if (d.prompt) parts.push(section("Prompt", h("pre", { class: "prompt" }, d.prompt)));
    if (!parts.length && TERMINAL.has(task.status)) parts.push(h("p", { class: "muted" }, "Nothing to show."));
    fill(body, parts);
  };

  // A sealed task: its texts come only from the envelopes this device opens.
  const readSealed = async (fresh) => {
    ({ reader, details, fromCache } = await readSealedTask(app, task, reader, { fresh }));
    for (const step of details.progress || []) addProgress(step);
  };
  const reopen = async () => {
    await readSealed(true);
    drawHeader();
    drawBody();
  };

  const load = async () => {
    const res = await get(ws(app.wid, `/tasks/${encodeURIComponent(taskId)}`));
    task = res.task;
    details = res.task;
    fromCache = null;
    if (task.sealed) {
      await readSealed(false);
    } else if (task.detailsExpired) {
      const cached = await cache.loadTask(taskId).catch(() => null);
      if (cached) {
        details = { ...cached.task, detailsExpired: true };
        fromCache = cached.savedAt;
      }
    } else {
      cache.saveTask(task).catch(() => {});
    }
    if (!task.sealed) for (const step of details.progress || []) addProgress(step);
    canceller = await whoCancelled(app, task);
    drawHeader();
    drawBody();
  };

  try {
    if (!app.agents.length) await app.loadAgents().catch(() => {});
    await load();
  } catch (err) {
    fill(body, h("p", { class: "error", role: "alert" }, err.message));
    return {};
  }

  return {
    onEvent(type, data) {
      if (type === "envelope" && reader && data.taskId === taskId) {
        sealedEnvelope(app, task, reader, data).then((found) => {
          if (found) {
            details = found;
            for (const step of found.progress) addProgress(step);
            drawBody();
          }
          drawHeader();
        }).catch(() => {});
      } else if (type === "task-progress" && data.taskId === taskId && !fromCache) {
        const wasEmpty = progress.length === 0;
        addProgress(data.progress);
        if (wasEmpty) drawBody();
      } else if (type === "task" && data.task.id === taskId && isNewer(data.task, task)) {
        const finishedNow = TERMINAL.has(data.task.status) && !TERMINAL.has(task.status);
        task = { ...task, ...data.task };
        drawHeader();
        closeOpenItems();
        if (finishedNow) load().catch(() => {});
      }
    },
  };
}
