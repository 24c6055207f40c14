"""Lifecycle steps every devstack process shares: wait until it answers, stop it for sure.

One place for the bounded waits, so no helper can forget a timeout or leave a child behind,
and one ``Managed`` base for the ``with`` statement every helper supports.
"""

from __future__ import annotations

import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Self


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    timeout: float,
    name: str,
    log_tail: Callable[[], str],
    interval: float = 0.05,
) -> bool:
    """Poll ``ready()`` until it holds (True) or ``timeout`` passes (False).

    A process that exits while we wait raises ``RuntimeError`` with its exit code and log tail:
    waiting on would only turn a clear crash into a vague timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log_tail()}")
        if ready():
            return True
        time.sleep(interval)
    return False


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    """SIGTERM and wait up to ``timeout``; SIGKILL if it is still there. The exit code, or
    None when there was no process."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


def kill(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGKILL a running process and reap it (an abrupt outage, no drain)."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=timeout)


class Managed(ABC):
    """Something started for real, as a context manager: ``with`` starts it unless it already
    is, and always releases it on the way out, whatever happened inside."""

    @property
    @abstractmethod
    def started(self) -> bool: ...

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def release(self) -> None:
        """What leaving ``with`` does: stop it, kill it, or stop it and clean up after it."""

    def __enter__(self) -> Self:
        return self if self.started else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class Child(Managed):
    """A subprocess that works in ``workdir`` and logs to ``log_name`` there."""

    log_name: ClassVar[str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    @property
    def started(self) -> bool:
        return self.process is not None
