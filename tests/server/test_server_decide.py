"""``decide_now``: decided without a coroutine unless a replay claim is due; never raises."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _server_support import DEMO_POLICY, check_request, stripe_event, stripe_headers
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from extauthz.envoy.request import AdapterOptions, check_request_to_context
from extauthz.server.app import build_state
from extauthz.server.config import ServerConfig
from extauthz.server.decide import Outcome, decide, decide_now
from extauthz.server.grpc_service import AuthorizationServicer
from extauthz.server.metrics import MeteredReplayStore
from extauthz.server.state import ServerState


@pytest.fixture
def make_state() -> Iterator[Callable[..., ServerState]]:
    """``make_state(store=None, fail_open=False)``: a server's state with a metered store."""
    states: list[ServerState] = []

    def make(store: Any = None, *, fail_open: bool = False) -> ServerState:
        config = ServerConfig(
            policy_path=str(DEMO_POLICY), hot_reload=False, replay_fail_open=fail_open
        )
        state = build_state(config)
        inner = state.replay_store if store is None else store
        state.replay_store = MeteredReplayStore(inner, state.metrics, timeout_seconds=0.05)
        states.append(state)
        return state

    yield make
    for state in states:
        for stop in state.on_shutdown:
            stop()


def context(state: ServerState, *args: Any, **kwargs: Any) -> Any:
    req = check_request(*args, **kwargs)
    return check_request_to_context(req, AdapterOptions.from_config(state.config))


def webhook(state: ServerState, event_id: str) -> Any:
    payload = stripe_event(event_id)
    headers = stripe_headers(payload)
    return context(state, "POST", "/webhooks/stripe", headers=headers, body=payload)


def decisions(state: ServerState) -> dict[tuple[str, str], int]:
    return dict(state.metrics.decisions.counts)


async def test_a_check_without_a_claim_is_decided_without_a_coroutine(
    make_state: Callable[..., ServerState],
) -> None:
    state = make_state()
    outcome = decide_now(state, context(state, "GET", "/healthz"), "grpc")
    assert isinstance(outcome, Outcome) and outcome.decision.action == "ALLOW"
    assert outcome.cacheable
    blocked = decide_now(state, context(state, "GET", "/admin/x"), "grpc")
    assert isinstance(blocked, Outcome) and blocked.decision.status_code == 403
    assert decisions(state) == {("ALLOW", "health"): 1, ("BLOCK", "admin"): 1}


async def test_a_webhook_delivery_awaits_its_claim_once(
    make_state: Callable[..., ServerState],
) -> None:
    state = make_state()
    pending = decide_now(state, webhook(state, "evt_decide_1"), "grpc")
    assert inspect.iscoroutine(pending)
    assert decisions(state) == {}  # observed when the claim has answered, not before
    first = await pending
    assert first.decision.action == "ALLOW" and not first.cacheable
    again = await decide(state, webhook(state, "evt_decide_1"), "http")
    assert again.decision.rule_ids == ("webhook.stripe.replay",) and not again.cacheable
    assert decisions(state) == {("ALLOW", "stripe-webhook"): 1, ("BLOCK", "stripe-webhook"): 1}


class SlowStore:
    async def claim(self, key: str, ttl_seconds: int) -> bool:
        await asyncio.sleep(1.0)
        return True


async def test_a_slow_store_is_an_outage_within_the_deadline(
    make_state: Callable[..., ServerState],
) -> None:
    for fail_open, action, status in ((False, "BLOCK", 503), (True, "MONITOR", 200)):
        state = make_state(SlowStore(), fail_open=fail_open)
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = await decide(state, webhook(state, f"evt_slow_{fail_open}"), "grpc")
        assert loop.time() - started < 0.5  # the 50 ms deadline, not the store's 1 s
        d = outcome.decision
        assert (d.action, d.status_code) == (action, status)
        assert d.rule_ids == ("webhook.stripe.replayStoreUnavailable",)


class BrokenSource:
    last_error = None

    def current(self) -> Any:
        raise RuntimeError("boom")


async def test_an_internal_error_is_an_outcome_not_an_exception(
    make_state: Callable[..., ServerState],
) -> None:
    state = make_state()
    state.policy_source = BrokenSource()
    outcome = decide_now(state, context(state, "GET", "/healthz"), "grpc")
    assert isinstance(outcome, Outcome) and outcome.error_code == "INTERNAL_ERROR"
    assert outcome.decision.status_code == 500
    assert state.metrics.errors.labels("internal_error")._value.get() == 1
    assert decisions(state) == {("BLOCK", "unmatched"): 1}


async def test_servicer_answers_plain_and_webhook_checks_and_ends_idle(
    make_state: Callable[..., ServerState],
) -> None:
    state = make_state()
    servicer = AuthorizationServicer(state)
    plain = await servicer.check(check_request("GET", "/healthz").SerializeToString(), None)
    assert CheckResponse.FromString(plain).status.code == 0
    payload = stripe_event("evt_servicer")
    hook = check_request(
        "POST", "/webhooks/stripe", headers=stripe_headers(payload), body=payload
    ).SerializeToString()
    first = CheckResponse.FromString(await servicer.check(hook, None))
    again = CheckResponse.FromString(await servicer.check(hook, None))
    assert first.status.code == 0 and first.dynamic_metadata["cache"] == "no-store"
    assert again.denied_response.status.code == 403
    assert servicer.active == 0
