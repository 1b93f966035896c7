"""Run the relay under uvicorn with our own logging (no access log with query strings)."""

from __future__ import annotations

import logging
import resource

import uvicorn

from codexrelay.relay.app import create_app
from codexrelay.relay.config import RelayConfig
from codexrelay.relay.services import utc_now
from codexrelay.relay.storage.backends import open_configured_store

log = logging.getLogger("codexrelay.relay")


def configure_logging(level: str) -> None:
    """One plain format for every codexrelay and uvicorn line, on stderr."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # The access log is ours (CatchAllMiddleware); uvicorn's would print query strings.
    logging.getLogger("uvicorn.access").disabled = True
    # At debug level the websockets library logs, through uvicorn.error, every upgrade header
    # (the agent's Bearer token) and an excerpt of every frame (task texts, previews): R10,
    # R12. Those loggers never go below INFO, whatever logLevel says.
    floor = max(logging.getLevelNamesMapping()[level.upper()], logging.INFO)
    for name in ("uvicorn.error", "websockets"):
        logging.getLogger(name).setLevel(floor)


def raise_open_file_limit() -> int:
    """Every agent socket and phone event stream is an open file: take the whole hard limit
    the service manager allows (systemd's ``LimitNOFILE``), not the shell's default soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def serve(config: RelayConfig) -> None:
    """Open the store (refusing a bad one before binding), then serve until stopped."""
    configure_logging(config.log_level)
    raise_open_file_limit()
    store = open_configured_store(config, now=utc_now)
    app = create_app(config, store)
    log.info(
        "relay listening on %s:%s for %s",
        config.listen_host,
        config.listen_port,
        config.public_origin,
    )
    uvicorn.run(
        app,
        host=config.listen_host,
        port=config.listen_port,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # client addresses come from ratelimit.client_address
        server_header=False,
        date_header=True,
        ws_max_size=1 << 20,
        # Pings every 10 s, dead after 10 s more: a vanished agent is noticed within 20 s.
        ws_ping_interval=10,
        ws_ping_timeout=10,
        timeout_graceful_shutdown=5,
    )
