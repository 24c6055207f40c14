"""``extauthz demo`` end to end: a real subprocess, the real stack, the printed table, cleanup."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from extauthz.demo.stack import leftovers

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {  # step → (expected status, a rule id the table must show, or None)
    1: (200, None),
    2: (403, "vulnerability.ssrfInternal"),
    3: (403, "tenant.binding"),
    4: (403, "auth.required"),
    5: (400, "request.body.malformed"),
    6: (200, None),
    7: (403, "webhook.stripe.replay"),
    8: (403, "webhook.stripe.signature"),
    9: (403, "admin.denied"),
    10: (200, None),
}
ROW = re.compile(
    r"^\s*(?P<n>\d+)\s{2}(?P<method>[A-Z]+) (?P<path>\S+)\s{2,}.*?\s{2,}"
    r"(?P<expected>\d{3})\s{2,}(?P<status>\d{3})\s{2}(?P<decision>\S+)\s+(?P<hits>.*)$"
)


def _policy_digest() -> str:
    return hashlib.sha256((ROOT / "policies" / "demo.yaml").read_bytes()).hexdigest()


def _rows(output: str) -> dict[int, re.Match[str]]:
    return {int(m["n"]): m for line in output.splitlines() if (m := ROW.match(line))}


def _pids(output: str) -> list[int]:
    match = re.search(r"pids\s+([\d ]+)", output)
    assert match, output
    return [int(p) for p in match.group(1).split()]


def _workdir(output: str) -> Path:
    match = re.search(r"temp dir\s+(\S+)", output)
    assert match, output
    return Path(match.group(1))


def _demo(*args: str) -> subprocess.Popen[str]:
    """``extauthz demo`` in its own process group, as a shell would run it in a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "extauthz", "demo", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )


def _check_table(output: str) -> None:
    rows = _rows(output)
    assert sorted(rows) == sorted(EXPECTED), output
    for n, (status, rule) in EXPECTED.items():
        row = rows[n]
        assert int(row["expected"]) == status, output
        assert int(row["status"]) == status, f"step {n}:\n{output}"
        if rule is not None:
            assert rule in row["hits"], f"step {n}:\n{output}"
        if status == 200:
            assert row["decision"] == "ALLOW", f"step {n}:\n{output}"
        else:
            assert row["decision"] == "BLOCK", f"step {n}:\n{output}"
    assert f"all {len(EXPECTED)} steps matched expectations" in output
    assert "MISMATCH" not in output


@pytest.mark.parametrize(
    "flags",
    [(), ("--no-redis",), ("--authz-mode", "http")],
    ids=["redis", "in-memory", "http-mode"],
)
@pytest.mark.timeout(180)
def test_demo_runs_the_tour_and_leaves_nothing_behind(flags: tuple[str, ...]) -> None:
    before = _policy_digest()
    proc = _demo(*flags)
    try:
        output, _ = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    _check_table(output)
    in_memory = "--no-redis" in flags
    if in_memory:
        assert "in-memory replay store" in output
        assert "starting Redis" not in output and "Redis ..." not in output  # not announced
        assert "stopping Envoy, the PDP and the demo API ...\n" in output
    else:
        assert "Redis replay store at redis://127.0.0.1:" in output
        assert "stopping Envoy, the PDP, the demo API and Redis ...\n" in output
    # The same tour, the same answers, through Envoy's HTTP ext_authz mode.
    http_mode = "--authz-mode" in flags
    assert ("PDP       HTTP (Envoy's HTTP ext_authz mode) on unix:" in output) == http_mode
    assert ("PDP       gRPC on unix:" in output) != http_mode
    workdir = _workdir(output)
    pids = _pids(output)
    assert len(pids) == (2 if in_memory else 3), output
    assert leftovers(workdir, pids) == []
    assert "stopped cleanly" in output
    assert _policy_digest() == before, "the demo edited the repo's policy instead of its copy"


@pytest.mark.timeout(180)
def test_keep_running_serves_curl_until_ctrl_c() -> None:
    """Ctrl-C in a terminal signals the whole process group: the demo must still stop the
    stack in order (the PDP drains and exits 0) and leave nothing behind."""
    proc = _demo("--keep-running", "--no-redis")
    lines: list[str] = []
    instructions_done = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "$EDITOR" in line:  # the last instruction line
                instructions_done.set()
        instructions_done.set()  # EOF: the demo ended early

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        assert instructions_done.wait(150), "".join(lines)
        output = "".join(lines)
        assert "Ctrl-C to stop" in output, output
        token = re.search(r"export TOKEN=(\S+)", output)
        url = re.search(r"Envoy\s+http://127\.0\.0\.1:(\d+)", output)
        assert token and url, output
        assert "curl -i http://127.0.0.1:" in output
        conn = http.client.HTTPConnection("127.0.0.1", int(url.group(1)), timeout=5)
        body = b'{"licenseKey":"ACME-0001-2345-6789","deviceId":"device-42","tenantId":"acme"}'
        conn.request(
            "POST",
            "/api/v1/licenses/activate",
            body=body,
            headers={
                "authorization": f"Bearer {token.group(1)}",
                "content-type": "application/json",
            },
        )
        assert conn.getresponse().status == 200
        conn.close()
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        proc.wait(timeout=60)
        thread.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert leftovers(_workdir(output), _pids(output)) == []
    assert "stopped cleanly (PDP exit code 0)" in output
