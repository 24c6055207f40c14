"""A denial of a gRPC request as a gRPC status (``envoy.grpc_status``), in both encoders."""

from __future__ import annotations

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from extauthz.decision import BLOCK, Decision, DecisionMetadata, RuleHit
from extauthz.envoy import grpc_status as gs
from extauthz.envoy.http_response import decision_to_http
from extauthz.envoy.response import decision_to_check_bytes, decision_to_check_response


def block(status: int, hit: str, message: str = "why") -> Decision:
    return Decision(
        BLOCK,
        status,
        f"{hit}: {message}",
        (RuleHit(hit, "high", message),),
        metadata=DecisionMetadata("r", "enforce", "sha256:x", "rid-1"),
    )


@pytest.mark.parametrize(
    ("status", "hit", "code"),
    [
        (403, "contract.protovalidate", gs.INVALID_ARGUMENT),
        (403, "contract.unknownField", gs.INVALID_ARGUMENT),
        (403, "contract.grpcStreaming", gs.PERMISSION_DENIED),
        (400, "request.body.malformed", gs.INVALID_ARGUMENT),
        (415, "contract.mediaType", gs.INVALID_ARGUMENT),
        (403, "limit.json.depth", gs.INVALID_ARGUMENT),
        (413, "limit.body.max", gs.RESOURCE_EXHAUSTED),
        (403, "tenant.binding", gs.PERMISSION_DENIED),
        (403, "vulnerability.pathTraversal", gs.PERMISSION_DENIED),
        (403, "route.unmatched", gs.PERMISSION_DENIED),
        (500, "engine.internalError", gs.INTERNAL),
        (503, "webhook.stripe.unavailable", gs.UNAVAILABLE),
    ],
)
def test_status_codes(status: int, hit: str, code: int) -> None:
    assert gs.status_code(block(status, hit)) == code


def test_is_grpc() -> None:
    for ct in ("application/grpc", "application/grpc+proto", "Application/gRPC-Web-Text"):
        assert gs.is_grpc(ct)
    for ct in (None, "", "application/json", "application/gr"):
        assert not gs.is_grpc(ct)


def test_the_message_is_percent_encoded_and_bounded() -> None:
    assert gs.percent_encode("a b%c\n\u00e9") == "a b%25c%0A%C3%A9"
    d = block(403, "tenant.binding", "x" * 2000)
    headers, text = gs.grpc_denial(d)
    assert len(text) == gs.MAX_MESSAGE and dict(headers)["grpc-status"] == "7"


def test_grpc_mode_denial_is_a_trailers_only_grpc_response() -> None:
    d = block(403, "contract.protovalidate", "id: string.uuid: must be a valid UUID")
    for response in (
        decision_to_check_response(d, grpc=True),
        CheckResponse.FromString(decision_to_check_bytes(d, grpc=True)),
    ):
        denied = response.denied_response
        assert (denied.status.code, denied.body) == (200, "")
        headers = {h.header.key: h.header.value for h in denied.headers}
        assert headers["content-type"] == "application/grpc"
        assert headers["grpc-status"] == "3"
        assert headers["grpc-message"] == d.reason
        assert response.status.code == 7  # still a denial to Envoy
    plain = decision_to_check_response(d).denied_response
    assert plain.status.code == 403 and "grpc-status" not in {h.header.key for h in plain.headers}


def test_http_mode_denial_keeps_its_status_and_carries_the_grpc_headers() -> None:
    d = block(403, "tenant.binding", "the order's tenant must be the caller's")
    out = decision_to_http(d, grpc=True)
    headers = dict(out.headers)
    assert out.status == 403  # a 200 would mean "allowed" to Envoy's HTTP mode
    assert (headers["grpc-status"], out.body) == ("7", d.reason.encode())
    assert headers["grpc-message"] == gs.percent_encode(d.reason)
    assert "grpc-status" not in dict(decision_to_http(d).headers)
