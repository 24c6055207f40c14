"""The sync client against the REAL server (demo policy), over a Unix socket and over TCP."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import time
from typing import Any

import pytest

from extauthz import ContractShieldUnavailable, Decision, Identity, InvalidConfig, InvalidContext
from extauthz.client import (
    DEFAULT_FAIL_OPEN_DECISION,
    FAIL_OPEN_RULE_ID,
    ContractShieldClient,
)

ACTIVATE = "/api/v1/licenses/activate"
T1 = Identity(authenticated=True, subject="alice", tenant="t-1", scopes=("licenses:write",))
T2 = Identity(authenticated=True, subject="bob", tenant="t-2", scopes=("licenses:write",))
JSON = {"content-type": "application/json"}


def activation(tenant: str = "t-1", **extra: Any) -> bytes:
    body = {"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "dev-1", "tenantId": tenant, **extra}
    return json.dumps(body).encode()


def client_for(pdp: Any, kind: str, **options: Any) -> ContractShieldClient:
    options.setdefault("timeout_ms", 2000)  # generous: the machine is shared and noisy
    return ContractShieldClient(pdp.target(kind), **options)


def test_cache_miss_then_hit(pdp: Any, kind: str) -> None:
    hits: list[Decision] = []
    with client_for(pdp, kind, on_cache_hit=hits.append) as client:
        first = client.evaluate("POST", ACTIVATE, headers=JSON, body=activation(), identity=T1)
        assert first.action == "ALLOW" and first.metadata.route_id == "license-activate"
        assert first.metadata.policy_version and first.metadata.policy_version.startswith("sha256:")
        s = client.stats()
        assert (s.hits, s.misses, s.size) == (0, 1, 1)
        again = client.evaluate(
            "POST",
            ACTIVATE,
            headers={**JSON, "x-request-id": "another-trace"},  # tracing header: same key
            body=activation(),
            identity=T1,
        )
        assert again == first and hits == [first]
        s = client.stats()
        assert (s.hits, s.misses, s.size) == (1, 1, 1)
        assert s.policy_version == first.metadata.policy_version
        client.clear_cache()
        assert client.stats().size == 0
        client.evaluate("POST", ACTIVATE, headers=JSON, body=activation(), identity=T1)
        assert client.stats().misses == 2


def test_ssrf_body_after_cached_clean_allow_is_still_blocked(pdp: Any, kind: str) -> None:
    with client_for(pdp, kind) as client:
        clean = client.evaluate("POST", ACTIVATE, headers=JSON, body=activation(), identity=T1)
        assert clean.action == "ALLOW"
        ssrf = activation(callbackUrl="http://169.254.169.254/latest/meta-data/")
        for _ in range(2):  # and a BLOCK is never cached either
            blocked = client.evaluate("POST", ACTIVATE, headers=JSON, body=ssrf, identity=T1)
            assert blocked.action == "BLOCK" and blocked.status_code == 403
            assert "vulnerability.ssrfInternal" in blocked.rule_ids
        s = client.stats()
        assert (s.hits, s.misses, s.size, s.retries) == (0, 3, 1, 0)  # a BLOCK is an answer


def test_tenant_t2_never_gets_t1_entry(pdp: Any, kind: str) -> None:
    with client_for(pdp, kind) as client:
        ok = client.evaluate("POST", ACTIVATE, headers=JSON, body=activation("t-1"), identity=T1)
        assert ok.action == "ALLOW"
        # Same route, same body, another tenant: the server decides (tenant.binding).
        other = client.evaluate("POST", ACTIVATE, headers=JSON, body=activation("t-1"), identity=T2)
        assert other.action == "BLOCK" and "tenant.binding" in other.rule_ids
        # And a clean t-2 request is its own entry, never t-1's.
        own = client.evaluate("POST", ACTIVATE, headers=JSON, body=activation("t-2"), identity=T2)
        assert own.action == "ALLOW"
        assert client.stats().hits == 0
        get_t1 = client.evaluate("GET", "/api/v1/licenses/L-1", identity=T1)
        get_anon = client.evaluate("GET", "/api/v1/licenses/L-1")
        assert get_t1.action == "ALLOW" and get_anon.action == "BLOCK"
        assert "auth.required" in get_anon.rule_ids
        assert client.stats().hits == 0


def test_threads_share_one_client(pdp: Any, kind: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    paths = [f"/api/v1/licenses/L-{i % 10}" for i in range(200)]
    with client_for(pdp, kind) as client, ThreadPoolExecutor(8) as pool:
        decisions = list(pool.map(lambda p: client.evaluate("GET", p, identity=T1), paths))
        assert all(d.action == "ALLOW" for d in decisions)
        s = client.stats()
        assert s.hits + s.misses == 200 and s.size == 10 and s.misses >= 10


def test_ttl_expiry(pdp: Any, kind: str) -> None:
    with client_for(pdp, kind, cache_ttl_ms=300) as client:
        client.evaluate("GET", "/healthz")
        client.evaluate("GET", "/healthz")
        assert (client.stats().hits, client.stats().misses) == (1, 1)
        time.sleep(0.45)
        assert client.stats().size == 0  # expired entries are not counted
        client.evaluate("GET", "/healthz")
        s = client.stats()
        assert (s.hits, s.misses, s.size) == (1, 2, 1)


def test_cache_max_size_bounds_entries(pdp: Any, kind: str) -> None:
    with client_for(pdp, kind, cache_max_size=3) as client:
        for i in range(6):
            assert client.evaluate("GET", f"/api/v1/licenses/L-{i}", identity=T1).allowed
        assert client.stats().size == 3


def test_cache_disabled_always_asks(pdp: Any, kind: str) -> None:
    with client_for(pdp, kind, cache_enabled=False) as client:
        for _ in range(3):
            assert client.evaluate("GET", "/healthz").action == "ALLOW"
        s = client.stats()
        assert (s.hits, s.misses, s.size) == (0, 0, 0)


def stripe(payload: bytes) -> dict[str, str]:
    ts = int(time.time())
    mac = hmac.new(b"whsec_demo_contractshield", f"{ts}.".encode() + payload, hashlib.sha256)
    return {"stripe-signature": f"t={ts},v1={mac.hexdigest()}", **JSON}


def test_replayed_webhook_is_blocked_even_with_the_cache_on(pdp: Any, kind: str) -> None:
    payload = json.dumps(
        {"id": f"evt_client_{kind}_{time.time_ns()}", "type": "invoice.paid", "object": "event"}
    ).encode()
    headers = stripe(payload)
    with client_for(pdp, kind) as client:
        first = client.evaluate("POST", "/webhooks/stripe", headers=headers, body=payload)
        assert first.action == "ALLOW"
        replay = client.evaluate("POST", "/webhooks/stripe", headers=headers, body=payload)
        assert replay.action == "BLOCK" and "webhook.stripe.replay" in replay.rule_ids
        assert client.stats().hits == 0 and client.stats().size == 0


def test_options_are_validated() -> None:
    for bad in ({"timeout_ms": 0}, {"retries": -1}, {"cache_max_size": 0}, {"cache_ttl_ms": 0}):
        with pytest.raises(InvalidConfig):
            ContractShieldClient("127.0.0.1:1", **bad)  # type: ignore[arg-type]
    for target in ("", "nohostport", "unix://", "host:notaport"):
        with pytest.raises(InvalidConfig):
            ContractShieldClient(target)
    with pytest.raises(InvalidConfig):
        ContractShieldClient()


# -- failover, retries, recovery: each test owns its server ---------------------------------


def until_answered(client: ContractShieldClient, timeout: float = 5.0) -> Decision:
    """The channel reconnects in the background (backoff ≤ 500 ms): poll, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.evaluate("GET", "/healthz")
        except ContractShieldUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_fail_closed_raises_then_recovers(own_pdp: Any, kind: str) -> None:
    errors: list[Exception] = []
    with client_for(own_pdp, kind, timeout_ms=500, retries=2, on_error=errors.append) as client:
        with pytest.raises(ContractShieldUnavailable):
            client.evaluate("GET", "/healthz")
        s = client.stats()
        assert (s.errors, s.retries, s.failovers) == (1, 2, 0)
        assert len(errors) == 1 and isinstance(errors[0], ContractShieldUnavailable)
        own_pdp.start()
        decision = until_answered(client)
        assert decision.action == "ALLOW" and FAIL_OPEN_RULE_ID not in decision.rule_ids
        assert client.evaluate("GET", "/admin/users", identity=T1).action == "BLOCK"
        own_pdp.stop()
        before = client.stats()
        # A cached answer keeps being served while the server is down ...
        assert client.evaluate("GET", "/healthz").action == "ALLOW"
        # ... but anything new fails closed, after its retries.
        with pytest.raises(ContractShieldUnavailable):
            client.evaluate("GET", "/api/v1/licenses/L-9", identity=T1)
        after = client.stats()
        assert after.hits == before.hits + 1
        assert (after.errors - before.errors, after.retries - before.retries) == (1, 2)


def test_fail_open_returns_the_configured_decision(own_pdp: Any, kind: str) -> None:
    failovers: list[tuple[Exception, Decision]] = []
    with client_for(
        own_pdp,
        kind,
        timeout_ms=500,
        retries=1,
        fail_open=True,
        on_failover=lambda exc, d: failovers.append((exc, d)),
    ) as client:
        decision = client.evaluate("POST", ACTIVATE, headers=JSON, body=activation(), identity=T1)
        assert decision == DEFAULT_FAIL_OPEN_DECISION
        assert decision.action == "ALLOW" and decision.rule_ids == (FAIL_OPEN_RULE_ID,)
        assert len(failovers) == 1 and isinstance(failovers[0][0], ContractShieldUnavailable)
        s = client.stats()
        assert (s.failovers, s.errors, s.retries, s.size) == (1, 1, 1, 0)  # never cached
        own_pdp.start()
        deadline = time.monotonic() + 5
        while (d := client.evaluate("GET", "/healthz")).rule_ids == (FAIL_OPEN_RULE_ID,):
            assert time.monotonic() < deadline, "no answer from the restarted server"
            time.sleep(0.05)
        assert d.action == "ALLOW" and d.metadata.route_id == "health"
        blocked = client.evaluate(
            "POST", ACTIVATE, headers=JSON, body=activation("t-1"), identity=T2
        )
        assert blocked.action == "BLOCK" and "tenant.binding" in blocked.rule_ids
        assert client.stats().failovers == len(failovers)


def test_custom_fail_open_decision(own_pdp: Any) -> None:
    monitor = Decision("MONITOR", reason="pdp down")
    with client_for(
        own_pdp, "unix", timeout_ms=200, retries=0, fail_open=True, fail_open_decision=monitor
    ) as client:
        assert client.evaluate("GET", "/healthz") is monitor
        assert client.stats().retries == 0


def test_a_hung_server_times_out_per_attempt_and_retries(own_pdp: Any, kind: str) -> None:
    own_pdp.start()
    pid = own_pdp.process.process.pid
    with client_for(own_pdp, kind, timeout_ms=200, retries=2, retry_delay_ms=1) as client:
        assert client.evaluate("GET", "/healthz").action == "ALLOW"
        client.clear_cache()
        os.kill(pid, signal.SIGSTOP)  # the real server, frozen: connections open, no answers
        try:
            start = time.monotonic()
            with pytest.raises(ContractShieldUnavailable) as info:
                client.evaluate("GET", "/healthz")
            elapsed = time.monotonic() - start
        finally:
            os.kill(pid, signal.SIGCONT)
        assert info.value.code == "timeout"
        assert client.stats().retries == 2
        assert elapsed >= 3 * 0.2 * 0.9  # three attempts, each with its own deadline
        assert client.evaluate("GET", "/healthz").action == "ALLOW"


def test_policy_version_change_clears_the_cache(own_pdp: Any) -> None:
    from extauthz.devstack.server import DEMO_POLICY

    policy_dir = own_pdp.dir / "policy"
    policy_dir.mkdir()
    (policy_dir / "schemas").symlink_to(DEMO_POLICY.parent / "schemas")
    policy = policy_dir / "demo.yaml"
    policy.write_text(DEMO_POLICY.read_text())
    own_pdp.policy = policy
    own_pdp.start()
    with client_for(own_pdp, "unix") as client:
        a = client.evaluate("GET", "/healthz")
        client.evaluate("GET", "/api/v1/licenses/L-1", identity=T1)
        assert client.stats().size == 2
        own_pdp.stop()
        edited = DEMO_POLICY.read_text().replace("maxArrayLength: 1000", "maxArrayLength: 999")
        assert edited != DEMO_POLICY.read_text()
        policy.write_text(edited)
        own_pdp.start()
        deadline = time.monotonic() + 5
        while True:  # the client's channel reconnects in the background
            try:
                # The first answer from the new policy carries its version, clears the cache.
                b = client.evaluate("GET", "/api/v1/licenses/L-2", identity=T1)
                break
            except ContractShieldUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert b.metadata.policy_version != a.metadata.policy_version
        s = client.stats()
        assert s.size == 1 and s.policy_version == b.metadata.policy_version
        client.evaluate("GET", "/healthz")
        assert client.stats().hits == 0  # the old entry was gone


def test_a_bad_description_is_the_callers_error_never_a_failover(tmp_path: Any) -> None:
    with ContractShieldClient(f"unix://{tmp_path}/none.sock", fail_open=True) as client:
        bad = Identity(authenticated=True, subject="a", claims={"groups": {"x", "y"}})
        with pytest.raises(InvalidContext, match="identity"):
            client.evaluate("GET", "/healthz", identity=bad)
        with pytest.raises(InvalidContext, match="headers"):
            client.evaluate("GET", "/healthz", headers={"x-n": 1})  # type: ignore[dict-item]
        s = client.stats()
        assert (s.errors, s.failovers) == (0, 0)
