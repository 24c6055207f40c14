"""The Redis replay store in real ``extauthz serve`` processes, with a real redis-server that
the tests kill and restart: shared replay protection, fail closed / open, recovery."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from replay_helpers import NOT_SERVING, SERVING, Pdp, http, metric_value, stripe_webhook

from extauthz.devstack import free_port
from extauthz.devstack.redis import RedisServer
from extauthz.devstack.server import ServerProcess

UNAVAILABLE = "webhook.stripe.replayStoreUnavailable"
WAIT_S = 8.0
# The defaults (50 ms read, 100 ms connect) are tested in test_redis_store.py; on this shared,
# busy test machine the server tests use the URL's override so that a slow scheduler tick is
# not mistaken for an outage.
RELAXED = "?socket_timeout=0.5&socket_connect_timeout=0.5"  # the health watcher re-checks every second; leave room for a busy machine


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def start_pdp(
    start_server: Callable[..., ServerProcess], short_tmp: Path, redis_server: RedisServer
) -> Iterator[Callable[..., tuple[ServerProcess, Pdp]]]:
    """Start ``extauthz serve`` with REDIS_URL on its own socket; returns (process, client)."""
    clients: list[Pdp] = []

    def start(**env: str) -> tuple[ServerProcess, Pdp]:
        sock = str(short_tmp / f"pdp{len(clients)}.sock")
        server = start_server(
            unix_socket_path=sock,
            http_port=free_port(),
            env={"REDIS_URL": redis_server.url + RELAXED, **env},
        )
        clients.append(Pdp(sock))
        return server, clients[-1]

    try:
        yield start
    finally:
        for client in clients:
            client.close()


def test_replay_is_blocked_across_two_instances_sharing_redis(
    start_pdp: Callable[..., tuple[ServerProcess, Pdp]], redis_server: RedisServer
) -> None:
    _, first = start_pdp()
    _, second = start_pdp()
    event = f"evt_{uuid.uuid4().hex}"

    assert first.webhook(event) == (200, [])
    status, hits = second.webhook(event)
    assert status == 403 and hits == ["webhook.stripe.replay"]
    assert first.webhook(event)[1] == ["webhook.stripe.replay"]
    assert second.webhook()[0] == 200, "a new event passes on either instance"

    key = f"contractshield:replay:webhook:stripe-webhook:{event}"
    raw = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    assert raw.exists(key) == 1
    assert 0 < raw.ttl(key) <= 2 * 300 + 60  # 2 x timestampTolerance + 60 s for Stripe


def _status(server: ServerProcess) -> dict[str, Any]:
    ready_status, ready = http(f"{server.http_url}/ready")
    _, report = http(f"{server.http_url}/health")
    return {"ready": ready_status, "reason": ready["reason"], "health": report}


def test_redis_outage_fails_closed_and_everything_recovers_without_a_restart(
    start_pdp: Callable[..., tuple[ServerProcess, Pdp]], redis_server: RedisServer
) -> None:
    server, pdp = start_pdp()
    pid = server.process.pid if server.process else None
    assert pdp.webhook()[0] == 200
    assert http(f"{server.http_url}/ready")[0] == 200
    assert pdp.health() == SERVING

    redis_server.kill()
    status, hits = pdp.webhook()
    assert (status, hits) == (503, [UNAVAILABLE]), "webhooks fail closed"
    assert pdp.check(check_request_healthz())[0] == 200, "routes without replay are unaffected"

    wait_for(lambda: pdp.health() == NOT_SERVING)
    assert pdp.health("") == NOT_SERVING
    down = _status(server)
    assert down["ready"] == 503 and "replay store" in down["reason"]
    assert down["health"]["status"] == "degraded"
    assert down["health"]["checks"]["redis"]["status"] == "down"
    assert down["health"]["checks"]["redis"]["error"]
    metrics = http(f"{server.http_url}/metrics")[1]
    assert (
        metric_value(metrics, "contractshield_replay_store_operations_total", result="error") >= 1
    )
    assert (
        metric_value(
            metrics, "contractshield_replay_store_errors_total", type="replay_store_unavailable"
        )
        >= 1
    )

    redis_server.start()  # same port, empty
    event = f"evt_{uuid.uuid4().hex}"
    assert pdp.webhook(event) == (200, []), "the very next webhook after recovery passes"
    assert pdp.webhook(event)[1] == ["webhook.stripe.replay"], "and replay protection is back"
    wait_for(lambda: pdp.health() == SERVING)
    assert pdp.health("") == SERVING
    up = _status(server)
    assert up["ready"] == 200
    assert up["health"]["status"] == "ok"
    assert up["health"]["checks"]["redis"]["status"] == "ok"
    assert server.process is not None and server.process.pid == pid, "no PDP restart"


def test_fail_open_lets_signed_webhooks_through_with_a_low_hit(
    start_pdp: Callable[..., tuple[ServerProcess, Pdp]], redis_server: RedisServer
) -> None:
    server, pdp = start_pdp(REPLAY_FAIL_OPEN="1")
    redis_server.kill()
    assert pdp.webhook()[0] == 200
    # fail-open keeps the PDP in rotation: ready and SERVING, /health says degraded
    wait_for(lambda: _status(server)["health"]["checks"]["redis"]["status"] == "down")
    down = _status(server)
    assert down["ready"] == 200 and "REPLAY_FAIL_OPEN" in down["reason"], down
    assert down["health"]["status"] == "degraded"
    assert pdp.health() == SERVING

    body, headers = stripe_webhook()
    ctx = {
        "request": {
            "method": "POST",
            "path": "/webhooks/stripe",
            "headers": headers,
            "contentType": "application/json",
            "body": {"present": True, "sizeBytes": len(body), "raw": body.decode()},
        }
    }
    status, decision = http(f"{server.http_url}/v1/evaluate", json.dumps(ctx).encode())
    assert status == 200
    assert decision["action"] == "MONITOR" and decision["statusCode"] == 200  # let through
    assert decision["ruleHits"] == [
        {"id": UNAVAILABLE, "severity": "low", "message": decision["ruleHits"][0]["message"]}
    ]


def check_request_healthz() -> Any:
    from replay_helpers import check_request

    return check_request("GET", "/healthz")
