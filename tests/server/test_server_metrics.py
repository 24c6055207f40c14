"""Metrics: names and units Prometheus accepts (promtool), bounded labels, own registry."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from extauthz import ReplayStoreUnavailable
from extauthz.decision import Decision, DecisionMetadata
from extauthz.server.metrics import LATENCY_BUCKETS, MeteredReplayStore, Metrics


@dataclass(frozen=True)
class Snapshot:
    """The four attributes of a compiled policy that metrics read."""

    route_ids: tuple[str, ...] = ("license-get", "stripe-webhook")
    version: str = "sha256:abc"
    loaded_at: float = 1_700_000_000.0
    source: str = "policies/demo.yaml"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_route_label_is_bounded_to_policy_route_ids() -> None:
    m = Metrics()
    m.observe_policy(Snapshot())
    m.observe_decision("ALLOW", "license-get", 0.001, "grpc")
    m.observe_decision("BLOCK", "/etc/passwd", 0.001, "grpc")  # never a raw value as a label
    m.observe_decision("BLOCK", None, 0.002, "http")
    s = samples(m)
    assert (
        s[("contractshield_decisions_total", (("action", "ALLOW"), ("route", "license-get")))] == 1
    )
    assert s[("contractshield_decisions_total", (("action", "BLOCK"), ("route", "unmatched")))] == 2
    assert not any("/etc/passwd" in str(key) for key in s)
    assert s[("contractshield_decision_duration_seconds_count", (("transport", "grpc"),))] == 2
    assert s[("contractshield_policy_routes", ())] == 2
    assert (
        s[
            (
                "contractshield_policy_info",
                (("source", "policies/demo.yaml"), ("version", "sha256:abc")),
            )
        ]
        == 1
    )
    assert s[("contractshield_up", ())] == 1


def test_policy_change_replaces_info_and_routes() -> None:
    m = Metrics()
    m.observe_policy(Snapshot())
    m.observe_policy(Snapshot(route_ids=("a",), version="sha256:new"))
    m.observe_reload(True)
    m.observe_reload(False)
    s = samples(m)
    assert s[("contractshield_policy_routes", ())] == 1
    versions = [dict(k[1]).get("version") for k in s if k[0] == "contractshield_policy_info"]
    assert versions == ["sha256:new"]
    assert s[("contractshield_policy_reloads_total", (("result", "success"),))] == 1
    assert s[("contractshield_policy_reloads_total", (("result", "failure"),))] == 1


def test_two_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe_error("timeout")
    assert samples(a)[("contractshield_errors_total", (("type", "timeout"),))] == 1
    assert ("contractshield_errors_total", (("type", "timeout"),)) not in samples(b)


def test_decision_samples_are_those_of_prometheus_client_counter_and_histogram() -> None:
    """Decisions are counted in plain Python (hot path); the exposition must not change."""
    m = Metrics()
    m.observe_policy(Snapshot())
    reference = CollectorRegistry()
    decisions = Counter(
        "contractshield_decisions",
        "Decisions made, by action and policy route id.",
        ("action", "route"),
        registry=reference,
    )
    latency = Histogram(
        "contractshield_decision_duration_seconds",
        "Time to decide one request (conversion, evaluation, response).",
        ("transport",),
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    observations = [
        ("ALLOW", "license-get", 0.00004, "grpc"),
        ("BLOCK", None, 0.0001, "http"),  # exactly on a bound
        ("MONITOR", "stripe-webhook", 0.3, "grpc"),
        ("ALLOW", "license-get", 7.0, "grpc"),  # above the last bound: +Inf only
        ("ALLOW", "license-get", 0.00025000001, "grpc"),
        ("BLOCK", "/etc/passwd", 0.0, "grpc"),
    ]
    for action, route_id, seconds, transport in observations:
        m.observe_decision(action, route_id, seconds, transport)
        route = route_id if route_id in Snapshot().route_ids else "unmatched"
        decisions.labels(action, route).inc()
        latency.labels(transport).observe(seconds)

    def lines(text: bytes) -> list[str]:
        wanted = ("contractshield_decision", "# HELP contractshield_decision")
        wanted += ("# TYPE contractshield_decision",)
        return [
            # _created values are clock readings: compare everything but their value
            line.rpartition(" ")[0] if "_created{" in line else line
            for line in text.decode().splitlines()
            if line.startswith(wanted)
        ]

    expected = lines(generate_latest(reference))
    assert lines(m.exposition()) == expected
    assert any("_created{" in line for line in expected)


class SyncStore:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.down = False

    def claim(self, key: str, ttl_seconds: int) -> bool:
        if self.down:
            raise ReplayStoreUnavailable("store down")
        first = key not in self.seen
        self.seen.add(key)
        return first

    def ping(self) -> bool:
        return not self.down


async def test_metered_replay_store_counts_claims_and_errors() -> None:
    m = Metrics()
    inner = SyncStore()
    store = MeteredReplayStore(inner, m)
    assert await store.claim("k", 60) is True
    assert await store.claim("k", 60) is False
    inner.down = True
    with pytest.raises(ReplayStoreUnavailable):
        await store.claim("j", 60)
    assert store.ping() is False  # forwarded to the wrapped store
    s = samples(m)
    ops = "contractshield_replay_store_operations_total"
    assert s[(ops, (("result", "claimed"),))] == 1
    assert s[(ops, (("result", "duplicate"),))] == 1
    assert s[(ops, (("result", "error"),))] == 1
    errors = ("contractshield_replay_store_errors_total", (("type", "replay_store_unavailable"),))
    assert s[errors] == 1


def test_exposition_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: apt-get install prometheus (.ci/run installs it)")
    m = Metrics()
    m.observe_policy(Snapshot())
    m.observe_decision("MONITOR", "stripe-webhook", 0.0003, "grpc")
    m.observe_error("internal_error")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=m.exposition(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""  # no lint warnings


def test_the_decider_hook_counts_as_observe_decision() -> None:
    """``Metrics.decided`` (the server decider's hook) exports what ``observe_decision`` does."""
    cases = [
        ("ALLOW", "license-get", 0.00005, "http_authz"),
        ("BLOCK", "/etc/passwd", 0.2, "grpc"),
        ("MONITOR", None, 2.0, "http"),
        ("ALLOW", "stripe-webhook", 0.001, "http_authz"),
    ]
    hooked, plain = Metrics(), Metrics()
    for m in (hooked, plain):
        m.observe_policy(Snapshot())
    for action, route_id, seconds, transport in cases:
        decision = Decision(action, 200, "r", metadata=DecisionMetadata(route_id=route_id))
        hooked.decided(decision, None, seconds, transport)
        plain.observe_decision(action, route_id, seconds, transport)
    created = ("_created",)
    assert {k: v for k, v in samples(hooked).items() if not k[0].endswith(created)} == {
        k: v for k, v in samples(plain).items() if not k[0].endswith(created)
    }
