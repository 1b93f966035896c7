// Workspaces: every one the person belongs to, with the full name however long (it wraps,
// never truncated), the switch between them, and a new one for the relay owner.

import { post } from "../api.js";
import { busy, errorLine, field, fill, h, screenTitle, toast } from "../dom.js";
import { protectWorkspace, signBlock } from "../trust.js";

function workspaceItem(app, m) {
  const current = m.workspaceId === app.wid;
  const button = h("button", {
    type: "button",
    class: `workspace-choice${current ? " current" : ""}`,
    "aria-current": current ? "true" : null,
    dataset: { workspaceId: m.workspaceId },
  },
  h("span", { class: "workspace-choice-name" }, m.workspaceName),
  h("span", { class: "workspace-choice-meta" }, h("span", { class: `chip role-${m.role}` }, m.role),
    current ? h("span", { class: "muted small" }, "Shown now") : null));
  button.addEventListener("click", () => app.switchWorkspace(m.workspaceId));
  return h("li", {}, button);
}

function createForm(app) {
  const name = h("input", { type: "text", name: "workspace-name", maxlength: "80", autocomplete: "off", required: true, placeholder: "e.g. Side project" });
  const submit = h("button", { type: "submit", class: "primary wide" }, "Create workspace");
  const error = errorLine();
  const form = h("form", { class: "workspace-form" },
    field("Name of the new workspace", name, "You become its owner. Invite people and pair agents in it afterwards."),
    submit, error);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      const { workspace } = await post("/api/v1/workspaces", { name: name.value.trim() });
      await app.refreshMe();
      // New workspaces are protected from the start: the owner's passkey signs the genesis.
      let words = "";
      if (!signBlock(app) && app.me.user.hasPasskey) {
        words = await protectWorkspace(app, { wid: workspace.id }).then(() => " Protection is on.",
          (err) => ` Protection is not on yet (${err.message}); turn it on in Settings.`);
      }
      toast(`Workspace "${workspace.name}" created. You are its owner.${words}`);
      app.switchWorkspace(workspace.id, "/agents");
    }, { label: "Creating…", errLine: error });
  });
  return form;
}

export async function workspacesScreen(app, root) {
  const memberships = app.me.memberships;
  fill(root, screenTitle("Workspaces"),
    h("p", { class: "hint" }, "Each workspace has its own people, agents and tasks. Choose the one to show."),
    h("ul", { class: "cards workspace-list", "aria-label": "Your workspaces" }, memberships.map((m) => workspaceItem(app, m))),
    app.me.user.isOwner ? [h("h3", {}, "New workspace"), createForm(app)] : null);
  return {};
}
