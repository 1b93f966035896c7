"""Reading the chain back: filtered pages for the API, and signed export bundles (B2).

Both read the files, never the writer's memory, and stop at a sequence number taken when
the read began, so a record written meanwhile (or a line half written) is never half in.

An export is always a *contiguous* piece of one chain: the global chain, or one
workspace's (``wseq``/``wprev``); ``since`` picks the first record, ``until`` the last.
So a workspace export verifies on its own, link by link, without the other workspaces'
records. What it cannot show by itself is that the relay left nothing of that workspace
out: that rests on the relay's signature over the manifest (docs/AUDIT.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from codexrelay.auditverify import EXPORT_FORMAT, canonical, chain_files, read_lines
from codexrelay.relay.audit.keys import Signer
from codexrelay.relay.audit.log import iso

# Record times follow the clock, which may step back a little; a newest-first scan stops
# only once it is this far before ``since``.
CLOCK_SLACK = timedelta(hours=1)


def _records(
    directory: Path, *, upto: int | None, newest_first: bool
) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Every complete, readable record with ``seq <= upto``, with its line."""
    files = chain_files(directory)
    for path in reversed(files) if newest_first else files:
        lines, _torn = read_lines(path)
        for line in reversed(lines) if newest_first else lines:
            try:
                record = json.loads(line)
                seq = record["seq"]
            except (ValueError, KeyError, TypeError):
                continue  # the verifier reports it; a reader skips it
            if upto is None or seq <= upto:
                yield record, line


# --- pages for the API ---


@dataclass(frozen=True)
class Query:
    """Which records of one workspace (or ``instance``) to list, newest first."""

    workspace: str
    event: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int = 100


def _matches(record: dict[str, Any], query: Query) -> bool:
    if record.get("workspace") != query.workspace:
        return False
    if query.event is not None:
        event = str(record.get("event"))
        wanted = query.event
        if not (event.startswith(wanted[:-1]) if wanted.endswith("*") else event == wanted):
            return False
    if query.actor is not None:
        actor = record.get("actor") or {}
        ids = {actor.get("userId"), actor.get("agentId"), actor.get("agentKey"), actor.get("type")}
        if query.actor not in ids:
            return False
    time = str(record.get("time"))
    if query.since is not None and time < iso(query.since):
        return False
    return query.until is None or time <= iso(query.until)


def find(directory: Path, query: Query, *, upto: int) -> tuple[list[dict[str, Any]], int | None]:
    """A page of matching records, newest first, and the ``before`` cursor for the next."""
    needle = canonical({"workspace": query.workspace})[1:-1]
    found: list[dict[str, Any]] = []
    try:
        stop = iso(query.since - CLOCK_SLACK) if query.since is not None else None
    except OverflowError:
        stop = None
    for record, line in _records(directory, upto=upto, newest_first=True):
        if query.before is not None and record["seq"] >= query.before:
            continue
        if stop is not None and str(record.get("time")) < stop:
            break
        if needle in line and _matches(record, query):
            if len(found) == query.limit:
                return found, found[-1]["seq"]
            found.append(record)
    return found, None


# --- export bundles ---


@dataclass(frozen=True)
class ExportScope:
    """What an export covers: one chain and a time range."""

    workspace: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def filters(self) -> dict[str, str | None]:
        """The manifest's ``filters``."""
        return {
            "workspace": self.workspace,
            "since": iso(self.since) if self.since else None,
            "until": iso(self.until) if self.until else None,
        }


def bundle(
    directory: Path,
    signer: Signer,
    scope: ExportScope,
    *,
    upto: int | None,
    now: datetime,
) -> Iterator[bytes]:
    """The bundle's lines: the chosen records as stored, then the signed manifest."""
    digest = hashlib.sha256()
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    head: dict[str, Any] | None = None
    count = 0
    since = iso(scope.since) if scope.since else None
    until = iso(scope.until) if scope.until else None
    done = False
    for record, line in _records(directory, upto=upto, newest_first=False):
        head = record
        if done or (scope.workspace is not None and record["workspace"] != scope.workspace):
            continue
        if first is None and since is not None and record["time"] < since:
            continue
        if until is not None and record["time"] > until:
            done = True  # contiguous: nothing after the first record past ``until``
            continue
        first = first or record
        last = record
        count += 1
        digest.update(line + b"\n")
        yield line + b"\n"
    link = "wprev" if scope.workspace is not None else "prev"
    manifest = {
        "format": EXPORT_FORMAT,
        "createdAt": iso(now),
        "keyId": signer.key_id,
        "publicKey": signer.public_text,
        "chain": "workspace" if scope.workspace is not None else "global",
        "filters": scope.filters(),
        "count": count,
        "firstSeq": first["seq"] if first else None,
        "lastSeq": last["seq"] if last else None,
        "firstTime": first["time"] if first else None,
        "lastTime": last["time"] if last else None,
        "firstHash": first["hash"] if first else None,
        "lastHash": last["hash"] if last else None,
        "startsAfter": first[link] if first else None,
        "headSeq": head["seq"] if head else 0,
        "headHash": head["hash"] if head else None,
        "recordsDigest": digest.hexdigest(),
    }
    signed = {"manifest": manifest, "signature": signer.sign_manifest(manifest)}
    yield canonical(signed) + b"\n"
