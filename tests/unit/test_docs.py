"""The docs cannot drift from the code: every config key is documented."""

from __future__ import annotations

from pydantic import BaseModel

from codexrelay.relay.config import RelayConfig
from tests.helpers import ROOT


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for field in model.model_fields.values():
        key = f"{prefix}{field.alias}"
        keys.append(key)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_keys(annotation, f"{key}."))
    return keys


def test_readme_documents_every_relay_key():
    """Every relay config key (nested ones too) has a row in the README's reference."""
    readme = (ROOT / "README.md").read_text()
    missing = [key for key in _keys(RelayConfig) if f"| `{key}` |" not in readme]
    assert not missing, f"README is missing config keys: {missing}"


def test_readme_starts_with_the_two_commands():
    """The README's first lines are `make demo` and `make test`."""
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)
