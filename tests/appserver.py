"""Helpers for tests of live conversations against the real ``codex app-server``.

``AppServerWorld`` is a thread manager (the agent's side) running the pinned CLI offline
against the scripted loopback model, with every message it sends to the relay recorded and
every frame it sends to the app-server kept for checking against the CLI's own JSON schema.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from codexrelay.agent.config import AgentConfig
from codexrelay.agent.redaction import Redactor
from codexrelay.agent.runners.appserver.manager import ThreadManager
from codexrelay.protocol import Message

Predicate = Callable[[dict[str, Any]], bool]


class Recorder:
    """Every message the agent sends to the relay, as the JSON the relay would read."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.messages.append(json.loads(message.model_dump_json(by_alias=True, exclude_none=True)))
        self._changed.set()

    async def wait_for(
        self,
        predicate: Predicate,
        *,
        timeout: float = 60,  # noqa: ASYNC109 - a plain deadline, as wait_until has
        what: str = "",
        after: int = 0,
    ) -> dict:
        """The first message from index ``after`` on matching ``predicate``."""

        async def scan() -> dict:
            seen = after
            while True:
                for message in self.messages[seen:]:
                    if predicate(message):
                        return message
                seen = len(self.messages)
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            tail = "\n".join(json.dumps(m)[:300] for m in self.messages[-15:])
            raise AssertionError(f"no message {what} within {timeout}s; last:\n{tail}") from None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def items(self, thread_id: str) -> list[dict[str, Any]]:
        return [m["item"] for m in self.of("thread.item") if m["threadId"] == thread_id]


def is_item(thread_id: str, kind: str, status: str | None = None) -> Predicate:
    def match(message: dict) -> bool:
        item = message.get("item") or {}
        return (
            message["type"] == "thread.item"
            and message["threadId"] == thread_id
            and item.get("type") == kind
            and (status is None or item.get("status") == status)
        )

    return match


def is_approval(thread_id: str, status: str = "pending") -> Predicate:
    def match(message: dict) -> bool:
        approval = message.get("approval") or {}
        return (
            message["type"] == "approval.update"
            and approval.get("threadId") == thread_id
            and approval.get("status") == status
        )

    return match


def turn_ended(thread_id: str, status: str | None = None) -> Predicate:
    def match(message: dict) -> bool:
        turn = message.get("turn") or {}
        return (
            message["type"] == "thread.update"
            and message["thread"]["id"] == thread_id
            and turn.get("status")
            in ({status} if status else {"completed", "interrupted", "failed"})
        )

    return match


class Schema:
    """The app-server's JSON schema as the pinned CLI generates it (never copied here)."""

    def __init__(self, launcher: Path, out: Path) -> None:
        subprocess.run(
            [str(launcher), "app-server", "generate-json-schema", "--out", str(out)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.dir = out
        self._client = self._load("ClientRequest.json")

    def _load(self, name: str) -> dict[str, Any]:
        return json.loads((self.dir / name).read_text())

    def check_request(self, frame: dict[str, Any]) -> None:
        jsonschema.validate(frame, self._client)

    def check_answer(self, method: str, result: dict[str, Any]) -> None:
        name = {
            "item/commandExecution/requestApproval": "CommandExecutionRequestApprovalResponse",
            "item/fileChange/requestApproval": "FileChangeRequestApprovalResponse",
        }[method]
        jsonschema.validate(result, self._load(f"{name}.json"))


@dataclass
class AppServerWorld:
    """A running thread manager, its workspace and what it sent both ways."""

    manager: ThreadManager
    relay: Recorder
    workspace: Path
    config: AgentConfig
    frames: list[dict[str, Any]] = field(default_factory=list)

    @property
    def threads(self) -> dict:
        return self.manager.threads


def manager_for(
    config: AgentConfig, relay: Recorder, frames: list[dict[str, Any]]
) -> ThreadManager:
    return ThreadManager(
        config, relay.send, redactor=Redactor(config.redaction), trace=frames.append
    )
