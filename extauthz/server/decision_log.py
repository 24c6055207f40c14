"""The decision log: one JSON line per decision, for "why was I denied?" after the fact.

Every BLOCK and MONITOR is logged; ALLOWs are sampled (``DECISION_LOG_SAMPLE_ALLOW``, 0 by
default). A record carries the decision id (the ``decisionId`` Envoy's access log shows), the
route, policy version, action, status, rule hits, latency, worker and transport, and a request
summary: method, path (never the query), the allow-listed headers, client ip, subject, tenant.
It never carries a credential header, a token, a signature, the query string or, unless the
operator opts a route in (``DECISION_LOG_BODY_ROUTES``), the body; an opted-in body has
secret-looking keys masked. ``DECISION_LOG_REDACT`` masks, hashes or drops any other field by
path, as upstream's ``redactions`` do.

Formatting happens at the edge, here, never in the engine. On the request path a record is
built and serialised (a few µs, only for logged decisions) and put on a bounded queue; a
writer thread hands batches of lines to the sinks (``logging`` handlers, see ``log_sinks``), so
a slow disk, a full pipe or a dead HTTP receiver never blocks a check: a full queue drops the
line and counts it. With ``DECISION_LOG=off`` the server holds no ``DecisionLog`` and a check pays one
``is None`` test.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .._exceptions import InvalidConfig
from ..decision import ALLOW
from ..webhooks import never_logged_headers as never_logged_webhook_headers
from .log_sinks import HttpBatchHandler, SinkSpec, make_handler, parse_sinks, split_list

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..decision import Decision, RuleHit
    from .metrics import Metrics

DEFAULT_HEADERS = "user-agent,content-type,content-length,x-forwarded-for"
MAX_BODY_CHARS = 4096
MAX_MESSAGE_CHARS = 300
MAX_VALUE_CHARS = 256
MASK = "***"
SENTINEL_TIMEOUT_SECONDS = 10.0  # close() waits this long for a stuck sink
FLUSH_SECONDS = 0.1  # the writer drains this often ...
WAKE_AT = 512  # ... or as soon as this many lines wait
MAX_BATCH = 1000
# Headers that carry credentials or signatures: refused in DECISION_LOG_HEADERS, whatever the
# operator asks (a prefix or substring match, lower case).
# Every webhook provider's own headers are among them (``extauthz.webhooks``).
_NEVER_HEADERS = re.compile(
    r"authorization|cookie|token|secret|signature|password|passwd|api[-_]?key|credential|"
    + "".join(f"^{re.escape(prefix)}|" for prefix in never_logged_webhook_headers())
    + r"jwt|session|^x-amz-security"
)
# Keys inside an opted-in body whose values are masked anyway.
_SECRET_KEYS = re.compile(
    r"pass(word|wd|phrase)?$|secret|token|signature|api[-_]?key|authorization|credential"
    r"|^card(number)?$|card[-_]?number|^cvc$|^cvv$|^pan$|private[-_]?key|^otp$",
    re.I,
)
_ACTIONS = ("mask", "hash", "drop")


@dataclass(frozen=True, slots=True)
class Redaction:
    """``path=action``: ``path`` is dot-separated, ``*`` matches any key or list item."""

    path: tuple[str, ...]
    action: str  # mask | hash | drop


def parse_redactions(text: str) -> tuple[Redaction, ...]:
    out: list[Redaction] = []
    for item in split_list(text):
        path, sep, action = item.rpartition("=")
        action = action.strip().lower()
        if not sep or not path.strip() or action not in _ACTIONS:
            raise InvalidConfig(
                f"DECISION_LOG_REDACT: {item!r} is not PATH=mask|hash|drop "
                "(e.g. request.body.email=hash)"
            )
        out.append(Redaction(tuple(p for p in path.strip().split(".") if p), action))
    return tuple(out)


def parse_headers(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(h.lower() for h in split_list(text)))
    for name in names:
        if _NEVER_HEADERS.search(name):
            raise InvalidConfig(
                f"DECISION_LOG_HEADERS: {name!r} may carry a credential or a signature and is "
                "never logged"
            )
    return names


class LogConfig(Protocol):
    """The ``DECISION_LOG*`` settings as ``ServerConfig`` holds them (``config`` checks them
    with ``DecisionLogSettings.from_config``, so this module does not import ``config``)."""

    @property
    def decision_log(self) -> str: ...
    @property
    def decision_log_sample_allow(self) -> float: ...
    @property
    def decision_log_headers(self) -> str: ...
    @property
    def decision_log_body_routes(self) -> str: ...
    @property
    def decision_log_redact(self) -> str: ...
    @property
    def decision_log_file_max_bytes(self) -> int: ...
    @property
    def decision_log_file_backups(self) -> int: ...
    @property
    def decision_log_queue(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DecisionLogSettings:
    sinks: tuple[SinkSpec, ...]
    sample_allow: float = 0.0
    headers: tuple[str, ...] = ()
    body_routes: frozenset[str] = frozenset()
    redactions: tuple[Redaction, ...] = ()
    file_max_bytes: int = 100 * 1024 * 1024
    file_backups: int = 5
    queue_size: int = 10_000

    @classmethod
    def from_config(cls, config: LogConfig) -> DecisionLogSettings:
        """Parse and check the ``DECISION_LOG_*`` settings; raises ``InvalidConfig``."""
        if not 0.0 <= config.decision_log_sample_allow <= 1.0:
            raise InvalidConfig("DECISION_LOG_SAMPLE_ALLOW: must be between 0 and 1")
        if config.decision_log_file_max_bytes < 0 or config.decision_log_file_backups < 0:
            raise InvalidConfig("DECISION_LOG_FILE_MAX_BYTES/_BACKUPS: must not be negative")
        if config.decision_log_queue < 1:
            raise InvalidConfig("DECISION_LOG_QUEUE: must be at least 1")
        return cls(
            sinks=parse_sinks(config.decision_log),
            sample_allow=config.decision_log_sample_allow,
            headers=parse_headers(config.decision_log_headers),
            body_routes=frozenset(split_list(config.decision_log_body_routes)),
            redactions=parse_redactions(config.decision_log_redact),
            file_max_bytes=config.decision_log_file_max_bytes,
            file_backups=config.decision_log_file_backups,
            queue_size=config.decision_log_queue,
        )


# --- the record ---------------------------------------------------------------------------


_second: list[Any] = [-1, ""]  # the last whole second formatted, and its text


def _timestamp() -> str:
    """RFC 3339 UTC with milliseconds; ~0.4 µs (datetime.isoformat costs ~3.7 µs)."""
    now = time.time()
    sec = int(now)
    cached = _second
    if cached[0] != sec:
        cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        cached[0] = sec
    return f"{cached[1]}.{int((now - sec) * 1000):03d}Z"


# The fallback encoder, for what orjson refuses (an opted-in body with an integer beyond 64
# bits or a lone surrogate); one instance: ``json.dumps`` with options builds one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)  # ASCII: a lone surrogate escaped


def encode(record: dict[str, Any]) -> str:
    """One JSON line: orjson (~0.5 µs for a BLOCK record; the stdlib encoder takes ~8 µs)."""
    try:
        return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return _ENCODER.encode(record)


def _cut(value: str | None, limit: int = MAX_VALUE_CHARS) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "…"


def _mask_secrets(value: Any, depth: int = 0) -> Any:
    """Mask the values of secret-looking keys anywhere in an opted-in body."""
    if depth > 32:
        return MASK
    if isinstance(value, Mapping):
        return {
            k: MASK
            if isinstance(k, str) and _SECRET_KEYS.search(k)
            else _mask_secrets(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_secrets(v, depth + 1) for v in value]
    return value


def _body(ctx: RequestContext) -> Any:
    body = ctx.request.body
    if body.json is not None:
        return _mask_secrets(body.json.sample)
    if body.raw is not None:
        return _cut(body.raw[: MAX_BODY_CHARS * 4].decode("utf-8", "replace"), MAX_BODY_CHARS)
    return None


def request_summary(ctx: RequestContext, headers: Iterable[str], with_body: bool) -> dict[str, Any]:
    r = ctx.request
    have = r.headers
    summary: dict[str, Any] = {
        "method": _cut(r.method, 16),
        "path": _cut(r.path),
        "headers": {h: _cut(have[h]) for h in headers if h in have},
        "clientIp": ctx.client.ip,
        "subject": _cut(ctx.identity.subject),
        "tenant": _cut(ctx.identity.tenant),
    }
    if r.host is not None:
        summary["host"] = _cut(r.host)
    if with_body:
        summary["body"] = _body(ctx)
    return summary


def _hits(hits: tuple[RuleHit, ...]) -> list[dict[str, str]]:
    out = []
    for h in hits:  # a loop, not a comprehension: no function frame for the usual 1-2 hits
        message = h.message
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "…"
        out.append({"id": h.id, "severity": h.severity, "message": message})
    return out


def build_record(
    decision: Decision,
    ctx: RequestContext | None,
    *,
    latency_seconds: float,
    transport: str,
    worker: str,
    headers: Iterable[str] = (),
    with_body: bool = False,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """The record as a dict (before redaction): the shape docs/deployment.md documents."""
    meta = decision.metadata
    record: dict[str, Any] = {
        "time": _timestamp(),
        "log": "contractshield.decision",
        "decisionId": meta.request_id,
        "routeId": meta.route_id,
        "policyVersion": meta.policy_version,
        "mode": meta.mode,
        "action": decision.action,
        "statusCode": decision.status_code,
        "reason": _cut(decision.reason, MAX_MESSAGE_CHARS),
        "ruleHits": _hits(decision.rule_hits),
        "latencyMs": round(latency_seconds * 1000, 3),
        "worker": worker,
        "transport": transport,
        "request": request_summary(ctx, headers, with_body) if ctx is not None else None,
    }
    if trace_id is not None:
        record["traceId"] = trace_id
    return record


def _hash(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def redact(record: Any, rules: Iterable[Redaction]) -> Any:
    """Apply each rule in place (``record`` is a fresh dict); missing paths are ignored."""
    for rule in rules:
        _apply(record, rule.path, rule.action)
    return record


def _apply(node: Any, path: tuple[str, ...], action: str) -> None:
    head, rest = path[0], path[1:]
    keys: list[Any]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else ([head] if head in node else [])
    elif isinstance(node, list) and (head == "*" or head.isdigit()):
        indexes = range(len(node)) if head == "*" else [int(head)]
        keys = sorted((i for i in indexes if i < len(node)), reverse=True)  # drops keep places
    else:
        return
    for key in keys:
        if rest:
            _apply(node[key], rest, action)
        elif action == "drop":
            del node[key]
        elif node[key] is not None:
            node[key] = MASK if action == "mask" else _hash(node[key])


# --- the log --------------------------------------------------------------------------------


class DecisionLog:
    """Samples, formats and queues decision records; a writer thread feeds the sinks.

    The request path appends the finished line to a bounded deque (no lock, no thread
    wake-up: waking a thread per record cost more than the whole check, measured in
    ``bench/decision_log_bench.py``); the writer drains it every ``FLUSH_SECONDS`` (sooner
    once ``WAKE_AT`` lines wait) and hands each batch to the ``logging`` handlers as one record
    whose message is the batch's lines, so a file or pipe gets one write per batch.
    """

    def __init__(
        self,
        settings: DecisionLogSettings,
        *,
        metrics: Metrics | None = None,
        handlers: list[logging.Handler] | None = None,
        trace_id: Callable[[], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.dropped = 0
        self._metrics = metrics
        self._rate = settings.sample_allow
        self._random = random.random
        self._headers = settings.headers
        self._body_routes = settings.body_routes
        self._redactions = settings.redactions
        self._trace_id = trace_id
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._lines: deque[str] = deque()
        self._max = settings.queue_size
        self._wake = threading.Event()
        self._drain_lock = threading.Lock()
        self._closing = False
        if handlers is None:
            handlers = [
                make_handler(
                    spec,
                    max_bytes=settings.file_max_bytes,
                    backups=settings.file_backups,
                    on_drop=self._dropped_by("http"),
                    http_queue=settings.queue_size,
                )
                for spec in settings.sinks
            ]
        self.handlers = handlers
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def _dropped_by(self, sink: str) -> Callable[[int], None]:
        def count(n: int) -> None:
            self.dropped += n
            if self._metrics is not None:
                self._metrics.observe_log_drop(sink, n)

        return count

    def wants(self, decision: Decision) -> bool:
        """BLOCK and MONITOR always; ALLOW with probability ``DECISION_LOG_SAMPLE_ALLOW``."""
        if decision.action != ALLOW:
            return True
        rate = self._rate
        return rate > 0.0 and (rate >= 1.0 or self._random() < rate)

    def submit(
        self,
        decision: Decision,
        ctx: RequestContext | None,
        latency_seconds: float,
        transport: str,
    ) -> None:
        """Log ``decision`` if sampled; never raises, never blocks."""
        # Most checks are an unsampled ALLOW (the default): out before ``wants``'s call.
        if (decision.action == ALLOW and self._rate <= 0.0) or not self.wants(decision):
            return
        try:
            line = self.format(decision, ctx, latency_seconds, transport)
        except Exception:  # a record we cannot write is a dropped record, never a failed check
            logging.getLogger("extauthz.server").exception("decision log: record dropped")
            self._dropped_by("error")(1)
            return
        lines = self._lines
        if len(lines) >= self._max:
            self._dropped_by("queue")(1)
            return
        lines.append(line)
        if len(lines) == WAKE_AT:
            self._wake.set()

    def format(
        self,
        decision: Decision,
        ctx: RequestContext | None,
        latency_seconds: float,
        transport: str,
    ) -> str:
        record = build_record(
            decision,
            ctx,
            latency_seconds=latency_seconds,
            transport=transport,
            worker=self.worker,
            headers=self._headers,
            with_body=decision.metadata.route_id in self._body_routes,
            trace_id=self._trace_id() if self._trace_id is not None else None,
        )
        if self._redactions:
            redact(record, self._redactions)
        return encode(record)

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        with self._drain_lock:
            lines = self._lines
            while lines:
                batch = [lines.popleft() for _ in range(min(len(lines), MAX_BATCH))]
                record = logging.LogRecord(
                    "extauthz.decisions", logging.INFO, "", 0, "\n".join(batch), None, None
                )
                for handler in self.handlers:
                    try:
                        handler.handle(record)
                    except Exception:
                        self._dropped_by("error")(len(batch))

    def flush(self) -> None:
        """Hand every queued line to the sinks now (tests, benchmarks, shutdown)."""
        self._drain()
        for handler in self.handlers:
            handler.flush()

    def close(self) -> None:
        """Write what is queued and close the sinks (the HTTP sink gets one last try)."""
        self._closing = True
        self._wake.set()
        self._thread.join(SENTINEL_TIMEOUT_SECONDS)
        self._drain()
        for handler in self.handlers:
            handler.close()


def from_config(
    config: LogConfig, metrics: Metrics | None = None, *, traced: bool = False
) -> DecisionLog | None:
    """The server's decision log, or None when ``DECISION_LOG=off``; ``traced``: with trace ids."""
    settings = DecisionLogSettings.from_config(config)
    if not settings.sinks:
        return None
    trace_id = None
    if traced:
        from .tracing import current_trace_id as trace_id
    return DecisionLog(settings, metrics=metrics, trace_id=trace_id)


__all__ = [
    "DEFAULT_HEADERS",
    "DecisionLog",
    "DecisionLogSettings",
    "HttpBatchHandler",
    "Redaction",
    "build_record",
    "from_config",
    "parse_headers",
    "parse_redactions",
    "redact",
]
