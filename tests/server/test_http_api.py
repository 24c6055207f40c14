"""HTTP API on the server's loop: /v1/evaluate, /live, /ready, /health, /metrics."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from extauthz import ReplayStoreUnavailable
from extauthz.server.app import build_state
from extauthz.server.config import ServerConfig
from extauthz.server.state import ServerState


def context(method: str = "GET", path: str = "/healthz", **request: Any) -> dict[str, Any]:
    return {"request": {"method": method, "path": path, **request}}


@pytest.fixture
async def http(start_inproc, free_port):  # type: ignore[no-untyped-def]
    server = await start_inproc(http_port=free_port())
    async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as session:
        session.server = server  # type: ignore[attr-defined]
        yield session


async def test_evaluate_returns_the_decision(http) -> None:  # type: ignore[no-untyped-def]
    async with http.post("/v1/evaluate", json=context()) as resp:
        assert resp.status == 200
        decision = await resp.json()
    assert decision["action"] == "ALLOW" and decision["metadata"]["routeId"] == "health"
    assert decision["metadata"]["policyVersion"].startswith("sha256:")
    assert len(decision["metadata"]["requestId"]) == 32  # assigned when the caller sent none
    body = {
        "licenseKey": "k",
        "deviceId": "d",
        "tenantId": "acme",
        "callbackUrl": "http://169.254.169.254/",
    }
    ctx = context(
        "POST",
        "/api/v1/licenses/activate",
        headers={"content-type": "application/json"},
        body={"json": {"sample": body}},
    )
    ctx["identity"] = {"authenticated": True, "subject": "alice", "tenant": "acme"}
    ctx["id"] = "my-id"
    async with http.post("/v1/evaluate", json=ctx) as resp:
        decision = await resp.json()
    assert decision["action"] == "BLOCK" and decision["statusCode"] == 403
    assert "vulnerability.ssrfInternal" in [h["id"] for h in decision["ruleHits"]]
    assert decision["metadata"]["requestId"] == "my-id"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"request": {"path": "/x"}}', "request.method"),
        (b"[1, 2]", "expected an object"),
    ],
)
async def test_malformed_context_is_400_with_a_reason(http, payload: bytes, reason: str) -> None:  # type: ignore[no-untyped-def]
    async with http.post("/v1/evaluate", data=payload) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert reason in body["error"] and body["code"] == "INVALID_REQUEST"


async def test_the_callers_policy_is_ignored(http) -> None:  # type: ignore[no-untyped-def]
    ctx = context("GET", "/admin/x")
    ctx["policy"] = {"routes": []}  # the Node sidecar accepted this; we never do
    async with http.post("/v1/evaluate", json=ctx) as resp:
        assert (await resp.json())["action"] == "BLOCK"


async def test_probes(http) -> None:  # type: ignore[no-untyped-def]
    async with http.get("/live") as resp:
        assert resp.status == 200
    async with http.get("/ready") as resp:
        assert resp.status == 200 and (await resp.json())["ready"] is True
    async with http.get("/health") as resp:
        assert resp.status == 200
        health = await resp.json()
    assert health["status"] == "ok" and health["version"] and health["uptime"] >= 0
    policy = health["checks"]["policy"]
    assert policy["status"] == "ok" and policy["routeCount"] >= 6
    assert policy["version"].startswith("sha256:") and policy["lastReloadError"] is None
    assert policy["loadedAt"] > 0
    assert health["checks"]["redis"]["status"] in ("disabled", "ok")


class DownStore:
    async def claim(self, key: str, ttl_seconds: int) -> bool:
        raise ReplayStoreUnavailable("down")

    async def ping(self) -> bool:
        raise ReplayStoreUnavailable("connection refused")


async def test_ready_503_and_health_degraded_when_store_is_down(start_inproc, free_port) -> None:  # type: ignore[no-untyped-def]
    def down(config: ServerConfig) -> ServerState:
        state = build_state(config)
        state.replay_store = DownStore()
        return state

    server = await start_inproc(down, http_port=free_port())
    async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as http:
        async with http.get("/ready") as resp:
            assert resp.status == 503
            assert "replay store unavailable" in (await resp.json())["reason"]
        async with http.get("/health") as resp:
            health = await resp.json()
    assert health["status"] == "degraded"
    assert health["checks"]["redis"]["status"] == "down"
    assert "connection refused" in health["checks"]["redis"]["error"]


class ReloadFailedSource:
    """A source whose last reload failed but which still serves the previous policy."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last_error = "policy.yaml: routes[0].path: must start with /"

    def current(self) -> Any:
        return self.inner.current()


async def test_health_reports_last_reload_error(start_inproc, free_port) -> None:  # type: ignore[no-untyped-def]
    def failed(config: ServerConfig) -> ServerState:
        state = build_state(config)
        state.policy_source = ReloadFailedSource(state.policy_source)
        return state

    server = await start_inproc(failed, http_port=free_port())
    async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as http:
        async with http.get("/health") as resp:
            health = await resp.json()
        async with http.get("/ready") as resp:
            assert resp.status == 200  # still deciding with the previous policy
    assert health["status"] == "degraded"
    assert "must start with /" in health["checks"]["policy"]["lastReloadError"]


async def test_metrics_endpoint_parses_and_passes_promtool(http) -> None:  # type: ignore[no-untyped-def]
    for path in ("/healthz", "/admin/x", "/no/such/route"):
        async with http.post("/v1/evaluate", json=context("GET", path)) as resp:
            assert resp.status == 200
    async with http.get("/metrics") as resp:
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/plain")
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "contractshield_decisions",
        "contractshield_decision_duration_seconds",
        "contractshield_checks_in_flight",
        "contractshield_errors",
        "contractshield_policy_reloads",
        "contractshield_policy_routes",
        "contractshield_policy_info",
        "contractshield_replay_store_operations",
        "contractshield_replay_store_errors",
        "contractshield_up",
    ):
        assert name in families, name
    decisions = {
        (s.labels["action"], s.labels["route"]): s.value
        for s in families["contractshield_decisions"].samples
        if s.name.endswith("_total")
    }
    assert decisions[("ALLOW", "health")] == 1
    assert decisions[("BLOCK", "admin")] == 1
    assert decisions[("BLOCK", "unmatched")] == 1
    assert not any("/no/such/route" in route for _, route in decisions)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: apt-get install prometheus (.ci/run installs it)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


async def test_unknown_path_404_wrong_method_405(http) -> None:  # type: ignore[no-untyped-def]
    async with http.get("/v1/nope") as resp:
        assert resp.status == 404 and "no such endpoint" in (await resp.json())["error"]
    async with http.get("/v1/evaluate") as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "POST"
    async with http.head("/live") as resp:
        assert resp.status == 200


async def test_body_above_the_request_limit_is_413(start_inproc, free_port) -> None:  # type: ignore[no-untyped-def]
    server = await start_inproc(http_port=free_port(), max_request_bytes=100_000)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as http:
        big = {"request": {"method": "POST", "path": "/x", "body": {"raw": "a" * 200_000}}}
        async with http.post("/v1/evaluate", json=big) as resp:
            assert resp.status == 413
        async with http.post("/v1/evaluate", json=context()) as resp:
            assert resp.status == 200  # the server is still fine


async def test_internal_error_is_a_json_500_with_an_error_id(start_inproc, free_port) -> None:  # type: ignore[no-untyped-def]
    class Broken:
        last_error = None

        def current(self) -> Any:
            raise RuntimeError("boom")

    def broken(config: ServerConfig) -> ServerState:
        state = build_state(config)
        state.policy_source = Broken()
        return state

    server = await start_inproc(broken, http_port=free_port())
    async with aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as http:
        async with http.post("/v1/evaluate", json=context()) as resp:
            decision = await resp.json()  # the decision path turns it into a 500 denial
        assert decision["statusCode"] == 500 and "error id" in decision["reason"]
        async with http.get("/health") as resp:
            assert resp.status == 503 and (await resp.json())["status"] == "unhealthy"
        async with http.get("/ready") as resp:
            assert resp.status == 503


async def test_unexpected_handler_failure_is_a_json_500(start_inproc, free_port) -> None:  # type: ignore[no-untyped-def]
    from extauthz.server.metrics import Metrics

    class BrokenExposition(Metrics):
        def exposition(self) -> bytes:
            raise RuntimeError("registry exploded")

    def broken(config: ServerConfig) -> ServerState:
        state = build_state(config)
        state.metrics = BrokenExposition()
        return state

    server = await start_inproc(broken, http_port=free_port())
    base = f"http://127.0.0.1:{server.http_port}"
    async with aiohttp.ClientSession(base) as http, http.get("/metrics") as resp:
        assert resp.status == 500
        body = await resp.json()
    assert body["code"] == "INTERNAL_ERROR" and "error id" in body["error"]
    assert "exploded" not in body["error"]


async def test_explain_is_off_by_default(http) -> None:  # type: ignore[no-untyped-def]
    async with http.post("/v1/evaluate?explain=1", json=context()) as resp:
        assert resp.status == 403
        body = await resp.json()
    assert body["code"] == "EXPLAIN_DISABLED" and "EXPLAIN_API" in body["error"]


async def test_explain_when_turned_on(start_inproc, free_port) -> None:  # type: ignore[no-untyped-def]
    server = await start_inproc(http_port=free_port(), explain_api=True)
    ctx = context("GET", "/admin/users")
    async with (
        aiohttp.ClientSession(f"http://127.0.0.1:{server.http_port}") as session,
        session.post("/v1/evaluate?explain=1", json=ctx) as resp,
    ):
        assert resp.status == 200
        out = await resp.json()
    assert out["decision"]["action"] == "BLOCK"
    (hit,) = out["explain"]["hits"]
    assert hit["id"] == "admin.denied" and hit["phase"] == "cel"
    assert hit["location"].endswith("demo.yaml: routes[4].rules[0]")
    assert out["explain"]["cel"][0]["inputs"] == {}  # "false" reads nothing
