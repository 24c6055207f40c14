"""How many workers, and what each one binds: read by the settings (``WORKERS``, the length of
each worker's socket path), the supervisor (``workers``) and ``extauthz envoy-config``.

Kept apart from ``workers`` so that ``config`` can check these without importing the
supervisor, which imports ``config``.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

from .._exceptions import InvalidConfig

__all__ = ["parse_workers", "usable_cores", "worker_socket", "worker_sockets"]


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return max(1, cores)


def parse_workers(raw: object, source: str) -> int:
    """``WORKERS``: a positive integer or ``auto`` (the usable cores)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        text = str(raw).strip().lower()
        if text == "auto":
            return usable_cores()
        try:
            value = int(text)
        except ValueError:
            raise InvalidConfig(
                f"{source}: expected a number of workers or auto, got {raw!r}"
            ) from None
    if value < 1:
        raise InvalidConfig(f"{source}: must be at least 1, got {value}")
    return value


def worker_socket(path: str, index: int) -> str:
    """Worker ``index``'s Unix socket: ``/run/x/extauthz.sock`` → ``/run/x/extauthz.1.sock``."""
    p = Path(path)
    return os.fspath(p.with_name(f"{p.stem}.{index}{p.suffix}"))


def worker_sockets(path: str, workers: int) -> list[str]:
    """Every worker's socket (the Envoy cluster's endpoints); ``[path]`` for one worker."""
    return [path] if workers <= 1 else [worker_socket(path, i) for i in range(workers)]
