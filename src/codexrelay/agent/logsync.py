"""Fetching the workspace's membership log from the relay with the agent's token.

The relay only carries entries; the agent verifies every one against the genesis it
pinned (``codexrelay.e2e.log``) before using it, so what is fetched here is untrusted.
"""

from __future__ import annotations

from typing import Any

import httpx

from codexrelay import __version__

LOG_PATH = "/api/v1/agent/e2e/log"
MAX_PAGES = 100


class LogFetchError(OSError):
    """The relay did not hand over the log."""


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "User-Agent": f"codexrelay-agent/{__version__}"}


def _page(res: httpx.Response) -> list[dict[str, Any]]:
    if res.status_code != 200:
        msg = f"the relay answered {res.status_code} for the membership log"
        raise LogFetchError(msg)
    entries = res.json().get("entries")
    if not isinstance(entries, list):
        msg = "the relay's log page has no entries list"
        raise LogFetchError(msg)
    return [{"entry": e.get("entry"), "sigs": e.get("sigs")} for e in entries]


def fetch_log(relay_base_url: str, token: str, start: int = 0) -> list[dict[str, Any]]:
    """Every entry from ``start`` on (blocking; for the command line)."""
    found: list[dict[str, Any]] = []
    with httpx.Client(base_url=relay_base_url, timeout=15, headers=_headers(token)) as client:
        for _ in range(MAX_PAGES):
            try:
                page = _page(client.get(LOG_PATH, params={"from": start + len(found)}))
            except httpx.HTTPError as exc:
                raise LogFetchError(str(exc)) from None
            found.extend(page)
            if not page:
                return found
    return found


async def fetch_log_async(relay_base_url: str, token: str, start: int) -> list[dict[str, Any]]:
    """The same, for the running agent (one page is plenty for a head a statement names)."""
    async with httpx.AsyncClient(
        base_url=relay_base_url, timeout=15, headers=_headers(token)
    ) as client:
        try:
            return _page(await client.get(LOG_PATH, params={"from": start}))
        except httpx.HTTPError as exc:
            raise LogFetchError(str(exc)) from None
