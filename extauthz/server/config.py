"""Server settings, each declared once: command-line flags beat environment variables, which
beat defaults.

Every field of ``ServerConfig`` is declared with ``setting(...)``: its default, how a value is
parsed, its flag (or none: environment only) and its help line. ``SETTINGS`` lists them; the
``serve`` command's flags (``cli._serve``), the reading of the environment (``resolve``), the
workers' environment (``workers``) and the documentation's table (checked by
``tests/server/test_server_settings.py``) all come from it. A new setting is one ``setting``
line here, its row in docs/deployment.md, and what reads it.

``ServerConfig.resolve(args, environ)`` is the only place that reads either source, so the
rest of the server takes one frozen object. Invalid values raise ``InvalidConfig`` with a
one-line reason (the CLI prints it and exits 2).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._exceptions import InvalidConfig
from ..policy._loader import MAX_DOCUMENT_BYTES
from .decision_log import DEFAULT_HEADERS, DecisionLogSettings
from .worker_plan import parse_workers, worker_socket

MIB = 1024 * 1024
# grpcio refuses messages above 4 MB by default; a CheckRequest carries the whole buffered
# body plus headers, so the floor is generous and grows with the policy's largest body.
MIN_MAX_REQUEST_BYTES = 8 * MIB
REQUEST_HEADROOM_BYTES = 1 * MIB
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

Parser = Callable[[Any, str], Any]  # (raw value, where it came from) -> value, or InvalidConfig


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


def _log_level(raw: Any, source: str) -> str:
    value = _text(raw, source).lower()
    if value == "warn":
        value = "warning"
    if value not in LOG_LEVELS:
        raise InvalidConfig(f"{source}: {raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return value


GRPC_TRANSPORTS = ("auto", "builtin", "grpcio")


def _grpc_transport(raw: Any, source: str) -> str:
    value = _text(raw, source).lower()
    if value not in GRPC_TRANSPORTS:
        raise InvalidConfig(f"{source}: {raw!r} is not one of {', '.join(GRPC_TRANSPORTS)}")
    return value


def _env_text(value: object) -> str:
    """A value as its environment variable spells it (what ``parse`` reads back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _shown(value: object) -> str:
    if value is None:
        return "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _env_text(value)


@dataclass(frozen=True, slots=True)
class Setting:
    """One server setting: a field of ``ServerConfig`` and how it is read and shown."""

    name: str  # the field; the environment variable is its upper case
    default: object
    parse: Parser
    help: str  # one line, for ``serve --help``
    flag: str | None  # None: environment only
    switch: bool | None  # a flag that takes no value and sets this (``--no-hot-reload``)
    shown: str  # the default as ``--help`` and docs/deployment.md say it
    to_env: Callable[[Any], str]  # the inverse of ``parse``, for the workers' environment
    # "unix" (a socket path: one per worker) or "tcp" (a port: shared by the workers) when the
    # setting opens a listener (``listeners``); None otherwise.
    address: Literal["unix", "tcp"] | None = None

    @property
    def env(self) -> str:
        return self.name.upper()

    @property
    def help_line(self) -> str:
        """The flag's help: the line, the default (for a flag taking a value), the variable."""
        if self.switch is not None:
            return f"{self.help} [{self.env}={_env_text(self.switch)}]"
        if self.shown in ("off", "required"):
            note = "" if self.shown == "off" else " (required)"
        else:
            note = f" (default {self.shown})"
        return f"{self.help}{note} [{self.env}]"


_SETTING = "extauthz.setting"  # the key of a declaration in a field's metadata


def setting(
    default: Any,
    help: str,
    *,
    parse: Parser | None = None,
    flag: str | bool = True,
    switch: bool | None = None,
    shown: str | None = None,
    to_env: Callable[[Any], str] = _env_text,
    address: Literal["unix", "tcp"] | None = None,
) -> Any:
    """Declare a ``ServerConfig`` field as a setting. ``flag``: True derives ``--the-name``, a
    string names it, False makes the setting environment only; ``parse`` defaults to text."""
    declared = Setting(
        name="",  # the field's, filled in by ``_declared``
        default=default,
        parse=parse or _text,
        help=help,
        flag=None if flag is False else ("" if flag is True else flag),  # "": derived
        switch=switch,
        shown=_shown(default) if shown is None else shown,
        to_env=to_env,
        address=address,
    )
    return dataclasses.field(default=default, metadata={_SETTING: declared})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The server's settings; see ``SETTINGS`` and docs/deployment.md for each one."""

    policy_path: str | None = setting(None, "policy file", flag="--policy", shown="required")
    # Schema/OpenAPI references resolve against this directory instead of the policy file's.
    policy_base_dir: str | None = setting(
        None,
        "resolve schema/OpenAPI references against this directory",
        shown="the policy file's directory",
    )
    unix_socket: str | None = setting(None, "serve gRPC on this Unix socket", address="unix")
    socket_mode: int = setting(
        0o660, "socket file mode, octal", parse=_mode, shown="0660", to_env=oct
    )
    grpc_port: int = setting(0, "serve gRPC on this TCP port, 0 = off", parse=_int, address="tcp")
    http_port: int = setting(3100, "HTTP API/probes port, 0 = off", parse=_int, address="tcp")
    http_host: str = setting("127.0.0.1", "HTTP bind address")
    # The HTTP API (and Envoy's HTTP-mode ext_authz) on a Unix socket, with the gRPC socket's
    # hygiene and SOCKET_MODE; None = off.
    http_unix_socket: str | None = setting(
        None,
        "serve the HTTP API (and Envoy's HTTP-mode ext_authz) on this Unix socket",
        address="unix",
    )
    grpc_host: str = setting("0.0.0.0", "TCP gRPC bind address")
    # Which gRPC server answers: builtin (server/h2_server.py) costs half grpc.aio's CPU per
    # check; grpcio keeps TLS (its certificate reload has no gap). auto: builtin unless TLS.
    grpc_transport: str = setting(
        "auto",
        "gRPC server: auto (builtin; grpcio when GRPC_PORT has TLS), builtin or grpcio",
        parse=_grpc_transport,
    )
    redis_url: str | None = setting(None, "shared webhook replay store", shown="in-memory")
    log_level: str = setting("info", "debug|info|warning|error|critical", parse=_log_level)
    # Decision log (see ``decision_log``): sinks, ALLOW sampling, what a record may carry.
    decision_log: str = setting(
        "stdout", "decision log sinks: stdout, file:PATH, http(s)://URL, or off", flag=False
    )
    decision_log_sample_allow: float = setting(
        0.0, "fraction of ALLOWs logged (0-1)", parse=_float, flag=False
    )
    decision_log_headers: str = setting(
        DEFAULT_HEADERS, "request headers copied into a record", flag=False
    )
    decision_log_body_routes: str = setting(
        "", "route ids whose (masked) bodies are logged", flag=False, shown="empty"
    )
    decision_log_redact: str = setting(
        "", "PATH=mask|hash|drop, comma-separated", flag=False, shown="empty"
    )
    decision_log_file_max_bytes: int = setting(
        100 * MIB, "size at which a log file rotates", parse=_int, flag=False, shown="100 MiB"
    )
    decision_log_file_backups: int = setting(5, "rotated log files kept", parse=_int, flag=False)
    decision_log_queue: int = setting(
        10_000, "lines waiting for the writer", parse=_int, flag=False
    )
    explain_api: bool = setting(
        False, "/v1/evaluate?explain=1 (off in production)", parse=_bool, flag=False
    )
    # POST /evaluate with a "policy" (upstream's sidecar takes the caller's): off, because a
    # caller-supplied policy lets any caller allow itself.
    allow_request_policy: bool = setting(
        False,
        "let POST /evaluate carry the caller's own policy (unsafe)",
        parse=_bool,
        switch=True,
    )
    hot_reload: bool = setting(
        True, "do not watch the policy file", parse=_bool, flag="--no-hot-reload", switch=False
    )
    reload_debounce_ms: int = setting(500, "quiet time before a reload", parse=_int)
    # the size limit of each file a policy reads besides itself (policy._loader)
    max_document_bytes: int = setting(
        MAX_DOCUMENT_BYTES,
        "size limit of each OpenAPI document or schema file",
        parse=_int,
        shown="64 MiB",
    )
    replay_fail_open: bool = setting(
        False, "let webhooks through when the replay store is down", parse=_bool, switch=True
    )
    # Below Envoy's default ext_authz timeout (200 ms): we answer with a denial before Envoy
    # gives up and falls back to status_on_error.
    check_deadline_ms: int = setting(150, "deny a check not decided in time", parse=_int)
    grace_seconds: float = setting(5.0, "drain time on SIGTERM", parse=_float)
    # gRPC receive limit; None = sized from the policy (see ``effective_max_request_bytes``).
    max_request_bytes: int | None = setting(
        None,
        "gRPC receive limit",
        parse=_int,
        shown="policy's largest body + 1 MiB, ≥ 8 MiB",
    )
    subject_claim: str = setting("sub", "JWT claim naming the subject", flag=False)
    tenant_claim: str = setting("tenant", "JWT claim naming the tenant", flag=False)
    scopes_claim: str = setting("scope", "JWT claim holding the scopes", flag=False)
    jwt_metadata_key: str = setting(
        "jwt_payload", "jwt_authn's payload_in_metadata key", flag=False
    )
    # claim=header pairs a mesh's jwt_authn copied into headers (docs/mesh.md); empty = off
    jwt_claim_headers: str = setting(
        "", "claim=header,...: identity from a mesh's claim headers", flag=False, shown="off"
    )
    # Worker processes under a supervisor (``workers``); WORKERS=auto: the usable cores.
    workers: int = setting(1, "worker processes, or auto = usable cores", parse=parse_workers)
    # TLS for the TCP listeners (server/tls.py): cert + key, and a client CA for mTLS.
    tls_cert_file: str | None = setting(None, "PEM certificate for the TCP listeners")
    tls_key_file: str | None = setting(None, "PEM private key for it")
    tls_client_ca_file: str | None = setting(None, "require client certs signed by this CA")
    # false: the HTTP listener stays plain (e.g. probes on localhost)
    http_tls: bool = setting(
        True,
        "keep the HTTP listener plain when TLS is on",
        parse=_bool,
        flag="--no-http-tls",
        switch=False,
    )
    event_loop: str = setting("auto", "asyncio turns uvloop off", flag=False)

    @property
    def grpc_builtin(self) -> bool:
        """The gRPC listeners are served by ``h2_server`` (else by grpcio)."""
        if self.grpc_transport == "auto":
            return not (self.tls_cert_file is not None and self.grpc_port)
        return self.grpc_transport == "builtin"

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
        for s in SETTINGS:
            name = s.name
            raw: Any = None
            source = ""
            flag = getattr(args, name, None) if args is not None else None
            if flag is not None:
                raw, source = flag, s.flag or name
            elif env.get(s.env, "") != "":
                raw, source = env[s.env], s.env
            if name in overrides and overrides[name] is not None:
                raw, source = overrides[name], name
            if source:
                values[name] = s.parse(raw, source)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Cross-field checks; raises ``InvalidConfig`` with one line."""
        for s in ADDRESSES:
            port = getattr(self, s.name)
            if s.address == "tcp" and not 0 <= port <= 65535:
                raise InvalidConfig(f"{s.env}: {port} is not a port (0-65535)")
        if not any(getattr(self, s.name) for s in ADDRESSES):
            *some, last = (s.env for s in ADDRESSES)
            raise InvalidConfig(
                f"nothing to serve: set {', '.join(some)} or {last} ({ADDRESSES[0].flag}, ...)"
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
        if self.max_document_bytes <= 0:
            raise InvalidConfig("MAX_DOCUMENT_BYTES: must be a positive number of bytes")
        if self.grace_seconds < 0:
            raise InvalidConfig("GRACE_SECONDS: must not be negative")
        if self.max_request_bytes is not None and self.max_request_bytes < 64 * 1024:
            raise InvalidConfig("MAX_REQUEST_BYTES: must be at least 65536")
        for s in UNIX_SOCKETS:
            path = getattr(self, s.name)
            if path is not None and len(os.fsencode(path)) > 107:
                raise InvalidConfig(f"{s.env}: path longer than 107 bytes: {path}")
        if self.unix_socket is not None and self.unix_socket == self.http_unix_socket:
            raise InvalidConfig("HTTP_UNIX_SOCKET: must not be the gRPC UNIX_SOCKET")
        if self.workers > 1 and self.redis_url is None:
            raise InvalidConfig(
                f"WORKERS: {self.workers} workers with the in-memory replay store would let a "
                "webhook replay through on another worker; set REDIS_URL (shared) or run 1 worker"
            )
        for s in UNIX_SOCKETS:
            path = getattr(self, s.name)
            if self.workers > 1 and path is not None:
                longest = worker_socket(path, self.workers - 1)
                if len(os.fsencode(longest)) > 107:
                    raise InvalidConfig(f"{s.env}: worker socket longer than 107 bytes: {longest}")
        DecisionLogSettings.from_config(self)  # raises InvalidConfig naming the bad setting
        self._validate_tls()
        if self.jwt_claim_headers:
            from ..envoy.request import parse_claim_headers

            parse_claim_headers(self.jwt_claim_headers)  # raises InvalidConfig
        if self.redis_url is not None:
            from ..replay_redis import parse_redis_url

            parse_redis_url(self.redis_url)  # raises InvalidConfig naming what is wrong

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
        if self.grpc_transport == "builtin" and self.tls_cert_file is not None and self.grpc_port:
            raise InvalidConfig(
                "GRPC_TRANSPORT: builtin serves plaintext gRPC only; with TLS_CERT_FILE on GRPC_PORT "
                "use auto or grpcio"
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


def _declared(f: dataclasses.Field[Any]) -> Setting:
    declared: Setting = f.metadata[_SETTING]
    flag = "--" + f.name.replace("_", "-") if declared.flag == "" else declared.flag
    return dataclasses.replace(declared, name=f.name, flag=flag)


SETTINGS: tuple[Setting, ...] = tuple(_declared(f) for f in dataclasses.fields(ServerConfig))
ADDRESSES = tuple(s for s in SETTINGS if s.address is not None)  # at least one must be set
UNIX_SOCKETS = tuple(s for s in ADDRESSES if s.address == "unix")  # one file per worker
