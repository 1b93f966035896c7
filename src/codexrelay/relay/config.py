"""The relay's validated, frozen settings (one object per process, built once at start-up)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from codexrelay.relay.origins import normalize_origin, same_site
from codexrelay.settings import CamelModel, load_json_model

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

HexDigest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


# The largest prompt cap an operator may set (the body cap's default, 1 MiB).
MAX_PROMPT_BYTES_LIMIT = 1 << 20


class RelayFeatures(CamelModel):
    """Relay-side feature flags (R09). The agent enforces its own set too."""

    pairings: bool = Field(True, description="true to allow new agent pairing codes")
    codex_exec: bool = Field(True, description="true to allow codex_exec tasks")
    codex_exec_write: bool = Field(
        False, description="true to allow write-mode Codex tasks (off by default, R17)"
    )
    run_action: bool = Field(True, description="true to allow predefined actions")
    read_log: bool = Field(True, description="true to allow predefined log reads")
    conversations: bool = Field(
        True, description="true to allow live Codex conversations (threads and approvals)"
    )


class WebSettings(CamelModel):
    """What the web app shows about this relay, and where it is served from."""

    app_name: str = Field(
        "codexrelay", min_length=1, max_length=60, description="a short display name"
    )
    app_origin: str | None = Field(
        None,
        description="the origin of a separate static host serving the web app (e.g. "
        "https://app.example.org, on the same site as publicOrigin); the relay then serves "
        "the API only. Unset: the relay serves the app itself",
    )

    @field_validator("app_origin")
    @classmethod
    def _normalize_app_origin(cls, value: str | None) -> str | None:
        return None if value is None else normalize_origin(value)


StorageBackend = Literal["sqlite", "json", "postgres"]


class StorageSettings(CamelModel):
    """Where the relay keeps its records (metadata only, R10)."""

    backend: StorageBackend = Field(
        "sqlite",
        description="sqlite (dataDir/relay.sqlite3, the default), postgres (storage.url, for "
        "several relay instances) or json (dataDir/state.json)",
    )
    url: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="with postgres: postgresql://user@host:port/db; name a password file "
        "with ?passfile=/path rather than writing the password here",
    )
    instance_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+$",
        description="with postgres: where the other instances reach this one, e.g. "
        "http://10.0.0.5:8787 (default http://listenHost:listenPort)",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            msg = "must be a postgresql:// URL"
            raise ValueError(msg)
        return value

    @field_serializer("url", when_used="json")
    def _dump_url(self, value: str | None, info: Any) -> str | None:
        if value is None or (info.context and info.context.get("reveal")):
            return value
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1**********@", value)

    retention_days: int = Field(
        90,
        ge=1,
        le=36500,
        description="days a finished task's record is kept before it is pruned, 1 to 36500",
    )


# The public push services of Google (Chrome, Android), Mozilla (Firefox), Apple (Safari,
# iOS home-screen apps) and Microsoft (Edge on Windows). "*.example.org" means any name
# under example.org, never example.org itself.
DEFAULT_PUSH_HOSTS = (
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
)
_PUSH_HOST = re.compile(r"^(\*\.)?([a-z0-9-]{1,63}\.)*[a-z0-9-]{1,63}$|^\[?::1\]?$")


class PushSettings(CamelModel):
    """Content-free Web Push (RFC 8030, 8291, 8292): where and how the relay may send."""

    enabled: bool = Field(True, description="true to let phones subscribe to notifications")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PUSH_HOSTS),
        description="push service host names the relay may POST to (https only; plain "
        "http only for a loopback host listed here); '*.' prefix for any name under a domain",
    )
    contact: str = Field(
        "",
        max_length=200,
        description="the VAPID contact (mailto: or https: URL) push services may reach you "
        "at; empty means the publicOrigin",
    )
    ttl_sec: int = Field(
        43200,
        ge=60,
        le=2419200,
        description="how long a push service keeps an undelivered "
        "notification, 60 to 2419200 seconds",
    )
    coalesce_sec: float = Field(
        30.0,
        ge=0.05,
        le=3600,
        description="at most one notification per task or thread "
        "per device in this many seconds; later ones replace it",
    )
    queue_size: int = Field(
        10000,
        ge=10,
        le=1000000,
        description="notifications waiting to be sent; beyond "
        "it new ones are dropped (and counted)",
    )
    concurrency: int = Field(16, ge=1, le=256, description="push requests in flight at once")
    max_attempts: int = Field(
        4,
        ge=1,
        le=10,
        description="tries per notification when the push service is "
        "unreachable or busy (429, 5xx)",
    )
    retry_base_sec: float = Field(
        2.0,
        ge=0.01,
        le=60,
        description="first retry delay in seconds; each next one is "
        "four times longer (at most 300), or the push service's Retry-After",
    )
    request_timeout_sec: float = Field(
        10.0, ge=0.5, le=60, description="how long one push request may take, in seconds"
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        cleaned = [item.strip().lower() for item in value]
        for item in cleaned:
            if not _PUSH_HOST.match(item):
                msg = f"{item!r} is not a host name (or *.domain)"
                raise ValueError(msg)
        return cleaned

    @field_validator("contact")
    @classmethod
    def _check_contact(cls, value: str) -> str:
        if value and not value.startswith(("mailto:", "https://")):
            msg = "must be a mailto: address or an https:// URL"
            raise ValueError(msg)
        return value


class RelayConfig(CamelModel):
    """Every key of the relay config file. Field descriptions double as fix hints and docs."""

    model_config = CamelModel.model_config | {"frozen": True, "validate_assignment": False}

    listen_host: str = Field("127.0.0.1", description="the address to bind, e.g. 127.0.0.1")
    listen_port: int = Field(8787, ge=1, le=65535, description="a TCP port from 1 to 65535")
    public_origin: str = Field(
        ..., description="the origin phones use, e.g. https://relay.example.org"
    )
    data_dir: str = Field(
        "data/relay",
        min_length=1,
        description="directory for the relay's database and audit trail; relative paths are "
        "next to the config file",
    )
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="storage backend and retention"
    )
    session_ttl_sec: int = Field(
        604800, ge=60, le=2592000, description="session lifetime, 60 to 2592000 seconds"
    )
    max_sessions_per_user: int = Field(
        20, ge=1, le=1000, description="sessions kept per user; the oldest ends first"
    )
    max_login_attempts_per_minute: int = Field(
        10, ge=1, le=100000, description="login attempts per client address a minute"
    )
    max_pair_attempts_per_minute: int = Field(
        10, ge=1, le=100000, description="agent pair attempts per client address a minute"
    )
    global_attempts_factor: int = Field(
        10,
        ge=1,
        le=10000,
        description="relay-wide limit as a multiple of the per-address limits",
    )
    bootstrap_admin_token_hash: HexDigest = Field(
        ..., description="SHA-256 hex of the bootstrap token (`codexrelay secret hash`)"
    )
    token_secret: SecretStr = Field(
        ..., min_length=32, description="a random secret of 32+ chars (`codexrelay secret gen`)"
    )
    features: RelayFeatures = Field(default_factory=RelayFeatures, description="feature flags")
    web: WebSettings = Field(default_factory=WebSettings, description="web app settings")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="IP addresses or CIDR ranges of reverse proxies whose X-Forwarded-For "
        "is believed",
    )
    max_body_bytes: int = Field(
        1048576, ge=1024, le=64 * 1048576, description="request body cap in bytes"
    )
    passkey_challenge_ttl_sec: int = Field(
        300, ge=30, le=300, description="passkey challenge lifetime, 30 to 300 seconds"
    )
    pairing_code_ttl_sec: int = Field(
        600, ge=60, le=3600, description="default pairing code lifetime, 60 to 3600 seconds"
    )
    invite_ttl_sec: int = Field(
        259200, ge=300, le=2592000, description="default invite lifetime in seconds"
    )
    agent_token_ttl_sec: int = Field(
        0,
        ge=0,
        le=31536000,
        description="agent token lifetime in seconds; 0 means tokens last until revoked "
        "(agents renew before expiry)",
    )
    allow_user_workspaces: bool = Field(
        False, description="true to let any active user create workspaces"
    )
    max_prompt_bytes: int = Field(
        65536,
        ge=1024,
        le=MAX_PROMPT_BYTES_LIMIT,
        description="largest Codex prompt accepted, in bytes",
    )
    max_tasks_per_workspace: int = Field(
        500,
        ge=0,
        le=100_000_000,
        description="task records kept per workspace, oldest finished pruned first; 0 for no "
        "count limit (storage.retentionDays still applies)",
    )
    task_details_ttl_sec: int = Field(
        3600, ge=60, le=86400, description="how long finished task details stay in memory"
    )
    task_details_max_bytes: int = Field(
        64 * 1048576,
        ge=1048576,
        le=4096 * 1048576,
        description="memory cap for all held task details, in bytes",
    )
    push: PushSettings = Field(
        default_factory=PushSettings, description="content-free Web Push notifications"
    )
    agent_request_timeout_sec: int = Field(
        30,
        ge=1,
        le=600,
        description="how long a conversation request waits for the agent's answer (504 after)",
    )
    conversation_memory_bytes: int = Field(
        256 * 1048576,
        ge=4 * 1048576,
        le=8192 * 1048576,
        description="memory cap for conversation items held by the relay, in bytes",
    )
    max_threads_per_workspace: int = Field(
        1000, ge=10, le=100000, description="thread records kept per workspace; oldest pruned"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="one of debug, info, warning, error"
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("public_origin")
    @classmethod
    def _normalize_origin(cls, value: str) -> str:
        return normalize_origin(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                msg = f"{item!r} is not an IP address or CIDR range"
                raise ValueError(msg) from None
        return value

    @model_validator(mode="after")
    def _same_site_app(self) -> RelayConfig:
        """A separate app origin must be on the relay's site: the session cookie is
        SameSite=Strict, so the browser sends it on the app's API calls only then."""
        app = self.web.app_origin
        if app is not None and not same_site(app, self.public_origin):
            msg = (
                f"web.appOrigin {app} is not on the same site as publicOrigin "
                f"{self.public_origin}: use the same scheme and a sibling host "
                "(e.g. https://app.example.org with https://relay.example.org)"
            )
            raise ValueError(msg)
        return self

    @field_serializer("token_secret", when_used="json")
    def _dump_secret(self, value: SecretStr, info: Any) -> str:
        if info.context and info.context.get("reveal"):
            return value.get_secret_value()
        return "**********"

    @property
    def https(self) -> bool:
        """Whether the public origin is https (Secure cookies, __Host- prefix, HSTS)."""
        return self.public_origin.startswith("https://")

    @property
    def origin_host(self) -> str:
        """The public origin's host name, which is also the WebAuthn rp id."""
        return urlsplit(self.public_origin).hostname or ""

    @property
    def app_url(self) -> str:
        """Where phones open the app: the static origin when there is one, else the relay."""
        return self.web.app_origin or self.public_origin

    @property
    def rp_host(self) -> str:
        """The WebAuthn rp id: the host of the page that runs the passkey ceremonies."""
        return urlsplit(self.app_url).hostname or ""

    @property
    def browser_origins(self) -> frozenset[str]:
        """Origins whose pages may call the API (the Origin check, CORS)."""
        return frozenset({self.public_origin, self.app_url})

    @property
    def loopback_origin(self) -> bool:
        """True when the public origin names this machine (local use and tests)."""
        host = self.origin_host
        return host in LOOPBACK_HOSTS or host.endswith(".localhost")

    @property
    def data_path(self) -> Path:
        """``dataDir`` resolved against the config file's directory."""
        path = Path(self.data_dir).expanduser()
        return path if path.is_absolute() else (self._base_dir / path).resolve()

    @property
    def state_path(self) -> Path:
        """Where the JSON backend's state file lives (and what SQLite migrates from)."""
        return self.data_path / "state.json"

    @property
    def database_path(self) -> Path:
        """Where the SQLite backend's database lives."""
        return self.data_path / "relay.sqlite3"

    @field_validator("max_tasks_per_workspace")
    @classmethod
    def _check_task_cap(cls, value: int) -> int:
        if 0 < value < 10:
            msg = "must be 0 (no count limit) or at least 10"
            raise ValueError(msg)
        return value

    def with_base_dir(self, base: Path) -> RelayConfig:
        """Remember the config file's directory so relative ``dataDir`` values resolve."""
        self._base_dir = base
        return self

    @property
    def push_contact(self) -> str:
        """The VAPID ``sub`` claim (RFC 8292 section 2.1): the configured contact, else the
        public origin when it is https, else a loopback mailto for local use."""
        if self.push.contact:
            return self.push.contact
        return self.public_origin if self.https else "mailto:codexrelay@localhost"

    def insecure_origin_problem(self) -> str | None:
        """Why this origin may not be served without --insecure-http (O1), or None."""
        if self.https or self.loopback_origin:
            return None
        return (
            f"publicOrigin {self.public_origin} is not https; phones would send session "
            "cookies in clear text. Put the relay behind HTTPS (see docs/DEPLOYMENT.md) or "
            "pass --insecure-http for a closed test network"
        )


def load_relay_config(path: Path) -> RelayConfig:
    """Load and validate the relay config file (raises ``ConfigError``)."""
    config = load_json_model(RelayConfig, path, "relay")
    return config.with_base_dir(path.resolve().parent)
