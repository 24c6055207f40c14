"""The decision log: what a record holds and never holds, sampling, redaction, the sinks."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from extauthz._exceptions import InvalidConfig
from extauthz.context import RequestContext
from extauthz.decision import ALLOW, BLOCK, MONITOR, Decision, DecisionMetadata, RuleHit
from extauthz.devstack import free_port
from extauthz.server.config import ServerConfig
from extauthz.server.decision_log import (
    DecisionLog,
    DecisionLogSettings,
    parse_redactions,
    redact,
)
from extauthz.server.log_sinks import HttpBatchHandler, SinkSpec, parse_sinks
from extauthz.server.metrics import Metrics

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNob3VsZC1uZXZlci1sZWFr"


def _ctx(**body: Any) -> RequestContext:
    return RequestContext.from_dict(
        {
            "id": "rid-1",
            "request": {
                "method": "POST",
                "path": "/api/v1/pay",
                "query": {"access_token": TOKEN},
                "headers": {
                    "authorization": f"Bearer {TOKEN}",
                    "cookie": "session=s3cr3t",
                    "stripe-signature": "t=1,v1=deadbeef",
                    "user-agent": "curl/8",
                    "x-user-email": "alice@example.com",
                },
                "body": {"present": True, "json": {"sample": body or {"amount": 5}}},
            },
            "identity": {"authenticated": True, "subject": "alice", "tenant": "acme"},
            "client": {"ip": "10.0.0.7"},
        }
    )


def _decision(action: str = BLOCK, route: str | None = "pay") -> Decision:
    hits = () if action == ALLOW else (RuleHit("tenant.binding", "high", "wrong tenant"),)
    return Decision(
        action,
        403 if action == BLOCK else 200,
        "r",
        hits,
        metadata=DecisionMetadata(route, "enforce", "sha256:abc", "rid-1"),
    )


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(str(record.msg).split("\n"))


def _log(handler: logging.Handler, **config: Any) -> DecisionLog:
    settings = DecisionLogSettings.from_config(ServerConfig(http_port=1, **config))
    return DecisionLog(settings, handlers=[handler])


def _records(log: DecisionLog, handler: ListHandler) -> list[dict[str, Any]]:
    log.flush()
    return [json.loads(line) for line in handler.lines]


def test_a_record_has_the_summary_and_never_a_credential() -> None:
    handler = ListHandler()
    log = _log(handler, decision_log_headers="user-agent,x-user-email")
    log.submit(_decision(), _ctx(card={"number": "4242"}), 0.0012, "grpc")
    (record,) = _records(log, handler)
    assert record["decisionId"] == "rid-1"
    assert (record["action"], record["statusCode"], record["routeId"]) == (BLOCK, 403, "pay")
    assert record["policyVersion"] == "sha256:abc" and record["transport"] == "grpc"
    assert record["ruleHits"] == [
        {"id": "tenant.binding", "severity": "high", "message": "wrong tenant"}
    ]
    assert record["latencyMs"] == 1.2 and ":" in record["worker"]
    req = record["request"]
    assert req == {
        "method": "POST",
        "path": "/api/v1/pay",
        "headers": {"user-agent": "curl/8", "x-user-email": "alice@example.com"},
        "clientIp": "10.0.0.7",
        "subject": "alice",
        "tenant": "acme",
    }  # no query, no credential header, no body
    line = handler.lines[0]
    for secret in (TOKEN, "s3cr3t", "deadbeef", "4242", TOKEN.rsplit(".", 1)[1]):
        assert secret not in line
    log.close()


def test_an_opted_in_route_logs_its_body_with_secret_keys_masked() -> None:
    handler = ListHandler()
    log = _log(handler, decision_log_body_routes="pay")
    log.submit(
        _decision(),
        _ctx(amount=5, password="hunter2", card={"cvc": "123"}, meta={"cvv": "1"}),
        0,
        "http",
    )
    log.submit(_decision(route="other"), _ctx(amount=6), 0, "http")
    first, second = _records(log, handler)
    assert first["request"]["body"] == {
        "amount": 5,
        "password": "***",
        "card": "***",
        "meta": {"cvv": "***"},
    }
    assert "body" not in second["request"]
    assert "hunter2" not in handler.lines[0]
    log.close()


def test_a_body_the_fast_encoder_refuses_is_still_one_valid_masked_line() -> None:
    """orjson refuses integers past 64 bits and lone surrogates: the stdlib encoder takes over."""
    handler = ListHandler()
    log = _log(handler, decision_log_body_routes="pay")
    log.submit(_decision(), _ctx(big=2**70, odd="\ud800x", password="hunter2"), 0.001, "grpc")
    log.submit(_decision(), _ctx(amount=5, note="é"), 0.001, "grpc")
    log.flush()
    log.close()
    assert len(handler.lines) == 2
    first, second = (json.loads(line) for line in handler.lines)
    body = first["request"]["body"]
    assert body["big"] == 2**70 and body["odd"] == "\ud800x" and body["password"] == "***"
    assert "hunter2" not in handler.lines[0]
    assert second["request"]["body"] == {"amount": 5, "note": "é"}
    assert "é" in handler.lines[1]  # the usual path writes UTF-8, not \u escapes


def test_blocks_and_monitors_are_always_logged_allows_only_when_sampled() -> None:
    handler = ListHandler()
    log = _log(handler)
    for action in (ALLOW, BLOCK, MONITOR, ALLOW):
        log.submit(_decision(action), _ctx(), 0, "grpc")
    assert [r["action"] for r in _records(log, handler)] == [BLOCK, MONITOR]
    every = ListHandler()
    log2 = _log(every, decision_log_sample_allow=1.0)
    for _ in range(3):
        log2.submit(_decision(ALLOW), _ctx(), 0, "grpc")
    assert len(_records(log2, every)) == 3
    some = ListHandler()
    log3 = _log(some, decision_log_sample_allow=0.5)
    for _ in range(400):
        log3.submit(_decision(ALLOW), _ctx(), 0, "grpc")
    assert 120 < len(_records(log3, some)) < 280  # ~200: sampled, neither none nor all
    for log_ in (log, log2, log3):
        log_.close()


def test_redactions_mask_hash_and_drop_by_path() -> None:
    rules = parse_redactions(
        "request.headers.x-user-email=hash, request.subject=mask, request.clientIp=drop,"
        "ruleHits.*.message=mask, request.body.items.*.sku=drop"
    )
    record = {
        "request": {
            "headers": {"x-user-email": "alice@example.com"},
            "subject": "alice",
            "clientIp": "10.0.0.7",
            "body": {"items": [{"sku": "a", "n": 1}, {"sku": "b", "n": 2}]},
        },
        "ruleHits": [{"id": "x", "message": "m1"}, {"id": "y", "message": "m2"}],
    }
    redact(record, rules)
    assert record["request"]["headers"]["x-user-email"].startswith("sha256:")
    assert "alice" not in json.dumps(record)
    assert record["request"]["subject"] == "***" and "clientIp" not in record["request"]
    assert record["ruleHits"] == [{"id": "x", "message": "***"}, {"id": "y", "message": "***"}]
    assert record["request"]["body"] == {"items": [{"n": 1}, {"n": 2}]}
    # the same value hashes the same way: records stay joinable without the value
    again = {"request": {"headers": {"x-user-email": "alice@example.com"}}}
    redact(again, rules)
    assert again["request"]["headers"] == record["request"]["headers"]


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("decision_log_headers", "user-agent,Authorization", "never logged"),
        ("decision_log_headers", "x-hub-signature-256", "never logged"),
        ("decision_log_headers", "x-api-key", "never logged"),
        ("decision_log", "syslog", "is not a sink"),
        ("decision_log", "file:", "needs a path"),
        ("decision_log_redact", "request.subject=scramble", "PATH=mask|hash|drop"),
        ("decision_log_sample_allow", "1.5", "between 0 and 1"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(
    setting: str, value: str, reason: str
) -> None:
    with pytest.raises(InvalidConfig, match=reason):
        ServerConfig.resolve(environ={"HTTP_PORT": "1", setting.upper(): value})


def test_sink_lists_parse() -> None:
    assert parse_sinks("off") == ()
    assert parse_sinks("stdout, file:/tmp/x.jsonl,https://h/i") == (
        SinkSpec("stdout"),
        SinkSpec("file", "/tmp/x.jsonl"),
        SinkSpec("http", "https://h/i"),
    )
    assert ServerConfig(http_port=1).decision_log == "stdout"  # on by default, to stdout


def test_the_file_sink_rotates_and_every_line_is_a_record(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    settings = DecisionLogSettings.from_config(
        ServerConfig(http_port=1, decision_log=f"file:{path}", decision_log_file_max_bytes=2000,
                     decision_log_file_backups=3)
    )  # fmt: skip
    log = DecisionLog(settings)
    for _ in range(40):
        log.submit(_decision(), _ctx(), 0, "grpc")
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == [
        "decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2", "decisions.jsonl.3"
    ]  # fmt: skip
    for f in files:
        assert f.stat().st_size <= 2000
        for line in f.read_text().splitlines():
            assert json.loads(line)["decisionId"] == "rid-1"


class SlowHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.gate.wait(10)
        self.count += len(str(record.msg).split("\n"))


def test_a_stuck_sink_never_blocks_a_submit_and_drops_are_counted() -> None:
    slow = SlowHandler()
    metrics = Metrics()
    settings = DecisionLogSettings.from_config(ServerConfig(http_port=1, decision_log_queue=5))
    log = DecisionLog(settings, metrics=metrics, handlers=[slow])
    for _ in range(50):
        log.submit(_decision(), _ctx(), 0, "grpc")  # returns at once although the sink hangs
    assert log.dropped >= 40  # 5 queued, at most 5 more in the batch being written
    assert 'contractshield_log_records_dropped_total{sink="queue"}' in metrics.exposition().decode()
    slow.gate.set()
    log.close()
    assert slow.count + log.dropped == 50


# --- the HTTP batch sink against a real receiver --------------------------------------------


class Receiver:
    def __init__(self, port: int) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["content-length"])))
                assert self.headers["content-type"] == "application/x-ndjson"
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def lines(self) -> list[str]:
        return [ln for body in self.bodies for ln in body.decode().splitlines()]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_port() -> Iterator[int]:
    yield free_port()


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _record(i: int) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, "", 0, json.dumps({"n": i}), None, None)


def test_http_sink_batches_to_a_real_receiver(receiver_port: int) -> None:
    receiver = Receiver(receiver_port)
    handler = HttpBatchHandler(f"http://127.0.0.1:{receiver_port}/ingest", batch=10,
                               flush_seconds=0.1)  # fmt: skip
    try:
        for i in range(25):
            handler.emit(_record(i))
        assert _wait(lambda: len(receiver.lines) == 25)
        assert [json.loads(ln)["n"] for ln in receiver.lines] == list(range(25))
        assert len(receiver.bodies) >= 3 and handler.dropped == 0
    finally:
        handler.close()
        receiver.stop()


def test_http_sink_emit_never_waits_for_the_network() -> None:
    """A receiver that accepts the connection and never answers blocks the sender thread only.

    Not timed: the peer is a real listening socket that never accepts, the sender's POST waits
    on it for up to 300 s, and 100 emits must all return while that POST is still outstanding
    (nothing sent, nothing failed yet). The 60 s wait is a hang guard, far below the 300 s.
    """
    peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    peer.bind(("127.0.0.1", 0))
    peer.listen(8)
    handler = HttpBatchHandler(
        f"http://127.0.0.1:{peer.getsockname()[1]}/ingest",
        batch=5,
        queue_size=20,
        flush_seconds=0.05,
        timeout_seconds=300,
    )
    try:
        for i in range(5):  # one batch: the sender takes it and connects
            handler.emit(_record(i))
        readable, _, _ = select.select([peer], [], [], 60)
        assert readable == [peer], "the sender never connected"
        assert _wait(lambda: handler.queued == 0)  # the batch is in flight, on the blocked peer
        done = threading.Event()

        def emit_more() -> None:
            for i in range(5, 105):
                handler.emit(_record(i))
            done.set()

        threading.Thread(target=emit_more, daemon=True).start()
        assert done.wait(60), "emit waited for the network"
        assert (handler.sent, handler.failures) == (0, 0)  # the first POST is still waiting
        assert (handler.queued, handler.dropped) == (20, 80)  # bounded: the oldest dropped
    finally:
        peer.close()  # resets the pending connection: the sender's POST fails and it can stop
        handler.close()


def test_http_sink_survives_its_receiver_being_down_and_counts_drops(receiver_port: int) -> None:
    dropped: list[int] = []
    handler = HttpBatchHandler(
        f"http://127.0.0.1:{receiver_port}/ingest",
        batch=5,
        queue_size=20,
        flush_seconds=0.05,
        timeout_seconds=0.5,
        on_drop=dropped.append,
    )
    try:
        for i in range(100):  # nobody listens: the queue fills and the oldest are dropped
            handler.emit(_record(i))
        assert _wait(lambda: handler.failures >= 1)
        assert handler.dropped == sum(dropped) >= 75
        assert handler.queued <= 20
        receiver = Receiver(receiver_port)  # the receiver comes back
        try:
            for i in range(100, 103):
                handler.emit(_record(i))
            assert _wait(lambda: 100 + 101 + 102 in [sum(
                json.loads(ln)["n"] for ln in receiver.lines if json.loads(ln)["n"] >= 100)])  # fmt: skip
            sent = [json.loads(ln)["n"] for ln in receiver.lines]
            assert sent == sorted(sent) and sent[-3:] == [100, 101, 102]  # newest kept, in order
            assert handler.sent + handler.dropped + handler.queued == 103
        finally:
            receiver.stop()
    finally:
        handler.close()
