"""Where decision-log lines go: ``logging`` handlers, each fed one JSON line per record.

    stdout             ``logging.StreamHandler(sys.stdout)``: what Kubernetes log shippers read
    file:PATH          ``logging.handlers.RotatingFileHandler`` (size-based, N backups);
                       ``{pid}`` in PATH gives each worker process its own file
    http(s)://URL      ``HttpBatchHandler``: newline-delimited JSON POSTed in batches

A handler never runs on the request path: ``DecisionLog``'s writer thread calls it with one
record per batch, whose message is the batch's lines joined by newlines. The HTTP handler has its own bounded queue
and sender thread on top, so a slow or dead receiver costs nothing but dropped lines, which
it counts (``contractshield_log_records_dropped_total{sink="http"}``).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .._exceptions import InvalidConfig

DEFAULT_BATCH = 200
DEFAULT_QUEUE = 10_000
DEFAULT_FLUSH_SECONDS = 1.0
DEFAULT_TIMEOUT_SECONDS = 2.0
BACKOFF_START_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """One parsed entry of ``DECISION_LOG``."""

    kind: str  # "stdout" | "file" | "http"
    target: str = ""  # the file path or URL

    @property
    def name(self) -> str:
        return self.kind


def split_list(text: str) -> list[str]:
    """A comma-separated setting's items, stripped, empty ones left out."""
    return [item for item in (raw.strip() for raw in text.split(",")) if item]


def parse_sinks(text: str) -> tuple[SinkSpec, ...]:
    """``stdout,file:/var/log/cs.jsonl,https://logs.example/ingest`` → specs; ``off`` → ()."""
    specs: list[SinkSpec] = []
    for item in split_list(text):
        low = item.lower()
        if low in ("off", "none", "0", "false"):
            return ()
        if low in ("stdout", "1", "on", "true"):
            specs.append(SinkSpec("stdout"))
        elif low.startswith("file:"):
            path = item[5:].strip()
            if not path:
                raise InvalidConfig("DECISION_LOG: file: needs a path (file:/var/log/cs.jsonl)")
            specs.append(SinkSpec("file", path))
        elif low.startswith(("http://", "https://")):
            specs.append(SinkSpec("http", item))
        else:
            raise InvalidConfig(
                f"DECISION_LOG: {item!r} is not a sink (stdout, file:PATH, http(s)://URL, off)"
            )
    kinds = [s.kind for s in specs]
    if len(set(kinds)) != len(kinds):
        raise InvalidConfig("DECISION_LOG: give each kind of sink at most once")
    return tuple(specs)


class LineFormatter(logging.Formatter):
    """The record's message is already the JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        return str(record.msg)


class BatchRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """``RotatingFileHandler`` for batches: one write per file, rotating between lines so
    that no file grows past ``maxBytes`` (unless one line alone is larger)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream is None:
                self.stream = self._open()
            size = self.stream.seek(0, 2)
            text = self.format(record) + "\n"
            if self.maxBytes <= 0 or size + len(text.encode("utf-8")) <= self.maxBytes:
                self.stream.write(text)  # the usual batch: no rotation inside it, one pass
                self.stream.flush()
                return
            chunk: list[str] = []
            for line in text[:-1].split("\n"):
                n = len(line.encode("utf-8")) + 1
                if self.maxBytes > 0 and size + n > self.maxBytes and (chunk or size):
                    self.stream.write("".join(chunk))
                    chunk = []
                    self.doRollover()
                    if self.stream is None:  # delay=True leaves it closed after a rollover
                        self.stream = self._open()
                    size = 0
                chunk.append(line + "\n")
                size += n
            self.stream.write("".join(chunk))
            self.stream.flush()
        except Exception:
            self.handleError(record)


class HttpBatchHandler(logging.Handler):
    """POST lines as ``application/x-ndjson`` batches; bounded, backs off, counts drops.

    ``emit`` only appends to a bounded deque (the oldest line is dropped and counted when it is
    full); a daemon thread sends up to ``batch`` lines when that many are waiting or every
    ``flush_seconds``. A failed POST keeps its batch and waits with exponential back-off
    (0.5 s doubling to 30 s), so a receiver that is down loses only what overflows the queue.
    """

    def __init__(
        self,
        url: str,
        *,
        batch: int = DEFAULT_BATCH,
        queue_size: int = DEFAULT_QUEUE,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.batch = max(1, batch)
        self.flush_seconds = flush_seconds
        self.timeout_seconds = timeout_seconds
        self.dropped = 0
        self.sent = 0
        self.failures = 0
        self._on_drop = on_drop
        self._lines: deque[str] = deque()
        self._max = max(1, queue_size)
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="decision-log-http", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        with self._wake:
            for line in self.format(record).split("\n"):  # a record may hold a batch
                if len(self._lines) >= self._max:
                    self._lines.popleft()
                    self._drop(1)
                self._lines.append(line)
            if len(self._lines) >= self.batch:
                self._wake.notify()

    @property
    def queued(self) -> int:
        return len(self._lines)

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self._on_drop is not None:
            self._on_drop(n)

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._wake:
                if backoff:
                    self._wake.wait(backoff)
                elif len(self._lines) < self.batch and not self._closing:
                    self._wake.wait(self.flush_seconds)
                if self._closing and (not self._lines or backoff):
                    return
                n = min(self.batch, len(self._lines))
                batch = [self._lines.popleft() for _ in range(n)]
            if not batch:
                continue
            if self._post(batch):
                backoff = 0.0
                self.sent += len(batch)
                continue
            self.failures += 1
            backoff = min(BACKOFF_MAX_SECONDS, max(BACKOFF_START_SECONDS, backoff * 2))
            with self._wake:  # back to the front; what no longer fits (the oldest) is dropped
                room = max(0, self._max - len(self._lines))
                keep = batch[len(batch) - room :] if room else []
                self._lines.extendleft(reversed(keep))
                if len(batch) > len(keep):
                    self._drop(len(batch) - len(keep))

    def _post(self, lines: list[str]) -> bool:
        body = ("\n".join(lines) + "\n").encode("utf-8")
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-ndjson"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return 200 <= response.status < 300
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (one try, within ``timeout``), then count the rest as dropped."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        with self._wake:
            left = len(self._lines)
            self._lines.clear()
        if left:
            self._drop(left)
        super().close()


def make_handler(
    spec: SinkSpec,
    *,
    max_bytes: int,
    backups: int,
    on_drop: Callable[[int], None] | None = None,
    http_queue: int = DEFAULT_QUEUE,
) -> logging.Handler:
    """The ``logging`` handler for one sink; the HTTP one drops beyond ``http_queue`` lines."""
    handler: logging.Handler
    if spec.kind == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    elif spec.kind == "file":
        path = spec.target.replace("{pid}", str(os.getpid()))
        handler = BatchRotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
    else:
        handler = HttpBatchHandler(spec.target, queue_size=http_queue, on_drop=on_drop)
    handler.setFormatter(LineFormatter())
    return handler


def now_ms() -> int:
    return int(time.time() * 1000)
