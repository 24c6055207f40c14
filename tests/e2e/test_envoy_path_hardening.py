"""The shipped Envoy config's path hardening, through a real Envoy: one path for all parties.

``normalize_path`` and ``merge_slashes`` make the route table, the PDP and the upstream see
the same resolved path; ``path_with_escaped_slashes_action: REJECT_REQUEST`` has Envoy refuse
``%2F``/``%5C`` itself. The engine refuses such paths too (``request.path.ambiguous``): this is
defence in depth, and what these tests assert is that the hardening is live in the config.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import yaml

from extauthz.devstack.envoy import CENTRALIZED_CONFIG, ENVOY_DIR, SIDECAR_CONFIG

HARDENING = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "REJECT_REQUEST",
}


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """A GET with the path exactly as given (urllib would not send every form below)."""
    request = f"GET {path} HTTP/1.1\r\nhost: api.example\r\nconnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def pdp_answer(body: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and "ruleHits" in answer else None


@pytest.mark.parametrize(
    "config",
    sorted({SIDECAR_CONFIG, CENTRALIZED_CONFIG, *ENVOY_DIR.glob("*.yaml")}),
    ids=lambda p: p.name,
)
def test_shipped_configs_carry_the_hardening(config) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(config.read_text())
    hcm = data["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert {k: hcm["typed_config"].get(k) for k in HARDENING} == HARDENING


@pytest.mark.parametrize("path", ["/healthz%2F..%2Fadmin%2Fusers", "/admin%2fusers", "/x%5Cy"])
def test_encoded_slashes_are_refused_by_envoy_before_the_pdp(stack, path: str) -> None:  # type: ignore[no-untyped-def]
    status, body = raw_get(stack.envoy.listen_port, path)
    assert status == 400, body
    assert pdp_answer(body) is None, "Envoy itself answers; the PDP is never asked"


@pytest.mark.parametrize(
    "path",
    ["//admin//users", "/healthz/../admin/users", "/./admin/./users", "/admin/users/x/.."],
)
def test_dot_segments_and_double_slashes_reach_the_pdp_resolved(stack, path: str) -> None:  # type: ignore[no-untyped-def]
    """Without the hardening the engine would refuse these as ambiguous; with it, the PDP sees
    ``/admin/users`` and the admin rule (not the canonicaliser) decides."""
    status, body = raw_get(stack.envoy.listen_port, path)
    answer = pdp_answer(body)
    assert status == 403 and answer is not None, (status, body)
    assert "admin.denied" in answer["ruleHits"], answer
    assert "request.path.ambiguous" not in answer["ruleHits"], answer


def test_the_upstream_sees_the_resolved_path(stack) -> None:  # type: ignore[no-untyped-def]
    status, body = raw_get(stack.envoy.listen_port, "//healthz/./")
    assert status == 200, body
    assert json.loads(body)["path"] == "/healthz/"
