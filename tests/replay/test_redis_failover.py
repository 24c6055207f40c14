"""The replay store across a primary's death, with real Redis Sentinel and Redis Cluster.

Under a steady flow of new deliveries and replays, the primary holding the keys is SIGKILLed.
What must hold: no replay is ever admitted (before, during or after the failover), every
failure is a ``ReplayStoreUnavailable`` (which the PDP turns into 503 or fail-open), claims
work again once a replica is promoted, and no claim made before the failover is lost. The
failover window is measured and printed (``-s``), never asserted: docs/deployment.md quotes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from redis.crc import key_slot
from redis_ha import ClusterSet, Node, SentinelSet, wait_until

from extauthz import ReplayStoreUnavailable
from extauthz.replay_redis import DEFAULT_PREFIX, RedisReplayStore

# Relaxed from the 50/100 ms defaults for a shared 2-core test machine; WAIT's bound below the
# socket timeout as the URL check requires.
RELAXED = "?socket_timeout=0.5&socket_connect_timeout=0.5&wait_ms=200"
WORKERS = 4
GIVE_UP_S = 30.0  # far beyond any failover here; only a broken failover reaches it


@dataclass
class Flow:
    """What the load saw."""

    claimed: list[str] = field(default_factory=list)
    replays_sent: int = 0
    replays_admitted: list[str] = field(default_factory=list)
    errors: int = 0
    killed_at: float = 0.0
    first_error_at: float | None = None
    recovered_at: float | None = None  # first successful claim after the first error

    @property
    def window(self) -> float:
        assert self.recovered_at is not None
        return self.recovered_at - self.killed_at


async def run_flow(store: RedisReplayStore, ids: Iterator[str], kill: Callable[[], None]) -> Flow:
    """Deliveries and replays from ``WORKERS`` tasks; ``kill`` after 40 claims; stop 0.5 s
    after claims succeed again."""
    flow = Flow()
    stop = asyncio.Event()

    async def one(event_id: str, replay: str | None) -> None:
        try:
            fresh = await store.claim(event_id, 300)
        except ReplayStoreUnavailable:
            flow.errors += 1
            if flow.first_error_at is None:
                flow.first_error_at = time.monotonic()
        else:
            assert fresh, f"{event_id} was never sent before, yet came back as a replay"
            flow.claimed.append(event_id)
            if flow.first_error_at is not None and flow.recovered_at is None:
                flow.recovered_at = time.monotonic()
        if replay is not None:
            flow.replays_sent += 1
            with contextlib.suppress(ReplayStoreUnavailable):
                if await store.claim(replay, 300):
                    flow.replays_admitted.append(replay)

    async def worker() -> None:
        while not stop.is_set():
            replay = flow.claimed[len(flow.claimed) // 2] if flow.claimed else None
            await one(next(ids), replay)
            if not flow.killed_at and len(flow.claimed) >= 40:
                flow.killed_at = time.monotonic()
                kill()
            if flow.recovered_at and time.monotonic() - flow.recovered_at > 0.5:
                stop.set()
            if flow.killed_at and time.monotonic() - flow.killed_at > GIVE_UP_S:
                stop.set()
            await asyncio.sleep(0.002)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return flow


async def check_after_failover(store: RedisReplayStore, flow: Flow, ids: Iterator[str]) -> None:
    assert flow.first_error_at is not None, "killing the primary went unnoticed"
    assert flow.recovered_at is not None, f"claims did not work again within {GIVE_UP_S} s"
    assert flow.replays_sent > 40 and flow.replays_admitted == []
    # Nothing claimed before, during or after the failover was lost ...
    lost = [e for e in flow.claimed if await store.claim(e, 300)]
    assert lost == [], f"{len(lost)} of {len(flow.claimed)} claims were lost in the failover"
    # ... and the store is whole again: new events pass once, their replays do not.
    fresh = [next(ids) for _ in range(20)]
    assert [await store.claim(e, 300) for e in fresh] == [True] * 20
    assert [await store.claim(e, 300) for e in fresh] == [False] * 20


async def test_sentinel_failover_under_load_admits_no_replay_and_loses_no_claim() -> None:
    with SentinelSet(replicas=2) as redis_set:
        store = RedisReplayStore(redis_set.url(query=RELAXED))
        ids = (f"evt_{i}" for i in itertools.count())
        try:
            old = redis_set.node_at(redis_set.primary_address()[1])
            flow = await run_flow(store, ids, old.kill)
            await check_after_failover(store, flow, ids)
            assert redis_set.primary_address()[1] != old.port, "a replica was promoted"
        finally:
            await store.close()
    print(
        f"\nsentinel failover window {flow.window:.2f} s "
        f"({flow.errors} claims refused, {len(flow.claimed)} claimed, "
        f"{flow.replays_sent} replays, none admitted)"
    )


def _ids_owned_by(cluster: ClusterSet, port: int) -> Iterator[str]:
    """Event ids whose keys live on the primary at ``port`` (so every claim meets the outage)."""
    owned = cluster.slots_of(port)
    for i in itertools.count():
        event_id = f"evt_{i}"
        slot = key_slot((DEFAULT_PREFIX + event_id).encode())
        if any(start <= slot <= end for start, end in owned):
            yield event_id


async def test_cluster_failover_under_load_admits_no_replay_and_loses_no_claim() -> None:
    # Two replicas a shard: after the failover the promoted one still has a replica to WAIT for.
    with ClusterSet(replicas=2) as cluster:
        victim = cluster.primary_for(DEFAULT_PREFIX + "evt_0")
        store = RedisReplayStore(cluster.url(query=RELAXED))
        ids = _ids_owned_by(cluster, victim.port)
        try:
            flow = await run_flow(store, ids, victim.kill)
            await check_after_failover(store, flow, ids)
            assert cluster.primary_for(DEFAULT_PREFIX + "evt_0").port != victim.port
        finally:
            await store.close()
    print(
        f"\ncluster failover window {flow.window:.2f} s "
        f"({flow.errors} claims refused, {len(flow.claimed)} claimed, "
        f"{flow.replays_sent} replays, none admitted)"
    )


@contextlib.contextmanager
def cut_off(primary: Node, replicas: list[Node]) -> Iterator[None]:
    """The replicas stop hearing from the primary (frozen with SIGSTOP, their links closed
    by the primary): what a network partition or a lagging replica looks like to a write."""
    for replica in replicas:
        assert replica.process is not None
        os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        primary.client().execute_command("CLIENT", "KILL", "TYPE", "replica")
        yield
    finally:
        for replica in replicas:
            assert replica.process is not None
            os.kill(replica.process.pid, signal.SIGCONT)


async def claims_work_again(store: RedisReplayStore, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for i in itertools.count():
        with contextlib.suppress(ReplayStoreUnavailable):
            if await store.claim(f"probe_{i}", 300):
                return
        if time.monotonic() > deadline:
            pytest.fail(f"claims did not work again within {timeout} s")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("min_replicas", [1, 0], ids=["wait", "no-wait"])
async def test_a_claim_no_replica_holds_is_not_counted_unless_wait_is_off(
    min_replicas: int,
) -> None:
    """Redis replicates asynchronously: what the primary acknowledged but no replica received
    dies with it. With WAIT (min_replicas=1) such a claim is refused and withdrawn, so the
    sender's retry passes once and nothing can be replayed; without WAIT it counts, and after
    the failover the same event is admitted again: the risk ``min_replicas=0`` accepts."""
    with SentinelSet(replicas=2) as redis_set:
        store = RedisReplayStore(redis_set.url(query=f"{RELAXED}&min_replicas={min_replicas}"))
        primary = redis_set.node_at(redis_set.primary_address()[1])
        try:
            assert await store.claim("evt_before", 300) is True
            wait_until(
                lambda: all(r.client().exists(DEFAULT_PREFIX + "evt_before") for r in
                            redis_set.replicas),
                10,
                "evt_before replicated",
            )  # fmt: skip
            with cut_off(primary, redis_set.replicas):
                if min_replicas:
                    with pytest.raises(ReplayStoreUnavailable, match="0 of 1 replica"):
                        await store.claim("evt_lagging", 300)
                    assert primary.client().exists(DEFAULT_PREFIX + "evt_lagging") == 0
                else:
                    assert await store.claim("evt_lagging", 300) is True
                primary.kill()
            wait_until(
                lambda: any(redis_set.settled_on(r.port) for r in redis_set.replicas),
                20,
                "a replica promoted",
            )
            await claims_work_again(store)
            assert await store.claim("evt_before", 300) is False, "a confirmed claim survives"
            # The event the sender retries (WAIT) or replays (no WAIT) after the failover:
            assert await store.claim("evt_lagging", 300) is True
            assert await store.claim("evt_lagging", 300) is False
        finally:
            await store.close()
