"""The pip-first quickstart's commands, as docs/quickstart.md gives them (issue 25 item 6).

``extauthz policy demo-path`` (and a file beside it), ``extauthz serve``, ``extauthz
envoy-config --demo-jwt`` and ``extauthz token`` in subprocesses, a real Envoy, an echo
upstream: the token the command mints is the one the demo Envoy accepts, and the policy sees
its claims.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from extauthz.devstack import free_port
from extauthz.devstack.envoy import EnvoyProcess
from extauthz.devstack.server import ServerProcess
from extauthz.devstack.upstream import UpstreamThread


def extauthz(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "extauthz", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def call(url: str, token: str | None = None, body: Any = None) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else {}


@pytest.fixture
def envoy_url(start_server: Callable[..., ServerProcess], short_tmp: Path) -> Iterator[str]:
    socket = short_tmp / "pdp.sock"
    policy = Path(extauthz("policy", "demo-path"))
    assert policy.name == "demo.yaml" and policy.is_file()
    start_server(policy=policy, unix_socket_path=socket, http_port=free_port())
    with UpstreamThread() as upstream:
        listen, admin = free_port(), free_port()
        rendered = extauthz(
            "envoy-config", "--socket", str(socket), "--upstream", f"127.0.0.1:{upstream.port}",
            "--demo-jwt", "--listen-port", str(listen), "--admin-port", str(admin),
        )  # fmt: skip
        with EnvoyProcess(yaml.safe_load(rendered), workdir=short_tmp / "envoy") as envoy:
            yield envoy.url


def test_a_minted_token_passes_the_demo_envoy_and_reaches_the_policy(envoy_url: str) -> None:
    url = f"{envoy_url}/api/v1/licenses/activate"
    example = Path(extauthz("policy", "demo-path", "examples/clean-activation.json"))
    clean = json.loads(json.loads(example.read_text())["request"]["body"]["raw"])
    token = extauthz("token", "--sub", "alice", "--tenant", clean["tenantId"])
    status, _ = call(url, token, clean)
    assert status == 200
    status, body = call(url, None, clean)
    assert (status, body["ruleHits"]) == (403, ["auth.required", "tenant.binding"])
    other = extauthz("token", "--tenant", "globex")
    status, body = call(url, other, clean)
    assert (status, body["ruleHits"]) == (403, ["tenant.binding"])
    expired = extauthz("token", "--tenant", clean["tenantId"], "--claim", "exp=1")
    status, _ = call(url, expired, clean)
    assert status == 401  # Envoy's jwt_authn refuses it before the PDP is asked


def test_the_example_contexts_and_cases_are_reachable_by_name() -> None:
    policy = extauthz("policy", "demo-path")
    attack = extauthz("policy", "demo-path", "examples/attack-activation.json")
    decision = json.loads(extauthz("evaluate", "--policy", policy, "--context", attack))
    assert decision["action"] == "BLOCK"
    out = extauthz("test", "--policy", policy, extauthz("policy", "demo-path", "tests"))
    assert out.splitlines()[-1].endswith("0 failed")
    missing = subprocess.run(
        [sys.executable, "-m", "extauthz", "policy", "demo-path", "examples/nope.json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "examples/clean-activation.json" in missing.stderr  # it lists what is shipped
