// The task confirmation screen (TRUST.md §8): the passkey sheet shows no transaction, so this
// screen is the display. It shows exactly what the statement says will run — agent and its
// safety number, kind (WRITE MODE in red), folder, action or log, the whole prompt, expiry —
// before the passkey prompt. The same summary serves a second approver.

import { busy, errorLine, fill, h, screenTitle, toast } from "../dom.js";
import { timeText } from "../format.js";
import { safetyNumber } from "../../e2e/safety.js";
import { fromB64u } from "../../e2e/statements.js";
import { isSealed, readersLine, submitSealed } from "../sealing/send.js";
import { draftTask, ruleFor, submitTask, trustState } from "../trust.js";

const KINDS = { codex_exec: "Codex", run_action: "Action", read_log: "Log read" };

/** Why tasks cannot be signed for `agent` in this protected workspace, or "". */
export function signedAgentBlock(view, agent) {
  if (!agent) return "";
  const pinned = view.agents.get(agent.agentId);
  if (!pinned || pinned.revokedSeq !== null) {
    return `${agent.label} has not pinned this workspace, so it would refuse a signed task. Pin it from Agents › Pair an agent.`;
  }
  return "";
}

async function shortSafety(view, agentId) {
  const pinned = view.agents.get(agentId);
  const digits = await safetyNumber(fromB64u(view.genesisHash), agentId, fromB64u(pinned.sigPub));
  return digits.slice(0, 3).join(" ");
}

function labelOf(list, id) {
  const item = (list || []).find((x) => x.id === id);
  return item ? `${item.label} (${id})` : id;
}

/** The exact statement, as a definition list a person can read before signing. */
export async function taskSummary(view, stmt, prompt, agent) {
  const label = agent ? agent.label : stmt.agent;
  const rows = [
    ["Agent", `${label} · safety number ${await shortSafety(view, stmt.agent)}…`],
    ["Kind", h("span", {}, KINDS[stmt.type] || stmt.type, stmt.writeAccess ? h("strong", { class: "write-mode" }, " WRITE MODE") : " (read-only)")],
  ];
  if (stmt.type === "codex_exec") rows.push(["Folder", stmt.cwd || "the workspace root"]);
  if (stmt.actionId) rows.push(["Action", labelOf(agent && agent.actions, stmt.actionId)]);
  if (stmt.logSourceId) rows.push(["Log", labelOf(agent && agent.logSources, stmt.logSourceId)]);
  if (stmt.resumeSessionId) rows.push(["Continues", stmt.resumeSessionId]);
  rows.push(["Expires", timeText(new Date(stmt.expiresAt * 1000).toISOString())]);
  return h("div", { class: "task-confirm" },
    h("dl", { class: "meta" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    stmt.type === "codex_exec" ? [h("p", { class: "muted small" }, "Prompt"), h("pre", { class: "confirm-prompt", tabindex: "0" }, prompt)] : null);
}

function twoPersonNote(view, stmt) {
  const rule = ruleFor(view.policy, stmt);
  if (!rule.twoPerson) return null;
  return h("p", { class: "notice" }, `${rule.twoPerson.k} people must approve this: after you sign, it waits for a second approver.`);
}

/** How the task travels: sealed to the readers of the verified log, or signed only. */
function sealedNote(view, stmt, agent) {
  if (!isSealed(view)) return null;
  const line = h("p", { class: "sealed-line", role: "status" }, readersLine(view, agent ? agent.label : stmt.agent));
  const words = h("p", { class: "hint" }, "The relay carries it encrypted and cannot read the prompt or the output.");
  return [line, words];
}

/** Why a sealed task cannot be confirmed here, or "" (a second approver cannot read it). */
function sealedBlock(view, stmt) {
  if (!isSealed(view) || !ruleFor(view.policy, stmt).twoPerson) return "";
  return "This kind of task needs two people, and a second approver cannot co-sign a sealed task yet. Ask an owner to change the policy.";
}

/** Draft, show, and on "Confirm with Face ID" sign and submit; `back` returns to the form.
 * Just before signing the log is read again: if it now says "sealed" (or no longer does),
 * the screen is drawn again rather than sending the task another way than it showed. */
export async function confirmSigned(app, root, body, agent, back) {
  const fields = { agent: body.agentId, ...body };
  const prompt = body.prompt || "";
  const draft = await draftTask(app, fields, prompt);
  const sealed = isSealed(draft.view);
  const confirm = h("button", { type: "button", class: "primary wide" }, "Confirm with Face ID");
  const cancel = h("button", { type: "button", class: "secondary wide" }, "Back");
  const error = errorLine();
  const blocked = sealedBlock(draft.view, draft.stmt);
  confirm.disabled = !!blocked;
  cancel.addEventListener("click", back);
  confirm.addEventListener("click", () => busy(confirm, async () => {
    const now = await trustState(app.wid, { fresh: true });
    if (!now.view) throw new Error(now.error || "This workspace is no longer protected. Nothing was sent.");
    if (isSealed(now.view) !== sealed || now.view.head.seq !== draft.view.head.seq) {
      toast(isSealed(now.view) !== sealed ? "The workspace's content policy changed: check the task again." : "The signed log moved on: check the task again.");
      await confirmSigned(app, root, body, agent, back);
      return;
    }
    const res = sealed
      ? await submitSealed(app, draft, prompt, { queueTtlSec: body.queueTtlSec || null })
      : await submitTask(app, draft);
    if (res.task) app.go(`/tasks/${res.task.id}`);
    else {
      toast("Signed. Waiting for a second approver.");
      app.go("/tasks");
    }
  }, { label: "Waiting for your passkey…", errLine: error }));
  fill(root, screenTitle("Confirm the task"),
    h("p", {}, sealed ? "Your passkey will sign exactly this, and this phone will seal it." : "Your passkey will sign exactly this. Check it: the passkey prompt does not show it."),
    await taskSummary(draft.view, draft.stmt, prompt, agent),
    sealedNote(draft.view, draft.stmt, agent),
    blocked ? h("p", { class: "notice", role: "alert" }, blocked) : twoPersonNote(draft.view, draft.stmt),
    confirm, cancel, error);
}
