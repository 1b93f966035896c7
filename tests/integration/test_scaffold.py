"""`codexrelay relay scaffold-production`: the proxy, unit and config files a small relay host
needs (O1, O2), checked by the tools that will read them where those tools are installed."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from codexrelay.crypto import sha256_hex
from codexrelay.relay.config import load_relay_config
from tests.agents import default_workspace, pair_agent
from tests.helpers import PYTHON, RelayProcess, wait_until, write_relay_config
from tests.softauthn import Phone

DOMAIN = "relay.example.org"
BIN = str(Path(PYTHON).parent / "codexrelay")
UNITS = ("codexrelay-relay.service", "codexrelay-agent.service")
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def scaffold(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "codexrelay", "relay", "scaffold-production", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One scaffold for relay.example.org (the program path is this venv's, so it exists)."""
    out = tmp_path_factory.mktemp("scaffold") / "generated"
    res = scaffold(out, "--domain", DOMAIN, "--codexrelay-bin", BIN, "--acme-email", "ops@x.org")
    assert res.returncode == 0, res.stderr
    token = next(x for x in res.stdout.splitlines() if x.startswith("Recovery token: "))
    return out, token.removeprefix("Recovery token: ")


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit as {section: [(key, value), ...]}, keeping repeated keys."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"a key outside any section: {line!r}"
        assert "=" in line, f"not a key=value line: {line!r}"
        key, value = line.split("=", 1)
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], key: str) -> list[str]:
    return [v for k, v in unit["Service"] if k == key]


def test_scaffold_writes_a_production_config_behind_the_proxy(generated):
    """O1: https origin, loopback listener, the proxy as only trusted proxy, fresh secrets,
    write mode off; the token is printed once and only its hash is written; 0600 config."""
    out, token = generated
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["Caddyfile", "INSTALL.md", "relay.json", *UNITS]
    )
    assert stat.S_IMODE((out / "relay.json").stat().st_mode) == 0o600
    for name in ("Caddyfile", "INSTALL.md", *UNITS):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644
        assert token not in (out / name).read_text()
    config = load_relay_config(out / "relay.json")
    assert config.public_origin == f"https://{DOMAIN}"
    assert config.listen_host == "127.0.0.1"
    assert config.listen_port == 8787
    assert config.trusted_proxies == ["127.0.0.1", "::1"]
    assert config.data_dir == "/var/lib/codexrelay"
    assert config.insecure_origin_problem() is None
    assert config.features.codex_exec_write is False
    assert config.bootstrap_admin_token_hash == sha256_hex(token)
    assert token not in (out / "relay.json").read_text()
    check = subprocess.run(
        [PYTHON, "-m", "codexrelay", "relay", "check-config", "--config", str(out / "relay.json")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_scaffold_refuses_to_overwrite_without_force(tmp_path):
    """Existing files (and their secrets) are kept unless --force; --force makes new ones."""
    out = tmp_path / "gen"
    assert scaffold(out, "--domain", DOMAIN).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = scaffold(out, "--domain", DOMAIN)
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert "Recovery token" not in again.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    forced = scaffold(out, "--domain", DOMAIN, "--force")
    assert forced.returncode == 0, forced.stderr
    old = json.loads(before["relay.json"])
    new = json.loads((out / "relay.json").read_text())
    assert new["tokenSecret"] != old["tokenSecret"]
    assert new["bootstrapAdminTokenHash"] != old["bootstrapAdminTokenHash"]


@pytest.mark.parametrize(
    "domain", ["https://relay.example.org", "relay.example.org:443", "10.0.0.1", "relay", "a/b.org"]
)
def test_scaffold_refuses_what_is_not_a_dns_name(tmp_path, domain):
    """--domain takes a bare DNS name: no scheme, port, path or IP address (automatic HTTPS)."""
    res = scaffold(tmp_path / "gen", "--domain", domain)
    assert res.returncode == 2
    assert "DNS name" in res.stderr
    assert not (tmp_path / "gen").exists()


def test_units_carry_the_hardening_lines(generated):
    """O2: dedicated users, no new privileges, read-only system, writable state dir only,
    private /tmp, IP and Unix sockets only, no capabilities, @system-service syscalls, locked
    personality, W^X memory for the relay, bounded restarts."""
    out, _ = generated
    relay = parse_unit((out / "codexrelay-relay.service").read_text())
    agent = parse_unit((out / "codexrelay-agent.service").read_text())
    for unit, user, home in (
        (relay, "codexrelay", "/var/lib/codexrelay"),
        (agent, "codexrelay-agent", "/var/lib/codexrelay-agent"),
    ):
        assert values(unit, "User") == [user]
        assert values(unit, "ExecStart")[0].startswith(f"{BIN} ")
        for key, value in {
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "CapabilityBoundingSet": "",
            "LockPersonality": "yes",
            "Restart": "on-failure",
        }.items():
            assert values(unit, key) == [value], key
        assert values(unit, "ReadWritePaths") == [home]
        assert values(unit, "SystemCallFilter")[0] == "@system-service"
        families = values(unit, "RestrictAddressFamilies")[0].split()
        assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
        limits = dict(unit["Unit"])
        assert int(limits["StartLimitBurst"]) <= 10
        assert int(limits["StartLimitIntervalSec"]) > 0
    assert values(relay, "MemoryDenyWriteExecute") == ["yes"]
    assert values(relay, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
    assert "relay start --config /etc/codexrelay/relay.json" in values(relay, "ExecStart")[0]
    # The Codex CLI runs on Node.js, whose JIT needs writable executable memory.
    assert values(agent, "MemoryDenyWriteExecute") == []
    assert values(agent, "RestartPreventExitStatus") == ["2 3"]
    assert "agent start --config" in values(agent, "ExecStart")[0]


def test_agent_unit_keeps_a_home_workspace_read_only(tmp_path):
    """A workspace under /home gets ProtectHome=read-only (not hidden) and stays read-only."""
    out = tmp_path / "gen"
    res = scaffold(out, "--domain", DOMAIN, "--workspace-root", "/home/alice/src/app")
    assert res.returncode == 0, res.stderr
    agent = parse_unit((out / "codexrelay-agent.service").read_text())
    assert values(agent, "ProtectHome") == ["read-only"]
    assert values(agent, "ReadWritePaths") == ["/var/lib/codexrelay-agent"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_units_pass_systemd_analyze(generated):
    """O2: `systemd-analyze verify` accepts both units without a warning, and the offline
    security review rates the relay's exposure at most 2.0 and the agent's at most 3.5."""
    out, _ = generated
    paths = [str(out / name) for name in UNITS]
    verify = subprocess.run(
        ["systemd-analyze", "verify", *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr
    for name, threshold in (("codexrelay-relay.service", 20), ("codexrelay-agent.service", 35)):
        argv = ["systemd-analyze", "security", "--offline=true", f"--threshold={threshold}"]
        review = subprocess.run(
            [*argv, str(out / name)], capture_output=True, text=True, timeout=60, check=False
        )
        assert review.returncode == 0, review.stdout[-2000:] + review.stderr
        assert "Overall exposure level" in review.stdout


def test_caddyfile_structure(generated):
    """The Caddyfile serves the domain over automatic HTTPS and proxies to the loopback relay
    with streaming (flush_interval -1); it adds no security headers of its own (R19)."""
    out, _ = generated
    text = (out / "Caddyfile").read_text()
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]
    assert f"{DOMAIN} {{" in lines
    assert "reverse_proxy 127.0.0.1:8787 {" in lines
    assert "flush_interval -1" in lines
    assert "email ops@x.org" in lines
    assert [x for x in lines if x.startswith("header ")] == ["header -Server"]
    assert "http://" not in "\n".join(lines)


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy missing: deploy/ensure-caddy.sh")
def test_caddy_adapts_and_validates_the_caddyfile(generated, tmp_path):
    """`caddy adapt --validate` accepts the Caddyfile with no warning; the JSON proxies
    relay.example.org to 127.0.0.1:8787 with flush_interval -1 under automatic TLS."""
    out, _ = generated
    caddyfile = str(out / "Caddyfile")
    res = subprocess.run(
        ["caddy", "adapt", "--config", caddyfile, "--adapter", "caddyfile", "--validate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
    )
    assert res.returncode == 0, res.stderr
    warnings = [x for x in res.stderr.splitlines() if '"level":"warn"' in x or "WARN" in x]
    assert not warnings, warnings
    adapted = json.loads(res.stdout)
    server = next(iter(adapted["apps"]["http"]["servers"].values()))
    assert server["listen"] == [":443"]
    route = server["routes"][0]
    assert route["match"] == [{"host": [DOMAIN]}]
    handlers = route["handle"][0]["routes"][0]["handle"]
    proxy = next(h for h in handlers if h["handler"] == "reverse_proxy")
    assert proxy["upstreams"] == [{"dial": "127.0.0.1:8787"}]
    assert proxy["flush_interval"] == -1
    headers = next(h for h in handlers if h["handler"] == "headers")
    assert headers["response"] == {"deferred": True, "delete": ["Server"]}
    assert adapted["apps"]["tls"]["automation"]["policies"][0]["subjects"] == [DOMAIN]


def _mdwe_supported() -> bool:
    if sys.platform != "linux":
        return False
    probe = subprocess.run(
        [
            PYTHON,
            "-c",
            "import ctypes, mmap, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            f"if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0: sys.exit(3)\n"
            "try:\n"
            "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
            "except OSError:\n"
            "    sys.exit(0)\n"
            "sys.exit(4)\n",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


def _deny_write_execute() -> None:  # runs in the relay child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE failed")


@pytest.mark.skipif(not _mdwe_supported(), reason="the kernel has no PR_SET_MDWE (Linux 6.3+)")
def test_relay_works_under_memory_deny_write_execute(tmp_path):
    """MemoryDenyWriteExecute=yes does not break the relay: under the same kernel rule
    (PR_SET_MDWE, kept across exec) it serves sign-in, a passkey registration and login,
    agent pairing over the WebSocket and a task."""
    setup = write_relay_config(tmp_path / "relay")
    relay = RelayProcess(setup, tmp_path / "relay.log")
    with relay.log_path.open("ab") as log:
        relay.proc = subprocess.Popen(
            [PYTHON, "-m", "codexrelay", "relay", "start", "--config", str(setup.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_deny_write_execute,  # noqa: PLW1509 - a single prctl, no locks
        )
    agent = None
    client = relay.client()
    try:
        relay.wait_ready()
        phone = Phone(client=client)  # type: ignore[arg-type]
        phone.bootstrap(setup.token).enroll("mdwe")
        phone.post("/api/v1/auth/logout")
        assert phone.login().status_code == 200
        client.cookies.set("codexrelay-session", phone.cookie or "")
        wid = default_workspace(client)
        agent = pair_agent(relay, client, wid, tmp_path / "agent")
        res = client.post(
            f"/api/v1/workspaces/{wid}/tasks",
            json={"agentId": "devbox", "type": "run_action", "actionId": "hello"},
        )
        assert res.status_code == 201, res.text
        task_url = f"/api/v1/workspaces/{wid}/tasks/{res.json()['task']['id']}"
        done = wait_until(
            lambda: (t := client.get(task_url).json()["task"])["status"] == "completed" and t,
            timeout=30,
            what="the action",
        )
        assert "hello" in done["outputTail"]
        assert relay.proc.poll() is None, relay.logs()
    finally:
        if agent is not None:
            agent.stop()
        client.close()
        relay.stop()
