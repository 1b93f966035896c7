// Signed-out and not-yet-enrolled screens: passkey sign-in, the recovery token (owner
// recovery only, O4), invite acceptance and passkey enrollment (R21).

import { post } from "../api.js";
import { busy, errorLine, field, fill, h, screenTitle, showError } from "../dom.js";
import { passkeysSupported, registerPasskey, signInWithPasskey } from "../passkey.js";

/** A pasted link says what it is; a bare code is what the person picked. */
function codeFrom(text, kind) {
  const trimmed = text.trim();
  const match = trimmed.match(/#(invite|recovery)=([A-Za-z0-9 -]+)$/);
  if (match) return { kind: match[1], code: match[2] };
  return trimmed ? { kind, code: trimmed } : null;
}

export async function signInScreen(app, container) {
  const error = errorLine();
  const passkeyButton = h("button", { type: "button", class: "primary wide" }, "Sign in with passkey");
  passkeyButton.addEventListener("click", () => busy(passkeyButton, async () => {
    await signInWithPasskey();
    await app.start();
  }, { label: "Waiting for your passkey…", errLine: error }));

  const token = h("input", { type: "password", name: "token", autocomplete: "off", required: true, spellcheck: "false" });
  const tokenButton = h("button", { type: "submit", class: "secondary wide" }, "Sign in with recovery token");
  const tokenError = errorLine();
  const tokenForm = h("form", {}, field("Recovery token", token), tokenButton, tokenError);
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(tokenButton, async () => {
      await post("/api/v1/auth/bootstrap", { token: token.value });
      token.value = "";
      await app.start();
    }, { label: "Signing in…", errLine: tokenError });
  });

  const codeInput = h("input", { type: "text", autocomplete: "off", autocapitalize: "characters", spellcheck: "false", required: true });
  const kind = h("select", {}, h("option", { value: "invite" }, "An invite"), h("option", { value: "recovery" }, "A recovery code"));
  const codeForm = h("form", {}, field("What do you have?", kind), field("The code (or the whole link)", codeInput),
    h("button", { type: "submit", class: "secondary wide" }, "Continue"));
  codeForm.addEventListener("submit", (event) => {
    event.preventDefault();
    app.pending = codeFrom(codeInput.value, kind.value);
    if (app.pending) app.start();
  });

  fill(container, h("div", { class: "screen signin" },
    h("img", { src: "/icons/icon.svg", alt: "", class: "brand-mark", width: "72", height: "72" }),
    screenTitle("Sign in"),
    h("p", {}, "Use the passkey saved on this phone. No user name needed."),
    passkeysSupported() ? passkeyButton : h("p", { class: "warning" }, "This browser does not support passkeys."),
    error,
    h("p", { class: "hint" }, "First time here? The relay's owner signs in once with the recovery token (below), then creates a passkey."),
    h("details", { class: "panel" }, h("summary", {}, "Recovery token"),
      h("p", { class: "hint" }, "The token printed by `codexrelay relay init` (or the demo). The relay owner uses it for the first sign-in, then only for recovery, for example after losing every passkey. Every use is recorded."),
      tokenForm),
    h("details", { class: "panel" }, h("summary", {}, "I have an invite or recovery code"), codeForm)));
}

export async function inviteScreen(app, container) {
  const { code } = app.pending;
  const error = errorLine();
  const done = async () => {
    app.pending = null;
    await app.start();
  };
  if (app.me) {
    const accept = h("button", { type: "button", class: "primary wide" }, "Join the workspace");
    accept.addEventListener("click", () => busy(accept, async () => {
      await post("/api/v1/invites/accept", { code });
      await done();
    }, { label: "Joining…", errLine: error }));
    fill(container, h("div", { class: "screen" }, screenTitle("You have an invite"),
      h("p", {}, `You are signed in as ${app.me.user.name}. Accepting adds the invite's workspace to your account.`),
      accept, h("button", { type: "button", class: "secondary wide", onclick: done }, "Not now"), error));
    return;
  }
  const name = h("input", { type: "text", name: "name", autocomplete: "name", required: true, maxlength: "60" });
  const submit = h("button", { type: "submit", class: "primary wide" }, "Accept invite");
  const form = h("form", {}, field("Your name", name, "Shown to the other people in the workspace."), submit, error);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      await post("/api/v1/invites/accept", { code, name: name.value.trim() });
      await done();
    }, { label: "Accepting…", errLine: error });
  });
  fill(container, h("div", { class: "screen" }, screenTitle("You are invited"),
    h("p", {}, "Someone invited you to a codexrelay workspace. Give your name, then create a passkey on this phone to finish."),
    form,
    h("button", { type: "button", class: "link", onclick: done }, "Back to sign-in")));
}

export async function recoveryScreen(app, container) {
  const { code } = app.pending;
  const error = errorLine();
  const go = h("button", { type: "button", class: "primary wide" }, "Recover my account");
  go.addEventListener("click", () => busy(go, async () => {
    await post("/api/v1/auth/recovery/redeem", { code });
    app.pending = null;
    await app.start();
  }, { label: "Checking the code…", errLine: error }));
  fill(container, h("div", { class: "screen" }, screenTitle("Recover your account"),
    h("p", {}, "This one-time recovery code lets you register a new passkey on this phone."),
    go, error,
    h("button", { type: "button", class: "link", onclick: () => { app.pending = null; app.start(); } }, "Cancel")));
}

export async function enrollScreen(app, container) {
  const { user, session } = app.me;
  const recovering = session.via === "recovery-code";
  const label = h("input", { type: "text", maxlength: "60", value: "This phone", autocomplete: "off" });
  const create = h("button", { type: "button", class: "primary wide" }, recovering ? "Register a new passkey" : "Create passkey");
  const error = errorLine();
  create.addEventListener("click", () => busy(create, async () => {
    await registerPasskey(label.value.trim() || undefined);
    await app.start();
  }, { label: "Waiting for your passkey…", errLine: error }));
  showError(error, null);
  fill(container, h("div", { class: "screen enroll" },
    screenTitle(recovering ? "Register a new passkey" : "Create your passkey"),
    h("p", {}, `Hi ${user.name}. `, recovering
      ? "Register a new passkey on this phone to get back in."
      : "One last step: create a passkey on this phone. Until then your account can see nothing in the workspace."),
    field("Passkey name", label, "Helps you tell your passkeys apart later."),
    passkeysSupported() ? create : h("p", { class: "warning" }, "This browser does not support passkeys. Open the link on a phone that does."),
    error,
    h("button", { type: "button", class: "link", onclick: () => app.signOut() }, "Sign out")));
}
