"""Server settings: command-line flags beat environment variables, which beat defaults.

``ServerConfig.resolve(args, environ)`` is the only place that reads either source, so the
rest of the server takes one frozen object. Invalid values raise ``InvalidConfig`` with a
one-line reason (the CLI prints it and exits 2).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidConfig

MIB = 1024 * 1024
# grpcio refuses messages above 4 MB by default; a CheckRequest carries the whole buffered
# body plus headers, so the floor is generous and grows with the policy's largest body.
MIN_MAX_REQUEST_BYTES = 8 * MIB
REQUEST_HEADROOM_BYTES = 1 * MIB
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    policy_path: str | None = None
    # Schema/OpenAPI references resolve against this directory instead of the policy file's.
    policy_base_dir: str | None = None
    unix_socket: str | None = None
    socket_mode: int = 0o660
    grpc_port: int = 0  # 0 = no TCP gRPC listener
    http_port: int = 3100  # 0 = no HTTP API
    http_host: str = "127.0.0.1"
    # The HTTP API (and Envoy's HTTP-mode ext_authz) on a Unix socket, with the gRPC socket's
    # hygiene and SOCKET_MODE; None = off.
    http_unix_socket: str | None = None
    grpc_host: str = "0.0.0.0"
    redis_url: str | None = None
    log_level: str = "info"
    # Decision log (see ``decision_log``): sinks, ALLOW sampling, what a record may carry.
    decision_log: str = "stdout"  # stdout | file:PATH | http(s)://URL, comma-separated | off
    decision_log_sample_allow: float = 0.0
    decision_log_headers: str = "user-agent,content-type,content-length,x-forwarded-for"
    decision_log_body_routes: str = ""  # route ids whose (masked) bodies are logged
    decision_log_redact: str = ""  # PATH=mask|hash|drop, comma-separated
    decision_log_file_max_bytes: int = 100 * MIB
    decision_log_file_backups: int = 5
    decision_log_queue: int = 10_000
    explain_api: bool = False  # /v1/evaluate?explain=1; off in production settings
    # POST /evaluate with a "policy" (upstream's sidecar takes the caller's): off, because a
    # caller-supplied policy lets any caller allow itself.
    allow_request_policy: bool = False
    hot_reload: bool = True
    reload_debounce_ms: int = 500
    replay_fail_open: bool = False
    # Below Envoy's default ext_authz timeout (200 ms): we answer with a denial before Envoy
    # gives up and falls back to status_on_error.
    check_deadline_ms: int = 150
    grace_seconds: float = 5.0
    # gRPC receive limit; None = sized from the policy (see ``effective_max_request_bytes``).
    max_request_bytes: int | None = None
    subject_claim: str = "sub"
    tenant_claim: str = "tenant"
    scopes_claim: str = "scope"
    jwt_metadata_key: str = "jwt_payload"
    workers: int = 1  # worker processes under a supervisor (``workers``); WORKERS=auto: cores
    # TLS for the TCP listeners (server/tls.py): cert + key, and a client CA for mTLS.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    http_tls: bool = True  # false: the HTTP listener stays plain (e.g. probes on localhost)

    def effective_max_request_bytes(self, policy_max_body_bytes: int = 0) -> int:
        """The gRPC receive limit: explicit, else the policy's largest body plus headroom."""
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        return max(MIN_MAX_REQUEST_BYTES, policy_max_body_bytes + REQUEST_HEADROOM_BYTES)

    @classmethod
    def resolve(
        cls, args: Any = None, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServerConfig:
        """Merge flags (attributes of ``args`` that are not None), then ``environ``, then defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.name
            raw: Any = None
            source = ""
            flag = getattr(args, name, None) if args is not None else None
            if flag is not None:
                raw, source = flag, f"--{name.replace('_', '-')}"
            elif name.upper() in env and env[name.upper()] != "":
                raw, source = env[name.upper()], name.upper()
            if name in overrides and overrides[name] is not None:
                raw, source = overrides[name], name
            if source:
                values[name] = _PARSERS.get(name, _text)(raw, source)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Cross-field checks; raises ``InvalidConfig`` with one line."""
        for name in ("grpc_port", "http_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise InvalidConfig(f"{name.upper()}: {port} is not a port (0-65535)")
        if (
            self.unix_socket is None
            and self.grpc_port == 0
            and self.http_port == 0
            and self.http_unix_socket is None
        ):
            raise InvalidConfig(
                "nothing to serve: set UNIX_SOCKET, GRPC_PORT, HTTP_PORT or HTTP_UNIX_SOCKET "
                "(--unix-socket, ...)"
            )
        if self.log_level not in LOG_LEVELS:
            raise InvalidConfig(
                f"LOG_LEVEL: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        if not 0 <= self.socket_mode <= 0o777:
            raise InvalidConfig(f"SOCKET_MODE: {oct(self.socket_mode)} is not a file mode")
        if self.check_deadline_ms <= 0:
            raise InvalidConfig("CHECK_DEADLINE_MS: must be a positive number of milliseconds")
        if self.reload_debounce_ms < 0:
            raise InvalidConfig("RELOAD_DEBOUNCE_MS: must not be negative")
        if self.grace_seconds < 0:
            raise InvalidConfig("GRACE_SECONDS: must not be negative")
        if self.max_request_bytes is not None and self.max_request_bytes < 64 * 1024:
            raise InvalidConfig("MAX_REQUEST_BYTES: must be at least 65536")
        for name in ("unix_socket", "http_unix_socket"):
            path = getattr(self, name)
            if path is not None and len(os.fsencode(path)) > 107:
                raise InvalidConfig(f"{name.upper()}: path longer than 107 bytes: {path}")
        if self.unix_socket is not None and self.unix_socket == self.http_unix_socket:
            raise InvalidConfig("HTTP_UNIX_SOCKET: must not be the gRPC UNIX_SOCKET")
        if self.workers > 1 and self.redis_url is None:
            raise InvalidConfig(
                f"WORKERS: {self.workers} workers with the in-memory replay store would let a "
                "webhook replay through on another worker; set REDIS_URL (shared) or run 1 worker"
            )
        for name in ("unix_socket", "http_unix_socket"):
            path = getattr(self, name)
            if self.workers > 1 and path is not None:
                from .workers import worker_socket

                longest = worker_socket(path, self.workers - 1)
                if len(os.fsencode(longest)) > 107:
                    raise InvalidConfig(
                        f"{name.upper()}: worker socket longer than 107 bytes: {longest}"
                    )
        from .decision_log import DecisionLogSettings

        DecisionLogSettings.from_config(self)  # raises InvalidConfig naming the bad setting
        self._validate_tls()
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise InvalidConfig(
                f"REDIS_URL: expected redis://, rediss:// or unix://, got {self.redis_url!r}"
            )

    def _validate_tls(self) -> None:
        """Refuse half a TLS setting: a listener that is meant to be secured must be."""
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given, missing = (
                ("TLS_CERT_FILE", "TLS_KEY_FILE")
                if self.tls_key_file is None
                else ("TLS_KEY_FILE", "TLS_CERT_FILE")
            )
            raise InvalidConfig(f"{given} is set but {missing} is not: give both (or neither)")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise InvalidConfig(
                "TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE (mTLS is TLS first)"
            )
        if (
            self.tls_cert_file is not None
            and self.grpc_port == 0
            and not (self.http_port and self.http_tls)
        ):
            raise InvalidConfig(
                "TLS_CERT_FILE: no TCP listener to secure (set GRPC_PORT, or HTTP_PORT with "
                "HTTP_TLS on); the Unix socket is never TLS"
            )


def _text(raw: Any, source: str) -> str:
    value = str(raw).strip()
    if not value:
        raise InvalidConfig(f"{source}: must not be empty")
    return value


def _int(raw: Any, source: str, *, base: int = 10) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    try:
        return int(str(raw).strip(), base)
    except ValueError:
        raise InvalidConfig(f"{source}: expected an integer, got {raw!r}") from None


def _mode(raw: Any, source: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower().removeprefix("0o")
    if not text or any(c not in "01234567" for c in text):
        raise InvalidConfig(f"{source}: expected an octal file mode such as 0660, got {raw!r}")
    return int(text, 8)


def _float(raw: Any, source: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise InvalidConfig(f"{source}: expected a number, got {raw!r}") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(raw: Any, source: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidConfig(f"{source}: expected true or false, got {raw!r}")


def _workers(raw: Any, source: str) -> int:
    from .workers import parse_workers

    return parse_workers(raw, source)


def _log_level(raw: Any, source: str) -> str:
    value = _text(raw, source).lower()
    if value == "warn":
        value = "warning"
    if value not in LOG_LEVELS:
        raise InvalidConfig(f"{source}: {raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return value


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "socket_mode": _mode,
    "grpc_port": _int,
    "http_port": _int,
    "reload_debounce_ms": _int,
    "check_deadline_ms": _int,
    "max_request_bytes": _int,
    "hot_reload": _bool,
    "replay_fail_open": _bool,
    "http_tls": _bool,
    "grace_seconds": _float,
    "log_level": _log_level,
    "decision_log_sample_allow": _float,
    "decision_log_file_max_bytes": _int,
    "decision_log_file_backups": _int,
    "decision_log_queue": _int,
    "explain_api": _bool,
    "allow_request_policy": _bool,
    "workers": _workers,
}
