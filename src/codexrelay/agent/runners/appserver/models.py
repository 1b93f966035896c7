"""The models the agent's Codex offers (``model/list``), as the phone's picker shows them."""

from __future__ import annotations

from codexrelay.protocol_threads import ModelOption


def model_option(raw: object) -> ModelOption | None:
    """One ``model/list`` entry as the phone's picker shows it; hidden or odd ones: None."""
    if not isinstance(raw, dict) or raw.get("hidden") or not isinstance(raw.get("id"), str):
        return None
    efforts = [
        str(e.get("reasoningEffort"))[:20]
        for e in raw.get("supportedReasoningEfforts") or []
        if isinstance(e, dict) and e.get("reasoningEffort")
    ]
    default = raw.get("defaultReasoningEffort")
    try:
        return ModelOption(
            id=raw["id"][:200],
            display_name=str(raw.get("displayName") or raw["id"])[:200],
            description=str(raw.get("description") or "")[:1000],
            is_default=bool(raw.get("isDefault")),
            default_effort=str(default)[:20] if default else None,
            efforts=efforts[:16],
            images="image" in (raw.get("inputModalities") or ["text", "image"]),
        )
    except ValueError:
        return None
