"""What ``relay check-config`` says about push: is it on, is the VAPID key sound, will
the push services accept the contact, can phones subscribe from this origin."""

from __future__ import annotations

from dataclasses import dataclass, field

from codexrelay.relay.config import RelayConfig
from codexrelay.relay.push.endpoints import is_loopback
from codexrelay.relay.push.vapid import load_vapid_key, vapid_key_path
from codexrelay.relay.storage.jsonfile import StateError


@dataclass
class Readiness:
    """Lines to print; ``problems`` stop the relay from starting, ``warnings`` do not."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def push_readiness(config: RelayConfig) -> Readiness:
    """Check the push settings and the key file without changing anything."""
    report = Readiness()
    if not config.push.enabled:
        report.lines.append("push: off (push.enabled is false)")
        return report
    path = vapid_key_path(config.data_path)
    if not path.exists():
        report.lines.append(f"push: VAPID key {path} is made at the next start")
    else:
        try:
            key = load_vapid_key(config.data_path)
        except StateError as exc:
            report.problems.append(f"push: {exc}")
        else:
            report.lines.append(f"push: VAPID key {path} (0600), public key {key.public_b64}")
    report.lines.append(f"push: contact {config.push_contact}")
    report.lines.append("push: sends only to " + ", ".join(config.push.allowed_hosts))
    if config.push_contact.endswith("@localhost"):
        report.warnings.append(
            "push: set push.contact (a mailto: address or https URL): Apple's push service "
            "refuses a localhost contact"
        )
    if not (config.https or config.loopback_origin):
        report.warnings.append(
            "push: phones can subscribe only on an https publicOrigin (or localhost)"
        )
    loopback = [h for h in config.push.allowed_hosts if is_loopback(h.strip("[]"))]
    if loopback:
        report.warnings.append(
            "push: allowedHosts lists this machine (" + ", ".join(loopback) + "): keep that "
            "for tests only"
        )
    return report
