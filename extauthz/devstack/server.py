"""Run ``extauthz serve`` as a real subprocess and wait until it answers.

Settings go through environment variables and flags exactly as an operator would pass them.
``stop()`` sends SIGTERM and returns the exit code (the drain path); ``kill()`` is SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from .._shipped import shipped_dir
from ..server import socket as unix_socket
from . import _process, port_answers

DEFAULT_START_TIMEOUT = 20.0
DEMO_POLICY = shipped_dir("policies") / "demo.yaml"


class ServerProcess(_process.Child):
    """One ``extauthz serve`` process; a context manager that always stops it."""

    log_name = "server.log"

    def __init__(
        self,
        *,
        policy: str | os.PathLike[str] = DEMO_POLICY,
        unix_socket_path: str | os.PathLike[str] | None = None,
        grpc_port: int = 0,
        http_port: int = 0,
        http_unix_socket_path: str | os.PathLike[str] | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        workers: int = 1,
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="contractshield-pdp-"))
        self.policy = Path(policy)
        self.unix_socket = os.fspath(unix_socket_path) if unix_socket_path else None
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.http_unix_socket = os.fspath(http_unix_socket_path) if http_unix_socket_path else None
        self.extra_args = list(extra_args or ())
        self.env = dict(env or {})
        self.workers = workers
        self.process = None

    @property
    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "extauthz", "serve", "--policy", str(self.policy)]
        if self.unix_socket:
            argv += ["--unix-socket", self.unix_socket]
        if self.http_unix_socket:
            argv += ["--http-unix-socket", self.http_unix_socket]
        argv += ["--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port)]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        return argv + self.extra_args

    @property
    def unix_sockets(self) -> list[str]:
        """The socket of every worker (Envoy's PDP endpoints); ``[unix_socket]`` for one."""
        from ..server.workers import worker_sockets

        return worker_sockets(self.unix_socket, self.workers) if self.unix_socket else []

    @property
    def http_unix_sockets(self) -> list[str]:
        """The HTTP socket of every worker; ``[http_unix_socket]`` for one."""
        from ..server.workers import worker_sockets

        if not self.http_unix_socket:
            return []
        return worker_sockets(self.http_unix_socket, self.workers)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = DEFAULT_START_TIMEOUT, *, wait: bool = True) -> ServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HOT_RELOAD": "false", **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env
            )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        assert self.process is not None
        if _process.wait_ready(
            self.process,
            self._answers,
            timeout=timeout,
            name="extauthz serve",
            log_tail=self.log_tail,
        ):
            return
        self.kill()
        raise TimeoutError(f"extauthz serve not ready within {timeout} s: {self.log_tail()}")

    def _answers(self) -> bool:
        if self.workers > 1 and f"{self.workers} workers)" not in self.log_tail(200):
            return False  # the supervisor says so once every worker has started serving
        for path in [*self.unix_sockets, *self.http_unix_sockets]:
            if not (os.path.exists(path) and unix_socket.is_live(path)):
                return False
        if self.grpc_port and not port_answers("127.0.0.1", self.grpc_port):
            return False
        if self.http_port:
            try:
                with urllib.request.urlopen(f"{self.http_url}/live", timeout=0.5) as resp:
                    return resp.status == 200
            except OSError:
                return False
        return True

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` of the server's own log; decision-log records (on stdout by
        default, in the same file here) are left out."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        own = [ln for ln in text.splitlines() if '"log":"contractshield.decision"' not in ln]
        return "\n".join(own[-lines:])

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; the exit code (None if it was not running)."""
        return _process.terminate(self.process, timeout)

    def kill(self) -> None:
        _process.kill(self.process, timeout=10)

    release = kill
