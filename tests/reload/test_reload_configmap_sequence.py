"""Issue 25, item 3: a ConfigMap-layout edit sequence beside a file that keeps changing.

The sequence: ``policy.yaml -> ..data/policy.yaml``, ``..data -> ..vN``; a valid swap, an
invalid-YAML swap and an unknown-key swap (both refused, the old policy kept), then an
editor-style write (``.policy.yaml.swp`` renamed over ``policy.yaml``, replacing the symlink
with a file). Each step must be decided (about 0.5 s each, the default debounce; waits are
hang guards, nothing is timed).

What made it fail: a file in the same directory that is written all the time (here the
server's own log, which gets a decision record for every BLOCK while ``/v1/evaluate`` is polled
every 50 ms; an editor's swap file does the same) restarted the debounce on every write, so a
reload waited for the 5 s fallback (``MAX_WAIT_DEBOUNCES``). Events about entries that cannot
change what the policy files resolve to no longer wake the reloader: the reloader-alone test
checks that directly (the busy file's writes count no event), not by how long a step takes.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from reload_helpers import http_json, ping_ctx, policy_yaml, wait_for

from extauthz.devstack import free_port
from extauthz.devstack.server import ServerProcess
from extauthz.engine import evaluate
from extauthz.policy.reload import PolicyHotReloader

BUSY_EVERY_S = 0.05


class ConfigMap:
    """One mounted ConfigMap, updated the way the kubelet does (new revision dir, ``..data``
    swapped with a rename, the old revision removed)."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.revision = 0
        mount.mkdir(exist_ok=True)

    def publish(self, policy_text: str) -> None:
        self.revision += 1
        revision = self.mount / f"..v{self.revision}"
        revision.mkdir()
        (revision / "policy.yaml").write_text(policy_text)
        data = self.mount / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        (self.mount / "..data_tmp").symlink_to(revision.name)
        os.rename(self.mount / "..data_tmp", data)
        visible = self.mount / "policy.yaml"
        if not visible.is_symlink() and not visible.exists():
            visible.symlink_to(Path("..data") / "policy.yaml")
        if old is not None:
            shutil.rmtree(self.mount / old)

    def editor_write(self, policy_text: str) -> None:
        """Write a swap file beside it and rename it over ``policy.yaml`` (the symlink goes)."""
        swap = self.mount / ".policy.yaml.swp"
        swap.write_text(policy_text)
        os.replace(swap, self.mount / "policy.yaml")


VALID_V1 = policy_yaml(ping_expr="true", marker="v1")
VALID_V2 = policy_yaml(ping_expr="false", marker="v2")
INVALID_YAML = "routes: [unclosed\n"
UNKNOWN_KEY = policy_yaml(ping_expr="true", marker="v4").replace("action: block", "acton: block")
EDITOR = policy_yaml(ping_expr="true", marker="written by an editor")


@contextmanager
def busy_file(path: Path) -> Iterator[list[int]]:
    """Append a line every 50 ms, as a log file next to the policy does; yields the count."""
    stop = threading.Event()
    writes = [0]

    def run() -> None:
        with path.open("a") as f:
            while not stop.wait(BUSY_EVERY_S):
                f.write(f"{time.time()} something unrelated happened\n")
                f.flush()
                writes[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield writes
    finally:
        stop.set()
        thread.join(5)


def run_sequence(
    cm: ConfigMap, action: Callable[[], str], failures: Callable[[], int], error: Callable[[], str]
) -> None:
    """The issue's sequence; ``action`` is the current answer for ``GET /ping``."""
    assert action() == "ALLOW"
    cm.publish(VALID_V2)
    wait_for(lambda: action() == "BLOCK")

    cm.publish(INVALID_YAML)
    wait_for(lambda: failures() == 1)
    assert "invalid YAML" in error()
    cm.publish(UNKNOWN_KEY)
    wait_for(lambda: failures() == 2)
    assert "acton" in error()
    assert action() == "BLOCK", "both refused: the valid swap keeps deciding"

    cm.editor_write(EDITOR)
    wait_for(lambda: action() == "ALLOW")
    assert not (cm.mount / "policy.yaml").is_symlink()


def test_the_sequence_with_the_reloader_alone(tmp_path: Path) -> None:
    cm = ConfigMap(tmp_path / "config")
    cm.publish(VALID_V1)
    with (
        PolicyHotReloader(cm.mount / "policy.yaml") as r,
        busy_file(cm.mount / "pdp.log") as writes,
    ):
        assert r.debounce_ms == 500  # the default, as a server runs it
        # The fix itself: writes to an unrelated file beside the policy wake nothing (they used
        # to restart the debounce each time, so every reload waited for the 5 s fallback).
        events = r.stats.events
        start = writes[0]
        wait_for(lambda: writes[0] >= start + 20)
        assert r.stats.events == events, "writes to an unrelated file woke the reloader"
        run_sequence(
            cm,
            action=lambda: evaluate(r.current(), ping_ctx()).action,
            failures=lambda: r.stats.failures,
            error=lambda: r.last_error or "",
        )
        assert r.stats.reloads == 2 and r.last_error is None


def test_the_sequence_through_extauthz_serve_polled_every_50ms(short_tmp: Path) -> None:
    cm = ConfigMap(short_tmp / "config")
    cm.publish(VALID_V1)
    # The server's log (stdout: its own lines and the decision log) in the policy directory.
    server = ServerProcess(
        policy=cm.mount / "policy.yaml",
        unix_socket_path=short_tmp / "pdp.sock",
        http_port=free_port(),
        env={"HOT_RELOAD": "1"},
        workdir=cm.mount,
    )
    url = f"{server.http_url}/v1/evaluate"
    body = json.dumps({"request": {"method": "GET", "path": "/ping", "headers": {}}}).encode()

    def action() -> str:
        request = urllib.request.Request(
            url, data=body, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return str(json.loads(resp.read())["action"])
        except urllib.error.HTTPError as exc:  # a BLOCK answers 403 with the decision
            return str(json.loads(exc.read())["action"])

    def policy_health() -> dict[str, object]:
        return dict(http_json(f"{server.http_url}/health")["checks"]["policy"])

    refusals: list[str] = []

    def failures() -> int:
        error = policy_health()["lastReloadError"]
        if error and error not in refusals:
            refusals.append(str(error))
        return len(refusals)

    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(BUSY_EVERY_S):
            action()

    with server:
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            run_sequence(cm, action, failures, error=lambda: refusals[-1] if refusals else "")
        finally:
            stop.set()
            poller.join(10)
        assert policy_health()["lastReloadError"] is None
        log = server.log_tail(200)
    assert log.count("policy reload refused") == 2
    assert log.count("policy reloaded") == 2
