"""Faults with traffic running through a real Envoy, a real PDP process and a real Redis.

Each test runs a fixed-rate mix of clean, attack and webhook requests through Envoy's
listener while something breaks, and checks what users and the upstream saw:

- every request got an HTTP answer (no connection errors);
- every answer is the one the policy gives, or the documented fail-closed 503;
- nothing reached the upstream unchecked: the echo upstream counted exactly as many requests
  as clients got 200 for (Envoy only forwards what the PDP allowed).

Nothing is timed: phases are told apart by the order of events (a request that started after
the kill and ended before the restart could only meet the outage), and recovery is a state
reached (answers after the first healthy ones), not a delay. Waits are hang guards
(``HANG_GUARD_S``), generous for a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from _reliability_support import (
    ACTIVATE,
    DEMO_POLICY,
    GOOD_ACTIVATION,
    Call,
    Load,
    Sample,
    Stack,
    check_request,
    mint_jwt,
    running_stack,
    traffic_mix,
    wait_until,
)
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from extauthz.devstack.redis import RedisServer

pytestmark = pytest.mark.timeout(90)
RATE = 60.0  # requests per second through Envoy: enough to catch every phase, light on 2 cores
HANG_GUARD_S = 60.0  # how long a wait may last before the test fails instead of hanging


def _unexpected(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if not s.expected]


def _allowed(samples: list[Sample]) -> int:
    return sum(1 for s in samples if s.status == 200)


def _assert_nothing_unchecked(stack: Stack, samples: list[Sample]) -> None:
    """Every request Envoy forwarded was allowed by the PDP, and vice versa."""
    assert wait_until(lambda: stack.upstream.count == _allowed(samples), HANG_GUARD_S), (
        f"upstream saw {stack.upstream.count} requests, clients got {_allowed(samples)} x 200"
    )


def _health(stack: Stack, server: Any = None) -> dict[str, Any]:
    server = server or stack.server
    with urllib.request.urlopen(f"{server.http_url}/health", timeout=5) as resp:
        return json.loads(resp.read())


def _summary(samples: list[Sample]) -> str:
    by: dict[tuple[str, int], int] = {}
    for s in samples:
        by[(s.kind, s.status)] = by.get((s.kind, s.status), 0) + 1
    return ", ".join(f"{k}:{st}={n}" for (k, st), n in sorted(by.items()))


@pytest.fixture
def token() -> str:
    return mint_jwt("alice", "acme")


# --- Redis killed and restarted --------------------------------------------------------------


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


def test_redis_killed_and_restarted(redis: RedisServer, token: str) -> None:
    """Webhooks fail closed (503) while Redis is down; everything else is untouched; it heals."""
    mix = traffic_mix(token)

    def expect(call: Call, status: int) -> bool:
        if call.kind == "webhook":
            return status in (200, 503)  # 503: the documented fail-closed answer
        return status in call.expect

    with running_stack(env={"REDIS_URL": redis.url}) as stack:
        pid = stack.pdp_pid()
        load = Load(stack.port, mix, rate=RATE, workers=4, expect=expect).start()
        try:
            time.sleep(2.0)
            redis.kill()
            t_kill = time.monotonic() - load.started
            time.sleep(3.0)
            down = _health(stack)
            t_restart = time.monotonic() - load.started
            redis.start()
            t_back = time.monotonic() - load.started
            # Recovery by itself: the PDP is not restarted, webhooks pass again.
            assert wait_until(
                lambda: any(
                    s.kind == "webhook" and s.status == 200 and s.at > t_back
                    for s in load.snapshot()
                ),
                HANG_GUARD_S,
            ), _summary(load.snapshot())
            time.sleep(2.0)
        finally:
            samples = load.stop()
        assert stack.server.process is not None and stack.server.process.poll() is None
        assert stack.pdp_pid() == pid  # same process throughout
    bad = _unexpected(samples)
    assert not bad, f"{len(bad)} unexpected answers: {_summary(bad)}"
    # Started after the kill, answered before the restart began: these met the outage.
    outage = [s for s in samples if t_kill < s.at and s.at + s.latency < t_restart]
    webhooks_down = [s for s in outage if s.kind == "webhook"]
    assert webhooks_down and all(s.status == 503 for s in webhooks_down), _summary(outage)
    others_down = [s for s in outage if s.kind != "webhook"]
    assert others_down and all(s.status != 503 for s in others_down), _summary(others_down)
    assert down["checks"]["redis"]["status"] == "down", down
    # Healed and staying healed: of the webhooks after the first one that passed again, the
    # later half all pass (the earlier half may still meet a connection Redis's restart broke).
    t_ok = min(s.at for s in samples if s.kind == "webhook" and s.status == 200 and s.at > t_back)
    healed = [s for s in samples if s.at > t_ok and s.kind == "webhook"]
    settled = healed[len(healed) // 2 :]
    assert settled and all(s.status == 200 for s in settled), _summary(settled)
    _assert_nothing_unchecked(stack, samples)


# --- the PDP killed with SIGKILL, restarted on the same (stale) socket -------------------------


def test_pdp_sigkill_fails_closed_and_a_restart_on_the_stale_socket_resumes(token: str) -> None:
    mix = traffic_mix(token)

    def expect(call: Call, status: int) -> bool:
        return status in call.expect or status == 503  # 503: Envoy's status_on_error

    with running_stack() as stack:
        envoy_pid = stack.envoy.process.pid if stack.envoy.process else None
        load = Load(stack.port, mix, rate=RATE, workers=4, expect=expect).start()
        try:
            time.sleep(1.5)
            t_pre_kill = time.monotonic() - load.started
            stack.server.kill()  # SIGKILL: no drain, no cleanup
            t_kill = time.monotonic() - load.started
            st = os.lstat(stack.socket_path)  # the socket file is left behind, stale
            assert stat.S_ISSOCK(st.st_mode)
            time.sleep(2.5)
            upstream_while_down = stack.upstream.count
            time.sleep(0.5)
            assert stack.upstream.count == upstream_while_down  # nothing gets through
            t_restart = time.monotonic() - load.started
            stack.server = stack.new_server().start()  # same socket path, Envoy untouched
            t_back = time.monotonic() - load.started
            assert wait_until(
                lambda: sum(1 for s in load.snapshot() if s.status == 200 and s.at > t_back) >= 10,
                HANG_GUARD_S,
            ), _summary(load.snapshot())
            t_healed = time.monotonic() - load.started  # ten checks answered by the new PDP
            time.sleep(2.0)
        finally:
            samples = load.stop()
        assert stack.envoy.process is not None and stack.envoy.process.pid == envoy_pid
        assert stack.envoy.process.poll() is None
    bad = _unexpected(samples)
    assert not bad, f"{len(bad)} unexpected answers: {_summary(bad)}"
    assert all(s.status != 0 for s in samples)
    # Started after the kill and answered before the restart: no PDP could have decided them.
    down = [s for s in samples if t_kill < s.at and s.at + s.latency < t_restart]
    assert down and all(s.status == 503 for s in down), _summary(down)
    # Answered before the signal was sent (a request answered while kill() ran may meet it).
    before = [s for s in samples if s.at + s.latency < t_pre_kill]
    assert before and all(s.status in (200, 400, 403) for s in before), _summary(before)
    after = [s for s in samples if s.at > t_healed]
    assert after and all(s.status != 503 for s in after), _summary(after)
    _assert_nothing_unchecked(stack, samples)


# --- a policy file replaced by garbage while checks run -------------------------------------------


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(DEMO_POLICY.parent, target)
    return target / DEMO_POLICY.name


def _write_in_place(path: Path, data: bytes, *, chunk: int = 64, pause: float = 0.002) -> None:
    """Rewrite a file in place, slowly: a reader may see any prefix of the new content."""
    with path.open("r+b") as f:
        f.truncate(0)
        for i in range(0, len(data), chunk):
            f.write(data[i : i + chunk])
            f.flush()
            time.sleep(pause)


def test_policy_replaced_by_garbage_keeps_the_old_policy(policy_copy: Path, token: str) -> None:
    mix = traffic_mix(token)
    env = {"HOT_RELOAD": "true", "RELOAD_DEBOUNCE_MS": "100"}
    with running_stack(policy=policy_copy, env=env) as stack:
        version = _health(stack)["checks"]["policy"]["version"]
        load = Load(stack.port, mix, rate=RATE, workers=4).start()
        try:
            time.sleep(1.0)
            good = policy_copy.read_bytes()
            garbage = [
                b"\x00\xff garbage \xfe" * 200,  # binary
                # a half-written file, cut inside a CEL expression
                good[: good.index(b"identity.tenant !=") + 10],
                b"policyVersion: '0.1'\nroutes: &a [*a]\n",  # YAML alias
                good.replace(
                    b"path: /healthz", b"path: /healthz/{x}/{x}"
                ),  # valid YAML, bad policy
            ]
            errors: list[str | None] = [None]

            def refused() -> bool:
                policy = _health(stack)["checks"]["policy"]
                assert policy["version"] == version, policy  # the old policy keeps deciding
                return policy["lastReloadError"] not in errors

            for junk in garbage:
                _write_in_place(policy_copy, junk)
                # The reloader tries and refuses: a new error, each with its own reason.
                assert wait_until(refused, HANG_GUARD_S), _health(stack)
                errors.append(_health(stack)["checks"]["policy"]["lastReloadError"])
            # Atomic replacement by garbage (rename over the file) is refused too.
            tmp = policy_copy.with_suffix(".tmp")
            tmp.write_bytes(b"{{{{ not a policy")
            tmp.replace(policy_copy)
            assert wait_until(refused, HANG_GUARD_S), _health(stack)
            # A good policy again is picked up, without a restart.
            _write_in_place(policy_copy, good.replace(b"name: demo", b"name: demo-v2"))
            assert wait_until(
                lambda: _health(stack)["checks"]["policy"]["version"] != version, HANG_GUARD_S
            )
            time.sleep(0.5)
        finally:
            samples = load.stop()
    bad = _unexpected(samples)
    assert len(samples) > 100
    assert not bad, f"{len(bad)} failed checks: {_summary(bad)}"
    _assert_nothing_unchecked(stack, samples)


# --- SIGTERM under load -------------------------------------------------------------------------


def _big_activation(i: int, pad: int = 200_000) -> bytes:
    body = {**GOOD_ACTIVATION, "deviceId": f"dev-{i}"}
    body["callbackUrl"] = "https://ok.example/" + "x" * pad
    return check_request(
        "POST",
        ACTIVATE,
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode(),
        claims={"sub": "alice", "tenant": "acme"},
    ).SerializeToString()


def test_sigterm_under_load_drains_exits_0_and_removes_the_socket(token: str) -> None:
    mix = traffic_mix(token)

    def expect(call: Call, status: int) -> bool:
        return status in call.expect or status == 503  # after the drain: Envoy fails closed

    with running_stack() as stack:
        load = Load(stack.port, mix, rate=RATE, workers=4, expect=expect).start()
        try:
            time.sleep(1.5)
            stack.server.signal(signal.SIGTERM)
            t_term = time.monotonic() - load.started
            code = stack.server.process.wait(timeout=HANG_GUARD_S) if stack.server.process else None
            t_exit = time.monotonic() - load.started
            time.sleep(1.0)
        finally:
            samples = load.stop()
        assert code == 0, stack.server.log_tail()
        assert not os.path.exists(stack.socket_path)
        assert "draining" in stack.server.log_tail()
    bad = _unexpected(samples)
    assert not bad, f"{len(bad)} unexpected answers: {_summary(bad)}"
    assert all(s.status != 0 for s in samples)  # every client got an HTTP answer
    assert sum(1 for s in samples if s.at < t_term and s.status == 200) > 10
    after = [s for s in samples if s.at > t_exit]  # the PDP is gone: Envoy fails closed
    assert after and all(s.status == 503 for s in after), _summary(after)
    _assert_nothing_unchecked(stack, samples)


def test_sigterm_answers_every_check_already_in_flight(start_server, socket_path: str) -> None:  # type: ignore[no-untyped-def]
    server = start_server(unix_socket_path=socket_path)
    channel = grpc.insecure_channel(
        f"unix:{socket_path}", options=[("grpc.max_send_message_length", 8 << 20)]
    )
    check: Callable[..., Any] = channel.unary_unary(
        "/envoy.service.auth.v3.Authorization/Check",
        request_serializer=lambda b: b,
        response_deserializer=CheckResponse.FromString,
    )
    try:
        check(_big_activation(0, 10), timeout=10)  # connected and warm
        burst = [_big_activation(i) for i in range(40)]
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=40) as pool:
            futures = [pool.submit(check, data, timeout=30) for data in burst]
            # The first answer means the server is working through the burst: the others
            # were sent and accepted on the connection before SIGTERM arrives.
            futures[0].result(timeout=30)
            server.signal(signal.SIGTERM)
            for f in futures:
                try:
                    resp = f.result(timeout=30)
                    # An answer, not a cancellation: the 200 KB callbackUrl breaks the schema's
                    # maxLength, so every one of them is a PERMISSION_DENIED with that hit.
                    assert resp.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0], resp
                    assert "contract.schema.invalid" in resp.denied_response.body, resp
                except grpc.RpcError as exc:
                    errors.append(exc.code().name)
        assert server.process.wait(timeout=20) == 0
    finally:
        channel.close()
    assert not errors, f"{len(errors)} of 40 in-flight checks failed: {sorted(set(errors))}"
