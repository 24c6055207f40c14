"""Unix socket hygiene: never steal a live socket, replace a stale one, set the mode, clean up.

A socket file outlives a crashed server. Before binding we try to connect: if something
answers, another server owns it (``SocketInUse``); if the connection is refused, the file is
stale and is removed. The file is bound under a umask that gives it no looser mode than
``SOCKET_MODE`` (default 0660, so only the owner and group, Envoy's, can connect), the mode is
set again right after, and on shutdown the file is removed only if it is still the one we
bound (a successor may have replaced it). ``SocketFile`` does all of that for one listener.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import InvalidConfig, SocketInUse

PROBE_TIMEOUT_SECONDS = 0.5


def is_live(path: str | os.PathLike[str]) -> bool:
    """True when a process accepts connections on the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_SECONDS)
        try:
            probe.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except TimeoutError:
            return True  # a backlog that full means a live, busy server
        return True


def prepare(path: str | os.PathLike[str], setting: str = "UNIX_SOCKET") -> Path:
    """Make ``path`` bindable: create the directory, remove a stale socket, refuse a live one.

    ``setting`` names the option in errors (``UNIX_SOCKET``, ``HTTP_UNIX_SOCKET``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = p.lstat()
    except FileNotFoundError:
        return p
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidConfig(f"{setting}: {p} exists and is not a socket; refusing to replace it")
    if is_live(p):
        raise SocketInUse(f"another server is answering on {p}; refusing to take over its socket")
    p.unlink()
    return p


def set_mode(path: str | os.PathLike[str], mode: int) -> None:
    os.chmod(path, mode)


def remove(path: str | os.PathLike[str]) -> None:
    """Remove our socket file on shutdown (only if it is still a socket)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


@dataclass(slots=True)
class SocketFile:
    """The socket file of one Unix listener; ``setting`` names it in errors (``UNIX_SOCKET``)."""

    path: str
    mode: int
    setting: str
    inode: int | None = None  # of the file we bound, once bound

    def prepare(self) -> Path:
        """``prepare`` with an unusable directory as ``InvalidConfig`` naming the setting."""
        try:
            return prepare(self.path, self.setting)
        except OSError as exc:
            raise InvalidConfig(f"{self.setting}: cannot prepare {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def umask(self) -> Iterator[None]:
        """Bind inside this: the file is never created with a looser mode than ``mode``."""
        old = os.umask(0o777 & ~self.mode)
        try:
            yield
        finally:
            os.umask(old)

    def bound(self) -> None:
        """After binding: set the mode, remember which file is ours."""
        set_mode(self.path, self.mode)
        self.inode = os.stat(self.path).st_ino

    def remove(self) -> None:
        """Remove the file if it is still the one we bound (never a successor's); idempotent."""
        inode, self.inode = self.inode, None
        if inode is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == inode:
                remove(self.path)
