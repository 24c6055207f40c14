"""``AsyncContractShieldClient`` against the REAL server, over a Unix socket and over TCP."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from extauthz import ContractShieldUnavailable, Decision, Identity
from extauthz.client import DEFAULT_FAIL_OPEN_DECISION, AsyncContractShieldClient

ACTIVATE = "/api/v1/licenses/activate"
T1 = Identity(authenticated=True, subject="alice", tenant="t-1")
T2 = Identity(authenticated=True, subject="bob", tenant="t-2")
JSON = {"content-type": "application/json"}


def body(tenant: str = "t-1", **extra: Any) -> bytes:
    data = {"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "d", "tenantId": tenant, **extra}
    return json.dumps(data).encode()


async def test_async_cache_safety(pdp: Any, kind: str) -> None:
    hits: list[Decision] = []
    async with AsyncContractShieldClient(
        pdp.target(kind), timeout_ms=2000, on_cache_hit=hits.append
    ) as client:
        ok = await client.evaluate("POST", ACTIVATE, headers=JSON, body=body(), identity=T1)
        assert ok.action == "ALLOW"
        assert await client.evaluate("POST", ACTIVATE, headers=JSON, body=body(), identity=T1) == ok
        assert hits == [ok]
        ssrf = body(callbackUrl="http://127.0.0.1:6379/")
        blocked = await client.evaluate("POST", ACTIVATE, headers=JSON, body=ssrf, identity=T1)
        assert blocked.action == "BLOCK" and "vulnerability.ssrfInternal" in blocked.rule_ids
        other = await client.evaluate("POST", ACTIVATE, headers=JSON, body=body(), identity=T2)
        assert other.action == "BLOCK" and "tenant.binding" in other.rule_ids
        s = client.stats()
        assert (s.hits, s.misses, s.size) == (1, 3, 1)


async def test_async_concurrent_evaluations_share_one_channel(pdp: Any, kind: str) -> None:
    async with AsyncContractShieldClient(pdp.target(kind), timeout_ms=5000) as client:
        paths = [f"/api/v1/licenses/L-{i}" for i in range(20)]
        decisions = await asyncio.gather(*(client.evaluate("GET", p, identity=T1) for p in paths))
        assert all(d.action == "ALLOW" for d in decisions)
        assert client.stats().size == 20


async def test_async_failover_and_recovery(own_pdp: Any, kind: str) -> None:
    failovers: list[Decision] = []
    async with AsyncContractShieldClient(
        own_pdp.target(kind),
        timeout_ms=500,
        retries=2,
        fail_open=True,
        on_failover=lambda exc, d: failovers.append(d),
    ) as client:
        assert await client.evaluate("GET", "/healthz") == DEFAULT_FAIL_OPEN_DECISION
        s = client.stats()
        assert (s.failovers, s.errors, s.retries) == (1, 1, 2) and failovers
    async with AsyncContractShieldClient(own_pdp.target(kind), timeout_ms=500) as closed:
        with pytest.raises(ContractShieldUnavailable):
            await closed.evaluate("GET", "/healthz")
        await asyncio.to_thread(own_pdp.start)
        deadline = time.monotonic() + 5
        while True:
            try:
                d = await closed.evaluate("GET", "/healthz")
                break
            except ContractShieldUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert d.action == "ALLOW" and d.metadata.route_id == "health"
