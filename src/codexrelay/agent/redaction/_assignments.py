"""Secrets assigned to a name that says so: `password=`, `"api_key": "..."`, `AUTH_TOKEN=` (B3).

A few regexes find a secret-ish word followed by an assignment (`=`, `:`, `:=`, `=>`, a typed
`name: str = ...`) and a quoted or bare value; Python then decides from the whole key name and
the value. The key words come from detect-secrets' keyword plugin (``DENYLIST``), widened with
tokens and the common `*_secret_key` / `*_access_key` names, and matched at the *end* of the
key so `max_tokens`, `token_type` or `password_hash` are not taken for secrets. Such near
misses are still redacted when their value looks random (kind ``high_entropy``).

Bare (unquoted) values are judged with a few code-aware rules so ordinary Python and JS read
through untouched: a call, index, attribute path, type name or a name that itself says
password/token/key is code, not a secret. Placeholders (`${DB_PASSWORD}`, `<your-password>`,
`****`, empty) are never redacted.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterator

from detect_secrets.filters.heuristic import is_potential_uuid
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.keyword import DENYLIST

from codexrelay.agent.redaction._hits import Hit, is_placeholder

# The key words, grouped so each regex starts with a literal that Python's engine finds at
# memchr speed (`p` for pass/pwd, `k` for key/token, `cre` for secret/cred); one alternation
# of all the words would make it try every position, several times slower on ordinary code.
# The rest of the key name is found afterwards by walking left from the match.
_STEMS = (
    r"p(?:ass|wd)",
    r"k(?:ey|en(?<=token))",
    r"cre(?:d|t(?<=secret))",
    "contrase",
    r"auth(?=\\?[\"'][ \t]*:)",  # Docker's `"auth": "<base64 of user:password>"`
)
_ASSIGNMENT_TAIL = r"""
    (?P<rest>[\w.-]*+)
    (?:\\?["'])?\]?\??                                   # end of a quoted or indexed key
    [ \t]*
    (?:
        :(?!:)[ \t]*[A-Za-z_][\w.\[\], |]{0,60}?[ \t]*=(?![=>])   # name: str = value
      | :=|=>|=(?!=)|:(?!:)
    )
    [ \t]*
    (?:
        (?P<prefix>[rbfuRBFU]{0,2})(?P<q>\\?["'`])(?P<quoted>(?:(?!(?P=q))(?:\\.|[^\\\n])){0,1024})(?P=q)
      | (?:\\?["'`])?(?P<bare>[^\s"'`]{1,1024})
    )
"""
_ASSIGNMENTS = tuple(
    re.compile(f"(?P<stem>{stem})" + _ASSIGNMENT_TAIL, re.VERBOSE) for stem in _STEMS
)
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-$ñ")

# Key names, not a password (hence the noqa).
_PASSWORD_ENDINGS = r"password|passwd|pwd|passphrase|pass|contraseña|contrasena"  # noqa: S105
_STRONG_KEY = re.compile(
    r"(?:(?:^|_)(?:"
    + "|".join(DENYLIST)
    + r"|passphrase|token|secrets?"
    + r"|(?:secret|access|signing|encryption|master|app|license|consumer|webhook)_?key"
    + r"|secret_?key_?base)"
    + r"|password|passwd|passphrase|secret|token)$"  # also run together: `PGPASSWORD`
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[-.\s$]+")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_DOTTED = re.compile(r"[A-Za-z_$][\w$]*(?:\??\.[A-Za-z_$][\w$]*)+(?::[A-Za-z_]\w*)?")
_STEM_IN_VALUE = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)
_RANDOM_CHARS = re.compile(r"[A-Za-z0-9+=_-][A-Za-z0-9+/=_-]{19,1023}")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")
_PASSWORD_WORD = re.compile(_PASSWORD_ENDINGS + r"|(?:db|database|key)_?pass")
_LABEL = re.compile(r"[A-Za-z]+(?:[-_ .][A-Za-z]+)+")
_REGEX_SYNTAX = re.compile(r"[(\[\\]")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
_BRACKETS = re.compile(r"[()\[\]{}]")
_MORE_WORDS = re.compile(r"[ \t]+[A-Za-z]+\b")
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}

# Bare words that are types, literals or the prose around a key, never a password.
_CODE_WORDS = frozenset(
    (
        "str",
        "string",
        "bytes",
        "int",
        "integer",
        "number",
        "float",
        "bool",
        "boolean",
        "any",
        "object",
        "dict",
        "list",
        "tuple",
        "none",
        "null",
        "nil",
        "true",
        "false",
        "undefined",
        "void",
        "self",
        "this",
        "cls",
        "required",
        "optional",
        "secretstr",
        "secretbytes",
        "the",
        "a",
        "an",
        "is",
        "are",
        "was",
        "not",
        "no",
        "yes",
        "on",
        "off",
        "set",
        "unset",
        "missing",
        "invalid",
        "expired",
        "revoked",
        "valid",
        "unknown",
        "empty",
        "hidden",
        "masked",
        "redacted",
        "enabled",
        "disabled",
        "ok",
        "error",
        "default",
        "env",
        "environment",
        "file",
        "path",
    )
)
# A value shorter than this is a stub (`"s" * 32`, `"x"`), not a secret worth hiding.
_MIN_LENGTH = {"token": 8, "key": 8, "password": 4, "secret": 4}
_ENTROPY = Base64HighEntropyString()


@functools.lru_cache(maxsize=4096)
def _normalise(key: str) -> str:
    """`stripeSecretKey`, `x-api-key`, `spring.datasource.password` as snake_case."""
    return _SEPARATORS.sub("_", _CAMEL.sub(r"\1_\2", key)).lower().strip("_")


def key_kind_aws(key: str) -> bool:
    """True for a key named like AWS's own `SecretAccessKey`."""
    return _normalise(key).endswith("secret_access_key")


@functools.lru_cache(maxsize=4096)
def key_kind(key: str) -> str | None:
    """The marker kind for a key that names a secret (`password`, `token`, ...), else None."""
    name = _normalise(key)
    if name in {"pwd", "oldpwd"}:  # the shell's working directory, not a password
        return None
    match = _STRONG_KEY.search(name)
    if match is None:
        return None
    word = match.group(0).lstrip("_")
    if _PASSWORD_WORD.fullmatch(word):
        return "password"
    if word == "token":
        return "token"
    if word.endswith(("key", "key_base", "keybase")):
        return "key"
    return "secret"


def _key_at(text: str, stem: int, end: int) -> tuple[str, int]:
    """The whole key name around a stem (`DATABASE_PASSWORD`, not `PASSWORD`) and its start."""
    start = stem
    floor = max(0, stem - 128)  # no key name is longer; stops a walk through a huge blob
    while start > floor and text[start - 1] in _KEY_CHARS:
        start -= 1
    return text[start:end], start


def _trim_bare(value: str, *, in_query: bool) -> str:
    """A bare value without a statement or query parameter after it, or trailing punctuation."""
    value = value.split(";", 1)[0]  # `e.password=null;let t=...`: a statement ends there
    if in_query:
        value = re.split(r"[&#]", value, maxsplit=1)[0]
    value = value.rstrip(",.")
    while (
        value
        and value[-1] in _CLOSERS
        and value.count(value[-1]) > value.count(_CLOSERS[value[-1]])
    ):
        value = value[:-1].rstrip(",;.")
    return value


def _in_code(line_before_key: str) -> bool:
    """True when the key sits inside an open call or literal, `f(password=...` or `{ key: `."""
    return line_before_key.count("(") > line_before_key.count(")") or line_before_key.count(
        "{"
    ) > line_before_key.count("}")


def _is_code(value: str, key: str, *, sep: str, tail: str, line_before_key: str) -> bool:
    """True when a bare value is code or prose rather than a literal secret.

    ``sep`` is the text between key and value, ``tail`` the punctuation trimmed off after
    the value (the rest of the line follows it).
    """
    if _BRACKETS.search(value) or _DOTTED.fullmatch(value):
        return True
    if not _IDENTIFIER.fullmatch(value):
        return False
    lowered = value.lower()
    if lowered in _CODE_WORDS or lowered == key.lower() or _STEM_IN_VALUE.search(value):
        return True
    if any(c.isdigit() for c in value):
        return False
    return bool(
        "_" in value.strip("_")  # snake_case: a variable, not a password
        or (value[0].islower() and lowered != value)  # camelCase, likewise
        or (tail[:1] in {",", ")", ";"} and tail[:1] != "")  # an argument or a statement
        or " = " in sep  # `password = hashed`, `token = Punctuation`: code style
        or sep == ":"  # `passwd:gecos`: a namespaced name (YAML needs a space after `:`)
        or _MORE_WORDS.match(tail)  # `password: hash with scrypt` is a sentence
        or _in_code(line_before_key)
    )


def _is_basic_auth(value: str) -> bool:
    """True for base64 of `user:password`, as Docker keeps registry logins."""
    if not _BASE64.fullmatch(value):
        return False
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    return ":" in decoded


def looks_random(value: str) -> bool:
    """True for a long, mixed-case, digit-bearing, high-entropy token (not a hash or UUID)."""
    if not _RANDOM_CHARS.fullmatch(value) or is_potential_uuid(value):
        return False
    if not (
        any(c.isdigit() for c in value)
        and any(c.isupper() for c in value)
        and any(c.islower() for c in value)
    ):
        return False
    return _ENTROPY.calculate_shannon_entropy(value) >= 3.5


def _is_prose(value: str, word: str) -> bool:
    """A quoted sentence such as "Enter your password" or "must be 8 characters."."""
    return " " in value.strip() and (word in value.lower() or value.rstrip()[-1] in ".!?:")


def find_assignments(text: str, folded: str) -> Iterator[Hit]:
    """Every secret assigned to a secret-naming key in ``text`` (``folded``: in lower case)."""
    seen: set[int] = set()
    for pattern in _ASSIGNMENTS:
        for match in pattern.finditer(folded):
            value_start = (
                match.start("quoted") if match.start("quoted") >= 0 else match.start("bare")
            )
            if value_start in seen:  # `secret_key=`: found from `secret` and from `key`
                continue
            seen.add(value_start)
            hit = _judge(text, match)
            if hit is not None:
                yield hit


def _judge(text: str, match: re.Match[str]) -> Hit | None:
    """The hit for one candidate assignment (matched in lower case), or None.

    Cheap checks first: most candidates in ordinary code fail on length or on a type name.
    """
    key, key_start = _key_at(text, match.start("stem"), match.end("rest"))
    kind = key_kind(key)
    if kind is None:
        return _judge_near_miss(text, match, key, key_start)
    span = _value_span(text, match, key_start)
    if span is None:
        return None
    start, end = span
    value = text[start:end]
    quoted = match.start("quoted") >= 0
    if is_placeholder(value) or not _is_secret_value(value, key, kind, quoted=quoted):
        return None
    if not quoted and _bare_is_code(text, match, key, key_start, end):
        return None
    if _AWS_SECRET.fullmatch(value) and ("aws" in key.lower() or key_kind_aws(key)):
        kind = "aws_secret_access_key"
    return Hit(start, end, kind, 2, anchor=key_start)


def _judge_near_miss(text: str, match: re.Match[str], key: str, key_start: int) -> Hit | None:
    """A key that does not name a secret outright: only a random-looking value is hidden."""
    quoted = match.start("quoted") >= 0
    if key == "auth" and quoted:
        start, end = match.span("quoted")
        found = _is_basic_auth(text[start:end])
        return Hit(start, end, "secret", 2, anchor=key_start) if found else None
    if match.end() - match.start("quoted" if quoted else "bare") < 20:
        return None  # too short to be random, whatever it is
    span = _value_span(text, match, key_start)
    if span is None or not looks_random(text[span[0] : span[1]]):
        return None
    if not quoted and _bare_is_code(text, match, key, key_start, span[1]):
        return None
    return Hit(span[0], span[1], "high_entropy", 1, anchor=key_start)


def _value_span(text: str, match: re.Match[str], key_start: int) -> tuple[int, int] | None:
    """Where the assigned value is, or None when a quoted value is a pattern or template."""
    if match.start("quoted") >= 0:
        start, end = match.span("quoted")
        prefix = match.group("prefix").lower()
        if "r" in prefix and _REGEX_SYNTAX.search(text, start, end):
            return None  # `secret = r'([a-z0-9]{64})'`: a pattern for secrets
        if "${" in text[start:end] or ("f" in prefix and "{" in text[start:end]):
            return None  # a template filled in at run time
        return start, end
    start, raw_end = match.span("bare")
    in_query = key_start > 0 and text[key_start - 1] in "?&"
    value = text[start:raw_end]
    if text[match.end("rest") : start] == ":":  # `{password:!0,x:1}`: minified code, not YAML
        value = re.split(r"[,}]", value, maxsplit=1)[0]
    return start, start + len(_trim_bare(value, in_query=in_query))


def _bare_is_code(text: str, match: re.Match[str], key: str, key_start: int, end: int) -> bool:
    """True when the bare value ending at ``end`` is code or prose, read in its line."""
    newline = text.find("\n", end)
    return _is_code(
        text[match.start("bare") : end],
        key,
        sep=text[match.end("rest") : match.start("bare")],
        tail=text[end : len(text) if newline < 0 else newline],
        line_before_key=text[text.rfind("\n", 0, key_start) + 1 : key_start],
    )


def _is_secret_value(value: str, key: str, kind: str, *, quoted: bool) -> bool:
    """False for a value that just repeats the key's name, a sentence, or is too short."""
    word = _normalise(key).rsplit("_", 1)[-1]
    if not value.strip() or value.lower() in {word, kind, key.lower()}:
        return False
    if quoted and _is_prose(value, word):
        return False
    if quoted and value.lower().rstrip("?") in _CODE_WORDS:
        return False  # `"password": "string"`: a schema's type
    if quoted and value != value.strip():
        return False  # `": found from "`: a fragment of prose between quotes
    if word in value.lower() and (_LABEL.fullmatch(value) or value.isalpha()):
        return False  # `"invalid-bootstrap-token"`: a name for the secret, not the secret
    return len(value) >= _MIN_LENGTH.get(kind, 4)
