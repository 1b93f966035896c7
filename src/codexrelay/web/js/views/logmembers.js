// People, as the membership log says (TRUST.md §8): roles, passkeys and devices with who
// signed each change and when, each chain's head to note off the host, and a warning when
// the relay's own member list disagrees with the verified log.

import { h } from "../dom.js";

const OP_WORDS = {
  genesis: "founded the workspace (protection on)",
  "member.add": "added a member",
  "member.remove": "removed a member",
  "member.role": "changed a role",
  "passkey.add": "added a passkey",
  "passkey.revoke": "revoked a passkey",
  "device.add": "added a device",
  "device.revoke": "revoked a device",
  "agent.add": "paired an agent",
  "agent.revoke": "revoked an agent",
  "agent.rotate": "rotated its keys",
  "policy.set": "changed the policies",
  checkpoint: "chose a head after a fork",
};

function nameOf(view, signer) {
  if (signer.startsWith("agent:")) return `agent ${signer.slice(6)}`;
  const member = view.members.get(signer);
  return member ? member.name : signer;
}

function dateOf(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

function target(view, body) {
  if (body.userId) return ` (${nameOf(view, body.userId)}${body.role ? `, ${body.role}` : ""})`;
  if (body.agentId) {
    const agent = view.agents.get(body.agentId);
    return ` (${body.label || (agent && agent.label) || body.agentId})`;
  }
  return "";
}

/** Where the relay's list and the log differ, as sentences (empty when they agree). */
export function disagreements(view, relayMembers) {
  const out = [];
  for (const m of relayMembers) {
    const logged = view.members.get(m.userId);
    if (!logged) out.push(`${m.name} is a ${m.role} on the relay but not in the signed log.`);
    else if (logged.role !== m.role) out.push(`${m.name} is a ${m.role} on the relay but a ${logged.role} in the signed log.`);
  }
  for (const logged of view.members.values()) {
    if (!relayMembers.some((m) => m.userId === logged.userId)) out.push(`${logged.name} is in the signed log but missing on the relay.`);
  }
  return out;
}

function memberItem(view, member) {
  const devices = [...view.devices.values()].filter((d) => d.userId === member.userId && d.revokedSeq === null);
  const passkeys = [...view.passkeys.values()].filter((p) => p.userId === member.userId && p.revokedSeq === null);
  return h("li", { class: "card log-member", dataset: { userId: member.userId } },
    h("div", { class: "card-row" }, h("strong", {}, member.name), h("span", { class: `chip role-${member.role}` }, member.role)),
    h("p", { class: "small muted" }, `${passkeys.length} ${passkeys.length === 1 ? "passkey" : "passkeys"}, since entry #${member.sinceSeq}`),
    devices.length ? h("ul", { class: "small device-list", "aria-label": `Devices of ${member.name}` },
      devices.map((d) => h("li", {}, `${d.label} (${d.deviceId}), added in entry #${d.addedSeq}`))) : null);
}

/** The section: a disagreement banner, members, then the signed history. */
export function logSection(app, view, relayMembers) {
  const differ = disagreements(view, relayMembers);
  const history = [...view.history].reverse().slice(0, 50);
  const agents = [...view.agents.values()];
  return h("section", { class: "detail-section log-section", "aria-label": "Members as the signed log says" },
    differ.length ? h("div", { class: "warning log-disagrees", role: "alert" },
      h("strong", {}, "The relay's member list disagrees with the signed log. "),
      "Agents act on the log; the relay may be wrong or tampered with.", h("ul", {}, differ.map((d) => h("li", {}, d)))) : null,
    h("h3", {}, "Members in the signed log"),
    h("ul", { class: "cards", "aria-label": "Members in the signed log" }, [...view.members.values()].map((m) => memberItem(view, m))),
    agents.length ? [h("h3", {}, "Agents in the signed log"), h("ul", { class: "small" }, agents.map((a) =>
      h("li", {}, `${a.label} (${a.agentId})`, a.revokedSeq === null ? `, added in entry #${a.addedSeq}` : `, revoked in entry #${a.revokedSeq}`)))] : null,
    h("h3", {}, "Signed changes"),
    h("p", { class: "small" }, "Log head: ", h("code", { class: "log-head" }, `#${view.head.seq} ${view.head.hash}`)),
    h("ol", { class: "log-history small", reversed: true }, history.map((c) =>
      h("li", { dataset: { seq: String(c.seq) } }, `#${c.seq} ${dateOf(c.issuedAt)} · ${c.signers.map((s) => nameOf(view, s)).join(", ")} ${OP_WORDS[c.op] || c.op}${target(view, c.body)}`))));
}
