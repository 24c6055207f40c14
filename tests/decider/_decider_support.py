"""One request, sent through every door of a real server and both embedded middlewares.

A case is described once (method, path, headers, body, JWT claims); each door gets it in its
own encoding: the ``CheckRequest`` the client builds (gRPC and ``POST /v1/check``), the
request Envoy's HTTP mode forwards (``/ext_authz/...`` with ``x-jwt-payload``), the context
JSON (``/v1/evaluate``, ``/evaluate``) and an ASGI scope or WSGI environ (the embedded
middleware). Each answer is read back as a ``Verdict`` so the doors can be compared.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from extauthz.client._request import build_check_request, describe
from extauthz.decision import Decision
from extauthz.envoy.request import AdapterOptions, check_request_to_context
from extauthz.middleware.asgi import EmbeddedASGIMiddleware
from extauthz.middleware.wsgi import EmbeddedWSGIMiddleware
from extauthz.server.app import Server

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_POLICY = REPO_ROOT / "policies" / "demo.yaml"
CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"
DOORS = ("grpc", "v1/check", "http_authz", "v1/evaluate", "evaluate", "asgi", "wsgi")


class FailingSource:
    """A ``PolicySource`` whose ``current()`` fails (a reloader gone wrong): the documented seam
    by which any door meets the decider's internal error. No compiled policy makes the decider
    raise: the engine turns its own faults into an ``engine.internalError`` decision."""

    last_error = "the policy store is gone"

    def current(self) -> Any:
        raise RuntimeError("policy store unreachable (test fault)")


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    claims: dict[str, Any] | None = None

    def check_request(self) -> CheckRequest:
        return build_check_request(self.input())

    def input(self) -> Any:
        headers = {"x-request-id": f"rid-{self.name}", **self.headers}
        return describe(
            self.method,
            self.path,
            headers=headers,
            body=self.body,
            identity=self.claims,
            client_ip="10.0.0.7",
            host="api.example",
            scheme="http",
        )


@dataclass(frozen=True)
class Verdict:
    """What a door said, in the terms every door can express."""

    action: str  # ALLOW/MONITOR or BLOCK
    status: int  # 200 when allowed
    hits: tuple[str, ...]  # a denial's rule ids; () when allowed
    route: str | None  # the matched route when allowed
    code: str | None = None  # a denial body's code (doors answering with a body only)

    @classmethod
    def of(cls, decision: Decision) -> Verdict:
        if decision.allowed:
            return cls(decision.action, 200, (), decision.metadata.route_id)
        return cls("BLOCK", decision.status_code, decision.rule_ids, None)

    def without_code(self) -> Verdict:
        return Verdict(self.action, self.status, self.hits, self.route)


def _denied(status: int, body: bytes) -> Verdict:
    data = json.loads(body)
    return Verdict("BLOCK", status, tuple(data["ruleHits"]), None, data["code"])


async def through_server(server: Server, socket: str, case: Case) -> dict[str, Verdict]:
    """The case through the server's five doors (gRPC, /v1/check, HTTP mode, the JSON APIs)."""
    req = case.check_request()
    out: dict[str, Verdict] = {}
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        stub = channel.unary_unary(
            CHECK_METHOD,
            request_serializer=CheckRequest.SerializeToString,
            response_deserializer=CheckResponse.FromString,
        )
        out["grpc"] = _from_check(await stub(req, timeout=10))
    base = f"http://127.0.0.1:{server.http_port}"
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/v1/check", data=req.SerializeToString()) as resp:
            out["v1/check"] = _from_check(CheckResponse.FromString(await resp.read()))
        headers = {"x-request-id": f"rid-{case.name}", "host": "api.example", **case.headers}
        if case.claims is not None:
            raw = json.dumps(case.claims).encode()
            headers["x-jwt-payload"] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        async with http.request(
            case.method, "/ext_authz" + case.path, data=case.body, headers=headers
        ) as resp:
            out["http_authz"] = _from_http_mode(resp.status, resp.headers, await resp.read())
        ctx = check_request_to_context(req, AdapterOptions.from_config(server.state.config))
        async with http.post("/v1/evaluate", json=ctx.to_dict()) as resp:
            assert resp.status == 200, await resp.text()
            out["v1/evaluate"] = Verdict.of(Decision.from_dict(await resp.json()))
        async with http.post("/evaluate", json={"context": ctx.to_dict()}) as resp:
            assert resp.status == 200, await resp.text()
            out["evaluate"] = Verdict.of(Decision.from_dict((await resp.json())["decision"]))
    return out


def _from_check(resp: CheckResponse) -> Verdict:
    if resp.status.code != 0:
        denied = resp.denied_response
        return _denied(denied.status.code, denied.body.encode())
    fields = resp.dynamic_metadata.fields
    route = fields["routeId"].string_value if "routeId" in fields else None
    return Verdict(fields["action"].string_value, 200, (), route)


def _from_http_mode(status: int, headers: Any, body: bytes) -> Verdict:
    if status != 200:
        return _denied(status, body)
    return Verdict(
        headers["x-contractshield-decision"], 200, (), headers.get("x-contractshield-route")
    )


def middlewares(policy: Any) -> Iterator[tuple[str, Embedded]]:
    """Both embedded middlewares on ``policy`` (no hot reload), each around an app that
    answers 200 and keeps the decision it was handed."""

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["state"]["contractshield_decision"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(environ["contractshield.decision"])
        start_response("200 OK", [])
        return [b""]

    seen: list[Decision] = []
    claims: list[Any] = [None]  # the current case's claims (as an app reads its own session)

    def identity(request: Any) -> Any:
        return claims[0]

    asgi = EmbeddedASGIMiddleware(asgi_app, policy=policy, hot_reload=False, identity=identity)
    wsgi = EmbeddedWSGIMiddleware(wsgi_app, policy=policy, hot_reload=False, identity=identity)
    yield "asgi", Embedded(asgi, seen, claims)
    yield "wsgi", Embedded(wsgi, seen, claims)


@dataclass
class Embedded:
    middleware: Any
    seen: list[Decision]
    claims: list[Any]


async def through_asgi(embedded: Embedded, case: Case) -> Verdict:
    middleware, seen = embedded.middleware, embedded.seen
    embedded.claims[0] = case.claims
    headers = {"x-request-id": f"rid-{case.name}", "host": "api.example", **case.headers}
    scope = {
        "type": "http",
        "method": case.method,
        "path": case.path,
        "raw_path": case.path.encode(),
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("10.0.0.7", 4000),
        "scheme": "http",
    }
    messages = [{"type": "http.request", "body": case.body or b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    before = len(seen)
    await middleware(scope, receive, send)
    status = sent[0]["status"]
    if status != 200:
        return _denied(status, sent[1]["body"])
    assert len(seen) == before + 1
    return Verdict.of(seen[-1])


def through_wsgi(embedded: Embedded, case: Case) -> Verdict:
    middleware, seen = embedded.middleware, embedded.seen
    embedded.claims[0] = case.claims
    body = case.body or b""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": case.method,
        "PATH_INFO": case.path,
        "QUERY_STRING": "",
        "REMOTE_ADDR": "10.0.0.7",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "HTTP_HOST": "api.example",
        "HTTP_X_REQUEST_ID": f"rid-{case.name}",
    }
    for key, value in case.headers.items():
        if key == "content-type":
            environ["CONTENT_TYPE"] = value
        else:
            environ["HTTP_" + key.upper().replace("-", "_")] = value
    answer: list[Any] = []
    before = len(seen)
    chunks = middleware(environ, lambda status, headers: answer.append(status))
    status = int(answer[0].split()[0])
    if status != 200:
        return _denied(status, b"".join(chunks))
    assert len(seen) == before + 1
    return Verdict.of(seen[-1])
