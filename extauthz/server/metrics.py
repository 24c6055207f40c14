"""Prometheus metrics for one server, in its own ``CollectorRegistry``.

Owning the registry (instead of prometheus-client's global one) lets several servers live in
one test process and keeps the exposition to exactly what we define. Label values are
bounded: ``route`` is a policy route id or ``unmatched``, ``type`` is an exception ``code``,
never request data. A check costs a few dict look-ups: decisions and their latency are plain
numbers turned into samples when scraped (``_DecisionStats``), the in-flight gauge reads the
servicer's counter when scraped, and error children are cached.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from .._exceptions import ContractShieldError, ContractShieldTimeout, ReplayStoreUnavailable

if TYPE_CHECKING:
    from ..decision import Decision

UNMATCHED = "unmatched"
# Decisions take tens of microseconds to a few milliseconds; Envoy gives up at 200 ms.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
)

__all__ = ["CONTENT_TYPE_LATEST", "UNMATCHED", "MeteredReplayStore", "Metrics"]


def _counter(
    registry: CollectorRegistry, name: str, label: str, doc: str, zeros: tuple[str, ...] = ()
) -> Counter:
    """A counter by one label; each of ``zeros`` is exported at 0 before it first happens."""
    counter = Counter(name, doc, (label,), registry=registry)
    for value in zeros:
        counter.labels(value)
    return counter


class Metrics:
    """Every metric the PDP exports; one instance per server."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = _DecisionStats()  # decisions and their latency, see the class
        r.register(self.decisions)
        self.in_flight = Gauge(
            "contractshield_checks_in_flight", "Checks being decided right now.", registry=r
        )
        self.errors = _counter(
            r, "contractshield_errors", "type", "Errors while deciding or serving, by error code."
        )
        self.reloads = _counter(
            r,
            "contractshield_policy_reloads",
            "result",
            "Policy reload attempts, by result (success or failure).",
            ("success", "failure"),
        )
        self.routes = Gauge(
            "contractshield_policy_routes", "Routes in the loaded policy.", registry=r
        )
        self.policy_loaded_at = Gauge(
            "contractshield_policy_loaded_timestamp_seconds",
            "When the loaded policy was compiled (Unix time).",
            registry=r,
        )
        self.policy_info = Info(
            "contractshield_policy", "The loaded policy (version is a content hash).", registry=r
        )
        self.replay_ops = _counter(
            r,
            "contractshield_replay_store_operations",
            "result",
            "Webhook replay-store claims, by result (claimed, duplicate or error).",
            ("claimed", "duplicate", "error"),
        )
        self.replay_errors = _counter(
            r, "contractshield_replay_store_errors", "type", "Replay-store failures, by error code."
        )
        self.log_dropped = _counter(
            r,
            "contractshield_log_records_dropped",
            "sink",
            "Decision-log records dropped, by sink (queue full, http receiver behind or down).",
        )
        self.up = Gauge("contractshield_up", "1 while the PDP process is serving.", registry=r)
        self.up.set(1)
        self._error_children: dict[str, Any] = {}
        self._policy: Any = None
        self._known_routes: frozenset[str] = frozenset()
        self._in_flight_sources: list[Callable[[], int]] = []
        # Set on a worker: turns this process's exposition into the whole server's.
        self.aggregate: Callable[[bytes], bytes] | None = None
        self.in_flight.set_function(lambda: sum(count() for count in self._in_flight_sources))

    def count_in_flight(self, count: Callable[[], int]) -> None:
        """Add ``count()`` (a servicer's checks being decided) to the in-flight gauge.

        Read when the gauge is scraped: cheaper than a locked inc/dec on every check.
        """
        self._in_flight_sources.append(count)

    # -- hot path ------------------------------------------------------------------------
    def observe_policy(self, policy: Any) -> None:
        """Track the current policy; cheap when it is the same object as last time."""
        if policy is self._policy:
            return
        self._policy = policy
        self._known_routes = frozenset(policy.route_ids)
        self.routes.set(len(policy.route_ids))
        self.policy_loaded_at.set(policy.loaded_at)
        self.policy_info.info({"version": str(policy.version), "source": str(policy.source)})

    def observe_decision(
        self, action: str, route_id: str | None, seconds: float, transport: str
    ) -> None:
        route = route_id if route_id in self._known_routes else UNMATCHED
        self.decisions.observe(action, route, seconds, transport)

    def decided(self, decision: Decision, ctx: object, seconds: float, transport: str) -> None:
        """``observe_decision`` as the decider's hook (``DecisionHook``): one call a check
        instead of a closure calling it."""
        route_id = decision.metadata.route_id
        route = route_id if route_id in self._known_routes else UNMATCHED
        self.decisions.observe(decision.action, route, seconds, transport)

    def observe_error(self, code: str) -> None:
        child = self._error_children.get(code)
        if child is None:
            child = self._error_children[code] = self.errors.labels(code)
        child.inc()

    def observe_log_drop(self, sink: str, n: int = 1) -> None:
        """Called off the hot path, by the decision log when a record cannot be kept."""
        self.log_dropped.labels(sink).inc(n)

    # -- lifecycle -----------------------------------------------------------------------
    def observe_reload(self, ok: bool) -> None:
        """Called by the hot reloader after each attempt."""
        self.reloads.labels("success" if ok else "failure").inc()

    def set_down(self) -> None:
        self.up.set(0)

    def exposition(self) -> bytes:
        own = generate_latest(self.registry)
        return own if self.aggregate is None else self.aggregate(own)

    def registry_exposition(self) -> bytes:
        """This process's figures alone (what a worker publishes for its siblings)."""
        return generate_latest(self.registry)


class _Latency:
    """One ``transport``'s latency histogram: a count per bucket (the last is +Inf) and a sum."""

    __slots__ = ("counts", "created", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.created = time.time()


class _DecisionStats:
    """``contractshield_decisions_total`` and ``contractshield_decision_duration_seconds``.

    Hot path: prometheus-client's ``Counter.inc`` and ``Histogram.observe`` take a lock and
    make several calls each, about 1 µs per check together. Decisions are observed only on
    the server's event loop, so plain numbers are enough; ``collect`` (a custom collector)
    turns them into the samples prometheus-client's Counter and Histogram would give.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.created: dict[tuple[str, str], float] = {}
        self.latency: dict[str, _Latency] = {}

    def observe(self, action: str, route: str, seconds: float, transport: str) -> None:
        key = (action, route)
        counts = self.counts
        # try/except rather than ``in`` then ``+=``: one dict look-up fewer per check.
        try:
            counts[key] += 1
        except KeyError:
            self.created[key] = time.time()  # first: ``collect`` reads it for every count
            counts[key] = 1
        try:
            latency = self.latency[transport]
        except KeyError:
            latency = self.latency[transport] = _Latency()
        # The first bucket whose bound is >= seconds, as Histogram.observe picks it.
        latency.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency.sum += seconds

    def collect(self) -> Iterable[Metric]:
        created = _created_series()
        decisions = CounterMetricFamily(
            "contractshield_decisions",
            "Decisions made, by action and policy route id.",
            labels=("action", "route"),
        )
        for (action, route), count in list(self.counts.items()):
            stamp = self.created[action, route] if created else None
            decisions.add_metric((action, route), float(count), created=stamp)
        name = "contractshield_decision_duration_seconds"
        latency = HistogramMetricFamily(
            name,
            "Time to decide one request (conversion, evaluation, response).",
            labels=("transport",),
        )
        for transport, stats in list(self.latency.items()):
            buckets, total = [], 0.0
            for bound, count in zip(_BUCKET_LABELS, list(stats.counts), strict=True):
                total += count
                buckets.append((bound, total))
            latency.add_metric((transport,), buckets, stats.sum)
            if created:
                latency.add_sample(f"{name}_created", {"transport": transport}, stats.created)
        return [decisions, latency]


_BUCKET_LABELS = tuple(floatToGoString(b) for b in (*LATENCY_BUCKETS, math.inf))


def _created_series() -> bool:
    """Whether prometheus-client exports ``_created`` series (it can be switched off)."""
    return bool(getattr(prometheus_metrics, "_use_created", True))


class MeteredReplayStore:
    """Wraps a (sync or async) replay store: counts claims and failures, bounds each claim.

    The claim is the only await in a check, so bounding it by the check deadline bounds the
    check: a store slower than ``timeout_seconds`` raises ``ContractShieldTimeout``, which the
    engine treats as a store outage (503 fail closed, or fail open when configured). Presents
    the async ``claim`` that ``evaluate_async`` accepts; every other attribute (``ping``,
    ``close``...) is forwarded to the wrapped store.
    """

    __slots__ = ("_async", "_metrics", "inner", "timeout_seconds")

    def __init__(
        self, inner: Any, metrics: Metrics, *, timeout_seconds: float | None = None
    ) -> None:
        self.inner = inner
        self._metrics = metrics
        self._async = inspect.iscoroutinefunction(inner.claim)
        self.timeout_seconds = timeout_seconds

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        m = self._metrics
        try:
            if not self._async:
                first = self.inner.claim(key, ttl_seconds)
            elif self.timeout_seconds is None:
                first = await self.inner.claim(key, ttl_seconds)
            else:
                try:
                    async with asyncio.timeout(self.timeout_seconds):
                        first = await self.inner.claim(key, ttl_seconds)
                except TimeoutError:
                    raise ContractShieldTimeout(
                        f"replay store did not answer within {self.timeout_seconds * 1000:.0f} ms"
                    ) from None
        except ContractShieldError as exc:
            self._count_error(exc.code)
            raise
        except Exception as exc:
            self._count_error(ReplayStoreUnavailable.code)
            raise ReplayStoreUnavailable(f"replay store failed: {type(exc).__name__}") from exc
        m.replay_ops.labels("claimed" if first else "duplicate").inc()
        return bool(first)

    def _count_error(self, code: str) -> None:
        m = self._metrics
        m.replay_ops.labels("error").inc()
        m.replay_errors.labels(code).inc()
        m.observe_error(code)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
