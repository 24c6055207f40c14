"""``extauthz serve --workers 2`` behind a real Envoy (one endpoint per worker socket) with a
real Redis: every worker answers, a replay to either worker is blocked, reload reaches every
worker, ``/metrics`` is one sum, a killed worker is replaced and nothing is let through."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_envoy_e2e import GOOD, activate, call, denial, stripe, token

from extauthz.client import ContractShieldClient
from extauthz.devstack import free_port
from extauthz.devstack.envoy import SIDECAR_CONFIG, EnvoyProcess, render_config
from extauthz.devstack.redis import RedisServer
from extauthz.devstack.server import DEMO_POLICY, ServerProcess
from extauthz.devstack.upstream import UpstreamThread
from extauthz.server.workers import PUBLISH_INTERVAL_SECONDS

WORKERS = 2


@dataclass
class Fleet:
    envoy: EnvoyProcess
    server: ServerProcess
    policy: Path

    @property
    def url(self) -> str:
        return self.envoy.url

    def get(self, path: str) -> bytes:
        """A probe, retried once on a reset: the kernel resets connections still queued on a
        SO_REUSEPORT listener whose worker was killed (a kubelet or Prometheus retries too)."""
        for attempt in (1, 2):
            try:
                with urllib.request.urlopen(f"{self.server.http_url}{path}", timeout=5) as resp:
                    return resp.read()
            except ConnectionResetError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def health(self) -> dict[str, Any]:
        return json.loads(self.get("/health"))

    def metrics(self) -> str:
        return self.get("/metrics").decode()

    def sample(self, name: str, **labels: str) -> float:
        total = 0.0
        for fam in text_string_to_metric_families(self.metrics()):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    workdir = Path(tempfile.mkdtemp(prefix="cs-wk-", dir="/tmp"))
    shutil.copytree(DEMO_POLICY.parent, workdir / "policies")  # the policy and its schemas
    policy = workdir / "policies" / DEMO_POLICY.name
    socket_path = str(workdir / "pdp.sock")
    redis = RedisServer().start()
    upstream = UpstreamThread().start()
    server = ServerProcess(
        policy=policy,
        unix_socket_path=socket_path,
        http_port=free_port(),
        workers=WORKERS,
        env={"REDIS_URL": redis.url, "DECISION_LOG": "off"},
        workdir=workdir / "server",
    )
    envoy: EnvoyProcess | None = None
    try:
        server.start()
        config = render_config(
            SIDECAR_CONFIG,
            listen_port=free_port(),
            admin_port=free_port(),
            pdp_socket=socket_path,
            workers=WORKERS,
            upstream=upstream.address,
            health_interval="1s",
        )
        envoy = EnvoyProcess(config, workdir=workdir / "envoy").start()
        yield Fleet(envoy, server, policy)
    finally:
        if envoy is not None:
            envoy.stop()
        server.kill()
        upstream.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_for(predicate: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_every_worker_answers_through_envoy_on_one_policy_version(fleet: Fleet) -> None:
    assert len(fleet.server.unix_sockets) == WORKERS
    for _ in range(10):
        ok = activate(fleet.url, GOOD, authorization=f"Bearer {token()}")
        assert ok.status == 200 and ok.json()["headers"]["x-contractshield-decision"] == "ALLOW"
        denial(call(fleet.url, "GET", "/admin/x"), 403, "admin.denied")
    workers = fleet.health()["workers"]
    assert [w["worker"] for w in workers] == list(range(WORKERS))
    assert len({w["pid"] for w in workers}) == WORKERS
    assert len({w["policyVersion"] for w in workers}) == 1
    # Envoy spread the checks over both endpoints (round robin): each socket took some.
    stats = fleet.envoy.admin("/clusters")
    per_endpoint = [ln for ln in stats.splitlines() if "::rq_total::" in ln and "pdp" in ln]
    assert len(per_endpoint) == WORKERS and all(
        int(ln.rsplit("::", 1)[1]) > 0 for ln in per_endpoint
    )


def test_a_replay_sent_to_the_other_worker_is_blocked(fleet: Fleet) -> None:
    first_socket, second_socket = fleet.server.unix_sockets
    for claim_on, replay_on in ((first_socket, second_socket), (second_socket, first_socket)):
        payload = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "invoice.paid"}).encode()
        headers = {k.replace("_", "-"): v for k, v in stripe(payload).items()}
        with ContractShieldClient(f"unix://{claim_on}", cache_enabled=False) as client:
            first = client.evaluate("POST", "/webhooks/stripe", headers=headers, body=payload)
        with ContractShieldClient(f"unix://{replay_on}", cache_enabled=False) as client:
            replay = client.evaluate("POST", "/webhooks/stripe", headers=headers, body=payload)
        assert first.action == "ALLOW", first
        assert replay.action == "BLOCK"
        assert "webhook.stripe.replay" in [hit.id for hit in replay.rule_hits]


def test_metrics_are_one_sum_over_the_workers_and_promtool_clean(fleet: Fleet) -> None:
    name = "contractshield_decisions_total"
    # A sibling's figures are up to PUBLISH_INTERVAL_SECONDS old: let earlier checks settle.
    time.sleep(PUBLISH_INTERVAL_SECONDS * 1.5)
    before = fleet.sample(name, action="BLOCK", route="admin")
    for _ in range(12):
        denial(call(fleet.url, "GET", "/admin/x"), 403, "admin.denied")
    wait_for(
        lambda: fleet.sample(name, action="BLOCK", route="admin") == before + 12,
        "12 more admin blocks in /metrics",
    )
    text = fleet.metrics()
    up = [ln for ln in text.splitlines() if ln.startswith("contractshield_up{")]
    assert len(up) == WORKERS and all(ln.endswith(" 1.0") for ln in up)
    assert text.count("# TYPE contractshield_decisions_total counter") == 1
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (.ci/run installs it)"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sighup_reload_reaches_every_worker_and_a_refusal_is_logged_once(fleet: Fleet) -> None:
    old = {w["policyVersion"] for w in fleet.health()["workers"]}
    good = fleet.policy.read_text()
    fleet.policy.write_text(good + "\n# edited\n")
    fleet.server.signal(signal.SIGHUP)
    new = wait_for(
        lambda: (
            (v := {w["policyVersion"] for w in fleet.health()["workers"]}) != old
            and len(v) == 1
            and v
        ),
        "every worker on the edited policy",
    )
    assert new != old
    fleet.policy.write_text("routes: [\n")
    log_before = fleet.server.log_path.read_text().count("policy reload refused")
    fleet.server.signal(signal.SIGHUP)
    wait_for(
        lambda: fleet.server.log_path.read_text().count("policy reload refused") > log_before,
        "the refusal logged",
    )
    time.sleep(1.5)  # a worker that reloaded too would have logged by now
    assert fleet.server.log_path.read_text().count("policy reload refused") == log_before + 1
    assert {w["policyVersion"] for w in fleet.health()["workers"]} == new
    ok = activate(fleet.url, GOOD, authorization=f"Bearer {token()}")
    assert ok.status == 200
    fleet.policy.write_text(good)


def test_a_killed_worker_loses_no_request_and_is_replaced(fleet: Fleet) -> None:
    """Every answer under load is the policy's (200 allowed, 403 admin) or Envoy failing
    closed (503): nothing is let through, nothing hangs; the supervisor restarts the worker."""
    victim = fleet.health()["workers"][0]
    answers: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                answers.append(("admin", call(fleet.url, "GET", "/admin/x").status))
                good = activate(fleet.url, GOOD, authorization=f"Bearer {token()}")
                answers.append(("good", good.status))
            except BaseException as exc:  # a transport error escaping Envoy is a failure
                errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(answers) > 60, "load running")
        os.kill(victim["pid"], signal.SIGKILL)
        replaced = wait_for(
            lambda: next(
                (
                    w
                    for w in fleet.health()["workers"]
                    if w["worker"] == 0 and w["pid"] != victim["pid"]
                ),
                None,
            ),
            "worker 0 replaced",
        )
        seen = len(answers)
        wait_for(lambda: len(answers) > seen + 60, "load after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not errors, errors[:3]
    # The replacement read the policy file; if that changed unannounced (an earlier test put
    # the original back without SIGHUP), the supervisor moves every worker to it. A sibling's
    # /health entry is up to PUBLISH_INTERVAL_SECONDS old, so wait for the one version.
    wait_for(
        lambda: (
            {w["policyVersion"] for w in fleet.health()["workers"]} == {replaced["policyVersion"]}
        ),
        "every worker on the replacement's policy version",
        timeout=10 * PUBLISH_INTERVAL_SECONDS,
    )
    allowed = {"admin": {403, 503}, "good": {200, 503}}
    wrong = [(kind, status) for kind, status in answers if status not in allowed[kind]]
    assert not wrong, wrong[:5]
    assert fleet.sample("contractshield_worker_restarts_total", worker="0") == 1
    # Once Envoy's health check has seen the new worker, every answer is the policy's again.
    wait_for(
        lambda: all(call(fleet.url, "GET", "/admin/x").status == 403 for _ in range(8)),
        "both endpoints answering",
    )


def test_sigterm_drains_every_worker_and_removes_their_sockets(fleet: Fleet) -> None:
    """Last: it stops the fleet."""
    pids = [w["pid"] for w in fleet.health()["workers"]]
    assert fleet.server.stop() == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(os.path.exists(p) for p in fleet.server.unix_sockets)


def test_tcp_ports_are_shared_by_the_workers_with_so_reuseport(tmp_path: Path) -> None:
    """Fresh connections to GRPC_PORT and HTTP_PORT reach both workers (the kernel spreads
    them); the decision log's ``worker`` (host:pid) says which one decided."""
    redis = RedisServer().start()
    server = ServerProcess(
        grpc_port=free_port(),
        http_port=free_port(),
        workers=WORKERS,
        env={"REDIS_URL": redis.url, "DECISION_LOG": "stdout"},
        workdir=tmp_path / "server",
    )
    try:
        server.start()
        for _ in range(16):  # one connection each
            with ContractShieldClient(f"127.0.0.1:{server.grpc_port}", cache_enabled=False) as c:
                assert c.evaluate("GET", "/admin/x").action == "BLOCK"
            body = json.dumps({"request": {"method": "GET", "path": "/admin/x"}}).encode()
            req = urllib.request.Request(f"{server.http_url}/v1/evaluate", data=body)
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert json.loads(resp.read())["action"] == "BLOCK"

        def records() -> list[dict[str, Any]]:
            return [
                json.loads(line)
                for line in server.log_path.read_text().splitlines()
                if '"log":"contractshield.decision"' in line
            ]

        wait_for(lambda: len(records()) == 32, "every decision logged (a batched writer)")
        by_transport: dict[str, set[str]] = {}
        for record in records():
            by_transport.setdefault(record["transport"], set()).add(record["worker"])
        assert {t: len(w) for t, w in by_transport.items()} == {"grpc": WORKERS, "http": WORKERS}
        # A second fleet on the same port is refused, not let into the SO_REUSEPORT group.
        second = subprocess.run(
            [*server.argv[:-4], "--http-port", "0", "--workers", "2"],
            env={**os.environ, "REDIS_URL": redis.url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 2
        assert f"GRPC_PORT: cannot listen on 0.0.0.0:{server.grpc_port}" in second.stderr
    finally:
        server.kill()
        redis.stop()


def test_workers_drain_and_exit_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves no supervisor to forward anything: each worker gets SIGTERM from the
    kernel (PR_SET_PDEATHSIG), drains and removes its socket, so nothing is left behind."""
    redis = RedisServer().start()
    server = ServerProcess(
        unix_socket_path=tmp_path / "pdp.sock",
        http_port=free_port(),
        workers=WORKERS,
        env={"REDIS_URL": redis.url, "DECISION_LOG": "off"},
        workdir=tmp_path / "server",
    )
    try:
        server.start()
        with urllib.request.urlopen(f"{server.http_url}/health", timeout=5) as resp:
            pids = [w["pid"] for w in json.loads(resp.read())["workers"]]
        assert len(pids) == WORKERS
        server.kill()

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(lambda: all(gone(pid) for pid in pids), "every orphaned worker exited")
        assert not any(os.path.exists(p) for p in server.unix_sockets)
    finally:
        server.kill()
        redis.stop()
