// The phone app: boot, sign-in state, the workspace shell, a tiny hash router and the live
// feed. Screens live in js/views/; every one builds DOM with textContent only (R19).

import { ApiError, get, locateRelay, post, ws } from "./js/api.js";
import * as cache from "./js/cache.js";
import { busy, errorLine, fill, h, toast } from "./js/dom.js";
import { roleAtLeast } from "./js/format.js";
import { LiveFeed } from "./js/live.js";
import { forget, protectWorkspace, trustState } from "./js/trust.js";
import { dropIfRevoked } from "./js/views/mydevices.js";
import { disagreements } from "./js/views/logmembers.js";
import { passkeysSupported, registerPasskey } from "./js/passkey.js";
import * as push from "./js/push.js";
import { agentsScreen, sessionsScreen } from "./js/views/agents.js";
import { auditScreen } from "./js/views/audit.js";
import { chatScreen } from "./js/views/chat.js";
import { newTaskScreen } from "./js/views/newtask.js";
import { pairScreen } from "./js/views/pair.js";
import { peopleScreen } from "./js/views/people.js";
import { settingsScreen } from "./js/views/settings.js";
import { enrollScreen, inviteScreen, recoveryScreen, signInScreen } from "./js/views/signin.js";
import { taskDetailScreen, taskListScreen } from "./js/views/tasks.js";
import { workspacesScreen } from "./js/views/workspaces.js";
import { newThreadScreen, threadListScreen } from "./js/views/threads.js";

const $ = (id) => document.getElementById(id);

const ROUTES = [
  [/^\/tasks\/([\w-]+)$/, taskDetailScreen],
  [/^\/chats\/new$/, newThreadScreen],
  [/^\/chats\/([0-9a-f-]{36})$/, chatScreen],
  [/^\/chats$/, threadListScreen],
  [/^\/tasks$/, taskListScreen],
  [/^\/new$/, newTaskScreen],
  [/^\/agents\/([\w.-]+)\/sessions$/, sessionsScreen],
  [/^\/agents$/, agentsScreen],
  [/^\/pair$/, pairScreen],
  [/^\/people$/, peopleScreen],
  [/^\/settings$/, settingsScreen],
  [/^\/audit$/, auditScreen],
  [/^\/workspaces$/, workspacesScreen],
];

const TABS = [
  ["/tasks", "Tasks"],
  ["/chats", "Chats"],
  ["/new", "New task"],
  ["/agents", "Agents"],
  ["/people", "People"],
  ["/settings", "Settings"],
];

/** Shared state every screen reads through `app`. */
export const app = {
  me: null,
  wid: null,
  role: null,
  agents: [],
  screen: null,
  early: null, // live events held while a screen is being built
  pending: null, // { kind: "invite" | "recovery", code } from the URL fragment
  passkeyMadeHere: false, // a passkey was created in this recovery session, on this page
  live: null,
  logWarning: "", // the signed log and the relay disagree (shown on every screen)

  workspaceName() {
    const m = this.me && this.me.memberships.find((x) => x.workspaceId === this.wid);
    return m ? m.workspaceName : "";
  },
  can(minimum) {
    return !!this.role && roleAtLeast(this.role, minimum);
  },
  features() {
    return (this.me && this.me.relay && this.me.relay.features) || {};
  },
  agent(agentId) {
    return this.agents.find((a) => a.agentId === agentId) || null;
  },
  async loadAgents() {
    const { agents } = await get(ws(this.wid, "/agents"));
    this.agents = agents;
    return agents;
  },
  go(path) {
    if (location.hash === `#${path}`) render();
    else location.hash = path;
  },
  async refreshMe() {
    this.me = await get("/api/v1/me");
    return this.me;
  },
  /** Make `workspaceId` the one every screen shows, and remember it on this device. */
  switchWorkspace(workspaceId, path = "/tasks") {
    const m = this.me.memberships.find((x) => x.workspaceId === workspaceId);
    if (!m) return;
    localStorage.setItem(`codexrelay.workspace.${this.me.user.id}`, m.workspaceId);
    this.wid = m.workspaceId;
    this.role = m.role;
    this.agents = [];
    this.loadAgents().catch(() => {});
    this.live.open(this.wid);
    renderWorkspaceSwitcher();
    checkLog().catch(() => {});
    this.go(path);
  },
  renderBanner,
  start,
  signOut,
};

// ---- routing ----

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/tasks";
  const [path, query = ""] = raw.split("?");
  return { path, query: new URLSearchParams(query) };
}

async function render() {
  if (!app.me || !app.wid) return;
  const { path, query } = parseHash();
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  if (!found) {
    app.go("/tasks");
    return;
  }
  // A notification names its workspace (?ws=): open the screen there.
  const wsParam = query.get("ws");
  if (wsParam && wsParam !== app.wid && app.me.memberships.some((m) => m.workspaceId === wsParam)) {
    app.switchWorkspace(wsParam, path);
    return;
  }
  const [pattern, screen] = found;
  const params = path.match(pattern).slice(1).map(decodeURIComponent);
  if (app.screen && app.screen.dispose) app.screen.dispose();
  app.screen = null;
  for (const link of $("tabbar").querySelectorAll("a")) {
    const active = path === link.dataset.path || path.startsWith(`${link.dataset.path}/`)
      || (link.dataset.path === "/agents" && path === "/pair")
      || (link.dataset.path === "/people" && path === "/audit");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const root = h("div", { class: "screen" });
  fill($("view"), root);
  // Events that arrive while the screen fetches its data are kept and handed over once it
  // is up, so a task that finishes during that fetch is not missed.
  const early = [];
  app.early = early;
  let handle = {};
  try {
    handle = (await screen(app, root, params, query)) || {};
  } catch (err) {
    fill(root, h("p", { class: "error", role: "alert" }, err.message || "This screen could not be shown."));
  }
  if (!root.isConnected) {
    if (handle.dispose) handle.dispose();
    return;
  }
  app.screen = handle;
  if (app.early === early) app.early = null;
  if (handle.onEvent) for (const [type, data] of early) handle.onEvent(type, data);
  const title = root.querySelector(".screen-title");
  if (title && document.activeElement === document.body) title.focus({ preventScroll: true });
}

// ---- the live feed ----

function onLiveEvent(type, data) {
  if (type === "log") forget(app.wid); // screens verify the new entry on their next look
  if (type === "agent" && data.agent) {
    const index = app.agents.findIndex((a) => a.agentId === data.agent.agentId);
    if (index >= 0) app.agents[index] = data.agent;
    else app.agents.push(data.agent);
  }
  if (type === "pair-request" && data.pairRequest && data.pairRequest.status === "pending"
      && app.can("admin") && parseHash().path !== "/pair") {
    toast(`Agent "${data.pairRequest.label}" asks to join. Open Agents › Pair to approve it.`);
  }
  if (app.early) app.early.push([type, data]);
  else if (app.screen && app.screen.onEvent) app.screen.onEvent(type, data);
}

const LIVE_WORDS = { live: "Live", connecting: "Connecting…", offline: "Offline" };

function onLiveStatus(status) {
  const dot = $("live-status");
  dot.dataset.state = status;
  dot.textContent = LIVE_WORDS[status];
}

// ---- the shell ----

function showShell(visible) {
  $("topbar").hidden = !visible;
  $("tabbar").hidden = !visible;
  if (!visible) fill($("banner"));
}

function chooseWorkspace() {
  const memberships = app.me.memberships;
  const saved = localStorage.getItem(`codexrelay.workspace.${app.me.user.id}`);
  const chosen = memberships.find((m) => m.workspaceId === saved) || memberships[0] || null;
  app.wid = chosen ? chosen.workspaceId : null;
  app.role = chosen ? chosen.role : null;
}

function renderWorkspaceSwitcher() {
  const m = app.me.memberships.find((x) => x.workspaceId === app.wid);
  $("workspace-name").textContent = m ? `${m.workspaceName} (${m.role})` : "";
  $("workspace-switcher").setAttribute("aria-label", m ? `Workspace: ${m.workspaceName}, ${m.role}. Switch or create` : "Workspaces");
}

function firstSignInBanner() {
  // The relay owner's first way in is the recovery token; a passkey comes right after.
  const create = h("button", { type: "button", class: "primary" }, "Create a passkey now");
  const error = errorLine();
  create.addEventListener("click", () => busy(create, async () => {
    const made = await registerPasskey("This device");
    app.passkeyMadeHere = true;
    await app.refreshMe();
    await protectFromFirstPasskey(made.passkey.credentialId);
    renderBanner();
  }, { label: "Waiting for your passkey…", errLine: error }));
  return h("div", { class: "warning first-sign-in", id: "first-sign-in", role: "region", "aria-label": "First sign-in" },
    h("p", {}, h("strong", {}, "First sign-in. "),
      "You are in with the recovery token, the way the relay's owner signs in the first time. "
      + "Next, create a passkey on this device: from then on you sign in with it, and the token "
      + "waits in your password manager for the day you lose every passkey."),
    passkeysSupported() ? create : h("p", {}, "This browser does not support passkeys: open the app in one that does."),
    error);
}

/** The owner's first passkey signs the genesis of the workspace they own (TRUST.md §4.1). */
async function protectFromFirstPasskey(credentialId) {
  if (app.role !== "owner") return;
  try {
    const state = await trustState(app.wid, { fresh: true });
    if (state.protected) return;
    await protectWorkspace(app, { credentialId });
    toast("Protection is on: every task is now signed by your passkey and checked by the agent.");
  } catch (err) {
    toast(`Protection is not on yet: ${err.message} Turn it on in Settings.`, "error");
  }
}

/** On every screen: the workspace's log does not verify, or the relay's members differ. */
async function checkLog() {
  const wid = app.wid;
  app.logWarning = "";
  const state = await trustState(wid, { fresh: true });
  if (!state.protected || wid !== app.wid) return;
  if (state.view && await dropIfRevoked(app, state.view)) {
    toast("This device was revoked in the workspace's signed log: its keys and cached task details are deleted.", "error");
  }
  let words = state.error || "";
  if (!words) {
    const { members } = await get(ws(wid, "/members"));
    if (disagreements(state.view, members).length) {
      words = "The relay's member list disagrees with the signed log; agents act on the log. See People.";
    }
  }
  if (wid !== app.wid) return;
  app.logWarning = words;
  renderBanner();
}

function renderBanner() {
  const { user, session } = app.me;
  const banner = $("banner");
  fill(banner);
  if (app.logWarning) banner.append(h("p", { class: "warning", id: "log-warning", role: "alert" }, app.logWarning));
  if (session.isRecovery && user.hasPasskey && app.passkeyMadeHere) {
    banner.append(h("p", { class: "notice", id: "passkey-created", role: "status" },
      h("strong", {}, "Passkey created. "),
      "Sign in with it from now on; the recovery token is for recovery only."));
  } else if (session.isRecovery && user.hasPasskey) {
    // O4: once a passkey exists the recovery token is for recovery only.
    banner.append(h("p", { class: "warning", id: "recovery-warning" },
      h("strong", {}, "Recovery sign-in. "),
      "You signed in with the recovery token although you have a passkey. "
      + "Use the token for recovery only; sign in with your passkey from now on. "
      + "If you did not do this, end your other sessions in Settings."));
  } else if (session.isRecovery) {
    banner.append(firstSignInBanner());
  }
}

function renderNoWorkspace() {
  showShell(false);
  fill($("view"), h("div", { class: "screen" },
    h("h2", { class: "screen-title", tabindex: "-1" }, "No workspace yet"),
    h("p", {}, `Signed in as ${app.me.user.name}. You are not a member of any workspace. Ask an admin for an invite link.`),
    h("button", { type: "button", class: "secondary", onclick: () => signOut() }, "Sign out")));
}

/** Work out who we are and show the right screen. */
async function start() {
  let me = null;
  app.me = null;
  try {
    me = await app.refreshMe();
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) {
      showShell(false);
      fill($("view"), h("div", { class: "screen" }, h("h2", { class: "screen-title" }, "Cannot reach the relay"),
        h("p", { class: "error", role: "alert" }, err.message),
        h("button", { type: "button", class: "primary", onclick: () => start() }, "Try again")));
      return;
    }
  }
  if (app.live) app.live.close();
  if (app.pending && app.pending.kind === "recovery") {
    showShell(false);
    await recoveryScreen(app, $("view"));
    return;
  }
  if (!me) {
    app.me = null;
    cache.lock();
    showShell(false);
    if (app.pending && app.pending.kind === "invite") await inviteScreen(app, $("view"));
    else await signInScreen(app, $("view"));
    return;
  }
  if (me.session.enrollmentLocked) {
    // R21: an invitee (or a recovering user) sees nothing until a passkey is registered.
    showShell(false);
    await enrollScreen(app, $("view"));
    return;
  }
  if (app.pending && app.pending.kind === "invite") {
    showShell(false);
    await inviteScreen(app, $("view"));
    return;
  }
  try {
    await cache.unlock(me.user.id);
  } catch {
    // The cache stays locked: details are still shown live, just not kept on the device.
  }
  chooseWorkspace();
  if (!app.wid) {
    renderNoWorkspace();
    return;
  }
  document.title = me.relay.appName;
  $("app-title").textContent = me.relay.appName;
  showShell(true);
  renderWorkspaceSwitcher();
  renderBanner();
  checkLog().catch(() => {});
  app.agents = [];
  app.loadAgents().catch(() => {});
  app.live.open(app.wid);
  push.resync(me).catch(() => {}); // notifications keep working after a new sign-in
  await render();
}

async function signOut() {
  if (app.live) app.live.close();
  await push.forgetDevice(app.me && app.me.user.id).catch(() => {});
  try {
    await post("/api/v1/auth/logout");
  } catch {
    // The cookie is cleared by the relay; if it is unreachable the session ends by expiry.
  }
  cache.lock();
  app.me = null;
  app.wid = null;
  app.role = null;
  app.passkeyMadeHere = false;
  location.hash = "";
  await start();
}

function readPendingCode() {
  const match = location.hash.match(/^#(invite|recovery)=([A-Za-z0-9 -]{4,64})$/);
  if (!match) return;
  app.pending = { kind: match[1], code: match[2] };
  // The code is a credential: keep it out of the address bar and history.
  history.replaceState(null, "", `${location.pathname}${location.search}`);
}

function buildTabs() {
  fill($("tabbar"), TABS.map(([path, label]) => h("a", { href: `#${path}`, dataset: { path } },
    h("span", { class: `tab-icon icon-${path.slice(1)}`, "aria-hidden": "true" }), h("span", {}, label))));
}

function boot() {
  app.live = new LiveFeed(onLiveEvent, onLiveStatus);
  buildTabs();
  readPendingCode();
  $("confirm-cancel").addEventListener("click", () => $("confirm").close("cancel"));
  $("confirm-ok").addEventListener("click", () => $("confirm").close("ok"));
  window.addEventListener("hashchange", () => {
    readPendingCode();
    if (app.pending) start();
    else render();
  });
  window.addEventListener("codexrelay:unauthenticated", () => {
    if (app.me) {
      toast("Your session has ended. Sign in again.", "error");
      app.me = null;
      start();
    }
  });
  window.addEventListener("codexrelay:enrollment-required", () => {
    if (app.me && !app.me.session.enrollmentLocked) start();
  });
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch(() => {});
    // A tapped notification while the app is open: show its screen here.
    navigator.serviceWorker.addEventListener("message", (event) => {
      if (event.origin && event.origin !== location.origin) return;
      const data = event.data || {};
      if (data.type !== "codexrelay:open" || typeof data.url !== "string") return;
      const target = new URL(data.url, location.href);
      if (target.origin === location.origin) location.hash = target.hash;
    });
  }
  locateRelay().then(start, start);
}

boot();
