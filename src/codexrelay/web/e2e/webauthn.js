// A passkey signature over a statement (TRUST.md §4): navigator.credentials.get() with the
// app's own challenge H(tag || S), user verification required, and allowCredentials the app
// chose from the verified log. Nothing a relay sends is ever used as the challenge.

import { b64u, fromB64u, taggedHash } from "./statements.js";

function assertionToJSON(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const r = credential.response;
  const response = {
    clientDataJSON: b64u(new Uint8Array(r.clientDataJSON)),
    authenticatorData: b64u(new Uint8Array(r.authenticatorData)),
    signature: b64u(new Uint8Array(r.signature)),
  };
  if (r.userHandle) response.userHandle = b64u(new Uint8Array(r.userHandle));
  return {
    id: credential.id,
    rawId: b64u(new Uint8Array(credential.rawId)),
    type: credential.type,
    response,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
  };
}

/**
 * Sign `bytes` under domain tag `tagName` with one of `credentialIds` (base64url, from the log).
 * Returns {credentialId, assertion} as the agent expects it.
 */
export async function signStatement({ tagName, bytes, rpId, credentialIds, timeout = 120000 }) {
  if (!credentialIds || credentialIds.length === 0) throw new Error("no passkey of yours is in the log");
  const challenge = await taggedHash(tagName, bytes);
  const credential = await navigator.credentials.get({
    publicKey: {
      challenge,
      rpId,
      timeout,
      userVerification: "required",
      allowCredentials: credentialIds.map((id) => ({ type: "public-key", id: fromB64u(id) })),
    },
  });
  const assertion = assertionToJSON(credential);
  return { credentialId: assertion.id, assertion };
}
