"""Hot reload seen from the outside: HTTP through a real Envoy to ``extauthz serve``."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from reload_helpers import policy_yaml, wait_for, write_atomic

from extauthz.devstack import free_port
from extauthz.devstack.envoy import EnvoyProcess
from extauthz.devstack.server import ServerProcess
from extauthz.devstack.upstream import UpstreamThread


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_policy_edit_changes_envoys_answer_without_a_restart(
    start_server: Callable[..., ServerProcess],
    start_envoy: Callable[..., EnvoyProcess],
    upstream: UpstreamThread,
    short_tmp: Path,
    socket_path: str,
) -> None:
    policy = short_tmp / "policy.yaml"
    policy.write_text(policy_yaml(ping_expr="true"))
    server = start_server(policy=policy, unix_socket_path=socket_path, env={"HOT_RELOAD": "1"})
    envoy = start_envoy(
        listen_port=free_port(),
        admin_port=free_port(),
        pdp_socket=socket_path,
        upstream=upstream.address,
    )
    statuses: list[tuple[float, int]] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            statuses.append((time.monotonic(), get(f"{envoy.url}/ping")[0]))

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(statuses) >= 10)
        edited_at = time.monotonic()
        write_atomic(policy, policy_yaml(ping_expr="false"))
        wait_for(lambda: any(at > edited_at and s == 403 for at, s in statuses))
        seen = len(statuses)
        wait_for(lambda: len(statuses) >= seen + 10)
    finally:
        stop.set()
        thread.join(10)

    codes = [s for _, s in statuses]
    assert set(codes) == {200, 403}, f"only upstream answers and policy denials: {set(codes)}"
    assert set(codes[codes.index(403) :]) == {403}
    status, body = get(f"{envoy.url}/ping")
    assert status == 403 and json.loads(body)["ruleHits"] == ["ping.gate"]
    assert server.process is not None and server.process.poll() is None
