"""The decider reports each decision once: to its observers (unit), and through every server
door to the server's metrics and decision log (a real server, a real log file)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _decider_support import DEMO_POLICY, Case, FailingSource, through_server

from extauthz._exceptions import InvalidContext
from extauthz.context import RequestContext
from extauthz.decider import Claim, Decider, Observers
from extauthz.decision import Decision
from extauthz.engine import InMemoryReplayStore
from extauthz.envoy.request import DEFAULT_OPTIONS, check_request_to_context
from extauthz.outcome import Outcome
from extauthz.policy import load_policy
from extauthz.policy.source import FixedPolicy
from extauthz.server.app import Server, build_state
from extauthz.server.config import ServerConfig

POLICY = load_policy(DEMO_POLICY)
STRIPE_SECRET = b"whsec_demo_contractshield"


class Recorder:
    """Observers that write down every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def observers(self) -> Observers:
        def decided(d: Decision, ctx: RequestContext | None, latency: float, tr: str) -> None:
            assert latency >= 0.0
            self.calls.append(("decided", d.action, d.status_code, d.rule_ids, ctx, tr))

        def rejected(d: Decision, ctx: RequestContext | None, latency: float, tr: str) -> None:
            self.calls.append(("rejected", d.status_code, d.rule_ids, ctx, tr))

        return Observers(
            decided=(decided,),
            rejected=(rejected,),
            policy=(lambda policy: self.calls.append(("policy", policy.version)),),
            error=(lambda code: self.calls.append(("error", code)),),
        )

    def kinds(self) -> list[str]:
        return [call[0] for call in self.calls]


class AsyncStore:
    """A replay store with an async ``claim`` (as Redis is): the claim must be awaited."""

    def __init__(self) -> None:
        self.inner = InMemoryReplayStore()

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        await asyncio.sleep(0)
        return self.inner.claim(key, ttl_seconds)


def context(case: Case) -> RequestContext:
    return check_request_to_context(case.check_request(), DEFAULT_OPTIONS)


def delivery(event_id: str) -> RequestContext:
    payload = json.dumps({"id": event_id, "type": "invoice.paid", "object": "event"}).encode()
    ts = int(time.time())
    sig = hmac.new(STRIPE_SECRET, f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    headers = {"stripe-signature": f"t={ts},v1={sig}", "content-type": "application/json"}
    return context(Case(f"hook-{event_id}", "POST", "/webhooks/stripe", headers, payload))


def recorded(**kwargs: Any) -> tuple[Decider, Recorder]:
    recorder = Recorder()
    source = kwargs.pop("source", FixedPolicy(POLICY))
    return Decider(source, observers=recorder.observers(), **kwargs), recorder


def test_a_plain_check_is_reported_once() -> None:
    decider, rec = recorded()
    ctx = context(Case("health", "GET", "/healthz"))
    outcome = decider.decide(ctx, "grpc")
    assert outcome.decision.action == "ALLOW"
    assert rec.calls == [
        ("policy", POLICY.version),
        ("decided", "ALLOW", 200, (), ctx, "grpc"),
    ]


async def test_a_claim_is_reported_once_when_it_has_answered() -> None:
    decider, rec = recorded(replay_store=AsyncStore())
    ctx = delivery("evt_observed_1")
    claim = decider.begin(ctx, "http_authz")
    assert isinstance(claim, Claim)
    assert rec.kinds() == ["policy"]  # nothing decided yet
    outcome = await claim.outcome()
    assert outcome.decision.action == "ALLOW" and not outcome.cacheable
    again = await decider.decide_async(delivery("evt_observed_1"), "grpc")
    assert again.decision.rule_ids == ("webhook.stripe.replay",)
    assert rec.kinds() == ["policy", "decided", "policy", "decided"]
    assert rec.calls[1][-1] == "http_authz" and rec.calls[3][-1] == "grpc"


def test_a_sync_claim_is_reported_once() -> None:
    decider, rec = recorded(replay_store=InMemoryReplayStore())
    assert decider.decide(delivery("evt_sync_1")).decision.action == "ALLOW"
    assert decider.decide(delivery("evt_sync_1")).decision.action == "BLOCK"
    assert rec.kinds() == ["policy", "decided"] * 2
    assert rec.calls[1][-1] == "embedded"  # the default transport label


def test_an_internal_error_is_counted_and_reported_once() -> None:
    decider, rec = recorded(source=FailingSource())
    ctx = context(Case("fail", "GET", "/healthz"))
    outcome = decider.decide(ctx, "grpc")
    assert isinstance(outcome, Outcome) and outcome.error_code == "INTERNAL_ERROR"
    assert rec.calls == [
        ("error", "internal_error"),
        ("decided", "BLOCK", 500, ("server.internalError",), ctx, "grpc"),
    ]


def test_a_rejected_request_is_not_a_decision() -> None:
    decider, rec = recorded()
    outcome = decider.rejected("not a CheckRequest", "grpc", InvalidContext.code)
    assert outcome.error_code == "INVALID_REQUEST" and outcome.decision.status_code == 400
    assert rec.calls == [
        ("error", InvalidContext.code),
        ("rejected", 400, ("request.invalid",), None, "grpc"),
    ]


def test_a_callers_policy_is_not_the_sources() -> None:
    decider, rec = recorded()
    decider.decide(context(Case("health", "GET", "/healthz")), "http", POLICY)
    assert rec.kinds() == ["decided"]  # no "policy": the server's policy metric is untouched


async def test_each_server_door_counts_and_logs_a_check_once(
    short_tmp: Path, free_port: Callable[[], int]
) -> None:
    log_file = short_tmp / "decisions.jsonl"
    socket = str(short_tmp / "pdp.sock")
    config = ServerConfig(
        unix_socket=socket,
        http_port=free_port(),
        policy_path=str(DEMO_POLICY),
        hot_reload=False,
        decision_log=f"file:{log_file}",
        decision_log_sample_allow=1.0,
    )
    server = await Server(build_state(config)).start()
    try:
        await through_server(server, socket, Case("once-allow", "GET", "/healthz"))
        await through_server(server, socket, Case("once-block", "GET", "/admin/users"))
        counts = dict(server.state.metrics.decisions.counts)
    finally:
        await server.stop(0)  # closes the decision log: every record is written
    assert counts == {("ALLOW", "health"): 5, ("BLOCK", "admin"): 5}
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    for rid in ("rid-once-allow", "rid-once-block"):
        doors = Counter(r["transport"] for r in records if r["decisionId"] == rid)
        # gRPC; /v1/check, /v1/evaluate and /evaluate ("http"); Envoy's HTTP mode
        assert doors == {"grpc": 1, "http": 3, "http_authz": 1}, doors
