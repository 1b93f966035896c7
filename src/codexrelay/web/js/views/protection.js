// Settings › Protection: turn protection on with one owner action (the genesis, §4.1), the
// verified log head, and the owner's policies (B6): per kind of action the minimum role,
// fresh user verification and an optional two-person rule, signed into the log.

import { busy, confirmDialog, errorLine, fill, h, toast } from "../dom.js";
import { DEFAULT_POLICY, protectWorkspace, signBlock, signEntry, trustState, withSudo } from "../trust.js";

const ROLES = ["viewer", "member", "admin", "owner"];
const RULES = [
  ["codexRead", "Codex, read-only"],
  ["codexWrite", "Codex, write mode"],
  ["actionDefault", "Predefined actions"],
  ["logDefault", "Log reads"],
  ["approvals", "Approval answers"],
];
const TWO_PERSON = { k: 2, within: 600 };

function ruleRow(key, words, rule) {
  const role = h("select", { "aria-label": `${words}: minimum role`, dataset: { rule: key, part: "role" } },
    ROLES.map((r) => h("option", { value: r, selected: r === rule.minRole }, r)));
  const uv = h("input", { type: "checkbox", checked: rule.freshUv !== false, "aria-label": `${words}: fresh Face ID or PIN`, dataset: { rule: key, part: "uv" } });
  const two = h("input", { type: "checkbox", checked: !!rule.twoPerson, "aria-label": `${words}: two people must approve`, dataset: { rule: key, part: "two" } });
  return h("tr", {}, h("th", { scope: "row" }, words), h("td", {}, role), h("td", {}, uv), h("td", {}, two));
}

function readPolicy(table, current) {
  const policy = JSON.parse(JSON.stringify(current));
  for (const [key] of RULES) {
    const part = (name) => table.querySelector(`[data-rule="${key}"][data-part="${name}"]`);
    const rule = { minRole: part("role").value };
    if (!part("uv").checked) rule.freshUv = false;
    if (part("two").checked) rule.twoPerson = { ...((current[key] && current[key].twoPerson) || TWO_PERSON) };
    policy[key] = rule;
  }
  return policy;
}

function policyEditor(app, view, reload) {
  const owner = app.role === "owner";
  const table = h("table", { class: "policy-table", "aria-label": "Policies" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Action"), h("th", { scope: "col" }, "Minimum role"),
      h("th", { scope: "col" }, "Fresh UV"), h("th", { scope: "col" }, "Two people"))),
    h("tbody", {}, RULES.map(([key, words]) => ruleRow(key, words, view.policy[key]))));
  for (const control of table.querySelectorAll("select, input")) control.disabled = !owner;
  const save = h("button", { type: "button", class: "primary wide" }, "Sign and save the policies");
  const error = errorLine();
  save.addEventListener("click", () => busy(save, async () => {
    await signEntry(app, "policy.set", { policy: readPolicy(table, view.policy) });
    toast("Policies signed into the log.");
    await reload();
  }, { label: "Waiting for your passkey…", errLine: error }));
  return h("div", {}, h("div", { class: "table-scroll" }, table),
    h("p", { class: "hint" }, "Two people: a second person whose role qualifies must confirm within 10 minutes before the agent runs it."),
    owner ? [save, error] : h("p", { class: "hint" }, "Only an owner can change the policies."));
}

const SEALED_WORDS = "Prompts, outputs, diffs and logs travel encrypted between the phones and the agents. "
  + "The relay can no longer read them; only the agent and the devices in the signed log can.";
const SIGNED_WORDS = "Every task is signed, but the relay can read prompts and outputs as they pass.";

/** The content policy (TRUST.md §2): sealed or signed, switched by an owner-signed policy.set. */
function contentEditor(app, view, reload) {
  const sealed = view.policy.content === "sealed";
  const state = h("p", { class: "content-policy", dataset: { content: sealed ? "sealed" : "signed" } },
    h("strong", {}, sealed ? "Sealed. " : "Not sealed. "), sealed ? SEALED_WORDS : SIGNED_WORDS);
  if (app.role !== "owner") return h("div", {}, state, h("p", { class: "hint" }, "Only an owner can change this."));
  const next = sealed ? "signed" : "sealed";
  const change = h("button", { type: "button", class: sealed ? "secondary wide" : "primary wide" },
    sealed ? "Stop sealing task content" : "Seal task content");
  const error = errorLine();
  change.addEventListener("click", () => busy(change, async () => {
    if (sealed && !(await confirmDialog("From now on new tasks travel signed but readable by the relay. Tasks already sealed stay sealed.", "Stop sealing"))) return;
    await withSudo(() => signEntry(app, "policy.set", { policy: { ...view.policy, content: next } }));
    toast(next === "sealed" ? "Sealing is on: the relay can no longer read new tasks." : "Sealing is off for new tasks.");
    await reload();
  }, { label: "Waiting for your passkey…", errLine: error }));
  return h("div", {}, state,
    sealed ? null : h("p", { class: "hint" }, "Sealing needs agents that support it: pin or pair them again if a task is refused."),
    change, error);
}

/** The Settings section; `reload` redraws it after a change. */
export function protectionSection(app) {
  const body = h("div", {});
  const section = h("section", { class: "detail-section", id: "protection" }, h("h3", {}, "Protection"), body);
  const reload = async () => {
    const state = await trustState(app.wid, { fresh: true });
    if (state.error) {
      fill(body, h("p", { class: "error", role: "alert" }, state.error));
      return;
    }
    if (!state.protected) {
      const turnOn = h("button", { type: "button", class: "primary wide" }, "Turn protection on");
      const error = errorLine();
      turnOn.disabled = app.role !== "owner" || !!signBlock(app);
      turnOn.addEventListener("click", () => busy(turnOn, async () => {
        await protectWorkspace(app, { policy: DEFAULT_POLICY });
        toast("Protection is on. Pair or pin agents again so they check every task.");
        await reload();
      }, { label: "Waiting for your passkey…", errLine: error }));
      fill(body, h("p", {}, "Off. Agents run whatever the relay sends them with a valid agent token."),
        h("p", { class: "hint" }, "With protection on, every task carries your passkey's signature over exactly what runs, and agents check it against a membership log the relay cannot forge."),
        app.role === "owner" ? [turnOn, error] : h("p", { class: "hint" }, "An owner of this workspace can turn it on."),
        signBlock(app) ? h("p", { class: "notice" }, signBlock(app)) : null);
      return;
    }
    const { view } = state;
    fill(body, h("p", { class: "protected-on" }, h("strong", {}, "On. "), `Every task is signed by a passkey and checked by the agent.`),
      h("p", { class: "small" }, "Log head: ", h("code", { class: "log-head" }, `#${view.head.seq} ${view.head.hash}`)),
      h("h4", {}, "Task content"), contentEditor(app, view, reload),
      h("h4", {}, "Policies"), policyEditor(app, view, reload));
  };
  return { section, reload };
}
