// Words for what the relay reports: times, statuses, roles, task kinds and reasons.

export const TERMINAL = new Set([
  "completed", "failed", "cancelled", "rejected", "interrupted", "expired",
]);
export const ROLES = ["viewer", "member", "admin", "owner"];

export function roleAtLeast(role, minimum) {
  return ROLES.indexOf(role) >= ROLES.indexOf(minimum);
}

const STATUS_WORDS = {
  queued: "Queued",
  dispatched: "Sent to agent",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
  rejected: "Refused by agent",
  interrupted: "Interrupted",
  expired: "Expired",
};

/** "Waiting for devbox (until 15:40)" for a task queued for an offline agent, else "". */
export function waitingWords(task, agent) {
  if (task.status !== "queued" || !task.queuedUntil) return "";
  const until = new Date(task.queuedUntil).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return `Waiting for ${agent ? agent.label : task.agentId} (until ${until})`;
}

export function statusWord(status) {
  return STATUS_WORDS[status] || status;
}

const REASONS = {
  "agent-offline": "The agent was not connected when the task was sent.",
  "agent-restarted": "The agent restarted while the task was running.",
  "agent-vanished": "The agent disconnected while the task was running and did not come back.",
  "relay-restarted": "The relay restarted while the task was running.",
  "relay-instance-lost": "The relay instance handing the task over stopped before the agent got it.",
  "duplicate-task": "The agent had already run a task with this id.",
  "agent-busy": "Too many tasks were waiting on the agent.",
  "feature-disabled": "The agent does not allow this kind of task.",
  "invalid-task": "The agent found the task incomplete.",
  "write-mode-disabled": "Write mode is off on the agent.",
  "write-on-resume-disabled": "The agent does not allow write mode when continuing a session.",
  "unknown-session": "The agent has no such Codex session under its workspace.",
  "cwd-outside-workspace": "The folder is outside the agent's workspace.",
  "cwd-not-found": "The folder does not exist on the agent.",
  "unknown-action": "The agent has no such action.",
  "unknown-log-source": "The agent has no such log source.",
  "ledger-unavailable": "The agent could not record the task, so it did not run it.",
  "signature-required": "This workspace is protected: the agent runs only tasks signed with a passkey.",
  "workspace-not-pinned": "The agent has not pinned this protected workspace yet; pin it with `codexrelay agent trust pin`.",
  "statement-invalid": "The agent could not read the signed task.",
  "wrong-workspace": "The signed task names another workspace than the one the agent pinned.",
  "wrong-agent": "The signed task was made for another agent.",
  "body-mismatch": "The task's text is not the text that was signed.",
  "statement-mismatch": "The relay's copy of the task differs from what was signed, so the agent refused it.",
  "statement-ttl-too-long": "The signed task was valid for longer than the workspace policy allows.",
  "statement-not-yet-valid": "The signed task is dated in the future; check the phone's clock.",
  "statement-expired": "The signed task expired before it reached the agent.",
  "log-head-unknown": "The agent could not find the membership change the task was signed against.",
  "log-fork": "The membership log the task was signed against is not the one the agent pinned (fork detected).",
  "unknown-signer": "The passkey that signed the task is not in the workspace's membership log.",
  "revoked-signer": "The passkey that signed the task was revoked, or its owner left the workspace.",
  "role-too-low": "The signer's role in the membership log does not allow this task.",
  "device-bound-required": "The workspace policy needs a device-bound passkey for this task.",
  "needs-more-approvers": "The workspace policy needs more people to approve this task.",
  "user-not-verified": "The passkey did not verify you (Face ID, fingerprint or PIN), so the agent refused.",
  "counter-regressed": "The passkey's use counter went backwards, which can mean it was copied.",
  "signature-invalid": "The passkey signature on the task does not verify.",
  "audit-unavailable": "The agent could not write its audit log, so it did not run the task.",
  "e2e-required": "This workspace's tasks must be end-to-end encrypted; the agent refused a readable one.",
  "sealed-invalid": "The encrypted task did not open for the agent, so it was not run.",
  "task-key-gone": "The agent no longer keeps this task's key, so it cannot share it with this device.",
  "agent-did-not-return": "The agent did not come back before the task's wait ran out.",
  "invalid-request": "The agent found the request incomplete.",
  "unknown-thread": "The agent has no such conversation under its workspace.",
  "turn-running": "A turn is already running in this conversation.",
  "no-running-turn": "No turn is running in this conversation.",
  "unknown-approval": "The agent no longer has this approval request.",
  "approval-resolved": "Someone already answered this approval.",
  "decision-not-offered": "That answer is not one this approval offers.",
  "codex-unavailable": "Codex is not running on the agent right now.",
  "codex-error": "Codex refused the request.",
  "agent-error": "The agent failed while handling the request.",
};

export function reasonSentence(reason) {
  if (!reason) return "";
  return REASONS[reason] || `Reason given: ${reason.replace(/-/g, " ")}.`;
}

const TYPE_WORDS = { codex_exec: "Codex", run_action: "Action", read_log: "Log" };

/** "Codex", "Action: Say hello", "Log: App log". */
export function taskTitle(task, agent) {
  const base = TYPE_WORDS[task.type] || task.type;
  if (task.type === "run_action") return `${base}: ${labelOf(agent && agent.actions, task.actionId)}`;
  if (task.type === "read_log") return `${base}: ${labelOf(agent && agent.logSources, task.logSourceId)}`;
  return task.resumeSessionId ? `${base} (continued session)` : base;
}

function labelOf(items, id) {
  const found = (items || []).find((item) => item.id === id);
  return found ? found.label : id;
}

const UNITS = [
  [60, "second"],
  [60, "minute"],
  [24, "hour"],
  [7, "day"],
  [4.35, "week"],
  [12, "month"],
  [Infinity, "year"],
];

/** "3 minutes ago" / "in 9 minutes". */
export function relative(iso, now = Date.now()) {
  if (!iso) return "never";
  let delta = (new Date(iso).getTime() - now) / 1000;
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [size, unit] of UNITS) {
    if (Math.abs(delta) < size) return rtf.format(Math.round(delta), unit);
    delta /= size;
  }
  return "";
}

export function absolute(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString();
}

/** A <time> element showing a relative time, with the exact one on hover/long-press. */
export function timeText(iso) {
  const el = document.createElement("time");
  if (iso) {
    el.dateTime = iso;
    el.title = absolute(iso);
  }
  el.textContent = relative(iso);
  return el;
}

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}
