"""A real ``extauthz serve`` on Redis Sentinel and Redis Cluster while the primary dies.

Signed Stripe deliveries and replays of them flow through the PDP's gRPC check; the primary
that holds the replay keys is SIGKILLed. Fail closed: a delivery in the failover window gets
503 ``replayStoreUnavailable`` (Stripe retries it), a replay never gets through. Fail open: a
delivery in the window is let through with the low-severity hit, as ``REPLAY_FAIL_OPEN``
promises; outside the window every replay is blocked. After the failover the PDP claims again
without a restart, and every event accepted before it is still known.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot
from redis_ha import ClusterSet, SentinelSet
from replay_helpers import Pdp, check_request, stripe_webhook

from extauthz.devstack import free_port
from extauthz.devstack.server import ServerProcess

UNAVAILABLE = "webhook.stripe.replayStoreUnavailable"
REPLAY = "webhook.stripe.replay"
KEY_PREFIX = "contractshield:replay:webhook:stripe-webhook:"  # the demo policy's webhook route
RELAXED = "?socket_timeout=0.5&socket_connect_timeout=0.5&wait_ms=200"
GIVE_UP_S = 30.0
Outcome = tuple[int, tuple[str, ...]]
CLEAN: Outcome = (200, ())
BLOCKED_REPLAY: Outcome = (403, (REPLAY,))
CLOSED: Outcome = (503, (UNAVAILABLE,))
OPEN: Outcome = (200, (UNAVAILABLE,))  # MONITOR: let through, the outage on record


def deliver(pdp: Pdp, event_id: str) -> Outcome:
    """(status Envoy would answer, rule ids), the ids of an allowed MONITOR included."""
    body, headers = stripe_webhook(event_id)
    resp = pdp._check(
        check_request("POST", "/webhooks/stripe", headers=headers, body=body), timeout=5
    )
    if resp.status.code == 0:
        fields = resp.dynamic_metadata.fields
        hits = fields["ruleHits"].list_value.values if "ruleHits" in fields else []
        return 200, tuple(v.string_value for v in hits)
    return resp.denied_response.status.code, tuple(
        json.loads(resp.denied_response.body)["ruleHits"]
    )


@pytest.fixture
def pdp_on(
    start_server: Callable[..., ServerProcess], short_tmp: Path
) -> Iterator[Callable[..., Pdp]]:
    clients: list[Pdp] = []

    def start(redis_url: str, **env: str) -> Pdp:
        sock = str(short_tmp / f"pdp{len(clients)}.sock")
        start_server(
            unix_socket_path=sock, http_port=free_port(), env={"REDIS_URL": redis_url, **env}
        )
        clients.append(Pdp(sock))
        return clients[-1]

    try:
        yield start
    finally:
        for client in clients:
            client.close()


def random_ids() -> Iterator[str]:
    while True:
        yield f"evt_{uuid.uuid4().hex}"


def run(
    pdp: Pdp, kill: Callable[[], None], window_outcome: Outcome, ids: Iterator[str]
) -> dict[str, object]:
    """Deliver new events and replay accepted ones; kill after 40 acceptances; stop 0.5 s after
    clean acceptances resume. Returns what each kind of request got."""
    accepted: list[str] = []
    fresh: Counter[Outcome] = Counter()
    replays: Counter[Outcome] = Counter()
    killed_at = recovered_at = first_window_at = 0.0
    while True:
        event = next(ids)
        outcome = deliver(pdp, event)
        fresh[outcome] += 1
        if outcome == CLEAN:
            accepted.append(event)
            if first_window_at and not recovered_at:
                recovered_at = time.monotonic()
        elif outcome == window_outcome and killed_at and not first_window_at:
            first_window_at = time.monotonic()
        if accepted:
            replays[deliver(pdp, accepted[len(accepted) // 2])] += 1
        if not killed_at and len(accepted) >= 40:
            killed_at = time.monotonic()
            kill()
        if recovered_at and time.monotonic() - recovered_at > 0.5:
            break
        if killed_at and time.monotonic() - killed_at > GIVE_UP_S:
            pytest.fail(f"no clean acceptance within {GIVE_UP_S} s of the kill: {fresh}")
    assert first_window_at, f"the outage never showed: {fresh}"
    return {
        "accepted": accepted,
        "fresh": fresh,
        "replays": replays,
        "window": recovered_at - killed_at,
    }


def after_failover(pdp: Pdp, seen: dict[str, object], ids: Iterator[str]) -> None:
    accepted = seen["accepted"]
    assert isinstance(accepted, list)
    # Every event accepted before, during or after the failover is still known ...
    assert {deliver(pdp, e) for e in accepted} == {BLOCKED_REPLAY}
    # ... and the PDP claims again, with no restart.
    events = [next(ids) for _ in range(10)]
    assert [deliver(pdp, e) for e in events] == [CLEAN] * 10
    assert [deliver(pdp, e) for e in events] == [BLOCKED_REPLAY] * 10


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
def test_sentinel_failover_through_the_pdp(
    pdp_on: Callable[..., Pdp], fail_open: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    with SentinelSet(replicas=2) as redis_set:
        pdp = pdp_on(redis_set.url(query=RELAXED), REPLAY_FAIL_OPEN=str(fail_open).lower())
        primary = redis_set.node_at(redis_set.primary_address()[1])
        window = OPEN if fail_open else CLOSED
        seen = run(pdp, primary.kill, window, random_ids())
        fresh, replays = seen["fresh"], seen["replays"]
        assert isinstance(fresh, Counter) and isinstance(replays, Counter)
        assert set(fresh) <= {CLEAN, window}, fresh
        # Outside the window a replay is blocked; inside it, it meets the same outage answer.
        assert set(replays) <= {BLOCKED_REPLAY, window}, replays
        assert replays[BLOCKED_REPLAY] > 0
        if not fail_open:
            assert not any(status == 200 for status, _ in replays), "a replay got through"
        after_failover(pdp, seen, random_ids())
    with capsys.disabled():
        print(f"\nPDP on Sentinel, fail_open={fail_open}: window {seen['window']:.2f} s, {fresh}")


def test_cluster_failover_through_the_pdp(
    pdp_on: Callable[..., Pdp], capsys: pytest.CaptureFixture[str]
) -> None:
    with ClusterSet(replicas=2) as cluster:
        pdp = pdp_on(cluster.url(query=RELAXED))
        # Only events whose keys live on the primary that dies: each one meets the outage.
        victim = cluster.primary_for(KEY_PREFIX + "evt_0")
        owned = cluster.slots_of(victim.port)
        ids = (e for e in random_ids() if any(a <= key_slot((KEY_PREFIX + e).encode()) <= b
                                              for a, b in owned))  # fmt: skip
        seen = run(pdp, victim.kill, CLOSED, ids)
        fresh, replays = seen["fresh"], seen["replays"]
        assert isinstance(fresh, Counter) and isinstance(replays, Counter)
        assert set(fresh) <= {CLEAN, CLOSED}, fresh
        assert set(replays) <= {BLOCKED_REPLAY, CLOSED}, replays
        after_failover(pdp, seen, ids)
    with capsys.disabled():
        print(f"\nPDP on Cluster: window {seen['window']:.2f} s, {fresh}")
