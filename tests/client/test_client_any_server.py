"""The client speaks plain ext_authz v3: it works against an ext_authz server that is not
ContractShield. A minimal servicer (the one place a non-ContractShield server is allowed)
answers like a typical third-party PDP: OK with no decision headers, or a denial."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from extauthz.client import ContractShieldClient


class ThirdPartyPdp(external_auth_pb2_grpc.AuthorizationServicer):
    """Allows GET, denies everything else with 401 and a plain-text body."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def Check(self, request: Any, context: Any) -> Any:
        self.calls.append(request)
        resp = external_auth_pb2.CheckResponse()
        if request.attributes.request.http.method == "GET":
            resp.status.code = 0
        else:
            resp.status.code = 7
            resp.denied_response.status.code = 401
            resp.denied_response.body = "login first"
        return resp


@pytest.fixture
def third_party() -> Iterator[tuple[ThirdPartyPdp, str]]:
    d = Path(tempfile.mkdtemp(prefix="cs-3p-", dir="/tmp"))
    servicer = ThirdPartyPdp()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix://{d}/pdp.sock")
    server.start()
    try:
        yield servicer, f"unix://{d}/pdp.sock"
    finally:
        server.stop(0).wait(5)


def test_third_party_answers_map_to_decisions_and_are_never_cached(
    third_party: tuple[ThirdPartyPdp, str],
) -> None:
    servicer, target = third_party
    with ContractShieldClient(target, timeout_ms=2000) as client:
        for _ in range(2):
            ok = client.evaluate("GET", "/anything")
            assert ok.action == "ALLOW" and ok.metadata.policy_version is None
        denied = client.evaluate("POST", "/anything", body=b"x")
        assert (denied.action, denied.status_code, denied.reason) == ("BLOCK", 401, "login first")
        # We cannot know what a foreign PDP's answer depends on: every call reaches it.
        assert len(servicer.calls) == 3
        assert client.stats().size == 0
