// What a conversation holds on the phone, and how each part looks. Items are kept by id
// with the newest `seq` (the rule of API-ADDITIONS "Late readers"): an item event replaces
// a held item only if its seq is higher, a delta is appended only if its seq is above the
// item's. A snapshot from the relay and the live stream thus meet without gap or duplicate.

import { h } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

export const STATE_WORDS = {
  running: "Running",
  waitingForApproval: "Waiting for you",
  idle: "Idle",
  notLoaded: "Not open",
  error: "Error",
};
export const SOURCE_WORDS = { phone: "Phone", terminal: "Terminal", exec: "Exec session" };
const DECISION_WORDS = {
  accepted: "Accepted",
  acceptedForSession: "Accepted for this session",
  declined: "Declined",
  cancelled: "Stopped",
  expired: "Declined: nobody answered in time",
  pending: "Waiting for an answer",
};

export function stateBadge(status) {
  return h("span", { class: `chip thread-state state-${status}` }, STATE_WORDS[status] || status);
}

export function approvalWord(approval) {
  if (approval.resolvedElsewhere) return "Answered in the terminal";
  return DECISION_WORDS[approval.status] || approval.status;
}

/** One thread's items, by id, under the seq rule. */
export class ThreadItems {
  constructor() {
    this.items = new Map();
    this.seq = 0;
  }

  /** Keep `item` if newer than the held one; true when it changed something. */
  apply(item) {
    const held = this.items.get(item.id);
    if (held && held.seq >= item.seq) return false;
    this.items.set(item.id, { ...item });
    this.seq = Math.max(this.seq, item.seq);
    return true;
  }

  /** Append streamed text to a held item; true when it changed something. */
  delta({ itemId, seq, field, delta }) {
    const held = this.items.get(itemId);
    this.seq = Math.max(this.seq, seq);
    if (!held || held.seq >= seq) return false;
    held[field] = (held[field] || "") + delta;
    held.seq = seq;
    return true;
  }

  /** Items in the order they started (the first seq each was seen with). */
  ordered() {
    return [...this.items.values()];
  }
}

// ---- item views ----

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** A unified diff (or, for an added file, its content) with add/remove colouring. */
export function diffBlock(change) {
  const code = h("code", {});
  const added = change.kind === "add" && !/^(@@|---|\+\+\+)/m.test(change.diff || "");
  for (const raw of (change.diff || "").split("\n")) {
    const line = added && raw ? `+${raw}` : raw;
    let kind = "ctx";
    if (/^(\+\+\+|---|diff |index )/.test(line)) kind = "meta";
    else if (line.startsWith("@@")) kind = "hunk";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    code.append(h("span", { class: `diff-line diff-${kind}` }, line || " "));
  }
  return h("pre", { class: "diff", tabindex: "0", "aria-label": `Changes to ${change.path}` }, code);
}

const KIND_OF_CHANGE = { add: "added", delete: "deleted", update: "changed" };

/** A path as the person thinks of it: relative to the thread's folder when inside it. */
export function shortPath(path, base) {
  return base && path.startsWith(`${base}/`) ? path.slice(base.length + 1) : path;
}

export function fileChanges(changes, { open = false, base = "" } = {}) {
  return h("div", { class: "file-changes" }, (changes || []).map((change) =>
    h("details", { class: "file-change", open },
      h("summary", { title: change.path }, h("span", { class: "chip" }, KIND_OF_CHANGE[change.kind] || change.kind), " ",
        h("code", { class: "path" }, shortPath(change.path, base))),
      diffBlock(change))));
}

function userMessage(item) {
  return h("div", { class: "bubble from-you" }, h("span", { class: "who" }, "You"),
    h("p", { class: "prog-text" }, item.text || item.raw?.text || ""));
}

function agentMessage(item) {
  const body = h("div", { class: "markdown" });
  body.append(renderMarkdown(item.text || ""));
  return h("div", { class: "bubble from-codex" }, h("span", { class: "who" }, "Codex"), body);
}

function reasoning(item) {
  return h("details", { class: "cell reasoning" },
    h("summary", {}, "Thinking"), h("p", { class: "prog-text muted" }, item.summary || item.text || ""));
}

function commandCell(item, base) {
  const bits = [item.status === "inProgress" ? "running" : item.status];
  if (item.exitCode !== null && item.exitCode !== undefined) bits.push(`exit ${item.exitCode}`);
  if (item.durationMs !== null && item.durationMs !== undefined) bits.push(duration(item.durationMs));
  return h("details", { class: `cell command-cell status-${item.status}`, open: true },
    h("summary", {}, h("span", { class: "prog-kind" }, "Command"), h("code", { class: "command" }, item.command || "")),
    item.cwd && item.cwd !== base ? h("p", { class: "muted small" }, "in ", h("code", {}, item.cwd)) : null,
    item.output ? h("pre", { class: "out small", tabindex: "0", "aria-label": "Command output" }, item.output) : null,
    h("p", { class: "muted small cell-status" }, bits.filter(Boolean).join(" · ")));
}

function fileCell(item, base) {
  return h("section", { class: `cell file-cell status-${item.status}` },
    h("p", {}, h("span", { class: "prog-kind" }, "File changes"), h("span", { class: "muted small" }, item.status || "")),
    fileChanges(item.changes, { base }));
}

function plainCell(kind, text, extra = "") {
  return h("section", { class: `cell ${extra}` }, h("span", { class: "prog-kind" }, kind), h("p", { class: "prog-text" }, text));
}

/** The element for one item, by its type. */
export function itemView(item, base = "") {
  let view;
  if (item.type === "userMessage") view = userMessage(item);
  else if (item.type === "agentMessage") view = agentMessage(item);
  else if (item.type === "reasoning") view = reasoning(item);
  else if (item.type === "commandExecution") view = commandCell(item, base);
  else if (item.type === "fileChange") view = fileCell(item, base);
  else if (item.type === "plan") view = plainCell("Plan", item.text || "");
  else if (item.type === "error") view = plainCell("Error", item.message || "", "error-notice");
  else view = plainCell(item.type, item.text || "");
  return h("li", { class: "item", dataset: { itemId: item.id, type: item.type } }, view);
}
