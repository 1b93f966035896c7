#!/usr/bin/env python3
"""A stand-in for the Codex CLI (``codex exec``) for the test suite: no model, no network.

It takes the real CLI's argv (see docs in /work/shared/reference/codex-cli.md, sections 2-7)::

    codex [-c k=v] exec [--json] [-s|--sandbox MODE] [--skip-git-repo-check] [-C DIR]
          [-m MODEL] [-c k=v]... [-o FILE] [-p NAME] [--ephemeral] [PROMPT | -]
    codex exec [exec options] resume SESSION_ID [PROMPT | -]

prints the real ``--json`` JSONL event stream and writes real rollout files under
``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<local time>-<uuidv7>.jsonl`` (a resume appends
to the same file; an unknown resume UUID exits 1 with the CLI's message; a non-UUID name
silently starts a new session, as the real CLI does). Unknown flags are a usage error
(exit 2) like clap's. The prompt comes from PROMPT or stdin (``-``/missing); with a
PROMPT and a non-TTY stdin it waits for EOF and appends stdin, like the real CLI.

Behaviour is driven by lines of the prompt of the form ``FAKE: <keyword> [args]``:

    FAKE: message TEXT         an agent_message item
    FAKE: reasoning TEXT       a reasoning item
    FAKE: command TEXT         a command_execution item (started + completed, exit 0)
    FAKE: command-fail TEXT    a command_execution item that exits 3 (status "failed")
    FAKE: command-open TEXT    a command_execution item that starts and never completes
    FAKE: big-output N         a command_execution item with N bytes of output
    FAKE: write RELPATH [TEXT] a file_change item; the file is written only when the
                               sandbox is workspace-write (read-only: "patch rejected")
    FAKE: web-search QUERY     a web_search item (with the CLI's duplicated "id" key)
    FAKE: error-item TEXT      a non-fatal error item
    FAKE: retry-notice         a top-level "Reconnecting... 1/5" error event
    FAKE: echo-env NAME        an agent_message "NAME=value" (or "NAME is unset")
    FAKE: echo-argv            an agent_message holding argv as JSON
    FAKE: echo-prompt          an agent_message holding the whole prompt
    FAKE: stderr TEXT          TEXT on stderr
    FAKE: noise TEXT           a non-JSON line on stdout
    FAKE: slow SECONDS         sleep SECONDS before each following event
    FAKE: sleep SECONDS        sleep once, here
    FAKE: wait-file PATH       wait here until PATH exists (at most 60 s)
    FAKE: child-pidfile PATH   start a child `sleep 300` and write its pid to PATH
    FAKE: ignore-term          ignore SIGTERM (only SIGKILL stops it)
    FAKE: hang                 behave like a down model server: retry notices, never exit
    FAKE: fail [MESSAGE]       error + turn.failed, exit 1 (rollout task_complete.error)
    FAKE: exit N               exit N at once, without turn.completed
    FAKE: new-thread           on resume, start a new session instead (thread id differs)

Without any message keyword the final agent message is ``fake reply: <first prompt line>``.
Use it as ``codex.command = [sys.executable, "/abs/path/tests/fakes/fake_codex.py"]``, or
put ``tests/fakes`` on PATH and run ``codex``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CLI_VERSION = "0.171.0"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CANONICAL_ROLLOUT = re.compile(
    r"^rollout-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-(?P<id>[0-9a-f-]{36})\.jsonl$"
)
DIRECTIVE = re.compile(r"^\s*FAKE:\s*(?P<word>[a-z-]+)\s*(?P<arg>.*?)\s*$")
SANDBOXES = ("read-only", "workspace-write", "danger-full-access")
FLAGS = {"--json", "--skip-git-repo-check", "--ephemeral"}
VALUED = {
    "-s": "sandbox",
    "--sandbox": "sandbox",
    "-C": "cd",
    "--cd": "cd",
    "-m": "model",
    "--model": "model",
    "-c": "config",
    "--config": "config",
    "-o": "output_last_message",
    "--output-last-message": "output_last_message",
    "-p": "profile",
    "--profile": "profile",
}


class UsageError(Exception):
    """A clap-style usage error: message on stderr, exit 2."""


def usage_exit(message: str) -> None:
    sys.stderr.write(
        f"error: {message}\n\nUsage: codex exec [OPTIONS] [PROMPT]\n       "
        "codex exec [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n"
    )
    sys.exit(2)


def parse_argv(argv: list[str]) -> dict[str, Any]:
    """Parse like clap: exec options anywhere before the prompt, ``resume ID`` positional."""
    opts: dict[str, Any] = {"config": [], "json": False, "skip_git": False, "positionals": []}
    args = list(argv)
    while args and args[0] in {"-c", "--config"}:  # global -c before the subcommand
        opts["config"].append(args[1] if len(args) > 1 else usage_exit("-c needs a value"))
        args = args[2:]
    if args and args[0] in {"--version", "-V"}:
        print(f"codex-cli {CLI_VERSION}")
        sys.exit(0)
    if not args or args[0] not in {"exec", "e"}:
        usage_exit("this fake only implements `codex exec`")
    args = args[1:]
    while args:
        arg = args.pop(0)
        if arg == "--":
            opts["positionals"] += args
            break
        name, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in FLAGS:
            opts["json" if name == "--json" else "skip_git" if "git" in name else "ephemeral"] = (
                True
            )
        elif name in VALUED:
            if not inline and not args:
                usage_exit(f"a value is required for '{name} <VALUE>' but none was supplied")
            value = inline or args.pop(0)
            key = VALUED[name]
            if key == "config":
                opts["config"].append(value)
            else:
                opts[key] = value
        elif arg.startswith("-") and arg != "-":
            usage_exit(f"unexpected argument '{arg}' found")
        else:
            opts["positionals"].append(arg)
    sandbox = opts.get("sandbox", "read-only")
    if sandbox not in SANDBOXES:
        usage_exit(
            f"invalid value '{sandbox}' for '--sandbox <SANDBOX_MODE>'\n  "
            f"[possible values: {', '.join(SANDBOXES)}]"
        )
    positionals = opts["positionals"]
    if positionals and positionals[0] == "resume":
        if len(positionals) < 2:
            usage_exit("resume needs a SESSION_ID in this fake")
        opts["resume"] = positionals[1]
        positionals = positionals[2:]
    if len(positionals) > 1:
        usage_exit(f"unexpected argument '{positionals[1]}' found")
    opts["prompt"] = positionals[0] if positionals else None
    return opts


def uuid7() -> str:
    """A UUIDv7 (time-ordered), the format the CLI uses for thread ids."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_stamp() -> str:
    return (
        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{time.time_ns() // 1_000_000 % 1000:03d}Z"
    )


def git_info(cwd: Path) -> dict[str, Any] | None:
    for directory in (cwd, *cwd.parents):
        if (directory / ".git").exists():
            return {"commit_hash": None, "branch": None, "repository_url": None}
    return None


def find_rollout(home: Path, session_id: str) -> Path | None:
    for path in sorted((home / "sessions").glob(f"**/*-{session_id}.jsonl")):
        if CANONICAL_ROLLOUT.match(path.name):
            return path
    return None


class Rollout:
    """One rollout file: compact JSON lines with a running ordinal, flushed as written."""

    def __init__(self, path: Path, ordinal: int, turns: int = 0) -> None:
        self.path = path
        self.ordinal = ordinal
        self.turns = turns  # finished turns before this one: usage is cumulative per thread

    @classmethod
    def create(cls, home: Path, thread_id: str) -> Rollout:
        now = datetime.now().astimezone()  # local time names the file, as the CLI does
        directory = home / "sessions" / now.strftime("%Y/%m/%d")
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / f"rollout-{now.strftime('%Y-%m-%dT%H-%M-%S')}-{thread_id}.jsonl", 0)

    @classmethod
    def reopen(cls, path: Path) -> Rollout:
        lines = path.read_text(encoding="utf-8").splitlines()
        turns = sum('"type":"task_complete"' in line for line in lines)
        return cls(path, len(lines), turns)

    def write(self, kind: str, payload: dict[str, Any], **extra: Any) -> None:
        line = {"timestamp": utc_stamp(), "ordinal": self.ordinal, "type": kind, "payload": payload}
        line.update(extra)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.ordinal += 1

    def response_item(self, payload: dict[str, Any]) -> None:
        meta = {
            "history_sequence": self.ordinal,
            "sampled_through_sequence": self.ordinal,
            "client_authored": payload.get("role") in {"user", "developer"},
        }
        self.write("response_item", payload, metadata=meta)

    def event(self, payload: dict[str, Any]) -> None:
        self.write("event_msg", payload)


class FakeRun:
    """One ``codex exec`` process: events on stdout, the rollout on disk."""

    def __init__(self, opts: dict[str, Any], prompt: str, home: Path, cwd: Path) -> None:
        self.opts = opts
        self.prompt = prompt
        self.home = home
        self.cwd = cwd
        self.sandbox = opts.get("sandbox", "read-only")
        self.model = opts.get("model") or "gpt-5.5"
        self.delay = 0.0
        self.item = 0
        self.messages: list[str] = []
        self.turn_id = uuid7()
        self.started = time.monotonic()
        self.json = bool(opts["json"])

    # ---- output ---------------------------------------------------------------------

    def emit(self, event: dict[str, Any] | str) -> None:
        if self.delay:
            time.sleep(self.delay)
        if not self.json:  # without --json only the final message is printed, at the end
            return
        line = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            os._exit(101)  # the Rust CLI panics on a closed stdout

    def next_id(self) -> str:
        self.item += 1
        return f"item_{self.item - 1}"

    # ---- session ----------------------------------------------------------------------

    def open_session(self) -> tuple[str, Rollout]:
        resume = self.opts.get("resume")
        if resume and UUID_RE.match(resume) and "FAKE: new-thread" not in self.prompt:
            path = find_rollout(self.home, resume)
            if path is None:
                sys.stderr.write(
                    f"Error: thread/resume: thread/resume failed: no rollout found for thread id "
                    f"{resume} (code -32600)\n"
                )
                sys.exit(1)
            return resume, Rollout.reopen(path)
        thread_id = uuid7()
        if self.opts.get("ephemeral"):
            return thread_id, Rollout(Path(os.devnull), 0)
        rollout = Rollout.create(self.home, thread_id)
        meta: dict[str, Any] = {
            "id": thread_id,
            "session_id": thread_id,
            "timestamp": utc_stamp(),
            "cwd": str(self.cwd),
            "runtime_workspace_roots": [str(self.cwd)],
            "originator": "codex_exec",
            "cli_version": CLI_VERSION,
            "source": "exec",
            "thread_source": "user",
            "model_provider": "mock",
            "base_instructions": {
                "text": "You are a fake.",
                "provenance": {"type": "model", "model": self.model},
            },
            "history_mode": "paginated",
            "context_window": {"window_id": uuid7()},
            "account_scoped": True,
        }
        if (git := git_info(self.cwd)) is not None:
            meta["git"] = git
        rollout.write("session_meta", meta)
        return thread_id, rollout

    def start_turn(self, rollout: Rollout) -> None:
        cwd = str(self.cwd)
        policy = {"type": self.sandbox}
        rollout.event(
            {
                "type": "thread_settings_applied",
                "thread_settings": {
                    "model": self.model,
                    "model_provider_id": "mock",
                    "approval_policy": "never",
                    "permission_profile": self.sandbox,
                    "cwd": cwd,
                    "runtime_workspace_roots": [cwd],
                },
            }
        )
        rollout.event(
            {
                "type": "task_started",
                "turn_id": self.turn_id,
                "root_turn_id": self.turn_id,
                "started_at": int(time.time()),
                "model_context_window": 272000,
                "collaboration_mode_kind": "default",
                "turn_attribution": "user",
            }
        )
        rollout.response_item(
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "<permissions>fake</permissions>"}],
            }
        )
        rollout.response_item(
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": f"<environment_context><cwd>{cwd}</cwd><shell>bash</shell>"
                        "</environment_context>",
                    }
                ],
            }
        )
        rollout.write("world_state", {"full": True, "state": {}})
        rollout.write(
            "turn_context",
            {
                "cwd": cwd,
                "approval_policy": "never",
                "sandbox_policy": policy,
                "permission_profile": self.sandbox,
                "model": self.model,
                "turn_id": self.turn_id,
            },
        )
        rollout.response_item(
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": self.prompt}],
            }
        )
        rollout.event(
            {
                "type": "item_completed",
                "turn_id": self.turn_id,
                "item": {
                    "type": "UserMessage",
                    "id": uuid7(),
                    "content": [{"type": "text", "text": self.prompt, "text_elements": []}],
                },
            }
        )

    # ---- items ------------------------------------------------------------------------

    def agent_message(self, rollout: Rollout, text: str) -> None:
        self.messages.append(text)
        self.emit(
            {
                "type": "item.completed",
                "item": {"id": self.next_id(), "type": "agent_message", "text": text},
            }
        )
        rollout.response_item(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text}],
            }
        )
        rollout.event(
            {
                "type": "item_completed",
                "turn_id": self.turn_id,
                "item": {
                    "type": "AgentMessage",
                    "id": uuid7(),
                    "content": [{"type": "Text", "text": text}],
                },
            }
        )

    def command(self, rollout: Rollout, text: str, output: str, code: int) -> None:
        item_id = self.next_id()
        shown = f"/bin/bash -lc '{text}'"
        item = {
            "id": item_id,
            "type": "command_execution",
            "command": shown,
            "aggregated_output": "",
            "exit_code": None,
            "status": "in_progress",
        }
        self.emit({"type": "item.started", "item": item})
        done = {
            **item,
            "aggregated_output": output,
            "exit_code": code,
            "status": "completed" if code == 0 else "failed",
        }
        self.emit({"type": "item.completed", "item": done})
        rollout.event(
            {
                "type": "item_completed",
                "turn_id": self.turn_id,
                "item": {
                    "type": "CommandExecution",
                    "id": uuid7(),
                    "command": ["/bin/bash", "-lc", text],
                    "cwd": f"file://{self.cwd}",
                    "aggregated_output": output,
                    "exit_code": code,
                    "status": done["status"],
                    "duration": 0.01,
                    "process_id": None,
                    "source": "agent",
                },
            }
        )

    def write_file(self, rollout: Rollout, arg: str) -> None:
        relpath, _, content = arg.partition(" ")
        if self.sandbox == "read-only":  # the real CLI rejects the patch and emits no item
            self.agent_message(rollout, "patch rejected: writing is blocked by read-only sandbox")
            return
        target = (self.cwd / relpath).resolve()
        kind = "update" if target.exists() else "add"
        item = {
            "id": self.next_id(),
            "type": "file_change",
            "changes": [{"path": str(target), "kind": kind}],
            "status": "in_progress",
        }
        self.emit({"type": "item.started", "item": item})
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((content or "written by fake codex") + "\n", encoding="utf-8")
        self.emit({"type": "item.completed", "item": {**item, "status": "completed"}})
        rollout.event(
            {
                "type": "item_completed",
                "turn_id": self.turn_id,
                "item": {
                    "type": "FileChange",
                    "id": uuid7(),
                    "changes": {str(target): {"type": kind, "content": content}},
                    "stdout": "",
                },
            }
        )

    def finish(self, rollout: Rollout, error: str | None = None) -> None:
        usage = {
            "input_tokens": 14 * (1 + rollout.turns),
            "cached_input_tokens": 0,
            "cache_write_input_tokens": 0,
            "output_tokens": 10,
            "reasoning_output_tokens": 0,
        }
        rollout.write(
            "token_usage_record",
            {
                "usage": usage,
                "turn_token_usage": usage,
                "thread_token_usage": usage,
                "response_id": "resp_fake",
            },
        )
        rollout.event(
            {
                "type": "token_count",
                "info": {"total_token_usage": usage, "last_token_usage": usage},
                "rate_limits": None,
            }
        )
        complete: dict[str, Any] = {
            "type": "task_complete",
            "turn_id": self.turn_id,
            "last_agent_message": self.messages[-1] if self.messages and not error else None,
            "duration_ms": int((time.monotonic() - self.started) * 1000),
            "time_to_first_token_ms": 1,
        }
        if error:
            complete["error"] = {"message": error, "codex_error_info": "other"}
        rollout.event(complete)
        if error:
            self.emit({"type": "error", "message": error})
            self.emit({"type": "turn.failed", "error": {"message": error}})
            sys.exit(1)
        self.emit({"type": "turn.completed", "usage": usage})
        if not self.json:
            sys.stdout.write(self.messages[-1] + "\n")

    # ---- the run ------------------------------------------------------------------------

    def run(self) -> None:
        directives = [
            m.groups() for line in self.prompt.splitlines() if (m := DIRECTIVE.match(line))
        ]
        if any(word == "ignore-term" for word, _ in directives):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        thread_id, rollout = self.open_session()
        self.emit({"type": "thread.started", "thread_id": thread_id})
        self.start_turn(rollout)
        self.emit({"type": "turn.started"})
        for word, arg in directives:
            self.step(rollout, word, arg)
        if not self.messages:
            first = next(
                (ln for ln in self.prompt.splitlines() if ln.strip() and not DIRECTIVE.match(ln)),
                "",
            )
            self.agent_message(rollout, f"fake reply: {first.strip()}")
        if path := self.opts.get("output_last_message"):
            Path(path).write_text(self.messages[-1], encoding="utf-8")
        self.finish(rollout)

    def step(self, rollout: Rollout, word: str, arg: str) -> None:
        if word == "message":
            self.agent_message(rollout, arg)
        elif word == "reasoning":
            self.emit(
                {
                    "type": "item.completed",
                    "item": {"id": self.next_id(), "type": "reasoning", "text": arg},
                }
            )
        elif word in {"command", "command-fail"}:
            code = 0 if word == "command" else 3
            self.command(rollout, arg, f"fake output of: {arg}\n", code)
        elif word == "command-open":
            item = {
                "id": self.next_id(),
                "type": "command_execution",
                "command": arg,
                "aggregated_output": "",
                "exit_code": None,
                "status": "in_progress",
            }
            self.emit({"type": "item.started", "item": item})
        elif word == "big-output":
            self.command(rollout, "yes", "y\n" * (int(arg) // 2), 0)
        elif word == "write":
            self.write_file(rollout, arg)
        elif word == "web-search":
            item_id, query = self.next_id(), json.dumps(arg)
            self.emit(
                f'{{"type":"item.completed","item":{{"id":"{item_id}","type":"web_search","id":"ws_1",'
                f'"query":{query},"action":{{"type":"search","query":{query}}}}}}}'
            )
        elif word == "error-item":
            self.emit(
                {
                    "type": "item.completed",
                    "item": {"id": self.next_id(), "type": "error", "message": arg},
                }
            )
        elif word == "retry-notice":
            self.emit(
                {
                    "type": "error",
                    "message": "Reconnecting... 1/5 (stream disconnected before completion)",
                }
            )
        elif word == "echo-env":
            value = os.environ.get(arg)
            self.agent_message(
                rollout, f"{arg}={value}" if value is not None else f"{arg} is unset"
            )
        elif word == "echo-argv":
            self.agent_message(rollout, json.dumps(sys.argv[1:]))
        elif word == "echo-prompt":
            self.agent_message(rollout, self.prompt)
        elif word == "stderr":
            sys.stderr.write(arg + "\n")
            sys.stderr.flush()
        elif word == "noise":
            self.emit(arg)
        elif word == "slow":
            self.delay = float(arg)
        elif word == "sleep":
            time.sleep(float(arg))
        elif word == "wait-file":
            deadline = time.monotonic() + 60
            while not Path(arg).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        elif word == "child-pidfile":
            child = subprocess.Popen(["sleep", "300"])
            Path(arg).write_text(str(child.pid), encoding="utf-8")
        elif word == "hang":
            self.hang()
        elif word == "fail":
            self.finish(rollout, error=arg or "unexpected status 500 Internal Server Error")
        elif word == "exit":
            sys.exit(int(arg))

    def hang(self) -> None:
        """What the CLI does when the model server is down: retry forever."""
        while True:
            self.emit(
                {
                    "type": "error",
                    "message": "Reconnecting... waiting for network "
                    "(Connection failed: error sending request)",
                }
            )
            time.sleep(0.5)


def read_prompt(opts: dict[str, Any]) -> str:
    prompt = opts["prompt"]
    if prompt is None or prompt == "-":
        if sys.stdin.isatty():
            usage_exit("no prompt given and stdin is a terminal")
        return sys.stdin.read()
    if not sys.stdin.isatty():  # the real CLI appends piped stdin after EOF
        extra = sys.stdin.read()
        if extra:
            prompt += f"\n\n<stdin>\n{extra}\n</stdin>"
    return prompt


def main(argv: list[str]) -> None:
    opts = parse_argv(argv)
    cwd = Path(opts.get("cd") or Path.cwd())
    if not cwd.is_dir():
        sys.stderr.write("Error: No such file or directory (os error 2)\n")
        sys.exit(1)
    cwd = cwd.resolve()
    if not opts["skip_git"] and git_info(cwd) is None:
        sys.stderr.write(
            "Not inside a trusted directory and --skip-git-repo-check was not specified.\n"
        )
        sys.exit(1)
    home = Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")
    prompt = read_prompt(opts)
    FakeRun(opts, prompt, home, cwd).run()


if __name__ == "__main__":
    main(sys.argv[1:])
