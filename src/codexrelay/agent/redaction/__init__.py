"""Secret scanning and redaction of everything the agent sends towards the relay (B3).

Build one ``Redactor`` from the agent's ``RedactionSettings`` at start-up; pass every outbound
text (output tails, final messages, diffs, log tails, session titles and previews) through
``Redactor.redact``, and each chunked stream through its own ``Redactor.stream()``. Print
``startup_warning(settings)`` when it is not ``None``.

Decisions a reader may look for:

- each secret becomes ``[REDACTED:<kind>]`` in place; lines are never joined or dropped, and a
  private key is masked line by line so a diff keeps its `+` markers;
- empty values and placeholders are not secrets: `${DB_PASSWORD}`, `$TOKEN`, `{{ x }}`,
  `%(password)s`, `<your-password>`, `****`, `xxxx`, `changeme`, `your-...`, the bare words
  `password`/`secret`/`token`, templates filled in at run time; `${VAR:-literal}` is a secret;
- bare values that read as code (calls, attribute paths, type names, snake_case or camelCase
  names, names that themselves say password/token/key) are not secrets, so ordinary code reads
  through; an unquoted password made only of letters written as `password = word` is missed;
- values shorter than 4 characters (8 for tokens and keys) are stubs, not secrets;
- `pk_test_` Stripe keys are left readable; `pk_live_` is hidden with the secret kinds;
- a private key's BEGIN and END markers are hidden with its body, even when quoted in code.
"""

from codexrelay.agent.redaction.redactor import Redactor
from codexrelay.agent.redaction.settings import (
    DISABLED_WARNING,
    RedactionSettings,
    startup_warning,
)
from codexrelay.agent.redaction.stream import StreamRedactor

__all__ = [
    "DISABLED_WARNING",
    "RedactionSettings",
    "Redactor",
    "StreamRedactor",
    "startup_warning",
]
