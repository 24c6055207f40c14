"""Helpers for the reliability tests: CheckRequest builders, a counting upstream, a stack, load.

Process orchestration comes from ``extauthz.devstack`` (its echo upstream counts what reached
it, to prove nothing passed unchecked); only what it lacks lives here: a fixed-rate HTTP
load generator that records every status, and a one-call Envoy + PDP + upstream stack.
(The module name is unique on purpose: pytest's rootdir import mode shares one namespace.)
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf.struct_pb2 import Struct

from extauthz.demo.tokens import github_signature, mint_jwt, stripe_signature
from extauthz.devstack import free_port
from extauthz.devstack.envoy import (
    HTTP_MODE_CONFIG,
    SIDECAR_CONFIG,
    EnvoyProcess,
    render_config,
)
from extauthz.devstack.server import ServerProcess
from extauthz.devstack.upstream import UpstreamThread

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_POLICY = REPO_ROOT / "policies" / "demo.yaml"
DATA_DIR = REPO_ROOT / "tests" / "data"
CATALOGUE = DATA_DIR / "bypass_catalogue.yaml"
CATALOGUE_POLICY = DATA_DIR / "catalogue_policy.yaml"
ACTIVATE = "/api/v1/licenses/activate"
GOOD_ACTIVATION = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "dev-1",
    "tenantId": "acme",
    "callbackUrl": "https://ok.example/cb",
}
JWT_NAMESPACE = "envoy.filters.http.jwt_authn"

__all__ = [
    "ACTIVATE",
    "CATALOGUE",
    "CATALOGUE_POLICY",
    "DEMO_POLICY",
    "GOOD_ACTIVATION",
    "CountingUpstream",
    "Load",
    "Stack",
    "check_request",
    "github_signature",
    "mint_jwt",
    "running_stack",
    "stripe_signature",
]


def check_request(
    method: str = "GET",
    path: str = "/healthz",
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    claims: Mapping[str, Any] | None = None,
    host: str = "api.example",
    content_length: bool = True,
) -> CheckRequest:
    """A CheckRequest shaped like Envoy's (raw body bytes, jwt_authn payload in metadata)."""
    req = CheckRequest()
    http = req.attributes.request.http
    http.id = f"req-{time.monotonic_ns()}"
    http.method = method
    http.path = path
    http.host = host
    http.scheme = "http"
    for key, value in (headers or {}).items():
        http.headers[key.lower()] = value
    if body is not None:
        http.raw_body = body
        if content_length:
            http.headers["content-length"] = str(len(body))
    req.attributes.source.address.socket_address.address = "10.0.0.7"
    if claims is not None:
        payload = Struct()
        payload.update(dict(claims))
        req.attributes.metadata_context.filter_metadata[JWT_NAMESPACE].fields[
            "jwt_payload"
        ].struct_value.CopyFrom(payload)
    return req


# --- an upstream that counts -------------------------------------------------------------


CountingUpstream = UpstreamThread  # the devstack echo upstream counts what reached it


# --- HTTP calls and fixed-rate load ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Call:
    """One request of a traffic mix, and the statuses that count as correct for it."""

    kind: str
    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expect: frozenset[int] = frozenset({200})


def send(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    conn.request(method, path, body=body, headers=dict(headers or {}))
    resp = conn.getresponse()
    data = resp.read()
    return Reply(resp.status, data, {k.lower(): v for k, v in resp.getheaders()})


def webhook_call(kind: str, event_id: str) -> Call:
    """A signed, fresh webhook delivery (unique id: never a replay)."""
    if kind == "stripe":
        payload = json.dumps({"id": event_id, "type": "invoice.paid", "object": "event"}).encode()
        headers = {
            "stripe-signature": stripe_signature(payload),
            "content-type": "application/json",
        }
        return Call("webhook", "POST", "/webhooks/stripe", payload, headers)
    # GitHub's delivery id is not signed, so the replay key is the signed body: a new event
    # has a new body (here its id rides in it, as a real event's content differs)
    payload = json.dumps({"action": "opened", "number": 1, "event": event_id}).encode()
    headers = {
        "x-hub-signature-256": github_signature(payload),
        "x-github-delivery": event_id,
        "x-github-event": "pull_request",
        "content-type": "application/json",
    }
    return Call("webhook", "POST", "/webhooks/github", payload, headers)


def traffic_mix(token: str) -> Callable[[int], Call]:
    """Request ``i`` of a clean / attack / webhook mix against the demo policy."""
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    good = json.dumps(GOOD_ACTIVATION).encode()
    ssrf = json.dumps({**GOOD_ACTIVATION, "callbackUrl": "http://169.254.169.254/"}).encode()
    proto = json.dumps({**GOOD_ACTIVATION, "__proto__": {"admin": True}}).encode()
    fixed = [
        Call("clean", "POST", ACTIVATE, good, auth),
        Call(
            "clean",
            "GET",
            "/api/v1/licenses/lic-42",
            None,
            {"authorization": auth["authorization"]},
        ),
        Call("clean", "GET", "/healthz"),
        Call("attack", "POST", ACTIVATE, ssrf, auth, frozenset({403})),
        Call("attack", "POST", ACTIVATE, proto, auth, frozenset({403})),
        Call("attack", "GET", "/api/v1/licenses/%2e%2e/%2e%2e/admin", None, {}, frozenset({403})),
        Call("attack", "GET", "/admin/users", None, {}, frozenset({403})),
        Call("attack", "POST", ACTIVATE, b'{"licenseKey":', auth, frozenset({400})),
    ]

    def pick(i: int) -> Call:
        slot = i % (len(fixed) + 2)
        if slot < len(fixed):
            return fixed[slot]
        kind = "stripe" if slot == len(fixed) else "github"
        return webhook_call(kind, f"evt_{os.getpid()}_{i}_{time.monotonic_ns()}")

    return pick


@dataclass
class Sample:
    at: float  # seconds since the load started
    kind: str
    status: int  # 0 = connection error
    latency: float
    expected: bool


class Load:
    """Fixed-rate HTTP load from worker threads (keep-alive); records every reply."""

    def __init__(
        self,
        port: int,
        mix: Callable[[int], Call],
        *,
        rate: float = 100.0,
        workers: int = 4,
        expect: Callable[[Call, int], bool] | None = None,
    ) -> None:
        self.port = port
        self.mix = mix
        self.rate = rate
        self.workers = workers
        self.expect = expect or (lambda call, status: status in call.expect)
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next = 0
        self.started = 0.0

    def _ticket(self) -> int:
        with self._lock:
            n = self._next
            self._next += 1
            return n

    def _worker(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        interval = 1.0 / self.rate
        while not self._stop.is_set():
            n = self._ticket()
            due = self.started + n * interval
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            call = self.mix(n)
            t0 = time.monotonic()
            try:
                status = send(conn, call.method, call.path, call.body, call.headers).status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            t1 = time.monotonic()
            sample = Sample(
                t0 - self.started, call.kind, status, t1 - t0, self.expect(call, status)
            )
            with self._lock:
                self.samples.append(sample)
        conn.close()

    def start(self) -> Load:
        self.started = time.monotonic()
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 10.0) -> list[Sample]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        with self._lock:
            return list(self.samples)

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)


# --- one stack: counting upstream, PDP on a Unix socket, real Envoy ------------------------


@dataclass
class Stack:
    workdir: Path
    socket_path: str
    upstream: CountingUpstream
    server: ServerProcess
    envoy: EnvoyProcess
    policy: Path
    env: dict[str, str]
    extra_args: list[str]
    authz_mode: str = "grpc"

    @property
    def port(self) -> int:
        return self.envoy.listen_port

    def new_server(self) -> ServerProcess:
        """A fresh PDP process on the same socket path (what a supervisor's restart does)."""
        n = len(list(self.workdir.glob("server*")))
        http_mode = self.authz_mode == "http"
        return ServerProcess(
            policy=self.policy,
            unix_socket_path=None if http_mode else self.socket_path,
            http_unix_socket_path=self.socket_path if http_mode else None,
            http_port=free_port(),
            extra_args=self.extra_args,
            env=self.env,
            workdir=self.workdir / f"server{n}",
        )

    def pdp_pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid


@contextmanager
def running_stack(
    *,
    policy: Path = DEMO_POLICY,
    env: Mapping[str, str] | None = None,
    extra_args: list[str] | None = None,
    health_interval: str = "1s",
    ext_authz_timeout: str = "1s",
    authz_mode: str = "grpc",
) -> Iterator[Stack]:
    """Upstream + ``extauthz serve`` on a Unix socket + Envoy (sidecar config, or with
    ``authz_mode="http"`` Envoy's HTTP ext_authz mode); all stopped.

    The ext_authz timeout is raised from the shipped 0.2 s to 1 s: the machine running the
    tests is shared, and a scheduling stall must not pass for the fault under test.
    """
    workdir = Path(tempfile.mkdtemp(prefix="cs-rel-", dir="/tmp"))
    socket_path = str(workdir / "pdp.sock")
    http_mode = authz_mode == "http"
    upstream = CountingUpstream().start()
    server = ServerProcess(
        policy=policy,
        unix_socket_path=None if http_mode else socket_path,
        http_unix_socket_path=socket_path if http_mode else None,
        http_port=free_port(),
        extra_args=list(extra_args or ()),
        env=dict(env or {}),
        workdir=workdir / "server0",
    )
    envoy: EnvoyProcess | None = None
    stack: Stack | None = None
    try:
        server.start()
        config = render_config(
            HTTP_MODE_CONFIG if http_mode else SIDECAR_CONFIG,
            listen_port=free_port(),
            admin_port=free_port(),
            pdp_socket=socket_path,
            upstream=upstream.address,
            health_interval=health_interval,
            timeout=ext_authz_timeout,
        )
        envoy = EnvoyProcess(config, workdir=workdir / "envoy", concurrency=1).start()
        stack = Stack(
            workdir, socket_path, upstream, server, envoy, policy, dict(env or {}),
            list(extra_args or ()), authz_mode,
        )  # fmt: skip
        yield stack
    finally:
        if envoy is not None:
            envoy.stop()
        if stack is not None:
            stack.server.kill()
        server.kill()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
