// Pairing in a protected workspace (TRUST.md §4.2): the phone adds a secret the relay never
// sees to the relay's code, checks the agent's MAC'd key claim with it (green badge or a
// disabled Approve), then signs the agent.add entry and a MAC'd grant that pins the agent.

import { post } from "./api.js";
import { copyButton, h } from "./dom.js";
import { loadKeys, saveKeys } from "../e2e/keys.js";
import { chainHash } from "../e2e/log.js";
import { formatSecret, grantMac, newSecret, pairingKey, verifyClaim } from "../e2e/pairing.js";
import { safetyNumber } from "../e2e/safety.js";
import { b64u, fromB64u, statementBytes } from "../e2e/statements.js";
import { signEntry } from "./trust.js";

const CLAIM_FIELDS = ["agentId", "label", "hostname", "workspaceRootName", "sigPub", "kexPub", "suite", "nonce"];

/** Draw the secret and keep it on this device (IndexedDB) with the relay's code. */
export async function keepSecret(res) {
  const secret = newSecret();
  await saveKeys(`pair:${res.pairing.id}`, { code: res.code, secret, expiresAt: res.pairing.expiresAt });
  return `${res.code}.${formatSecret(secret)}`;
}

/** The code card: CODE.SECRET, shown once, for a new agent and for one paired before. */
export function protectedCodeCard(res, full, countdown) {
  const pairCommand = `codexrelay agent pair --pair-code ${full}`;
  const pinCommand = `codexrelay agent trust pin --code ${full}`;
  const pairText = h("code", { class: "command-text" }, pairCommand);
  const pinText = h("code", { class: "pin-command-text" }, pinCommand);
  const expiry = h("p", { class: "muted", role: "timer" });
  const timer = countdown(res.pairing.expiresAt, expiry);
  const card = h("div", { class: "card code-card", "aria-label": "Pairing code", dataset: { pairingId: res.pairing.id } },
    h("p", { class: "muted" }, "Pairing code with its secret (shown once)"),
    h("p", { class: "big-code full-code", "aria-label": `Pairing code ${full.split("").join(" ")}` }, full),
    expiry,
    h("p", {}, "A new agent: run this on the development server, with the agent's config in place:"),
    h("pre", { class: "command-box" }, pairText),
    copyButton(pairCommand, "Copy command", pairText),
    h("p", {}, "An agent paired before protection was on: pin this workspace with"),
    h("pre", { class: "command-box" }, pinText),
    copyButton(pinCommand, "Copy pin command", pinText),
    h("p", { class: "hint" }, "The part after the dot never reaches the relay: it lets this phone check that the request comes from the agent you started."));
  return { card, timer };
}

function parseClaim(bytes) {
  const claim = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  if (CLAIM_FIELDS.some((k) => typeof claim[k] !== "string")) throw new Error("incomplete claim");
  return claim;
}

/** The phone's own check of a pair request: `{verified, claim, key, safety, why}`. */
export async function requestTrust(view, req) {
  const kept = await loadKeys(`pair:${req.pairingId}`);
  if (!kept) return { verified: false, why: "This phone did not make the code this agent used." };
  if (!req.keyClaim || !req.keyClaimMac) return { verified: false, why: "The request carries no key claim." };
  try {
    const key = await pairingKey(kept.secret, kept.code);
    const raw = fromB64u(req.keyClaim);
    if (!(await verifyClaim(key, raw, req.keyClaimMac))) return { verified: false, why: "Its key claim does not match your pairing code." };
    const claim = parseClaim(raw);
    if (claim.agentId !== req.agentId || claim.label !== req.label) return { verified: false, why: "The relay's request differs from the agent's signed claim." };
    const digits = await safetyNumber(fromB64u(view.genesisHash), claim.agentId, fromB64u(claim.sigPub));
    return { verified: true, claim, key, safety: digits.join(" ") };
  } catch {
    return { verified: false, why: "Its key claim cannot be read." };
  }
}

export function trustBadge(check) {
  if (check.verified) {
    return h("div", { class: "trust-badge verified", role: "status" },
      h("strong", {}, "Verified with your pairing code"),
      h("p", { class: "small" }, "Safety number: ", h("code", { class: "safety-number" }, check.safety)));
  }
  return h("div", { class: "trust-badge unverified", role: "alert" },
    h("strong", {}, "Unverified — this request did not come from the agent you started"),
    h("p", { class: "small" }, check.why, " Approve is disabled."));
}

/** Approve: sign agent.add with the claim's keys, and a grant MAC'd with the pairing key. */
export async function signedApprove(app, req, check, path) {
  if (!check || !check.verified) throw new Error("This request is not verified with your pairing code.");
  const { claim, key } = check;
  const body = { agentId: claim.agentId, label: claim.label, sigPub: claim.sigPub, kexPub: claim.kexPub, suite: claim.suite, pairingId: req.pairingId };
  return signEntry(app, "agent.add", body, {
    onEntry: async (posted, raw, view) => {
      const grant = statementBytes({
        ws: app.wid, genesisHash: view.genesisHash, head: { seq: view.head.seq + 1, hash: await chainHash(raw) },
        agentId: claim.agentId, pairingId: req.pairingId,
      });
      return post(path, { logEntry: posted, grant: b64u(grant), grantMac: await grantMac(key, grant) });
    },
  });
}
