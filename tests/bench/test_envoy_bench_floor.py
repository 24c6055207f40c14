"""bench/envoy_bench.py's own-stack HTTP floor (floor-http-own) answers the bench's request with
exactly the bytes the PDP answers it with, so that Envoy does the same work on both answers and
floor-http-own and extauthz-http-uds differ only by the PDP's decision. Both are the processes
the bench starts: ``extauthz serve`` and the no-op on our own ``HttpServer``."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

from bench import envoy_bench


def forwarded_request() -> bytes:
    """The bench's request as Envoy's HTTP mode forwards it to the PDP (``envoy-http.yaml``,
    the headers Envoy 1.x sends), with the floor's decision id as Envoy's ``x-request-id``."""
    body = json.dumps(envoy_bench.BODY).encode()
    headers = {
        "host": "127.0.0.1:8080",
        "content-length": str(len(body)),
        "x-envoy-auth-partial-body": "false",
        "content-type": "application/json",
        "x-forwarded-proto": "http",
        # jwt_authn's forward_payload_header: the verified token's payload segment
        "x-jwt-payload": envoy_bench.demo_token().split(".")[1],
        "x-request-id": envoy_bench.FLOOR_DECISION_ID,
        "x-contractshield-client-address": "127.0.0.1",
        "x-contractshield-content-length": str(len(body)),
        "x-envoy-internal": "true",
        "x-envoy-expected-rq-timeout-ms": "200",
        "connection": "close",  # the answer ends with the connection
    }
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST /ext_authz/api/v1/licenses/activate HTTP/1.1\r\n{head}\r\n".encode() + body


def answer_lines(socket_path: str) -> list[str]:
    """The answer to ``forwarded_request()`` on ``socket_path``, line by line, without the
    date (the one line that differs from one second to the next)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(socket_path)
        sock.sendall(forwarded_request())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode()
    return [line for line in text.split("\r\n") if not re.match(r"(?i)date:", line)]


def test_own_floor_answers_the_benchs_request_as_the_pdp_does(short_tmp: Path) -> None:
    pdp_socket, floor_socket = str(short_tmp / "pdp.sock"), str(short_tmp / "floor.sock")
    with envoy_bench.extauthz_server(short_tmp, pdp_socket, None, http=True):
        pdp = answer_lines(pdp_socket)
    with envoy_bench.noop_server(floor_socket, None, "asyncio", own=True):
        floor = answer_lines(floor_socket)
    assert pdp[0] == "HTTP/1.1 200 OK"
    assert "x-contractshield-decision: ALLOW" in pdp
    assert f"x-contractshield-route: {envoy_bench.ROUTE_ID}" in pdp
    assert floor == pdp


def test_floor_http_own_runs_between_the_http_floor_and_the_pdp() -> None:
    cases = envoy_bench.cases(["uds", "http-uds"], with_grpcio=True)
    assert [f"{kind}-{transport}" for kind, transport in cases] == [
        "floor-uds",
        "extauthz-uds",
        "grpcio-uds",
        "floor-http-uds",
        "floor-http-own",
        "extauthz-http-uds",
    ]
