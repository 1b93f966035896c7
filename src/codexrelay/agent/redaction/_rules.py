"""Format rules: token shapes that are secrets wherever they appear (B3).

Where a detect-secrets plugin's regex already marks the full extent of a token, it is used as
is. Its whole-file machinery (``scan_line``, settings, filters, ``PotentialSecret`` objects) is
not: it is built to report findings per line of a file, costs far more per line than one
precompiled regex over the whole text, and does not say where in the line a secret sits,
which redaction needs. Where a plugin's regex stops short of the token (Stripe keys longer
than 24 characters, JWT signatures, project-scoped OpenAI keys, fine-grained GitHub tokens),
a rule of our own widens it and the comment says why.

Speed: Python's regex engine scans for a pattern's leading literal at about a nanosecond a
character, but tries a full match at every position when a pattern starts with a lookbehind,
a group or a case-insensitive word. So every pattern here starts with a literal, word
boundaries are checked in Python (``fenced``), case-insensitive rules run on one lower-cased
copy of the text, and rules that share a rare prefix sit behind one ``gate`` regex, so
ordinary output costs about one scan per family.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.basic_auth import RESERVED_CHARACTERS, SUB_DELIMITER_CHARACTERS
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector

from codexrelay.agent.redaction._hits import Hit, is_placeholder


@dataclass(frozen=True, slots=True)
class PatternRule:
    """One regex whose match (or group ``group``) is a secret of kind ``kind``.

    ``fenced``: characters that must not come just before the match. ``folded``: the pattern
    is written in lower case and runs on the lower-cased text. ``lead``: one of these must
    come just before the match and belongs to the secret (Stripe's `sk`/`rk`/`pk`, found
    from the rarer `k_`).
    """

    kind: str
    pattern: re.Pattern[str]
    group: int | str = 0
    accept: Callable[[str], bool] | None = None
    folded: bool = False
    fenced: frozenset[str] = frozenset()
    lead: str = ""
    priority: int = 3

    def find(self, text: str, folded: str) -> Iterator[Hit]:
        """Every accepted match in ``text`` (``folded`` is ``text`` in lower case)."""
        scan = folded if self.folded else text
        for match in self.pattern.finditer(scan):
            start, end = match.span(self.group)
            if self.lead:
                if start == 0 or scan[start - 1] not in self.lead:
                    continue
                start -= 1
            if start >= end or (start > 0 and scan[start - 1] in self.fenced):
                continue
            if self.accept is None or self.accept(text[start:end]):
                yield Hit(start, end, self.kind, self.priority, anchor=match.start())


@dataclass(frozen=True, slots=True)
class RuleFamily:
    """Rules that only run when their ``gate`` (a cheap, literal-led regex) finds something."""

    gate: re.Pattern[str] | None
    rules: tuple[PatternRule, ...]
    folded_gate: bool = False

    def find(self, text: str, folded: str) -> Iterator[Hit]:
        """Every hit of every rule, or none at once when the gate finds nothing."""
        if self.gate is not None and not self.gate.search(folded if self.folded_gate else text):
            return
        for rule in self.rules:
            yield from rule.find(text, folded)


def _lower(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """A library regex without IGNORECASE, to run on lower-cased text at full speed."""
    return re.compile(pattern.pattern, pattern.flags & ~re.IGNORECASE)


def _mixed(value: str) -> bool:
    """True for a random-looking token: it holds both letters and digits."""
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _very_mixed(value: str) -> bool:
    """True when ``value`` holds upper case, lower case and digits (random base64 does)."""
    return (
        any(c.isdigit() for c in value)
        and any(c.isupper() for c in value)
        and any(c.islower() for c in value)
    )


def _bearer_value(value: str) -> bool:
    """A bearer credential, not a word: mixed letters and digits or mixed case."""
    return not is_placeholder(value) and (_mixed(value) or value.lower() != value)


def _not_placeholder(value: str) -> bool:
    """A value that is not `${VAR}`, `<password>`, `****` and the like."""
    return not is_placeholder(value)


_CODE_VALUE = re.compile(r"[^\n]*[()\[\]{}][^\n]*|[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+")


def _header_value(value: str) -> bool:
    """An Authorization header value that is a credential, not a template or code."""
    return not is_placeholder(value) and not _CODE_VALUE.fullmatch(value)


_ALNUM = frozenset(string.ascii_letters + string.digits)
_WORD = _ALNUM | {"_", "-"}
_AWS_ID = AWSKeyDetector.denylist[0]
_BASE64_40 = r"(?<![A-Za-z0-9/+=])(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
# The library's Basic Auth regex needs a user name; `redis://:password@host` has none.
_URL_FORBIDDEN = re.escape(RESERVED_CHARACTERS + SUB_DELIMITER_CHARACTERS)
_URL_CREDENTIALS = re.compile(
    rf"://[^{_URL_FORBIDDEN}\s]{{0,256}}:(?P<secret>[^{_URL_FORBIDDEN}\s]{{1,256}})@"
)

FORMAT_RULES: tuple[RuleFamily, ...] = (
    RuleFamily(
        re.compile(r"A(?:KIA|SIA|BIA|CCA|3T|Iza)"),
        (
            PatternRule(
                "google_api_key",
                re.compile(r"AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
                fenced=_WORD,
            ),
            PatternRule("aws_access_key_id", re.compile(_AWS_ID.pattern + "(?![A-Za-z0-9])")),
            # An access key id and its secret often share a line (the console's CSV); the
            # library only pairs them inside quotes.
            PatternRule(
                "aws_secret_access_key",
                re.compile(rf"(?:{_AWS_ID.pattern})[^\n]{{0,200}}?{_BASE64_40}"),
                group="secret",
                accept=_very_mixed,
            ),
        ),
    ),
    RuleFamily(
        None,
        (PatternRule("aws_secret_access_key", _lower(AWSKeyDetector.denylist[1]), 1, folded=True),),
    ),
    # The library's GitHub regex takes exactly 36 characters and knows no `github_pat_`.
    RuleFamily(
        re.compile(r"g(?:h[pousr]_|ithub_pat_)"),
        (
            PatternRule(
                "github_token", re.compile(r"gh[pousr]_[A-Za-z0-9]{30,255}"), fenced=_ALNUM
            ),
            PatternRule(
                "github_token", re.compile(r"github_pat_[A-Za-z0-9_]{22,255}"), fenced=_ALNUM
            ),
        ),
    ),
    RuleFamily(
        re.compile(r"g(?:l[a-z]{2,7}-|r1348941)"),
        (
            *(PatternRule("gitlab_token", p) for p in GitLabTokenDetector.denylist),
            # The library caps personal tokens at 50 characters; newer ones add a dotted tail.
            PatternRule(
                "gitlab_token",
                re.compile(r"glpat-[A-Za-z0-9_-]{20,255}(?:\.[A-Za-z0-9_-]{1,64}){0,4}"),
                fenced=_WORD,
            ),
        ),
        folded_gate=True,
    ),
    RuleFamily(
        re.compile("pypi-"), tuple(PatternRule("pypi_token", p) for p in PypiTokenDetector.denylist)
    ),
    RuleFamily(
        None,
        (
            PatternRule("npm_token", re.compile(r"npm_[A-Za-z0-9]{36,}"), fenced=_ALNUM),
            PatternRule("sendgrid_key", SendGridDetector.denylist[0], fenced=_ALNUM),
        ),
    ),
    # The library only knows the legacy `...T3BlbkFJ...` OpenAI key shape.
    RuleFamily(
        re.compile("sk-"),
        (
            PatternRule(
                "anthropic_api_key", re.compile(r"sk-ant-[A-Za-z0-9_-]{20,512}"), fenced=_WORD
            ),
            PatternRule(
                "openai_api_key",
                re.compile(r"sk-(?!ant-)(?:[a-z]+-)?[A-Za-z0-9_-]{20,512}"),
                accept=_mixed,
                fenced=_WORD,
            ),
        ),
    ),
    RuleFamily(
        re.compile(r"x(?:ox|app)"),
        (
            PatternRule("slack_token", _lower(SlackDetector.denylist[0]), folded=True),
            # Rotating (`xoxe.xoxp-`), refresh (`xoxe-`) and app-level (`xapp-`) tokens.
            PatternRule(
                "slack_token",
                re.compile(r"x(?:ox[abeoprs](?:\.xox[bp])?|app)-[A-Za-z0-9-]{10,255}"),
                accept=_mixed,
                fenced=_ALNUM,
            ),
        ),
        folded_gate=True,
    ),
    RuleFamily(
        re.compile(r"hooks\.slack\.com/"),
        (
            PatternRule("slack_webhook", _lower(SlackDetector.denylist[1]), folded=True),
            PatternRule(
                "slack_webhook",
                re.compile(
                    r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[\w/-]{20,255}"
                ),
                folded=True,
            ),
        ),
        folded_gate=True,
    ),
    # The library stops at 24 characters; current Stripe keys run past 100, and restricted
    # and test keys grant the same powers. `pk_live_` is public by design but names the live
    # account, so it is hidden too; `pk_test_` is left readable.
    RuleFamily(
        None,
        (
            PatternRule(
                "stripe_key",
                re.compile(r"k_(?:live|test)_[0-9a-zA-Z]{10,255}"),
                accept=lambda value: not value.startswith("pk_test_"),
                fenced=_ALNUM,
                lead="srp",
            ),
            PatternRule("stripe_key", re.compile(r"whsec_[A-Za-z0-9+/=]{20,255}"), fenced=_ALNUM),
            # The library's JWT regex ends lazily, so it never covers the signature; its
            # check that header and payload decode to JSON is kept.
            PatternRule(
                "jwt",
                re.compile(
                    r"eyJ[A-Za-z0-9_-]{4,1024}={0,2}\.[A-Za-z0-9_-]{4,2048}={0,2}"
                    r"(?:\.[A-Za-z0-9_-]{0,1024}={0,2})?"
                ),
                accept=JwtTokenDetector.is_formally_valid,
                fenced=_WORD,
            ),
            PatternRule("url_password", _URL_CREDENTIALS, "secret", _not_placeholder, priority=2),
            PatternRule(
                "bearer_token",
                re.compile(r"bearer[ \t]+(?P<secret>[a-z0-9._~+/-]{16,2048}={0,2})"),
                "secret",
                _bearer_value,
                folded=True,
                fenced=_ALNUM,
                priority=2,
            ),
            PatternRule(
                "authorization",
                re.compile(
                    r"authorization(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:\\?[\"'])?"
                    r"(?:(?:bearer|basic|token|bot|digest|apikey|sso-key|key)[ \t]+)?"
                    r"(?P<secret>[^\s\"'`,;\\]{8,2048})"
                ),
                "secret",
                _header_value,
                folded=True,
                priority=2,
            ),
            # Command lines: `--password hunter2`, `--api-key=...`, `curl -u user:pass`.
            PatternRule(
                "password",
                re.compile(
                    r"--(?:[a-z0-9]+-)*(?:password|passwd|pass|token|secret|api-?key"
                    r"|access-key|secret-key)(?:=|[ \t]+)[\"']?"
                    r"(?P<secret>[^\s\"'`-][^\s\"'`]{0,255})"
                ),
                "secret",
                _not_placeholder,
                folded=True,
                fenced=_WORD,
                priority=2,
            ),
            PatternRule(
                "password",
                re.compile(r"-(?:u|-user)[ \t]+[^\s:\"'`]{1,128}:(?P<secret>[^\s\"'`]{1,256})"),
                "secret",
                _not_placeholder,
                fenced=_WORD,
                priority=2,
            ),
            # XML settings files (Maven's settings.xml): `<password>...</password>`.
            PatternRule(
                "password",
                re.compile(
                    r"<(?P<tag>password|passwd|passphrase|secret|token|apikey|api_key|accesskey"
                    r"|secretkey|client_secret|access_token|auth_token)>"
                    r"(?P<secret>[^<\n]{1,1024})</(?P=tag)>"
                ),
                "secret",
                _not_placeholder,
                folded=True,
                priority=2,
            ),
        ),
    ),
)
