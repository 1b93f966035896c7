// New task: agent and type, Codex prompt / folder / write mode, action or log picker.
// Every switch that the relay or the agent forbids is disabled and says why (R09, R17).

import { post, ws } from "../api.js";
import { busy, errorLine, field, fill, h, loading, screenTitle } from "../dom.js";
import { promptMaxBytes, utf8Bytes } from "../limits.js";
import { signBlock, trustState } from "../trust.js";
import { confirmSigned, signedAgentBlock } from "./confirmtask.js";

const NEAR_CAP = 0.75; // the byte counter shows from this share of the cap on
const number = new Intl.NumberFormat();

/** The byte counter under the prompt: hidden while far from the cap, a warning past it. */
function drawByteCount(el, bytes, cap) {
  el.hidden = bytes < cap * NEAR_CAP;
  el.classList.toggle("over", bytes > cap);
  el.textContent = bytes > cap
    ? `Too long: ${number.format(bytes)} of ${number.format(cap)} bytes. Shorten it by ${number.format(bytes - cap)} ${bytes - cap === 1 ? "byte" : "bytes"}.`
    : `${number.format(bytes)} of ${number.format(cap)} bytes used.`;
}

// How long a task may wait for an offline agent (the relay allows 60 s to 24 h).
const WAITS = [[900, "15 minutes"], [3600, "1 hour"], [14400, "4 hours"], [86400, "24 hours"]];
const DEFAULT_WAIT = 3600;

const TYPES = [
  ["codex_exec", "Codex", "codexExec", "Codex tasks"],
  ["run_action", "Action", "runAction", "actions"],
  ["read_log", "Log", "readLog", "log reads"],
];

/** Why `type` cannot run on `agent`, or "" when it can. */
function typeBlock(app, agent, relayFlag, words) {
  if (!app.features()[relayFlag]) return `${words[0].toUpperCase()}${words.slice(1)} are turned off on the relay.`;
  if (!agent) return "Choose an agent first.";
  if (!agent.features[relayFlag]) return `This agent does not allow ${words}.`;
  return "";
}

/** Why write mode is off, or "" when it may be switched on. */
export function writeBlock(app, agent, resuming, policy = null) {
  // In a protected workspace the signed policy names the role write mode needs.
  const minimum = policy ? policy.codexWrite.minRole : "admin";
  if (!app.can(minimum)) return `Write mode needs the ${minimum} role.`;
  if (!app.features().codexExecWrite) return "Write mode is off on the relay.";
  if (agent && !agent.features.codexExecWrite) return "Write mode is off on this agent.";
  if (resuming) return "A continued session runs read-only from here.";
  return "";
}

export async function newTaskScreen(app, root, _params, query) {
  fill(root, screenTitle("New task"), loading("Loading agents…"));
  if (!app.can("member")) {
    fill(root, screenTitle("New task"), h("p", { class: "notice" },
      `Your role in this workspace (${app.role}) can read tasks but not start them.`));
    return {};
  }
  let agents;
  try {
    agents = (await app.loadAgents()).filter((a) => !a.revokedAt);
  } catch (err) {
    fill(root, screenTitle("New task"), h("p", { class: "error", role: "alert" }, err.message));
    return {};
  }
  if (!agents.length) {
    fill(root, screenTitle("New task"), h("p", { class: "empty" }, "No agents in this workspace yet. ",
      app.can("admin") ? h("a", { href: "#/pair" }, "Pair an agent") : "Ask an admin to pair one."));
    return {};
  }
  const trust = await trustState(app.wid, { fresh: true }).catch((err) => ({ protected: false, error: err.message }));
  if (trust.protected && (trust.error || signBlock(app))) {
    fill(root, screenTitle("New task"), h("p", { class: "notice", id: "cannot-sign", role: "status" }, trust.error || signBlock(app)));
    return {};
  }
  const view = trust.view || null;
  const resume = query.get("resume");
  const resumeTitle = query.get("title");

  const agentSelect = h("select", { name: "agent" }, agents.map((a) => h("option", {
    value: a.agentId, selected: a.agentId === query.get("agent"),
  }, `${a.label}${a.online ? "" : " (offline)"}`)));
  const agentNote = h("p", { class: "hint", role: "status" });

  const typeRadios = TYPES.map(([value, label]) => h("input", { type: "radio", name: "type", value, id: `type-${value}` }));
  const typeNotes = TYPES.map(() => h("span", { class: "hint block" }));
  const typeField = h("fieldset", { class: "types" }, h("legend", {}, "What to run"),
    TYPES.map(([value, label], i) => h("div", { class: "radio" }, typeRadios[i], h("label", { for: `type-${value}` }, label), typeNotes[i])));

  const prompt = h("textarea", { name: "prompt", rows: "6", required: true, spellcheck: "true" });
  const byteCount = h("p", { class: "hint byte-count", id: "prompt-bytes", hidden: true });
  prompt.setAttribute("aria-describedby", "prompt-bytes");
  const cap = promptMaxBytes(app);
  prompt.addEventListener("input", () => drawByteCount(byteCount, utf8Bytes(prompt.value), cap));
  const cwd = h("input", { type: "text", name: "cwd", autocomplete: "off", autocapitalize: "off", spellcheck: "false", placeholder: "src/app" });
  const write = h("input", { type: "checkbox", role: "switch", id: "write-mode", name: "write" });
  const writeNote = h("p", { class: "hint", id: "write-note" });
  write.setAttribute("aria-describedby", "write-note");
  const codexPanel = h("div", { class: "panel-body" },
    resume ? h("p", { class: "notice" }, "Continuing the Codex session ", h("strong", {}, resumeTitle || resume), ".") : null,
    field(resume ? "What next?" : "Prompt", prompt), byteCount,
    resume ? null : field("Folder (inside the agent's workspace)", cwd, "Leave empty for the workspace root. A relative path such as src/app."),
    h("div", { class: "switch-row" }, write, h("label", { for: "write-mode" }, "Write mode: let Codex change files")),
    writeNote);

  const actionSelect = h("select", { name: "action" });
  const logSelect = h("select", { name: "log" });
  const actionPanel = h("div", { class: "panel-body" }, field("Which action", actionSelect, "Only the actions the agent's config lists."));
  const logPanel = h("div", { class: "panel-body" }, field("Which log", logSelect, "Only the logs the agent's config lists."));

  const waitFor = h("select", { name: "wait", id: "wait-for" }, WAITS.map(([sec, label]) =>
    h("option", { value: String(sec), selected: sec === DEFAULT_WAIT }, label)));
  const waitRow = h("div", { class: "wait-row" },
    field("If it is still offline, wait for it", waitFor,
      "The task starts when the agent connects, at most once, or expires after this long."));
  const submit = h("button", { type: "submit", class: "primary wide" }, "Run task");
  const error = errorLine();
  const form = h("form", { class: "new-task" }, field("Agent", agentSelect), agentNote, waitRow, typeField,
    codexPanel, actionPanel, logPanel, submit, error);

  const current = () => agents.find((a) => a.agentId === agentSelect.value) || null;
  const chosenType = () => (typeRadios.find((r) => r.checked) || {}).value;

  const update = () => {
    const agent = current();
    const offline = !!agent && !agent.online;
    agentNote.textContent = offline ? `${agent.label} is offline right now: the task will wait for it.` : "";
    waitRow.hidden = !offline;
    let firstAllowed = null;
    TYPES.forEach(([value, , flag, words], i) => {
      const block = resume && value !== "codex_exec" ? "Only a Codex task can continue a session." : typeBlock(app, agent, flag, words);
      typeRadios[i].disabled = !!block;
      typeNotes[i].textContent = block;
      if (!block && !firstAllowed) firstAllowed = typeRadios[i];
      if (block && typeRadios[i].checked) typeRadios[i].checked = false;
    });
    if (!chosenType() && firstAllowed) firstAllowed.checked = true;
    const type = chosenType();
    codexPanel.hidden = type !== "codex_exec";
    prompt.required = type === "codex_exec"; // a hidden required field would block the form
    actionPanel.hidden = type !== "run_action";
    logPanel.hidden = type !== "read_log";
    const block = writeBlock(app, agent, !!resume, view && view.policy);
    write.disabled = !!block;
    if (block) write.checked = false;
    writeNote.textContent = block || "Codex runs with the workspace-write sandbox: it can edit files under the folder.";
    const keepAction = actionSelect.value;
    fill(actionSelect, (agent ? agent.actions : []).map((a) => h("option", { value: a.id, selected: a.id === keepAction }, a.label)));
    const keepLog = logSelect.value;
    fill(logSelect, (agent ? agent.logSources : []).map((s) => h("option", { value: s.id, selected: s.id === keepLog }, s.label)));
    const unsigned = view ? signedAgentBlock(view, agent) : "";
    agentNote.textContent = unsigned || agentNote.textContent;
    submit.disabled = !type || !agent || !!unsigned;
    submit.textContent = view ? "Review and sign" : offline ? "Queue task" : "Run task";
  };
  agentSelect.addEventListener("change", update);
  for (const radio of typeRadios) radio.addEventListener("change", update);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const type = chosenType();
    const body = { agentId: agentSelect.value, type };
    const agent = current();
    if (agent && !agent.online) body.queueTtlSec = Number(waitFor.value);
    if (type === "codex_exec") {
      body.prompt = prompt.value;
      if (cwd.value.trim()) body.cwd = cwd.value.trim();
      body.writeAccess = write.checked;
      if (resume) body.resumeSessionId = resume;
    } else if (type === "run_action") {
      body.actionId = actionSelect.value;
    } else {
      body.logSourceId = logSelect.value;
    }
    if (view) {
      const back = () => {
        fill(root, screenTitle("New task"), form);
        submit.removeAttribute("aria-busy");
        submit.classList.remove("busy");
        update();
      };
      busy(submit, () => confirmSigned(app, root, body, agent, back), { label: "Preparing…", errLine: error });
      return;
    }
    busy(submit, async () => {
      const { task } = await post(ws(app.wid, "/tasks"), body);
      app.go(`/tasks/${task.id}`);
    }, { label: "Sending…", errLine: error });
  });

  fill(root, screenTitle(resume ? "Continue a Codex session" : "New task"), form);
  update();
  return {
    onEvent(type) {
      if (type === "agent") {
        agents = app.agents.filter((a) => !a.revokedAt);
        const keep = agentSelect.value;
        fill(agentSelect, agents.map((a) => h("option", { value: a.agentId, selected: a.agentId === keep },
          `${a.label}${a.online ? "" : " (offline)"}`)));
        update();
      }
    },
  };
}
