"""Secret scanning and redaction on the agent (B3)."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from detect_secrets.plugins.private_key import PrivateKeyDetector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from codexrelay.agent.redaction import (
    DISABLED_WARNING,
    RedactionSettings,
    Redactor,
    startup_warning,
)
from codexrelay.settings import describe_validation_error
from tests.unit.redaction_corpus import (
    ALNUM,
    CONTEXTS,
    Planted,
    escaped,
    make_jwt,
    make_private_key,
    mixed_output,
    ordinary_corpus,
    planted_secrets,
)

SEEDS = range(5)
MARKER = re.compile(r"\[REDACTED:([a-z_]+)\]")
REDACTOR = Redactor()


def _stream(redactor: Redactor, chunks: list[str], **kwargs: int) -> tuple[str, int]:
    """Feed ``chunks`` through a fresh stream and flush it; the joined output and count."""
    stream = redactor.stream(**kwargs)
    out, total = [], 0
    for chunk in chunks:
        text, count = stream.feed(chunk)
        out.append(text)
        total += count
    text, count = stream.flush()
    return "".join([*out, text]), total + count


def _planted(seed: int = 0) -> list[Planted]:
    return planted_secrets(seed)


def _ids(cases: list[Planted]) -> list[str]:
    return [case.name for case in cases]


# ---- planted secrets: nothing escapes ---------------------------------------------------


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@pytest.mark.parametrize("case", _planted(), ids=_ids(_planted()))
def test_redactor_catches_planted_secret_in_every_context(case: Planted, context: str) -> None:
    """B3: every planted secret kind is redacted in plain text, a diff, JSON and a log line."""
    for seed in SEEDS:
        planted = next(p for p in planted_secrets(seed) if p.name == case.name)
        text = CONTEXTS[context](planted.text)
        out, count = REDACTOR.redact(text)
        assert escaped(planted.secret, out) is None, out
        assert count >= 1
        assert set(MARKER.findall(out)) & planted.kinds, out


@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_redactor_keeps_every_line(context: str) -> None:
    """B3: redaction never joins or drops lines, and diff lines keep their `+` marker."""
    for case in _planted():
        text = CONTEXTS[context](case.text)
        out, _ = REDACTOR.redact(text)
        assert out.count("\n") == text.count("\n")
        if context == "diff":
            before = [line[:1] for line in text.split("\n")]
            assert [line[:1] for line in out.split("\n")] == before


def test_redactor_keeps_text_around_a_secret() -> None:
    """B3: only the secret is replaced; the key, quotes and the rest of the line remain."""
    value = "Zq" + "".join(random.Random(1).choices(ALNUM, k=14)) + "9"
    out, count = REDACTOR.redact(f'+    password = "{value}"  # set by ops\n')
    assert out == '+    password = "[REDACTED:password]"  # set by ops\n'
    assert count == 1


def test_redactor_counts_each_secret_once() -> None:
    """B3: the count is the number of secrets, a multi-line private key counting once."""
    cases = _planted(3)
    text = "\n".join(case.text for case in cases)
    out, count = REDACTOR.redact(text)
    assert count == len(MARKER.findall(out)) - _pem_continuations(out)
    assert count >= len(cases)


def _pem_continuations(out: str) -> int:
    """Markers on the body and END lines of private keys (they do not count again)."""
    lines = out.split("\n")
    return sum(
        1
        for prev, line in itertools.pairwise(lines)
        if "[REDACTED:private_key]" in prev and "[REDACTED:private_key]" in line
    )


def test_redactor_is_idempotent() -> None:
    """B3: redacting already-redacted text changes nothing and counts nothing."""
    text = "\n".join(CONTEXTS[c](case.text) for case in _planted(4) for c in CONTEXTS)
    once, _ = REDACTOR.redact(text)
    assert REDACTOR.redact(once) == (once, 0)


@pytest.mark.parametrize(
    "label", [m.pattern.removeprefix("BEGIN ") for m in PrivateKeyDetector.denylist]
)
def test_redactor_catches_every_private_key_detect_secrets_knows(label: str) -> None:
    """B3: each private key header detect-secrets knows is redacted with its body."""
    if label.startswith("PuTTY"):
        pytest.skip("PuTTY key files carry no BEGIN/END armour")
    block, body_line = make_private_key(random.Random(label), label)
    if label.startswith("SSH2"):
        block = block.replace("-----BEGIN ", "---- BEGIN ").replace("-----END ", "---- END ")
        block = block.replace("KEY-----", "KEY ----")
    out, count = REDACTOR.redact(f"cat key\n{block}\n$ ")
    assert body_line not in out
    assert "BEGIN" not in out
    assert count == 1


def test_redactor_redacts_an_unterminated_private_key() -> None:
    """B3: a key cut off before its END line (a truncated tail) is still hidden."""
    block, body_line = make_private_key(random.Random(5))
    out, count = REDACTOR.redact("\n".join(block.split("\n")[:12]))
    assert body_line not in out
    assert count == 1


def test_redactor_redacts_a_private_key_inside_a_json_string() -> None:
    """B3: a key with `\\n` escapes inside one JSON string is hidden whole."""
    block, body_line = make_private_key(random.Random(6))
    text = '{"private_key": "' + block.replace("\n", "\\n") + '\\n", "type": "service_account"}'
    out, count = REDACTOR.redact(text)
    assert body_line not in out
    assert out.endswith('", "type": "service_account"}')
    assert count == 1


# ---- ordinary output: nothing redacted --------------------------------------------------


@pytest.mark.parametrize("name", sorted(ordinary_corpus()))
def test_redactor_leaves_ordinary_output_alone(name: str) -> None:
    """B3: code, lock files, git logs, test output and fixtures come through unchanged."""
    text = ordinary_corpus()[name]
    assert REDACTOR.redact(text) == (text, 0)


def test_ordinary_corpus_is_a_few_hundred_lines() -> None:
    """B3: the no-false-positive corpus is big enough to mean something."""
    assert sum(text.count("\n") for text in ordinary_corpus().values()) >= 400


@pytest.mark.parametrize(
    "line",
    [
        "password=",
        'password = ""',
        "password=${DB_PASSWORD}",
        "DB_PASSWORD=$DB_PASSWORD",
        "password: <your-password>",
        'api_key: "{{ vault_api_key }}"',
        "secret = '%(secret)s'",
        "token=****",
        "password: xxxxxxxx",
        "AUTH_TOKEN=[REDACTED:token]",
        'logger.info("token=%s", token)',
        'print(f"password: {password}")',
        "export GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }}",
        "curl -H 'Authorization: Bearer $TOKEN' https://api.example.com",
        "https://user:${PASSWORD}@db.example.com/app",
        'i18n = {"password": "Password", "token": "Enter your access token"}',
    ],
)
def test_redactor_leaves_placeholders(line: str) -> None:
    """B3: empty values and placeholders (`${VAR}`, `<your-password>`, `****`) are kept."""
    assert REDACTOR.redact(line) == (line, 0)


@pytest.mark.parametrize(
    "line",
    [
        "login(username=username, password=password)",
        "    token = self.token",
        "    secret = os.environ['APP_SECRET']",
        "    api_key: str | None = None",
        "def connect(host: str, password: str = '') -> None:",
        "const { token } = await refresh(session);",
        "let password = process.env.DB_PASSWORD;",
        "    max_tokens=1024,",
        "tokenizer = AutoTokenizer.from_pretrained(name)",
        "    pad_token = tokenizer.eos_token",
        '    eos_token = "</s>"',
        "cache_key = f'user:{user_id}'",
        "PWD=/home/dev/src/app",
        "Error: invalid token: expired",
        "sort(key=lambda item: item.created_at)",
        "git@github.com:acme/api.git",
        "https://example.com/reset?user=42&lang=en",
        "    token = Punctuation",
        '    "passwd:gecos",',
        "detect-secrets = detect_secrets.main:main",
        'authorization = request.headers.get("Authorization")',
        "async function f(e){e.password=null;let i=await g(e)}",
        "ident_pattern_token = f'([{uni.xid_start}][{uni.xid_continue}]+)'",
        "secret = r'([a-z0-9]{64})'",
        '    "passphrase": "string?",',
        'INVALID_BOOTSTRAP_TOKEN = "invalid-bootstrap-token"',
        'const init = { method, credentials: "same-origin", headers: {} };',
        'secret = "s" * 20',
        'return client.post("/login", json={"token": token}).status_code',
        "username, password = value",
        "        secret=match,",
    ],
)
def test_redactor_leaves_code_references(line: str) -> None:
    """B3: names, calls, attributes and types assigned to secret-ish keys are not secrets."""
    assert REDACTOR.redact(line) == (line, 0)


# ---- streaming --------------------------------------------------------------------------


@pytest.mark.parametrize("context", ["plain", "diff"])
@pytest.mark.parametrize("case", _planted(), ids=_ids(_planted()))
def test_stream_catches_secret_split_in_two_at_every_offset(case: Planted, context: str) -> None:
    """B3: a secret split across two chunks, at any offset, is redacted as in one piece."""
    text = CONTEXTS[context](case.text)
    whole = REDACTOR.redact(text)
    for i in range(len(text) + 1):
        assert _stream(REDACTOR, [text[:i], text[i:]]) == whole, i


def _three_way_cuts(text: str, secret: str) -> list[tuple[int, int]]:
    """Every pair of cuts inside the secret (every fifth second cut for long secrets)."""
    start = text.index(secret)
    span = range(start, start + len(secret) + 1)
    step = 1 if len(secret) <= 48 else 5
    return [(i, j) for i in span for j in span[::step] if j >= i]


@pytest.mark.parametrize(
    "case",
    [c for c in _planted() if not c.name.startswith("pem")],
    ids=_ids([c for c in _planted() if not c.name.startswith("pem")]),
)
def test_stream_catches_secret_split_in_three(case: Planted) -> None:
    """B3: a secret split across three chunks, at every pair of offsets in it, is caught."""
    whole = REDACTOR.redact(case.text)
    for i, j in _three_way_cuts(case.text, case.secret):
        chunks = [case.text[:i], case.text[i:j], case.text[j:]]
        assert _stream(REDACTOR, chunks) == whole, (i, j)


@pytest.mark.parametrize("context", ["plain", "diff", "log"])
def test_stream_catches_private_key_split_across_chunks(context: str) -> None:
    """B3: a PEM block split at every offset, or fed in small chunks, never leaks a line."""
    block, _ = make_private_key(random.Random(9))
    text = CONTEXTS[context](f"$ cat deploy/id_rsa\n{block}\n$ ls")
    whole = REDACTOR.redact(text)
    body = block.split("\n")[1:-1]
    assert not any(line in whole[0] for line in body)
    for i in range(len(text) + 1):
        assert _stream(REDACTOR, [text[:i], text[i:]]) == whole, i
    for size in (1, 3, 7, 64, 65, 100):
        chunks = [text[k : k + size] for k in range(0, len(text), size)]
        assert _stream(REDACTOR, chunks) == whole, size


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 6000), max_size=12))
def test_stream_matches_whole_text_for_any_chunking(seed: int, cuts: list[int]) -> None:
    """B3: however output is chunked, the stream emits what redacting it whole emits."""
    text = mixed_output(6000, secrets_every=3, seed=seed)
    bounds = [0, *sorted(cuts), len(text)]
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert _stream(REDACTOR, chunks) == REDACTOR.redact(text)


def test_stream_holds_back_only_the_unfinished_line() -> None:
    """B3: complete lines are released at once; only the partial last line is held."""
    stream = REDACTOR.stream()
    assert stream.feed("build ok\nstep 2: compil") == ("build ok\n", 0)
    assert stream.held == len("step 2: compil")
    assert stream.feed("ing\n") == ("step 2: compiling\n", 0)
    assert stream.held == 0


def test_stream_bounds_what_a_long_line_holds_back() -> None:
    """B3: a line with no newline is released in pieces, holding at most `max_line_chars`."""
    stream = REDACTOR.stream(max_line_chars=4096)
    released = []
    for i in range(200):
        text, _ = stream.feed(f"progress {i:04d} " * 20)
        released.append(text)
        assert stream.held <= 4096
    assert sum(map(len, released)) > 0


def test_stream_keeps_moving_through_one_huge_value() -> None:
    """B3: a line that is one endless `password=...` value still drains; nothing piles up."""
    stream = REDACTOR.stream(max_line_chars=8192)
    text, _ = stream.feed("password=")
    for _ in range(60):
        more, _ = stream.feed("x1" * 2048)
        text += more
        assert stream.held <= 8192 + 4096
    assert text.startswith("password=[REDACTED:password]")


def test_stream_long_line_never_splits_a_secret() -> None:
    """B3: cutting a long line keeps every secret whole, wherever the cut falls."""
    rng = random.Random(2)
    planted = [case for case in _planted(2) if "\n" not in case.text]
    words = []
    for _ in range(400):
        words.append(rng.choice(planted).text if rng.random() < 0.2 else "lorem ipsum")
    line = " ".join(words)
    secrets = [case.secret for case in planted if case.secret in line]
    for size in (97, 512, 1500):
        chunks = [line[k : k + size] for k in range(0, len(line), size)]
        out, _ = _stream(REDACTOR, chunks, max_line_chars=2048)
        assert all(escaped(secret, out) is None for secret in secrets), size


def test_stream_flush_releases_the_held_tail() -> None:
    """B3: flush() releases the held partial line, redacted."""
    token = "gh" + "p_" + "".join(random.Random(3).choices(ALNUM, k=36))
    stream = REDACTOR.stream()
    assert stream.feed(f"token {token[:10]}") == ("", 0)
    assert stream.feed(token[10:]) == ("", 0)
    assert stream.flush() == ("token [REDACTED:github_token]", 1)
    assert stream.held == 0


# ---- settings ---------------------------------------------------------------------------


def test_settings_load_from_camel_case_keys() -> None:
    """B3: the config section reads `enabled`, `extraPatterns` and `allowlist`."""
    loaded = RedactionSettings.model_validate(
        {"enabled": True, "extraPatterns": [r"ACME-\d{6}"], "allowlist": ["x"]}
    )
    assert loaded.extra_patterns == [r"ACME-\d{6}"]
    assert loaded.allowlist == ["x"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("ACME-(\\d+", "not a valid regular expression"), ("x*", "matches the empty string")],
)
def test_settings_reject_bad_extra_pattern(pattern: str, message: str) -> None:
    """B3: a broken extra pattern stops loading with the key and what is wrong."""
    with pytest.raises(ValidationError) as caught:
        RedactionSettings.model_validate({"extraPatterns": ["ok-\\d+", pattern]})
    (line,) = describe_validation_error(RedactionSettings, caught.value)
    assert line.startswith("key 'extraPatterns[1]'")
    assert message in line


def test_settings_reject_unknown_key() -> None:
    """B3: a misspelt key is refused rather than silently ignored."""
    with pytest.raises(ValidationError):
        RedactionSettings.model_validate({"extraPattern": []})


def test_redactor_reports_extra_pattern_hits_as_custom() -> None:
    """B3: each extra pattern match is redacted as kind `custom`."""
    redactor = Redactor(RedactionSettings(extra_patterns=[r"ACME-\d{6}"]))
    assert redactor.redact("ticket ACME-123456 opened") == ("ticket [REDACTED:custom] opened", 1)


def test_redactor_extra_pattern_secret_group_hides_only_the_group() -> None:
    """B3: with a group named `secret`, only that group is hidden."""
    redactor = Redactor(RedactionSettings(extra_patterns=[r"pin (?P<secret>\d{4,})"]))
    assert redactor.redact("card pin 482913 set") == ("card pin [REDACTED:custom] set", 1)


def test_redactor_allowlist_keeps_listed_values() -> None:
    """B3: allowlisted literal values stay readable; others of the same kind do not."""
    public = "sk" + "_live_" + "".join(random.Random(4).choices(ALNUM, k=30))
    other = "sk" + "_live_" + "".join(random.Random(5).choices(ALNUM, k=30))
    redactor = Redactor(RedactionSettings(allowlist=[public]))
    out, count = redactor.redact(f"{public}\n{other}\n")
    assert out == f"{public}\n[REDACTED:stripe_key]\n"
    assert count == 1


def test_redactor_disabled_passes_everything_through() -> None:
    """B3: with `enabled: false` nothing is redacted, in whole texts or streams."""
    redactor = Redactor(RedactionSettings(enabled=False))
    text = "\n".join(case.text for case in _planted())
    assert redactor.redact(text) == (text, 0)
    stream = redactor.stream()
    assert stream.feed(text[:50]) == (text[:50], 0)
    assert stream.held == 0


def test_startup_warning_is_loud_only_when_disabled() -> None:
    """B3: the agent gets a warning to print at start exactly when redaction is off."""
    assert startup_warning(RedactionSettings()) is None
    warning = startup_warning(RedactionSettings(enabled=False))
    assert warning == DISABLED_WARNING
    assert "DISABLED" in warning
    assert "unredacted" in warning


def test_redactor_defaults_to_enabled() -> None:
    """B3: a Redactor built without settings redacts."""
    token = make_jwt(random.Random(8))
    assert Redactor().redact(token) == ("[REDACTED:jwt]", 1)
