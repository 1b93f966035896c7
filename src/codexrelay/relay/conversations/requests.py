"""Requests to an agent and their answers: each carries a fresh ``requestId`` and waits,
up to ``agentRequestTimeoutSec``, for exactly one ``thread.reply`` or ``thread.refused``
from the agent it was sent to. A refusal becomes the API error its reason stands for."""

from __future__ import annotations

import asyncio
from typing import Any

from codexrelay.crypto import TokenSource
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import Message, RefusalReason
from codexrelay.protocol_threads import ThreadRefused, ThreadReply
from codexrelay.relay.agents.hub import LiveAgent

R = RefusalReason
# The agent's reasons as the phone sees them (docs/PROTOCOL.md "Refusal reasons").
ERROR_OF: dict[RefusalReason, tuple[ErrorCode, str]] = {
    R.FEATURE_DISABLED: (ErrorCode.FEATURE_DISABLED, "Conversations are turned off on the agent."),
    R.INVALID_REQUEST: (ErrorCode.INVALID_REQUEST, "The agent refused an empty prompt."),
    R.CWD_OUTSIDE_WORKSPACE: (
        ErrorCode.CWD_OUTSIDE_WORKSPACE,
        "That directory is outside the agent's workspace.",
    ),
    R.CWD_NOT_FOUND: (ErrorCode.CWD_NOT_FOUND, "That directory does not exist on the agent."),
    R.WRITE_MODE_DISABLED: (ErrorCode.WRITE_MODE_DISABLED, "Write mode is off on the agent."),
    R.WRITE_ON_RESUME_DISABLED: (
        ErrorCode.WRITE_ON_RESUME_DISABLED,
        "The agent does not allow write mode when taking over a thread.",
    ),
    R.UNKNOWN_THREAD: (ErrorCode.NOT_FOUND, "No such thread on that agent."),
    R.TURN_RUNNING: (ErrorCode.TURN_RUNNING, "A turn is running; steer it or interrupt it."),
    R.NO_RUNNING_TURN: (ErrorCode.NO_RUNNING_TURN, "No turn is running on this thread."),
    R.UNKNOWN_APPROVAL: (ErrorCode.NOT_FOUND, "No such approval on this thread."),
    R.APPROVAL_RESOLVED: (ErrorCode.APPROVAL_RESOLVED, "This approval was already answered."),
    R.DECISION_NOT_OFFERED: (
        ErrorCode.DECISION_NOT_OFFERED,
        "That answer is not offered for this approval.",
    ),
    R.CODEX_UNAVAILABLE: (ErrorCode.CODEX_UNAVAILABLE, "Codex is restarting on the agent."),
    R.CODEX_ERROR: (ErrorCode.CODEX_ERROR, "Codex refused the request."),
    R.AGENT_BUSY: (ErrorCode.AGENT_BUSY, "The agent is busy; try again in a moment."),
}


# The agent's checks of a signed statement (TRUST.md §4.6): the phone shows the reason.
STATEMENT_REASONS = frozenset(
    {
        R.SIGNATURE_REQUIRED, R.NOT_PINNED, R.STATEMENT_INVALID, R.WRONG_WORKSPACE,
        R.WRONG_AGENT, R.BODY_MISMATCH, R.STATEMENT_MISMATCH, R.STATEMENT_TTL_TOO_LONG,
        R.STATEMENT_NOT_YET_VALID, R.STATEMENT_EXPIRED, R.LOG_HEAD_UNKNOWN, R.LOG_FORK,
        R.UNKNOWN_SIGNER, R.REVOKED_SIGNER, R.ROLE_TOO_LOW, R.DEVICE_BOUND_REQUIRED,
        R.NEEDS_MORE_APPROVERS, R.USER_NOT_VERIFIED, R.COUNTER_REGRESSED,
        R.SIGNATURE_INVALID, R.AUDIT_UNAVAILABLE, R.DUPLICATE_TASK,
    }
)  # fmt: skip


def refusal_error(refused: ThreadRefused) -> AppError:
    """The API error for an agent's refusal (agent-error for anything unexpected)."""
    if refused.reason in STATEMENT_REASONS:
        return AppError(
            ErrorCode.STATEMENT_REFUSED,
            f"The agent refused the signed request ({refused.reason.value}).",
        )
    code, sentence = ERROR_OF.get(
        refused.reason, (ErrorCode.AGENT_ERROR, "The agent could not do this.")
    )
    if refused.reason is RefusalReason.CODEX_ERROR and refused.message:
        sentence = refused.message[:300]  # Codex's own reason, already redacted by the agent
    return AppError(code, sentence)


class AgentRequests:
    """Requests in flight, by id, each bound to the agent connection it went to."""

    def __init__(self, rand: TokenSource) -> None:
        self._rand = rand
        self._waiting: dict[str, tuple[str, asyncio.Future[Message]]] = {}

    def new_id(self) -> str:
        """A request id no agent can guess (an answer to another one is ignored)."""
        return "rq_" + self._rand(12).hex()

    async def ask(self, live: LiveAgent, request: Any, wait_sec: float) -> ThreadReply:
        """Send ``request`` (a conversation message with ``request_id``) and wait."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[request.request_id] = (live.key, future)
        try:
            if not await live.send(request):
                raise AppError(ErrorCode.AGENT_OFFLINE, "That agent is not connected right now.")
            answer = await asyncio.wait_for(future, wait_sec)
        except TimeoutError:
            raise AppError(
                ErrorCode.AGENT_TIMEOUT, "The agent did not answer in time; try again."
            ) from None
        finally:
            self._waiting.pop(request.request_id, None)
        if isinstance(answer, ThreadRefused):
            raise refusal_error(answer)
        assert isinstance(answer, ThreadReply)  # noqa: S101 - only these two are resolved
        return answer

    def resolve(self, agent_key: str, answer: ThreadReply | ThreadRefused) -> bool:
        """Hand an answer to its waiting request, if this agent was asked."""
        entry = self._waiting.get(answer.request_id)
        if entry is None or entry[0] != agent_key or entry[1].done():
            return False
        entry[1].set_result(answer)
        return True

    def fail_agent(self, agent_key: str) -> None:
        """The agent's link ended: its requests fail now instead of at their deadline."""
        for key, future in list(self._waiting.values()):
            if key == agent_key and not future.done():
                future.set_exception(
                    AppError(ErrorCode.AGENT_OFFLINE, "The agent went offline; try again.")
                )

    def in_flight(self) -> int:
        """How many requests wait for an answer."""
        return len(self._waiting)
