"""The demo stack: the real PDP, Envoy, Redis and a demo API, all in one throw-away directory.

Everything lives under a fresh temp dir: the Unix socket, the Envoy config and logs, Redis's
working dir and a *copy* of ``policies/`` (the hot-reload step edits the copy, never the repo).
Ports are free ones the OS hands out. ``close()`` stops every process it started, in reverse
order, and removes the directory; it is safe to call twice and runs on any error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._shipped import shipped_dir
from ..devstack import free_port
from ..devstack.envoy import HTTP_MODE, SIDECAR, EnvoyProcess, render_config
from ..devstack.redis import RedisServer, find_redis_server
from ..devstack.server import ServerProcess
from ..devstack.upstream import UpstreamThread
from .tour import Probe, send

POLICY_DIR = shipped_dir("policies")
POLICY_FILE = "demo.yaml"
START_TIMEOUT = 30.0
RELOAD_DEBOUNCE_MS = 150


@dataclass(slots=True, frozen=True)
class StackInfo:
    """What the demo prints about the running stack."""

    workdir: Path
    authz_mode: str  # how Envoy asks the PDP: "grpc" or "http" (``docs/envoy.md``)
    envoy_url: str
    envoy_admin_url: str
    pdp_socket: Path
    pdp_http_url: str
    policy_file: Path
    redis_url: str | None
    redis_note: str
    upstream_url: str
    pids: tuple[int, ...]


class DemoStack:
    """Start with ``open()`` (or ``with``); every part is stopped by ``close()``."""

    def __init__(
        self, *, use_redis: bool = True, policy_dir: Path = POLICY_DIR, authz_mode: str = "grpc"
    ) -> None:
        if authz_mode not in ("grpc", "http"):
            raise ValueError(f"authz_mode must be grpc or http, got {authz_mode!r}")
        self.use_redis = use_redis
        self.authz_mode = authz_mode
        self.policy_dir = policy_dir
        self.workdir: Path | None = None
        self.redis: RedisServer | None = None
        self.upstream: UpstreamThread | None = None
        self.server: ServerProcess | None = None
        self.envoy: EnvoyProcess | None = None
        self.info: StackInfo | None = None
        self.server_exit_code: int | None = None

    def open(self) -> StackInfo:
        try:
            with _children_ignore_ctrl_c():
                return self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> StackInfo:
        if not (self.policy_dir / POLICY_FILE).is_file():
            raise FileNotFoundError(
                f"{self.policy_dir / POLICY_FILE} not found: "
                "the package was built without its shipped files"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="contractshield-demo-"))
        policies = self.workdir / "policies"
        shutil.copytree(self.policy_dir, policies)
        policy_file = policies / POLICY_FILE
        socket_path = self.workdir / "pdp.sock"

        redis_url, redis_note = None, ""
        if self.use_redis:
            try:
                binary = find_redis_server()
            except FileNotFoundError:
                redis_note = "redis-server not on PATH: in-memory replay store (one process only)"
            else:
                (self.workdir / "redis").mkdir()
                self.redis = RedisServer(binary=binary, workdir=self.workdir / "redis").start()
                redis_url = self.redis.url
                redis_note = f"Redis replay store at {redis_url} ({binary})"
        else:
            redis_note = "--no-redis: in-memory replay store (one process only)"

        self.upstream = UpstreamThread().start()
        http_port = free_port()
        env = {
            "HOT_RELOAD": "true",
            "RELOAD_DEBOUNCE_MS": str(RELOAD_DEBOUNCE_MS),
            "LOG_LEVEL": "info",
        }
        if redis_url:
            env["REDIS_URL"] = redis_url
        http_mode = self.authz_mode == "http"
        self.server = ServerProcess(
            policy=policy_file,
            # One socket either way: gRPC ext_authz, or the HTTP API Envoy's HTTP mode calls.
            unix_socket_path=None if http_mode else socket_path,
            http_unix_socket_path=socket_path if http_mode else None,
            http_port=http_port,
            env=env,
            workdir=self.workdir / "pdp",
        ).start(START_TIMEOUT, wait=False)

        # Rendered while the PDP starts: the first render in a process loads the typed classes.
        listen_port, admin_port = free_port(), free_port()
        config = render_config(
            HTTP_MODE if http_mode else SIDECAR,
            listen_port=listen_port,
            admin_port=admin_port,
            pdp_socket=str(socket_path),
            upstream=self.upstream.address,
            health_interval="1s",
        )
        self.server.wait_ready(START_TIMEOUT)
        self.envoy = EnvoyProcess(config, workdir=self.workdir / "envoy").start(START_TIMEOUT)
        self._wait_for_path(self.envoy.url)

        redis_note = self._replay_store_note(f"http://127.0.0.1:{http_port}", redis_url, redis_note)
        pids = [self.server.process.pid, self.envoy.process.pid]  # type: ignore[union-attr]
        if self.redis is not None and self.redis.process is not None:
            pids.append(self.redis.process.pid)
        host, port = self.upstream.address
        self.info = StackInfo(
            workdir=self.workdir,
            authz_mode=self.authz_mode,
            envoy_url=self.envoy.url,
            envoy_admin_url=f"http://127.0.0.1:{admin_port}",
            pdp_socket=socket_path,
            pdp_http_url=f"http://127.0.0.1:{http_port}",
            policy_file=policy_file,
            redis_url=redis_url,
            redis_note=redis_note,
            upstream_url=f"http://{host}:{port}",
            pids=tuple(pids),
        )
        return self.info

    @staticmethod
    def _replay_store_note(pdp_http_url: str, redis_url: str | None, note: str) -> str:
        """Say which replay store the PDP really uses (its ``/health`` reports Redis)."""
        status = pdp_health(pdp_http_url).get("checks", {}).get("redis", {}).get("status")
        if redis_url and status != "ok":
            return (
                f"redis-server started at {redis_url}, but the PDP reports its store as "
                f"{status!r}: it uses the in-memory replay store"
            )
        return note

    @staticmethod
    def _wait_for_path(envoy_url: str, timeout: float = START_TIMEOUT) -> None:
        """Until ``GET /healthz`` goes Envoy → PDP → upstream and back with 200."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                reply = send(envoy_url, Probe("GET", "/healthz"), timeout=2.0)
                if reply.status == 200:
                    return
                last = f"HTTP {reply.status}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"Envoy → PDP → upstream not answering within {timeout} s: {last}")

    def close(self) -> None:
        """Stop Envoy, then the PDP (SIGTERM: it drains and removes its socket), the upstream,
        Redis; then delete the temp dir. Never raises for a part that is already gone."""
        if self.envoy is not None:
            self.envoy.stop()
            self.envoy = None
        if self.server is not None:
            self.server_exit_code = self.server.stop()
            self.server.kill()
            self.server = None
        if self.upstream is not None:
            self.upstream.stop()
            self.upstream = None
        if self.redis is not None:
            self.redis.stop()
            self.redis.cleanup()
            self.redis = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> StackInfo:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Start processes with SIGINT blocked (the mask survives fork and exec).

    Ctrl-C in a terminal signals the whole foreground process group; without this, Envoy,
    Redis and the PDP would all die at once and in no order. With it only the demo sees
    Ctrl-C, and ``close()`` stops them one by one with SIGTERM. Pending SIGINTs reach the
    demo itself when the block is lifted.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def pdp_health(pdp_http_url: str) -> dict[str, Any]:
    """The PDP's ``GET /health`` report (empty when it cannot be read)."""
    try:
        with urllib.request.urlopen(f"{pdp_http_url}/health", timeout=2) as resp:
            data = json.loads(resp.read())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def leftovers(workdir: Path, pids: Iterable[int] = ()) -> list[str]:
    """What is still there: processes among ``pids`` or whose command line mentions
    ``workdir`` (redis-server rewrites its title, hence the pids), and the directory itself."""
    found = []
    marker = os.fsencode(str(workdir))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z":
            continue  # exited, waiting to be reaped: nothing runs
        if marker in cmdline or int(entry.name) in set(pids):
            command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(f"pid {entry.name}: {command}")
    if workdir.exists():
        found.append(f"directory {workdir} still exists")
    return found
