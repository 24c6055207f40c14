"""Where Envoy's two ext_authz modes carry things differently, through a real Envoy in each.

gRPC mode has fields for the client address, the decision summary and the denial; HTTP mode
has headers (``docs/envoy.md``, "gRPC or HTTP mode"). The same cases run in both modes: a PDP
internal error fails closed, the decision reaches Envoy's dynamic metadata (its access log),
and a policy rule sees the address Envoy saw, never one a client sent.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _e2e_support import Stack, run_stack
from _faulty_pdp import FAULT_PATH
from test_envoy_e2e import call
from test_observability_e2e import wait_for

from extauthz.devstack.server import ServerProcess

FAULTY_PDP = Path(__file__).with_name("_faulty_pdp.py")

POLICY = """\
policyVersion: "0.1"
name: e2e-modes
defaults: {mode: enforce, unmatchedRouteAction: block}
routes:
  - id: open
    match: {method: GET, path: /open}
  - id: rollout                      # a rule being rolled out: hits, never blocks
    match: {method: GET, path: /rollout}
    mode: monitor
    rules:
      - {id: rollout.post-only, type: cel, config: {expr: 'request.method == "POST"'}}
  - id: local-only                   # passes only for the address Envoy's peer has
    match: {method: GET, path: /local}
    rules:
      - {id: client.local, type: cel, config: {expr: 'client.ip == "127.0.0.1"'}}
  - id: spoofed                      # would pass if a client's header were the address
    match: {method: GET, path: /spoofed}
    rules:
      - {id: client.spoofed, type: cel, config: {expr: 'client.ip == "10.9.9.9"'}}
  - id: fault
    match: {method: GET, path: FAULT_PATH}
""".replace("FAULT_PATH", FAULT_PATH)


class FaultyServer(ServerProcess):
    """``extauthz serve`` through ``_faulty_pdp.py``: a check of ``FAULT_PATH`` raises."""

    @property
    def argv(self) -> list[str]:
        argv = super().argv
        assert argv[1:3] == ["-m", "extauthz"], argv
        return [argv[0], str(FAULTY_PDP), *argv[3:]]


@pytest.fixture(scope="module", params=["grpc", "http"], ids=["grpc-mode", "http-mode"])
def modes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    policy = tmp_path_factory.mktemp("policy") / "modes.yaml"
    policy.write_text(POLICY)
    yield from run_stack(
        tcp=False, mode=request.param, policy=policy, access_log=True, server_class=FaultyServer
    )


def access_entry(stack: Stack, marker: str) -> dict[str, str]:
    """The ``name=value`` fields of the access-log line for request id ``marker``."""
    line = wait_for(lambda: next((ln for ln in stack.access_lines() if marker in ln), None), 10)
    assert line, f"no access-log line for {marker}: {stack.access_lines()[-3:]}"
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def rule_hits(field: str) -> list[str]:
    """gRPC mode's ``ruleHits`` is a list (logged as JSON), HTTP mode's header a comma list."""
    return json.loads(field) if field.startswith("[") else field.split(",")


def test_an_internal_error_fails_closed_and_names_its_error_id(modes: Stack) -> None:
    reached = modes.upstream.count
    marker = uuid.uuid4().hex
    reply = call(modes.url, "GET", FAULT_PATH, x_request_id=marker)
    line = wait_for(
        lambda: next((ln for ln in modes.server.log_tail(200).splitlines() if marker in ln), None),
        10,
    )
    assert line, modes.server.log_tail()
    found = re.search(r"internal error while deciding \(error id ([0-9a-f]{12}), request id", line)
    assert found, line
    error_id = found.group(1)
    assert "injected fault" in modes.server.log_tail(200)  # the traceback stays in the log
    assert modes.upstream.count == reached  # fail closed: the upstream never saw it
    if modes.mode == "grpc":
        # A denial like any other: the PDP's 500 and body, the error id to quote to an operator.
        assert reply.status == 500, reply.body
        body = reply.json()
        assert body["code"] == "INTERNAL_ERROR" and body["requestId"] == marker
        assert f"error id {error_id}" in body["error"] and "injected" not in body["error"]
    else:
        # Envoy reads a 5xx from an HTTP authorization server as the server failing, not as a
        # denial: status_on_error (503) and no body. The error id is in the PDP's log only.
        assert reply.status == 503, reply.body
        assert error_id.encode() not in reply.body
    assert call(modes.url, "GET", "/open").status == 200  # one check failed, not the PDP


def test_allow_monitor_and_block_reach_envoys_dynamic_metadata(modes: Stack) -> None:
    allow, monitor, block = (uuid.uuid4().hex for _ in range(3))
    assert call(modes.url, "GET", "/open", x_request_id=allow).status == 200
    seen = call(modes.url, "GET", "/rollout", x_request_id=monitor)
    assert seen.status == 200 and seen.json()["headers"]["x-contractshield-decision"] == "MONITOR"
    assert call(modes.url, "GET", "/nowhere", x_request_id=block).status == 403

    entry = access_entry(modes, allow)
    assert (entry["decision"], entry["action"]) == (allow, "ALLOW")
    assert (entry["status"], entry["hits"]) == ("-", "-")  # no summary for a plain ALLOW

    entry = access_entry(modes, monitor)
    assert (entry["decision"], entry["action"]) == (monitor, "MONITOR")
    assert entry["status"] == "200"  # the decision's own status (docs/policy.md, "Decisions")
    assert rule_hits(entry["hits"]) == ["rollout.post-only"]

    entry = access_entry(modes, block)
    assert entry["decision"] == block and entry["action"] == "BLOCK"


def test_a_rule_sees_envoys_peer_address_never_a_client_header(modes: Stack) -> None:
    spoof = {
        "x_forwarded_for": "10.9.9.9",
        "x_contractshield_client_address": "10.9.9.9",
        "x_real_ip": "10.9.9.9",
    }
    assert call(modes.url, "GET", "/local").status == 200
    local = call(modes.url, "GET", "/local", **spoof)
    assert local.status == 200, local.body  # client.ip stayed 127.0.0.1
    spoofed = call(modes.url, "GET", "/spoofed", **spoof)
    assert spoofed.status == 403 and spoofed.json()["ruleHits"] == ["client.spoofed"]
