"""Test corpora for redaction (B3): planted secrets built at run time, and ordinary output.

Every secret here is generated from pieces when the tests run, so the repository holds no
token a secret scanner would flag, and each run exercises the detector on fresh values.
The ordinary texts are realistic agent output that must come through untouched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

UPPER_DIGITS = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits
BASE64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
PASSWORD_CHARS = ALNUM + "!#%^*+-_=~"


@dataclass(frozen=True)
class Planted:
    """A text carrying one secret; ``kinds`` are the markers that may stand for it."""

    name: str
    secret: str
    text: str
    kinds: frozenset[str]


def _pick(rng: random.Random, alphabet: str, size: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def _mixed(rng: random.Random, alphabet: str, size: int) -> str:
    """Random text that holds an upper case letter, a lower case letter and a digit."""
    while True:
        value = _pick(rng, alphabet, size)
        if (
            any(c.isupper() for c in value)
            and any(c.islower() for c in value)
            and any(c.isdigit() for c in value)
        ):
            return value


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_jwt(rng: random.Random) -> str:
    """A signed-looking JWT with a random subject and signature."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "J" + "WT"}).encode())
    claims = {"sub": str(rng.randrange(10**9)), "name": _pick(rng, ALNUM, 8), "iat": 1716000000}
    payload = _b64url(json.dumps(claims).encode())
    signature = _b64url(rng.randbytes(32))
    return f"{header}.{payload}.{signature}"


def make_private_key(rng: random.Random, label: str = "RSA PRIVATE KEY") -> tuple[str, str]:
    """A PEM block shaped like a 2048-bit key, and its first body line."""
    body = base64.b64encode(b"\x30\x82\x04\xa4" + rng.randbytes(1188)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    dashes = "-" * 5
    block = "\n".join([f"{dashes}BEGIN {label}{dashes}", *lines, f"{dashes}END {label}{dashes}"])
    return block, lines[1]


def _generators() -> dict[str, Callable[[random.Random], tuple[str, str, set[str]]]]:
    """Per planted case: (secret, text carrying it, acceptable marker kinds)."""

    def aws_id(rng: random.Random) -> tuple[str, str, set[str]]:
        key = "AK" + "IA" + _pick(rng, UPPER_DIGITS, 16)
        return key, f"aws_access_key_id = {key}", {"aws_access_key_id"}

    def aws_secret_ini(rng: random.Random) -> tuple[str, str, set[str]]:
        secret = _mixed(rng, BASE64, 40)
        return secret, f"aws_secret_access_key = {secret}", {"aws_secret_access_key"}

    def aws_secret_env(rng: random.Random) -> tuple[str, str, set[str]]:
        secret = _mixed(rng, BASE64, 40)
        return secret, f"export AWS_SECRET_ACCESS_KEY={secret}", {"aws_secret_access_key"}

    def aws_csv(rng: random.Random) -> tuple[str, str, set[str]]:
        key_id = "AS" + "IA" + _pick(rng, UPPER_DIGITS, 16)
        secret = _mixed(rng, BASE64, 40)
        text = f"User name,Access key ID,Secret access key\nci-bot,{key_id},{secret}"
        return secret, text, {"aws_secret_access_key"}

    def github(prefix: str) -> Callable[[random.Random], tuple[str, str, set[str]]]:
        def make(rng: random.Random) -> tuple[str, str, set[str]]:
            token = prefix + "_" + _mixed(rng, ALNUM, 36)
            return token, f"Using token {token} for api.github.com", {"github_token"}

        return make

    def github_pat(rng: random.Random) -> tuple[str, str, set[str]]:
        token = "github" + "_pat_" + _mixed(rng, ALNUM, 22) + "_" + _mixed(rng, ALNUM, 59)
        return token, f"GITHUB_TOKEN={token}", {"github_token"}

    def github_url(rng: random.Random) -> tuple[str, str, set[str]]:
        token = "ghs" + "_" + _mixed(rng, ALNUM, 36)
        text = f"git clone https://x-access-token:{token}@github.com/acme/api.git"
        return token, text, {"github_token", "url_password"}

    def gitlab(rng: random.Random) -> tuple[str, str, set[str]]:
        token = "gl" + "pat-" + _mixed(rng, URLSAFE, 20)
        return (
            token,
            f'curl --header "PRIVATE-TOKEN: {token}" https://gitlab.example.com/api/v4/projects',
            {"gitlab_token"},
        )

    def openai_legacy(rng: random.Random) -> tuple[str, str, set[str]]:
        key = "sk" + "-" + _mixed(rng, ALNUM, 48)
        return key, f'OPENAI_API_KEY="{key}"', {"openai_api_key"}

    def openai_project(rng: random.Random) -> tuple[str, str, set[str]]:
        key = "sk" + "-proj-" + _mixed(rng, URLSAFE, 156)
        return key, f"client = OpenAI(api_key='{key}')", {"openai_api_key"}

    def anthropic(rng: random.Random) -> tuple[str, str, set[str]]:
        key = "sk" + "-ant-api03-" + _mixed(rng, URLSAFE, 93) + "AA"
        return key, f"anthropic.Anthropic(api_key={key})", {"anthropic_api_key"}

    def slack_token(rng: random.Random) -> tuple[str, str, set[str]]:
        parts = [str(rng.randrange(10**11, 10**12)), str(rng.randrange(10**12, 10**13))]
        token = "xo" + "xb-" + "-".join(parts) + "-" + _mixed(rng, ALNUM, 24)
        return token, f"slack bot connected with {token}", {"slack_token"}

    def slack_webhook(rng: random.Random) -> tuple[str, str, set[str]]:
        url = (
            "https://hooks.slack.com/services/T"
            + _pick(rng, UPPER_DIGITS, 8)
            + "/B"
            + _pick(rng, UPPER_DIGITS, 10)
            + "/"
            + _mixed(rng, ALNUM, 24)
        )
        secret = url.removeprefix("https://hooks.slack.com/services/")
        return secret, f'{{"webhook_url": "{url}", "channel": "#deploys"}}', {"slack_webhook"}

    def stripe(prefix: str) -> Callable[[random.Random], tuple[str, str, set[str]]]:
        def make(rng: random.Random) -> tuple[str, str, set[str]]:
            key = prefix + "_live_" + _mixed(rng, ALNUM, 99)
            return key, f'stripe.api_key = "{key}"', {"stripe_key"}

        return make

    def jwt_header(rng: random.Random) -> tuple[str, str, set[str]]:
        token = make_jwt(rng)
        return token, f"> Authorization: Bearer {token}", {"jwt", "bearer_token", "authorization"}

    def jwt_json(rng: random.Random) -> tuple[str, str, set[str]]:
        token = make_jwt(rng)
        return token, f'{{"id_token": "{token}", "expires_in": 3600}}', {"jwt", "token"}

    def pem(rng: random.Random) -> tuple[str, str, set[str]]:
        block, line = make_private_key(rng)
        return line, f"Writing key to deploy/id_rsa:\n{block}\ndone.", {"private_key"}

    def pem_openssh(rng: random.Random) -> tuple[str, str, set[str]]:
        block, line = make_private_key(rng, "OPENSSH PRIVATE KEY")
        return line, f'key = """{block}\n"""', {"private_key"}

    def password_kv(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, PASSWORD_CHARS, 14)
        return value, f"connecting user=app password={value} host=db.internal", {"password"}

    def password_py(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, PASSWORD_CHARS, 12)
        return value, f'    password = "{value}"', {"password"}

    def password_json(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, PASSWORD_CHARS, 16)
        return value, json.dumps({"username": "admin", "password": value}), {"password"}

    def password_yaml(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 12)
        return value, f"database:\n  user: app\n  password: {value}\n  port: 5432", {"password"}

    def secret_yaml_quoted(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 32)
        return value, f"client_secret: '{value}'", {"secret"}

    def token_query(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, URLSAFE, 32)
        text = f"GET /api/export?format=csv&token={value}&page=2 HTTP/1.1"
        return value, text, {"token"}

    def api_key_colon(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 32)
        return value, f'headers = {{"x-api-key": "{value}"}}', {"key"}

    def api_key_typed(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 24)
        return value, f'    api_key: str = "{value}"', {"key"}

    def url_postgres(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 18)
        return value, f"DATABASE_URL=postgres://app:{value}@db:5432/app", {"url_password"}

    def url_redis(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 18)
        return value, f"connecting to redis://:{value}@cache:6379/0", {"url_password"}

    def url_https(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 12)
        return (
            value,
            f"pip install --index-url https://deploy:{value}@pypi.acme.dev/simple",
            {"url_password"},
        )

    def env(name: str, kind: str) -> Callable[[random.Random], tuple[str, str, set[str]]]:
        def make(rng: random.Random) -> tuple[str, str, set[str]]:
            value = _mixed(rng, ALNUM, 28)
            return value, f"{name}={value}", {kind}

        return make

    def secret_key_base(rng: random.Random) -> tuple[str, str, set[str]]:
        value = rng.randbytes(64).hex()
        return value, f"SECRET_KEY_BASE={value}", {"key"}

    def bearer(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, URLSAFE, 40)
        text = f"curl -H 'Authorization: Bearer {value}' https://api.example.com/v1/me"
        return value, text, {"bearer_token", "authorization"}

    def high_entropy(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _b64url(rng.randbytes(32)) + "="
        return value, f"FERNET_KEY={value}", {"high_entropy"}

    def cli_flag(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 16)
        return value, f"$ docker login --username ci --password {value} ghcr.io", {"password"}

    def curl_user(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 14)
        return value, f"$ curl -fsS -u admin:{value} https://ci.example.com/api/json", {"password"}

    def xml_password(rng: random.Random) -> tuple[str, str, set[str]]:
        value = _mixed(rng, ALNUM, 14)
        text = f"<server>\n  <id>nexus</id>\n  <password>{value}</password>\n</server>"
        return value, text, {"password"}

    def docker_auth(rng: random.Random) -> tuple[str, str, set[str]]:
        login = "ci-bot:" + _mixed(rng, ALNUM, 20)
        value = base64.b64encode(login.encode()).decode()
        return value, json.dumps({"auths": {"ghcr.io": {"auth": value}}}), {"secret"}

    def google_api_key(rng: random.Random) -> tuple[str, str, set[str]]:
        value = "AI" + "za" + _mixed(rng, URLSAFE, 35)
        return value, f'const firebaseConfig = {{ apiKey: "{value}" }};', {"google_api_key"}

    def npm_token(rng: random.Random) -> tuple[str, str, set[str]]:
        value = "npm" + "_" + _mixed(rng, ALNUM, 36)
        return value, f"//registry.npmjs.org/:_authToken={value}", {"npm_token", "token"}

    def pypi_token(rng: random.Random) -> tuple[str, str, set[str]]:
        value = "py" + "pi-AgEIcHlwaS5vcmc" + _mixed(rng, URLSAFE, 80)
        return value, f"TWINE_PASSWORD={value}", {"pypi_token", "password"}

    def sendgrid(rng: random.Random) -> tuple[str, str, set[str]]:
        value = "S" + "G." + _mixed(rng, URLSAFE, 22) + "." + _mixed(rng, URLSAFE, 43)
        return value, f"sendgrid.SendGridAPIClient({value!r})", {"sendgrid_key"}

    return {
        "aws_access_key_id": aws_id,
        "aws_secret_ini": aws_secret_ini,
        "aws_secret_env": aws_secret_env,
        "aws_csv": aws_csv,
        "github_ghp": github("ghp"),
        "github_gho": github("gho"),
        "github_ghu": github("ghu"),
        "github_ghs": github("ghs"),
        "github_ghr": github("ghr"),
        "github_pat": github_pat,
        "github_url": github_url,
        "gitlab": gitlab,
        "openai_legacy": openai_legacy,
        "openai_project": openai_project,
        "anthropic": anthropic,
        "slack_token": slack_token,
        "slack_webhook": slack_webhook,
        "stripe_sk": stripe("sk"),
        "stripe_rk": stripe("rk"),
        "stripe_pk": stripe("pk"),
        "jwt_header": jwt_header,
        "jwt_json": jwt_json,
        "pem_rsa": pem,
        "pem_openssh": pem_openssh,
        "password_kv": password_kv,
        "password_py": password_py,
        "password_json": password_json,
        "password_yaml": password_yaml,
        "secret_yaml_quoted": secret_yaml_quoted,
        "token_query": token_query,
        "api_key_colon": api_key_colon,
        "api_key_typed": api_key_typed,
        "url_postgres": url_postgres,
        "url_redis": url_redis,
        "url_https": url_https,
        "env_database_password": env("DATABASE_PASSWORD", "password"),
        "env_stripe_secret_key": env("STRIPE_SECRET_KEY", "key"),
        "env_auth_token": env("AUTH_TOKEN", "token"),
        "env_pgpassword": env("PGPASSWORD", "password"),
        "env_secret_key_base": secret_key_base,
        "bearer": bearer,
        "high_entropy": high_entropy,
        "cli_flag": cli_flag,
        "curl_user": curl_user,
        "xml_password": xml_password,
        "docker_auth": docker_auth,
        "google_api_key": google_api_key,
        "npm_token": npm_token,
        "pypi_token": pypi_token,
        "sendgrid": sendgrid,
    }


def planted_secrets(seed: int) -> list[Planted]:
    """One planted case of every kind, with values drawn from ``seed``."""
    rng = random.Random(seed)
    cases = []
    for name, make in _generators().items():
        secret, text, kinds = make(rng)
        cases.append(Planted(name, secret, text, frozenset(kinds)))
    return cases


# ---- contexts a secret may arrive in ----------------------------------------------------


def as_diff(text: str) -> str:
    """``text`` as lines added in a unified diff, between unchanged context lines."""
    added = text.split("\n")
    header = [
        "diff --git a/config/settings.py b/config/settings.py",
        "index 3b18e51..a9c0f2d 100644",
        "--- a/config/settings.py",
        "+++ b/config/settings.py",
        f"@@ -10,3 +10,{len(added) + 3} @@ class Settings:",
        "     debug = False",
    ]
    return "\n".join([*header, *("+" + line for line in added), "     region = 'eu-west-1'"])


def as_json(text: str) -> str:
    """``text`` as a string value in a JSON event, escaped the way JSON escapes it."""
    return json.dumps({"type": "item.completed", "item": {"type": "command", "output": text}})


def as_log(text: str) -> str:
    """``text`` with a timestamped log prefix on each of its lines."""
    return "\n".join(
        f"2025-05-14T09:12:{i:02d}.481Z INFO  worker[2231]: {line}"
        for i, line in enumerate(text.split("\n"))
    )


CONTEXTS: dict[str, Callable[[str], str]] = {
    "plain": lambda text: text,
    "diff": as_diff,
    "json": as_json,
    "log": as_log,
}


def windows(secret: str, size: int = 8) -> list[str]:
    """Every ``size``-character piece of ``secret`` (the whole of a shorter one)."""
    if len(secret) <= size:
        return [secret]
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def escaped(secret: str, text: str) -> str | None:
    """The first piece of ``secret`` still readable in ``text``, or None."""
    for piece in windows(secret):
        if piece in text:
            return piece
    return None


# ---- ordinary output that must come through untouched -----------------------------------

PYTHON_MODULE = '''\
"""Account login and API token handling for the billing service."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from billing.db import Database
from billing.settings import Settings

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
TOKEN_TTL = timedelta(hours=12)
MAX_LOGIN_ATTEMPTS = 5
PASSWORD_MIN_LENGTH = 12


class AuthError(Exception):
    """Login failed; the message is safe to show to the user."""


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    user_id: int
    token_hash: str
    expires_at: datetime


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return salt.hex() + "$" + digest.hex()


def verify_password(password: str, stored: str) -> bool:
    salt_hex, _, digest_hex = stored.partition("$")
    candidate = hash_password(password, salt=bytes.fromhex(salt_hex))
    return hmac.compare_digest(candidate.partition("$")[2], digest_hex)


class AuthService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.secret_key = settings.secret_key
        self._attempts: dict[str, int] = {}

    def login(self, username: str, password: str) -> ApiToken:
        if self._attempts.get(username, 0) >= MAX_LOGIN_ATTEMPTS:
            raise AuthError("too many attempts, try again later")
        user = self.db.users.find_one(username=username)
        if user is None or not verify_password(password, user.password_hash):
            self._attempts[username] = self._attempts.get(username, 0) + 1
            log.warning("login failed for %s", username)
            raise AuthError("invalid username or password")
        self._attempts.pop(username, None)
        return self.issue_token(user.id)

    def issue_token(self, user_id: int) -> ApiToken:
        raw = secrets.token_urlsafe(TOKEN_BYTES)
        token = ApiToken(
            token_id=secrets.token_hex(8),
            user_id=user_id,
            token_hash=self._digest(raw),
            expires_at=datetime.now(UTC) + TOKEN_TTL,
        )
        self.db.tokens.insert(token)
        log.info("issued token %s for user %d", token.token_id, user_id)
        return token

    def check_token(self, raw: str) -> ApiToken | None:
        token = self.db.tokens.find_one(token_hash=self._digest(raw))
        if token is None or token.expires_at < datetime.now(UTC):
            return None
        return token

    def change_password(self, user_id: int, old_password: str, new_password: str) -> None:
        if len(new_password) < PASSWORD_MIN_LENGTH:
            raise AuthError(f"password must be at least {PASSWORD_MIN_LENGTH} characters")
        user = self.db.users.get(user_id)
        if not verify_password(old_password, user.password_hash):
            raise AuthError("current password is wrong")
        self.db.users.update(user_id, password_hash=hash_password(new_password))
        self.db.tokens.delete_where(user_id=user_id)

    def _digest(self, raw: str) -> str:
        key = self.secret_key.encode()
        return hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()


def configure(settings: Settings) -> AuthService:
    db = Database(settings.database_url, pool_size=settings.pool_size)
    service = AuthService(db, settings)
    if settings.api_token_header != "Authorization":
        log.info("using custom token header %s", settings.api_token_header)
    return service
'''

JS_MODULE = """\
import { useState, useEffect } from "react";
import { api } from "./api.js";

const TOKEN_STORAGE_KEY = "billing.session";

export function useSession() {
  const [token, setToken] = useState(() => localStorage.getItem(TOKEN_STORAGE_KEY));
  const [user, setUser] = useState(null);

  useEffect(() => {
    if (!token) return;
    api.get("/me", { headers: { Authorization: `Bearer ${token}` } })
      .then((res) => setUser(res.data))
      .catch(() => setToken(null));
  }, [token]);

  async function login(username, password) {
    const res = await api.post("/login", { username, password });
    localStorage.setItem(TOKEN_STORAGE_KEY, res.data.token);
    setToken(res.data.token);
  }

  function logout() {
    localStorage.removeItem(TOKEN_STORAGE_KEY);
    setToken(null);
  }

  return { user, token, login, logout };
}

export const passwordRules = {
  minLength: 12,
  requireDigit: true,
  message: "Use at least 12 characters, including a digit.",
};

export function validatePassword(password) {
  const errors = [];
  if (password.length < passwordRules.minLength) errors.push(passwordRules.message);
  if (passwordRules.requireDigit && !/\\d/.test(password)) errors.push("Add a digit.");
  return errors;
}
"""

CONFIG_YAML = """\
# Deployment settings; secrets come from the environment.
service:
  name: billing
  replicas: 3
  image: registry.example.com/billing:2.14.1
database:
  host: db.internal
  port: 5432
  user: billing
  password: ${DB_PASSWORD}
  pool_size: 20
auth:
  token_ttl: 12h
  max_tokens: 1000
  secret_key: ${SECRET_KEY}
  password_min_length: 12
smtp:
  password: "<your-password>"
  api_key: ""
cache:
  key: billing-${ENVIRONMENT}
  url: redis://cache.internal:6379/0
"""

ENV_DUMP = """\
SHELL=/bin/bash
PWD=/home/dev/src/billing
OLDPWD=/home/dev/src
LOGNAME=dev
HOME=/home/dev
LANG=C.UTF-8
VIRTUAL_ENV=/home/dev/src/billing/.venv
PATH=/home/dev/src/billing/.venv/bin:/usr/local/bin:/usr/bin:/bin
SSH_AUTH_SOCK=/tmp/ssh-XXXXGq1kLz/agent.1847
TERM=xterm-256color
PYTHONDONTWRITEBYTECODE=1
GIT_PAGER=cat
"""

PROSE = """\
## Rotating credentials

Tokens expire after twelve hours. To rotate the signing key, run `make rotate-keys`, then
restart the workers. The password policy requires at least twelve characters; users who
forget their password can reset it from the login page. API keys are shown once, when they
are created, and are stored only as a salted hash.

Error: invalid token: expired
Note: the secret key is read from the environment, never from the repository.
"""


def _sha512_b64(name: str) -> str:
    return base64.b64encode(hashlib.sha512(name.encode()).digest()).decode()


def package_lock() -> str:
    """A package-lock.json excerpt with integrity hashes."""
    packages = [
        ("node_modules/@babel/code-frame", "7.24.2"),
        ("node_modules/@babel/helper-validator-identifier", "7.24.5"),
        ("node_modules/js-tokens", "4.0.0"),
        ("node_modules/keyv", "4.5.4"),
        ("node_modules/json-buffer", "3.0.1"),
        ("node_modules/loose-envify", "1.4.0"),
        ("node_modules/react", "18.3.1"),
        ("node_modules/scheduler", "0.23.2"),
    ]
    entries = {}
    for path, version in packages:
        name = path.removeprefix("node_modules/")
        entries[path] = {
            "version": version,
            "resolved": f"https://registry.npmjs.org/{name}/-/{name.split('/')[-1]}-{version}.tgz",
            "integrity": "sha512-" + _sha512_b64(path + version),
            "license": "MIT",
        }
    entries["node_modules/react"]["dependencies"] = {"loose-envify": "^1.1.0"}
    entries["node_modules/keyv"]["dependencies"] = {"json-buffer": "3.0.1"}
    lock = {"name": "billing-web", "version": "2.14.1", "lockfileVersion": 3, "packages": entries}
    return json.dumps(lock, indent=2)


def other_locks() -> str:
    """poetry.lock and Cargo.lock excerpts with sha256 digests."""
    wheel = hashlib.sha256(b"requests-2.32.3-py3-none-any.whl").hexdigest()
    sdist = hashlib.sha256(b"requests-2.32.3.tar.gz").hexdigest()
    crate = hashlib.sha256(b"serde-1.0.203").hexdigest()
    return f"""\
[[package]]
name = "requests"
version = "2.32.3"
description = "Python HTTP for Humans."
optional = false
python-versions = ">=3.8"
files = [
    {{file = "requests-2.32.3-py3-none-any.whl", hash = "sha256:{wheel}"}},
    {{file = "requests-2.32.3.tar.gz", hash = "sha256:{sdist}"}},
]

[[package]]
name = "serde"
version = "1.0.203"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "{crate}"
"""


def git_log() -> str:
    """`git log` and `git log --oneline` output with full and short hashes."""
    messages = [
        ("Rotate API key storage to hashed tokens", "Dana Whitfield", "dana@example.com"),
        ("Fix token refresh race in session middleware", "Ravi Kumar", "ravi@example.com"),
        ("password: hash with scrypt instead of sha256", "Dana Whitfield", "dana@example.com"),
        ("Bump react from 18.2.0 to 18.3.1", "dependabot[bot]", "support@github.com"),
        ("Add max_tokens limit to export endpoint", "Ravi Kumar", "ravi@example.com"),
        ("Merge pull request #412 from acme/secret-key-from-env", "Lee Park", "lee@example.com"),
    ]
    full, oneline = [], []
    for i, (subject, author, email) in enumerate(messages):
        sha = hashlib.sha1(subject.encode(), usedforsecurity=False).hexdigest()
        full += [
            f"commit {sha}",
            f"Author: {author} <{email}>",
            f"Date:   Tue May {13 - i} 1{i}:42:07 2025 +0200",
            "",
            f"    {subject}",
            "",
            f"    Change-Id: I{hashlib.sha1(sha.encode(), usedforsecurity=False).hexdigest()}",
            "",
        ]
        oneline.append(f"{sha[:7]} {subject}")
    return "\n".join([*full, *oneline]) + "\n"


def pytest_output() -> str:
    """A pytest run with UUID-parametrised tests, a failure and captured logs."""
    rng = random.Random(7)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(12)]
    lines = [
        "============================= test session starts ==============================",
        "platform linux -- Python 3.12.3, pytest-8.2.0, pluggy-1.5.0",
        "rootdir: /home/dev/src/billing",
        "configfile: pyproject.toml",
        "plugins: anyio-4.4.0, hypothesis-6.103.0, xdist-3.6.1",
        "collected 24 items",
        "",
    ]
    lines += [f"tests/test_tokens.py::test_token_roundtrip[{i}] PASSED" for i in ids[:8]]
    lines += [
        "tests/test_auth.py::test_login_rejects_bad_password PASSED",
        "tests/test_auth.py::test_change_password_revokes_tokens FAILED",
        "",
        "=================================== FAILURES ===================================",
        "_____________________ test_change_password_revokes_tokens ______________________",
        "",
        "    def test_change_password_revokes_tokens(service, user):",
        "        token = service.issue_token(user.id)",
        '        service.change_password(user.id, "old-pass", "new-pass-123456")',
        ">       assert service.check_token(token.token_id) is None",
        "E       AssertionError: assert ApiToken(token_id='9f2c1e', user_id=1) is None",
        "",
        "tests/test_auth.py:88: AssertionError",
        "------------------------------ Captured log call -------------------------------",
        f"INFO     billing.auth:auth.py:71 issued token {ids[8][:8]} for user 1",
        f"DEBUG    billing.db:db.py:40 request_id={ids[9]} rows=1",
        f"DEBUG    billing.db:db.py:40 session_id={ids[10]} cache_key=user:1:profile",
        f"DEBUG    billing.db:db.py:52 token_id={ids[11]} revoked=False",
        "=========================== short test summary info ============================",
        "FAILED tests/test_auth.py::test_change_password_revokes_tokens - AssertionError",
        "========================= 1 failed, 23 passed in 2.41s =========================",
    ]
    return "\n".join(lines) + "\n"


def base64_fixture() -> str:
    """A test module carrying a base64 fixture and digests of it."""
    rng = random.Random(11)
    blob = b"\x89PNG\r\n\x1a\n" + rng.randbytes(1500)
    encoded = base64.b64encode(blob).decode()
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    body = "\n".join(f'    "{line}"' for line in lines)
    digest = hashlib.sha256(blob).hexdigest()
    return f'''\
"""Thumbnail rendering tests."""

import base64

LOGO_PNG = base64.b64decode(
{body}
)
LOGO_SHA256 = "{digest}"
SMALL = "aGVsbG8gd29ybGQ="


def test_thumbnail_keeps_aspect(render):
    assert render(LOGO_PNG, width=64).size == (64, 64)
'''


def docker_output() -> str:
    """`docker pull` / build output with sha256 digests."""
    layers = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4)]
    return "\n".join(
        [
            "22.04: Pulling from library/ubuntu",
            *(f"{layer[:12]}: Pull complete" for layer in layers),
            f"Digest: sha256:{layers[0]}",
            "Status: Downloaded newer image for ubuntu:22.04",
            f" => => writing image sha256:{layers[1]}                0.0s",
            " => => naming to registry.example.com/billing:2.14.1            0.0s",
        ]
    )


def ordinary_diff() -> str:
    """A unified diff of ordinary code touching token and password handling."""
    return """\
diff --git a/billing/auth.py b/billing/auth.py
index 8d1f2a3..c47be90 100644
--- a/billing/auth.py
+++ b/billing/auth.py
@@ -52,12 +52,14 @@ class AuthService:
     def issue_token(self, user_id: int) -> ApiToken:
-        raw = secrets.token_hex(TOKEN_BYTES)
+        raw = secrets.token_urlsafe(TOKEN_BYTES)
         token = ApiToken(
             token_id=secrets.token_hex(8),
             user_id=user_id,
-            token_hash=hashlib.sha256(raw.encode()).hexdigest(),
+            token_hash=self._digest(raw),
             expires_at=datetime.now(UTC) + TOKEN_TTL,
         )
+        log.info("issued token %s for user %d", token.token_id, user_id)
         return token
@@ -80,6 +82,7 @@ class AuthService:
     def change_password(self, user_id: int, old_password: str, new_password: str) -> None:
+        self.db.tokens.delete_where(user_id=user_id)
"""


def server_log() -> str:
    """Ordinary access and application log lines."""
    rng = random.Random(3)
    lines = []
    for i in range(30):
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        path = rng.choice(["/api/v1/me", "/api/v1/tokens", "/login", "/api/v1/invoices?page=2"])
        status = rng.choice([200, 200, 200, 201, 401, 404])
        lines.append(
            f'10.0.{i}.17 - - [14/May/2025:09:1{i % 10}:33 +0000] "GET {path} HTTP/1.1" '
            f'{status} {rng.randrange(200, 9000)} "-" "Mozilla/5.0" rid={request_id}'
        )
    lines += [
        "2025-05-14T09:20:01Z WARN auth: login failed for dana@example.com (invalid password)",
        "2025-05-14T09:20:05Z INFO auth: token refreshed user=42 ttl=43200",
        "2025-05-14T09:20:09Z INFO auth: password changed user=42, 3 tokens revoked",
        "2025-05-14T09:21:00Z INFO http: GET https://api.example.com/v1/health 200 12ms",
    ]
    return "\n".join(lines) + "\n"


def ordinary_corpus() -> dict[str, str]:
    """Every ordinary text, by name."""
    return {
        "python_module": PYTHON_MODULE,
        "js_module": JS_MODULE,
        "config_yaml": CONFIG_YAML,
        "env_dump": ENV_DUMP,
        "prose": PROSE,
        "package_lock": package_lock(),
        "other_locks": other_locks(),
        "git_log": git_log(),
        "pytest_output": pytest_output(),
        "base64_fixture": base64_fixture(),
        "docker_output": docker_output(),
        "ordinary_diff": ordinary_diff(),
        "server_log": server_log(),
    }


def mixed_output(size: int, *, secrets_every: int = 0, seed: int = 0) -> str:
    """About ``size`` characters of ordinary output, with a planted secret every so often."""
    rng = random.Random(seed)
    texts = list(ordinary_corpus().values())
    planted = planted_secrets(seed) if secrets_every else []
    parts: list[str] = []
    total = 0
    while total < size:
        text = rng.choice(texts)
        if planted and rng.randrange(secrets_every) == 0:
            text = rng.choice(planted).text + "\n"
        parts.append(text)
        total += len(text)
    return "".join(parts)[:size]
