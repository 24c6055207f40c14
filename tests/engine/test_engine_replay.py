"""Replay stores and how the pipeline uses them (fail closed / open, async, claim timing)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from extauthz._exceptions import ReplayStoreUnavailable
from extauthz.engine import (
    AsyncReplayStore,
    InMemoryReplayStore,
    ReplayStore,
    evaluate,
    evaluate_async,
)
from extauthz.policy import load_policy_text
from extauthz.webhooks import sign

NOW = 1_767_225_600
POLICY = """
policyVersion: "0.1"
defaults: {mode: enforce}
routes:
  - id: hook
    match: {method: POST, path: /hook}
    webhook: {provider: stripe, secret: whsec_x, timestampTolerance: 300}
    rules:
      - id: livemode.only
        type: cel
        config: {expr: "request.body.livemode == true"}
  - id: hook-monitor
    mode: monitor
    match: {method: POST, path: /hook-monitor}
    webhook: {provider: stripe, secret: whsec_x}
"""


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_in_memory_store_claims_once_per_ttl() -> None:
    clock = Clock()
    store = InMemoryReplayStore(clock=clock)
    assert isinstance(store, ReplayStore)
    assert store.claim("a", 10) is True
    assert store.claim("a", 10) is False
    assert store.claim("b", 10) is True
    clock.t += 11
    assert store.claim("a", 10) is True  # expired: a new claim


def test_in_memory_store_is_bounded() -> None:
    store = InMemoryReplayStore(max_entries=3)
    for k in "abcd":
        assert store.claim(k, 100)
    assert len(store) == 3
    assert store.claim("a", 100) is True  # the oldest was evicted
    assert store.claim("d", 100) is False
    with pytest.raises(ValueError):
        InMemoryReplayStore(max_entries=0)


def test_in_memory_store_is_thread_safe() -> None:
    store = InMemoryReplayStore()
    wins: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for i in range(500):
            won = store.claim(f"k{i}", 60)
            with lock:
                wins.append(won)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sum(wins) == 500  # each key won exactly once


class DownStore:
    def claim(self, key: str, ttl_seconds: int) -> bool:
        raise ReplayStoreUnavailable("redis: connection refused")


class RecordingStore:
    def __init__(self) -> None:
        self.keys: list[tuple[str, int]] = []

    def claim(self, key: str, ttl_seconds: int) -> bool:
        self.keys.append((key, ttl_seconds))
        return True


class AsyncStore:
    def __init__(self) -> None:
        self.inner = InMemoryReplayStore()

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        await asyncio.sleep(0)
        return self.inner.claim(key, ttl_seconds)


@pytest.fixture(scope="module")
def policy():
    return load_policy_text(POLICY)


def hook(
    ctx, body: bytes = b'{"id":"evt_9","type":"x","livemode":true}', path="/hook", secret="whsec_x"
):
    headers = sign("stripe", secret, body, timestamp=NOW)
    return ctx("POST", path, raw=body, content_type="application/json", headers=headers)


def test_store_down_fails_closed_with_503(policy, ctx) -> None:
    d = evaluate(policy, hook(ctx), replay_store=DownStore(), now=NOW)
    assert d.action == "BLOCK" and d.status_code == 503
    assert d.rule_ids == ("webhook.stripe.replayStoreUnavailable",)
    assert d.rule_hits[0].severity == "high"


def test_store_down_fail_open_lets_it_through_with_a_low_hit(policy, ctx) -> None:
    d = evaluate(policy, hook(ctx), replay_store=DownStore(), replay_fail_open=True, now=NOW)
    assert d.allowed and d.status_code == 200
    assert d.rule_ids == ("webhook.stripe.replayStoreUnavailable",)
    assert d.rule_hits[0].severity == "low"


def test_unexpected_store_errors_count_as_unavailable(policy, ctx) -> None:
    class Broken:
        def claim(self, key: str, ttl_seconds: int) -> bool:
            raise RuntimeError("bug")

    d = evaluate(policy, hook(ctx), replay_store=Broken(), now=NOW)
    assert d.status_code == 503


def test_claim_only_when_signature_valid_and_nothing_else_blocks(policy, ctx) -> None:
    store = RecordingStore()
    evaluate(policy, hook(ctx, secret="bad"), replay_store=store, now=NOW)
    assert store.keys == []  # invalid signature: no claim
    evaluate(policy, hook(ctx, b'{"id":"evt_10","livemode":false}'), replay_store=store, now=NOW)
    assert store.keys == []  # a CEL rule blocks: the event id is not burnt
    d = evaluate(policy, hook(ctx), replay_store=store, now=NOW)
    assert d.action == "ALLOW"
    assert store.keys == [("webhook:hook:evt_9", 660)]


def test_monitor_mode_claims_and_reports_replays(policy, ctx) -> None:
    store = InMemoryReplayStore()
    first = evaluate(policy, hook(ctx, path="/hook-monitor"), replay_store=store, now=NOW)
    again = evaluate(policy, hook(ctx, path="/hook-monitor"), replay_store=store, now=NOW)
    assert first.action == "ALLOW"
    assert again.action == "MONITOR" and again.rule_ids == ("webhook.stripe.replay",)


def test_replay_hit_keeps_phase_order(policy, ctx) -> None:
    store = InMemoryReplayStore()
    evaluate(policy, hook(ctx), replay_store=store, now=NOW)
    d = evaluate(policy, hook(ctx), replay_store=store, now=NOW)
    assert d.rule_ids == ("webhook.stripe.replay",)


async def test_evaluate_async_awaits_async_stores(policy, ctx) -> None:
    store = AsyncStore()
    assert isinstance(store, AsyncReplayStore)
    first = await evaluate_async(policy, hook(ctx), replay_store=store, now=NOW)
    again = await evaluate_async(policy, hook(ctx), replay_store=store, now=NOW)
    assert first.action == "ALLOW"
    assert again.rule_ids == ("webhook.stripe.replay",)
    # sync stores work with evaluate_async too
    d = await evaluate_async(policy, hook(ctx), replay_store=DownStore(), now=NOW)
    assert d.status_code == 503


def test_async_store_in_sync_evaluate_fails_closed(policy, ctx) -> None:
    d = evaluate(policy, hook(ctx), replay_store=AsyncStore(), now=NOW)
    assert d.status_code == 503 and "evaluate_async" in d.rule_hits[0].message


def test_default_store_is_process_wide(policy, ctx) -> None:
    body = b'{"id":"evt_default_store","livemode":true}'
    assert evaluate(policy, hook(ctx, body), now=NOW).action == "ALLOW"
    assert evaluate(policy, hook(ctx, body), now=NOW).rule_ids == ("webhook.stripe.replay",)
