// Passkey ceremonies with purpose-tagged challenges (API.md, binding): the authenticator
// never signs the relay's raw challenge C, only SHA-256(TAG || 0x00 || C), so a login the
// relay asks for can never double as a signature over a task or an approval.

import { ApiError, post } from "./api.js";

export const TAGS = {
  register: "codexrelay/webauthn/register/v1",
  login: "codexrelay/webauthn/login/v1",
  sudo: "codexrelay/webauthn/sudo/v1",
};

export function toBytes(b64url) {
  const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

export function toB64url(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  let bin = "";
  for (const byte of bytes) bin += String.fromCharCode(byte);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** base64url(SHA-256(TAG + 0x00 + C)) for the relay's base64url challenge C. */
export async function tagChallenge(purpose, challenge) {
  const tag = new TextEncoder().encode(TAGS[purpose]);
  const raw = toBytes(challenge);
  const message = new Uint8Array(tag.length + 1 + raw.length);
  message.set(tag, 0);
  message[tag.length] = 0;
  message.set(raw, tag.length + 1);
  return toB64url(await crypto.subtle.digest("SHA-256", message));
}

export function passkeysSupported() {
  return typeof window.PublicKeyCredential === "function" && !!navigator.credentials;
}

// ---- older browsers (Safari < 18) without the JSON helpers ----

function creationFromJSON(json) {
  return {
    ...json,
    challenge: toBytes(json.challenge),
    user: { ...json.user, id: toBytes(json.user.id) },
    excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })),
  };
}

function requestFromJSON(json) {
  const options = { ...json, challenge: toBytes(json.challenge) };
  if (json.allowCredentials) {
    options.allowCredentials = json.allowCredentials.map((c) => ({ ...c, id: toBytes(c.id) }));
  }
  return options;
}

function credentialToJSON(cred) {
  if (typeof cred.toJSON === "function") return cred.toJSON();
  const r = cred.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  }
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    response,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
  };
}

/** Authenticator failures as sentences a person can act on. */
function explain(err) {
  if (err instanceof ApiError) return err;
  const name = err && err.name;
  let message = "The passkey request failed. Try again.";
  if (name === "NotAllowedError") message = "The passkey request was cancelled or timed out.";
  else if (name === "InvalidStateError") message = "This device already holds a passkey for this account.";
  else if (name === "SecurityError") message = "Passkeys need this page to be opened over https (or on localhost).";
  else if (name === "NotSupportedError") message = "This browser or device cannot create a passkey here.";
  const wrapped = new Error(message);
  wrapped.name = name || "Error";
  return wrapped;
}

/**
 * Keep the new passkey's COSE public key on this device, read from the authenticator's own
 * response (never from the relay): it goes into the key card that adds this person to a
 * protected workspace's signed log.
 */
function keepPublicKey(cred, credentialId) {
  try {
    const data = new Uint8Array(cred.response.getAuthenticatorData());
    const idLength = (data[53] << 8) | data[54];
    const cose = data.slice(55 + idLength);
    localStorage.setItem("codexrelay.cose", JSON.stringify({ credId: credentialId, cose: toB64url(cose) }));
  } catch {
    // Without it this device cannot make a key card; an admin can still add its keys.
  }
}

/** Register a new passkey for the signed-in session (also an enrollment-locked one, R21). */
export async function registerPasskey(label) {
  if (!passkeysSupported()) throw new Error("This browser does not support passkeys.");
  const body = label ? { label } : {};
  const { challengeId, publicKey } = await post("/api/v1/auth/passkeys/register/options", body);
  try {
    const json = { ...publicKey, challenge: await tagChallenge("register", publicKey.challenge) };
    const options = PublicKeyCredential.parseCreationOptionsFromJSON
      ? PublicKeyCredential.parseCreationOptionsFromJSON(json)
      : creationFromJSON(json);
    const cred = await navigator.credentials.create({ publicKey: options });
    const credential = credentialToJSON(cred);
    const result = await post("/api/v1/auth/passkeys/register/verify", { challengeId, credential, ...body });
    keepPublicKey(cred, credential.id);
    return result;
  } catch (err) {
    throw explain(err);
  }
}

/** Sign in with a discoverable passkey: no user name asked (R02). */
export async function signInWithPasskey() {
  if (!passkeysSupported()) throw new Error("This browser does not support passkeys.");
  const { challengeId, publicKey } = await post("/api/v1/auth/passkeys/login/options", {});
  try {
    const json = { ...publicKey, challenge: await tagChallenge("login", publicKey.challenge) };
    const options = PublicKeyCredential.parseRequestOptionsFromJSON
      ? PublicKeyCredential.parseRequestOptionsFromJSON(json)
      : requestFromJSON(json);
    const cred = await navigator.credentials.get({ publicKey: options });
    return await post("/api/v1/auth/passkeys/login/verify", { challengeId, credential: credentialToJSON(cred) });
  } catch (err) {
    throw explain(err);
  }
}

/**
 * Sudo mode (TRUST.md §4.13): a user-verified assertion with one of the caller's passkeys
 * opens five minutes of sensitive changes on this session. Returns the credential id used.
 */
export async function confirmWithPasskey() {
  if (!passkeysSupported()) throw new Error("This browser does not support passkeys.");
  const { challengeId, publicKey } = await post("/api/v1/auth/sudo/options", {});
  try {
    const json = { ...publicKey, challenge: await tagChallenge("sudo", publicKey.challenge) };
    const options = PublicKeyCredential.parseRequestOptionsFromJSON
      ? PublicKeyCredential.parseRequestOptionsFromJSON(json)
      : requestFromJSON(json);
    const cred = await navigator.credentials.get({ publicKey: options });
    const credential = credentialToJSON(cred);
    await post("/api/v1/auth/sudo/verify", { challengeId, credential });
    return credential.id;
  } catch (err) {
    throw explain(err);
  }
}
