"""Decision log and tracing through a real Envoy: the ids an operator joins on must agree.

No OpenTelemetry collector installs here (not on PyPI nor in Debian), so the receiver is a
small real OTLP/HTTP endpoint in the test process: an HTTP server decoding
``ExportTraceServiceRequest`` protobufs (opentelemetry-proto) that both Envoy's OpenTelemetry
tracer and the PDP's OTLP exporter post to, over real sockets. Zipkin JSON (Envoy's B3
tracer) is accepted and kept too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from test_envoy_e2e import GOOD, activate, call, token

from extauthz.devstack import free_port
from extauthz.devstack.envoy import (
    HTTP_MODE_CONFIG,
    SIDECAR_CONFIG,
    EnvoyProcess,
    render_config,
)
from extauthz.devstack.server import DEMO_POLICY, ServerProcess
from extauthz.devstack.upstream import UpstreamThread


@dataclass
class SpanSeen:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


@dataclass
class Receiver:
    """A real OTLP/HTTP (and Zipkin JSON) receiver on a loopback port."""

    spans: list[SpanSeen] = field(default_factory=list)
    zipkin: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("content-length") or 0))
                out = b""  # Envoy's tracers send chunked bodies
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    out += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return out

            def do_POST(self) -> None:
                body = self.body()
                if self.path == "/v1/traces":
                    receiver.take_otlp(body)
                    self.send_response(200)
                    self.send_header("content-type", "application/x-protobuf")
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if self.path == "/api/v2/spans":
                    receiver.zipkin.extend(json.loads(body or b"[]"))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def take_otlp(self, body: bytes) -> None:
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            service = next(
                (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"),
                "",
            )
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attrs: dict[str, Any] = {}
                    for a in s.attributes:
                        v = a.value
                        kind = v.WhichOneof("value")
                        attrs[a.key] = (
                            [x.string_value for x in v.array_value.values]
                            if kind == "array_value"
                            else getattr(v, kind or "string_value")
                        )
                    self.spans.append(
                        SpanSeen(service, s.name, s.trace_id.hex(), s.span_id.hex(),
                                 s.parent_span_id.hex(), attrs)
                    )  # fmt: skip

    def stop(self) -> None:
        self.server.shutdown()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


@dataclass
class TracedStack:
    envoy: EnvoyProcess
    server: ServerProcess
    receiver: Receiver
    access_log: Path
    decision_log: Path
    mode: str = "grpc"

    def access_lines(self) -> list[str]:
        try:
            return self.access_log.read_text().splitlines()
        except OSError:
            return []

    def records(self) -> list[dict[str, Any]]:
        try:
            text = self.decision_log.read_text()
        except OSError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _stack(kind: str, mode: str = "grpc") -> Iterator[TracedStack]:
    workdir = Path(tempfile.mkdtemp(prefix="cs-obs-", dir="/tmp"))
    socket_path = str(workdir / "pdp.sock")
    http_mode = mode == "http"
    receiver = Receiver().start()
    upstream = UpstreamThread().start()
    decision_log = workdir / "decisions.jsonl"
    server = ServerProcess(
        policy=DEMO_POLICY,
        unix_socket_path=None if http_mode else socket_path,
        http_unix_socket_path=socket_path if http_mode else None,
        http_port=free_port(),
        workdir=workdir / "server",
        env={
            "DECISION_LOG": f"stdout,file:{decision_log}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "contractshield-test",
        },
    )
    envoy: EnvoyProcess | None = None
    access_log = workdir / "access.log"
    try:
        server.start()
        config = render_config(
            HTTP_MODE_CONFIG if http_mode else SIDECAR_CONFIG,
            listen_port=free_port(),
            admin_port=free_port(),
            pdp_socket=socket_path,
            upstream=upstream.address,
            health_interval="1s",
            timeout="1s",
            access_log=access_log,  # the decision id under the mode's key
            tracing=("127.0.0.1", receiver.port),
            tracer=kind,
        )
        envoy = EnvoyProcess(config, workdir=workdir / "envoy").start()
        yield TracedStack(envoy, server, receiver, access_log, decision_log, mode)
    finally:
        if envoy is not None:
            envoy.stop()
        server.kill()
        upstream.stop()
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module", params=["grpc", "http"], ids=["grpc-mode", "http-mode"])
def otlp_stack(request: pytest.FixtureRequest) -> Iterator[TracedStack]:
    """Envoy's OpenTelemetry tracer, in each ext_authz mode."""
    yield from _stack("otlp", request.param)


@pytest.fixture(scope="module")
def b3_stack() -> Iterator[TracedStack]:
    yield from _stack("zipkin")


def _access_entry(stack: TracedStack, marker: str) -> dict[str, str]:
    line = wait_for(lambda: next((ln for ln in stack.access_lines() if marker in ln), None), 10)
    assert line, f"no access-log line for {marker}: {stack.access_lines()[-3:]}"
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def test_a_block_yields_one_record_with_the_decision_id_envoy_logs(
    otlp_stack: TracedStack,
) -> None:
    marker = uuid.uuid4().hex
    secret_token = token("alice", "acme")
    reply = activate(
        otlp_stack.envoy.url,
        {**GOOD, "tenantId": "globex"},
        authorization=f"Bearer {secret_token}",
        x_request_id=marker,
    )
    assert reply.status == 403
    entry = _access_entry(otlp_stack, marker)
    decision_id = entry["decision"]
    assert decision_id not in ("", "-")
    records = wait_for(
        lambda: [r for r in otlp_stack.records() if r["decisionId"] == decision_id], 10
    )
    assert len(records) == 1, records
    record = records[0]
    assert record["action"] == "BLOCK" and record["statusCode"] == 403
    assert record["routeId"] == "license-activate"
    assert "tenant.binding" in [h["id"] for h in record["ruleHits"]]
    assert record["request"]["subject"] == "alice" and record["request"]["tenant"] == "acme"
    assert record["transport"] == {"grpc": "grpc", "http": "http_authz"}[otlp_stack.mode]
    assert "body" not in record["request"]  # no route opted in
    text = json.dumps(record)
    assert secret_token not in text and secret_token.rsplit(".", 1)[1] not in text
    assert "authorization" not in text.lower()
    # Tracing is on: the record names the trace Envoy started for this request.
    assert record["traceId"] == entry["trace"]


def test_the_check_span_joins_envoys_w3c_trace(otlp_stack: TracedStack) -> None:
    marker = uuid.uuid4().hex
    reply = call(otlp_stack.envoy.url, "GET", "/admin/users", x_request_id=marker)
    assert reply.status == 403
    trace_id = _access_entry(otlp_stack, marker)["trace"]
    assert len(trace_id) == 32

    def ours() -> list[SpanSeen]:
        return [
            s for s in otlp_stack.receiver.spans
            if s.service == "contractshield-test" and s.trace_id == trace_id
        ]  # fmt: skip

    spans = wait_for(lambda: [s for s in ours() if s.name == "ext_authz.check"])
    assert len(spans) == 1, otlp_stack.receiver.spans[-5:]
    check = spans[0]
    assert check.attributes["contractshield.action"] == "BLOCK"
    assert check.attributes["contractshield.route"] == "admin"
    assert check.attributes["contractshield.hit_ids"] == ["admin.denied"]
    assert check.attributes["contractshield.policy_version"].startswith("sha256:")
    assert check.parent_id  # a child of Envoy's ext_authz span, not a new root
    # Envoy exports its own spans of the same trace; ours hangs under one of them.
    envoy_spans = wait_for(
        lambda: [
            s for s in otlp_stack.receiver.spans if s.service == "envoy" and s.trace_id == trace_id
        ],
        20,
    )
    assert envoy_spans, "Envoy exported no span for the trace"
    assert check.parent_id in {s.span_id for s in envoy_spans}
    # Envoy samples the trace, so the check has a child span per engine phase that ran.
    phases = wait_for(lambda: [s for s in ours() if s.parent_id == check.span_id])
    names = {s.name for s in phases}
    assert {"contractshield.route", "contractshield.body", "contractshield.limits"} <= names
    assert len(ours()) == 1 + len(phases)  # nothing else of ours in the trace


def test_the_check_span_joins_envoys_b3_trace(b3_stack: TracedStack) -> None:
    marker = uuid.uuid4().hex
    reply = call(b3_stack.envoy.url, "GET", "/admin/users", x_request_id=marker)
    assert reply.status == 403
    trace_id = _access_entry(b3_stack, marker)["trace"]
    assert trace_id not in ("", "-")
    spans = wait_for(
        lambda: [
            s for s in b3_stack.receiver.spans
            if s.trace_id == trace_id.rjust(32, "0") and s.name == "ext_authz.check"
        ]
    )  # fmt: skip
    assert len(spans) == 1, (trace_id, [s.trace_id for s in b3_stack.receiver.spans][-5:])
    assert spans[0].parent_id
    children = wait_for(
        lambda: [s for s in b3_stack.receiver.spans if s.parent_id == spans[0].span_id]
    )
    assert "contractshield.route" in {s.name for s in children}  # sampled under B3 too
