// Signed tasks on the task screens: who signed each one and whether its agent verified it,
// and the two-person rule (B6): the submitter sees "waiting for a second approver"; everyone
// else who may approve sees a clear request, reads the exact statement and co-signs it.

import { get, ws } from "../api.js";
import { busy, errorLine, fill, h, toast } from "../dom.js";
import { approvePending, readPending, signBlock, trustState } from "../trust.js";
import { taskSummary } from "./confirmtask.js";

function memberName(app, view, userId) {
  if (userId === app.me.user.id) return "you";
  const member = view.members.get(userId);
  return member ? member.name : userId;
}

/** "Signed by your passkey · verified by build-01" (or where the task stands). */
export function signedLine(app, view, task) {
  const agent = app.agent(task.agentId);
  const label = agent ? agent.label : task.agentId;
  const signer = task.createdBy === app.me.user.id ? "your passkey" : `${memberName(app, view, task.createdBy)}'s passkey`;
  let state = `delivered, waiting for ${label} to verify it`;
  if (task.startedAt) state = `verified by ${label}`;
  else if (task.status === "rejected") state = `refused by ${label}`;
  else if (["expired", "cancelled"].includes(task.status)) state = "not run";
  return h("p", { class: `signed-line${task.startedAt ? " verified" : ""}`, role: "status" }, `Signed by ${signer} · ${state}`);
}

function waitingCard(app, view, pending) {
  return h("li", { class: "card pending-card waiting", dataset: { taskId: pending.id } },
    h("p", {}, h("strong", {}, "Waiting for a second approver")),
    h("p", { class: "small" }, `Signed by ${pending.signers.map((u) => memberName(app, view, u)).join(", ")}; `,
      `${pending.missing} more ${pending.missing === 1 ? "approval" : "approvals"} needed before the agent runs it.`));
}

function requestCard(app, view, pending, decoded, reload) {
  const agent = app.agent(pending.agentId);
  const who = memberName(app, view, pending.createdBy);
  const review = h("button", { type: "button", class: "primary" }, "Review and approve");
  const area = h("div", {});
  const card = h("li", { class: "card pending-card request", dataset: { taskId: pending.id } },
    h("p", {}, h("strong", {}, `${who} asks you to approve a task`)),
    h("p", { class: "small" }, `A second person must confirm it before ${agent ? agent.label : pending.agentId} runs it.`),
    area, review);
  review.addEventListener("click", async () => {
    review.remove();
    const approve = h("button", { type: "button", class: "primary wide" }, "Approve with Face ID");
    const error = errorLine();
    approve.addEventListener("click", () => busy(approve, async () => {
      const res = await approvePending(app, pending);
      toast(res.task ? "Approved: the task is on its way to the agent." : "Approved. Still waiting for more approvers.");
      await reload();
    }, { label: "Waiting for your passkey…", errLine: error }));
    fill(area, await taskSummary(view, decoded.stmt, decoded.prompt, agent), approve, error);
  });
  return card;
}

/** The pending signed tasks of this workspace, above the task list. */
export function pendingSection(app) {
  const section = h("section", { class: "pending-tasks", "aria-label": "Tasks waiting for approval", hidden: true });
  const reload = async () => {
    const state = await trustState(app.wid);
    if (!state.view) return;
    const { pendingTasks } = await get(ws(app.wid, "/signed-tasks/pending"));
    const cards = [];
    for (const pending of pendingTasks) {
      const mine = pending.signers.includes(app.me.user.id);
      if (mine) cards.push(waitingCard(app, state.view, pending));
      else if (app.can("member") && !signBlock(app)) {
        const decoded = await readPending(pending).catch(() => null);
        if (decoded) cards.push(requestCard(app, state.view, pending, decoded, reload));
      }
    }
    section.hidden = !cards.length;
    fill(section, cards.length ? [h("h3", {}, "Waiting for approval"), h("ul", { class: "cards" }, cards)] : null);
  };
  return { section, reload };
}
