"""A real, throw-away ``redis-server`` for tests, benchmarks and the demo.

Started on a free port in a temp dir with persistence off, so each run starts empty. ``kill()``
sends SIGKILL (an outage, not a clean shutdown) and ``start()`` again comes back on the SAME
port, which is what a PDP sees when Redis restarts behind a fixed address.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from . import _process, free_port

DEFAULT_START_TIMEOUT = 10.0


def find_redis_server() -> str:
    """The ``redis-server`` binary: ``$REDIS_SERVER``, then ``PATH``, then /usr/bin."""
    for candidate in (os.environ.get("REDIS_SERVER"), shutil.which("redis-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    raise FileNotFoundError("redis-server not found: install it (apt-get install redis-server)")


def redis_answers(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a Redis server at ``host:port`` answers PING with PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(_process.Child):
    """One ``redis-server`` process; a context manager that always stops it."""

    log_name = "redis.log"

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        binary: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self._auto_port = port is None
        self._served = False
        self.port = port or free_port(host)
        self.binary = binary or find_redis_server()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="contractshield-redis-"))
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> RedisServer:
        """Start (or restart, same port) and wait until it answers PING."""
        if self.running:
            return self
        deadline = time.monotonic() + timeout
        while True:
            with open(self.workdir / "redis.stderr", "ab") as err:
                self.process = subprocess.Popen(
                    self._argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT
                )
            while time.monotonic() < deadline and self.process.poll() is None:
                if redis_answers(self.host, self.port) and self.process.poll() is None:
                    self._served = True
                    return self
                time.sleep(0.02)
            if self.process.poll() is None or time.monotonic() >= deadline:
                log = self._log_tail()
                self.stop()
                raise TimeoutError(f"redis-server on port {self.port} did not answer: {log}")
            # It exited: most likely another process took the port between free_port() and
            # the bind. A port we chose ourselves and never served on can simply change.
            if self._auto_port and not self._served:
                self.port = free_port(self.host)
            time.sleep(0.05)

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.log_path),
            "--protected-mode", "no",
            "--daemonize", "no",
        ]  # fmt: skip

    def kill(self) -> None:
        """SIGKILL: an abrupt outage; clients see refused connections until ``start()``."""
        _process.kill(self.process, timeout=5)

    def restart(self, timeout: float = DEFAULT_START_TIMEOUT) -> RedisServer:
        self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        """Terminate (SIGTERM, then SIGKILL after 5 s) and remove the temp dir if we made it."""
        _process.terminate(self.process, timeout=5)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _log_tail(self) -> str:
        text = ""
        for path in (self.workdir / "redis.stderr", self.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")[-400:]
        return text.strip() or "(empty log)"

    @property
    def started(self) -> bool:
        return self.running

    release = cleanup


def main() -> int:
    """``python -m extauthz.devstack.redis``: run one until Ctrl-C (prints REDIS_URL)."""
    with RedisServer() as server:
        print(f"REDIS_URL={server.url}", flush=True)
        try:
            while server.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
