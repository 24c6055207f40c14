"""Hot reload in the real server (``extauthz serve`` subprocess, gRPC over its Unix socket)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reload_helpers import CheckLoop, http_json, http_text, policy_yaml, wait_for, write_atomic

from extauthz.devstack import free_port
from extauthz.devstack.server import ServerProcess


@pytest.fixture
def policy_file(short_tmp: Path) -> Path:
    path = short_tmp / "policy" / "policy.yaml"
    path.parent.mkdir()
    path.write_text(policy_yaml(ping_expr="true"))
    return path


def start(
    start_server: Callable[..., ServerProcess], policy: Path, socket_path: str, **env: str
) -> ServerProcess:
    return start_server(
        policy=policy,
        unix_socket_path=socket_path,
        http_port=free_port(),
        env={"HOT_RELOAD": "1", **env},
    )


def health(server: ServerProcess) -> Any:
    return http_json(f"{server.http_url}/health")


def test_a_rule_changed_under_traffic_is_decided_without_failed_checks(
    start_server: Callable[..., ServerProcess], policy_file: Path, socket_path: str
) -> None:
    server = start(start_server, policy_file, socket_path)
    before = health(server)["checks"]["policy"]
    with CheckLoop(socket_path) as loop:
        wait_for(lambda: len(loop.outcomes) >= 20)
        edited_at = time.monotonic()
        write_atomic(policy_file, policy_yaml(ping_expr="false"))
        wait_for(lambda: loop.first_after(edited_at, "BLOCK") is not None)
        seen = len(loop.outcomes)
        wait_for(lambda: len(loop.outcomes) >= seen + 50)  # more traffic after the swap
    switched_at = loop.first_after(edited_at, "BLOCK")
    assert switched_at is not None
    latency = switched_at - edited_at
    print(f"reload under traffic: new rule decided {latency * 1000:.0f} ms after the edit; "
          f"{len(loop.outcomes)} checks, {len(loop.errors)} failed")  # fmt: skip

    assert loop.errors == [], loop.errors[:5]
    outcomes = [o for _, o in loop.outcomes]
    assert set(outcomes) == {"ALLOW", "BLOCK:403:ping.gate"}
    first_block = outcomes.index("BLOCK:403:ping.gate")
    assert set(outcomes[first_block:]) == {"BLOCK:403:ping.gate"}, "no flapping after the swap"

    after = health(server)["checks"]["policy"]
    assert after["version"] != before["version"]
    assert after["loadedAt"] > before["loadedAt"]
    assert after["lastReloadError"] is None
    # Decisions name the policy that made them: the old one before the swap, the new one after.
    assert {v for o, v in loop.versions if o == "ALLOW"} <= {before["version"]}
    assert {v for o, v in loop.versions if o != "ALLOW"} == {after["version"]}
    metrics = http_text(f"{server.http_url}/metrics")
    assert 'contractshield_policy_reloads_total{result="success"} 1.0' in metrics
    assert f'version="{after["version"]}"' in metrics


def test_an_invalid_edit_keeps_the_old_policy_deciding_and_is_visible(
    start_server: Callable[..., ServerProcess], policy_file: Path, socket_path: str
) -> None:
    server = start(start_server, policy_file, socket_path, RELOAD_DEBOUNCE_MS="200")
    good_version = health(server)["checks"]["policy"]["version"]
    with CheckLoop(socket_path) as loop:
        policy_file.write_text(policy_yaml(ping_expr="false").replace("type: cel", "type: lua"))
        wait_for(lambda: health(server)["checks"]["policy"]["lastReloadError"] is not None)
        report = health(server)
        wait_for(lambda: len(loop.outcomes) >= 20)
    assert loop.errors == []
    assert {o for _, o in loop.outcomes} == {"ALLOW"}, "the last good policy keeps deciding"
    assert report["status"] == "degraded"
    assert report["checks"]["policy"]["version"] == good_version
    error = report["checks"]["policy"]["lastReloadError"]
    assert "policy.yaml" in error and "routes" in error and "type" in error
    assert "policy reload refused" in server.log_tail(50)
    metrics = http_text(f"{server.http_url}/metrics")
    assert 'contractshield_policy_reloads_total{result="failure"} 1.0' in metrics

    policy_file.write_text(policy_yaml(ping_expr="false"))
    wait_for(lambda: health(server)["checks"]["policy"]["lastReloadError"] is None)
    assert health(server)["status"] == "ok"
    with CheckLoop(socket_path) as loop:
        wait_for(lambda: len(loop.outcomes) >= 5)
    assert {o for _, o in loop.outcomes} == {"BLOCK:403:ping.gate"}


def test_sighup_reloads_when_watching_is_off(
    start_server: Callable[..., ServerProcess], policy_file: Path, socket_path: str
) -> None:
    server = start(start_server, policy_file, socket_path, HOT_RELOAD="0")
    with CheckLoop(socket_path) as loop:
        policy_file.write_text(policy_yaml(ping_expr="false"))
        time.sleep(1.5)  # three default debounce periods: no watcher, so nothing happens
        assert {o for _, o in loop.outcomes} == {"ALLOW"}
        hup_at = time.monotonic()
        server.signal(signal.SIGHUP)
        wait_for(lambda: loop.first_after(hup_at, "BLOCK") is not None)
    assert loop.errors == []
    assert server.process is not None and server.process.poll() is None
