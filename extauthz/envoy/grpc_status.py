"""A denial as a gRPC status, for gRPC and gRPC-Web requests: both response encoders call it.

Envoy answers a denied gRPC request with a trailers-only gRPC response (``:status 200``) of
its own making: without help its ``grpc-status`` is derived from the denial's HTTP status
(403 -> PERMISSION_DENIED, but 400 -> INTERNAL) and ``grpc-message`` is the JSON body. The
denial's headers are applied on top of that response, so these set what the client sees:

    contract, body or limit hits (``contract.*``, ``request.*``, ``limit.*``) -> 3 INVALID_ARGUMENT
      (but a streaming method the route refuses, ``contract.grpcStreaming``: 7 PERMISSION_DENIED)
    413 (a body over the limit)                                          -> 8 RESOURCE_EXHAUSTED
    503 (a webhook check could not run)                                  -> 14 UNAVAILABLE
    500 (the engine failed, fail closed)                                 -> 13 INTERNAL
    anything else (CEL rules, vulnerability detectors, unmatched route)  -> 7 PERMISSION_DENIED

``grpc-message`` is the decision's reason (its first blocking hit), percent-encoded as the
gRPC spec asks.

How each mode carries it (checked against real Envoy, ``tests/e2e/test_grpc_e2e.py``):

- gRPC mode: the denial is a gRPC trailers-only response itself (``:status 200``,
  ``content-type: application/grpc``, the two headers, no body). Envoy passes it on as it is,
  to gRPC clients and, through the grpc_web filter, to gRPC-Web clients.
- HTTP mode: an answer of 200 means "allowed" to Envoy, so the denial keeps its HTTP status
  and carries the message as a ``text/plain`` body and the two headers. gRPC clients get the
  status and message; for gRPC-Web clients Envoy's grpc_web filter rewrites ``grpc-status``
  from the HTTP status (403 -> PERMISSION_DENIED, 400 -> INTERNAL), so use gRPC mode for
  gRPC-Web.
"""

from __future__ import annotations

from ..decision import Decision
from ..engine.checks.contract import GRPC_STREAMING

INVALID_ARGUMENT = 3
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
INTERNAL = 13
UNAVAILABLE = 14

GRPC_CONTENT_TYPE = "application/grpc"
HEADER_STATUS = "grpc-status"
HEADER_MESSAGE = "grpc-message"
_CONTRACT_PREFIXES = ("contract.", "request.", "limit.")
_BY_HTTP_STATUS = {413: RESOURCE_EXHAUSTED, 500: INTERNAL, 503: UNAVAILABLE}
MAX_MESSAGE = 400  # characters of the reason: a line a client logs, not a report


def is_grpc(content_type: str | None) -> bool:
    """Whether the checked request is gRPC or gRPC-Web (``application/grpc*``)."""
    return bool(content_type) and content_type.lstrip()[:16].lower() == "application/grpc"


def status_code(decision: Decision) -> int:
    """The gRPC status code a denial maps to."""
    by_http = _BY_HTTP_STATUS.get(decision.status_code)
    if by_http is not None:
        return by_http
    if decision.status_code in (400, 415):
        return INVALID_ARGUMENT
    first = decision.reason.partition(":")[0]  # a BLOCK's reason starts with its first hit id
    if first == GRPC_STREAMING:  # the policy's choice about a method, not a bad message
        return PERMISSION_DENIED
    return INVALID_ARGUMENT if first.startswith(_CONTRACT_PREFIXES) else PERMISSION_DENIED


def percent_encode(text: str) -> str:
    """``grpc-message`` encoding: UTF-8, bytes outside printable ASCII and ``%`` as ``%XX``."""
    out = []
    for byte in text.encode("utf-8"):
        out.append(chr(byte) if 0x20 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02X}")
    return "".join(out)


def message(decision: Decision) -> str:
    """The denial's text for a gRPC client: its reason, which names the first blocking hit."""
    return (decision.reason or "request blocked by policy")[:MAX_MESSAGE]


def grpc_denial(decision: Decision) -> tuple[tuple[tuple[str, str], ...], str]:
    """(headers, body) of a denial for a gRPC request: ``grpc-status`` and ``grpc-message``,
    and the message as the body, which Envoy puts in the ``grpc-message`` it writes itself."""
    text = message(decision)
    headers = ((HEADER_STATUS, str(status_code(decision))), (HEADER_MESSAGE, percent_encode(text)))
    return headers, text
