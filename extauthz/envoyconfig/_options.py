"""What varies between deployments (``EnvoyConfigOptions``), checked when it is built, and the
names and defaults the rendered config uses. Imports nothing heavy: the CLI loads it to build
its parser, and the typed classes are imported only when a config is rendered."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from .._exceptions import InvalidConfig

#: The demo HS256 key (documented as demo-only): the demo mints tokens with it.
DEMO_JWT_SECRET = b"contractshield-demo-jwt-key"
DEMO_JWT_KID = "contractshield-demo"
DEMO_JWT_ISSUER = "contractshield-demo"

PDP_CLUSTER = "contractshield"
UPSTREAM_CLUSTER = "upstream"
JWT_PROVIDER = "contractshield_demo"
JWT_FILTER = "envoy.filters.http.jwt_authn"
PROXY_PROTOCOL_FILTER = "envoy.filters.listener.proxy_protocol"
JWT_PAYLOAD_KEY = "jwt_payload"

DEFAULT_SOCKET = "/var/run/contractshield/extauthz.sock"
DEFAULT_UPSTREAM = "127.0.0.1:8081"
DEFAULT_LISTEN_ADDRESS = "0.0.0.0"
DEFAULT_LISTEN_PORT = 8080
DEFAULT_ADMIN_ADDRESS = "127.0.0.1"
DEFAULT_ADMIN_PORT = 9901
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_TIMEOUT_MS = 200  # Envoy's own ext_authz default; the PDP answers within 150 ms
DEFAULT_STATUS_ON_ERROR = 503
#: the gRPC health service name the PDP reports (it also reports the overall "" status)
HEALTH_SERVICE_NAME = "envoy.service.auth.v3.Authorization"
DEFAULT_HEALTH_INTERVAL_MS = 5_000

#: HTTP ext_authz mode (``authz_mode="http"``): Envoy's ``path_prefix``, the headers the PDP
#: trusts (each removed from the client's request first), the PDP's readiness path.
HTTP_PATH_PREFIX = "/ext_authz"
HTTP_PAYLOAD_HEADER = "x-jwt-payload"
HTTP_TRUSTED_HEADERS = (
    HTTP_PAYLOAD_HEADER,
    "x-contractshield-client-address",
    "x-contractshield-content-length",
)
#: Every client header with these prefixes is removed before jwt_authn and ext_authz, in both
#: modes (issue 24): the stack's identity and decision headers (``x-jwt-payload``, claim
#: headers such as ``x-jwt-sub``, ``x-contractshield-subject``/``-tenant``/``-route``/...) are
#: Envoy's or the PDP's to write, and an upstream that reads one must never get a client's copy.
IDENTITY_HEADER_PREFIXES = ("x-jwt-", "x-contractshield-")
HTTP_HEALTH_PATH = "/ready"
HTTP_IDLE_TIMEOUT_S = 60  # below the PDP's 75 s keep-alive: Envoy closes first
HEADER_MUTATION_FILTER = "envoy.filters.http.header_mutation"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
GRPC_WEB_FILTER = "envoy.filters.http.grpc_web"
#: Where the tracer sends spans (``trace_collector``).
COLLECTOR_CLUSTER = "trace_collector"

Format = Literal["yaml", "json"]
AuthzMode = Literal["grpc", "http"]
Tracer = Literal["otlp", "zipkin"]


@dataclass(slots=True, frozen=True)
class EnvoyConfigOptions:
    """What varies between deployments; everything else is fixed by design (see module doc)."""

    socket: str | None = None  # PDP on a Unix socket (sidecar; DEFAULT_SOCKET if neither) ...
    address: str | None = None  # ... or on HOST:PORT (centralized); not both
    upstream: str = DEFAULT_UPSTREAM
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    listen_port: int = DEFAULT_LISTEN_PORT
    admin_address: str = DEFAULT_ADMIN_ADDRESS
    admin_port: int = DEFAULT_ADMIN_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    failure_mode_allow: bool = False
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    status_on_error: int = DEFAULT_STATUS_ON_ERROR  # PDP unreachable, fail closed: this status
    health_interval_ms: int = DEFAULT_HEALTH_INTERVAL_MS
    jwks_file: str | None = None  # a JWKS file Envoy reads at start-up ...
    demo_jwt: bool = False  # ... or the inline demo HS256 key; neither: no jwt_authn filter
    authz_mode: AuthzMode = "grpc"  # "http": Envoy's http_service mode (docs/envoy.md)
    workers: int = 1  # ``serve --workers N`` on ``socket``: one PDP endpoint per worker socket
    # Behind a load balancer (docs/envoy.md, "The client address behind a proxy"): the LB speaks
    # the PROXY protocol (both modes then see the client it names) ...
    proxy_protocol: bool = False
    # ... or is an HTTP proxy appending to x-forwarded-for: trust its last N hops (HTTP mode
    # only: Envoy never puts an XFF-derived address in gRPC mode's ``source.address``).
    xff_trusted_hops: int = 0
    # TLS to a PDP on TCP (``address``): Envoy verifies the PDP against this CA ...
    pdp_tls_ca_file: str | None = None
    # ... presents this client certificate (mTLS; the PDP's TLS_CLIENT_CA_FILE) ...
    pdp_tls_cert_file: str | None = None
    pdp_tls_key_file: str | None = None
    # ... and sends this SNI, requiring it among the PDP certificate's DNS names
    pdp_tls_server_name: str | None = None
    # The ext_authz call's own timeout when it differs from ``timeout_ms`` (which then stays the
    # connect and health-check timeout): tests on a shared machine give the call more time.
    check_timeout_ms: int | None = None
    # A file access log on the listener, one line per request; the format defaults to
    # ``access_log_format(authz_mode)`` (the decision, from ext_authz's dynamic metadata).
    access_log: str | None = None
    access_log_format: str | None = None
    # Trace every request: "otlp" (OpenTelemetry, W3C traceparent, OTLP/HTTP) or "zipkin" (B3,
    # Zipkin JSON), sent to the collector at ``trace_collector`` (HOST:PORT).
    tracer: Tracer | None = None
    trace_collector: str | None = None
    # Benchmarks: Envoy answers 200 "ok" itself instead of routing to the upstream ...
    direct_response: bool = False
    # ... and, False, runs without the PDP (no ext_authz, jwt_authn or header_mutation filter,
    # no PDP cluster): Envoy alone, the ceiling a PDP is measured against.
    ext_authz: bool = True
    # The upstream is a gRPC service (docs/grpc.md): HTTP/2 to it, and Envoy's grpc_web filter
    # first, so gRPC-Web clients reach it (and get their denials) in gRPC-Web
    grpc_upstream: bool = False

    def __post_init__(self) -> None:
        if self.authz_mode not in ("grpc", "http"):
            raise InvalidConfig(f"authz_mode must be grpc or http, got {self.authz_mode!r}")
        if self.socket is not None and self.address is not None:
            raise InvalidConfig("give one of socket (Unix path) or address (HOST:PORT), not both")
        if self.socket is None and self.address is None:
            object.__setattr__(self, "socket", DEFAULT_SOCKET)
        if self.workers < 1 or (self.workers > 1 and self.socket is None):
            raise InvalidConfig("workers must be >= 1, and more than 1 only with a Unix socket")
        if not 0 <= self.xff_trusted_hops <= 10:
            raise InvalidConfig(f"xff_trusted_hops must be 0..10, got {self.xff_trusted_hops}")
        if self.xff_trusted_hops and self.authz_mode != "http":
            raise InvalidConfig(
                "xff_trusted_hops needs authz_mode http: in gRPC mode Envoy sends the "
                "connection's peer as source.address and never an address from "
                "x-forwarded-for (use the PROXY protocol, or HTTP mode)"
            )
        if self.jwks_file is not None and self.demo_jwt:
            raise InvalidConfig("give at most one of jwks_file and demo_jwt")
        if self.address is not None:
            split_host_port(self.address, what="address")
        self._validate_pdp_tls()
        split_host_port(self.upstream, what="upstream")
        for name in ("listen_port", "admin_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise InvalidConfig(f"{name} must be 0..65535, got {port}")
        if not 0 < self.max_body_bytes < 2**32 - 1:  # Envoy buffers max_body_bytes + 1
            raise InvalidConfig(f"max_body_bytes must be 1..{2**32 - 2}, got {self.max_body_bytes}")
        if not 200 <= self.status_on_error <= 599:
            raise InvalidConfig(
                f"status_on_error must be an HTTP status, got {self.status_on_error}"
            )
        if self.timeout_ms <= 0 or self.health_interval_ms <= 0:
            raise InvalidConfig("timeout_ms and health_interval_ms must be positive")
        if self.check_timeout_ms is not None and self.check_timeout_ms <= 0:
            raise InvalidConfig("check_timeout_ms must be positive")
        if self.access_log_format is not None and self.access_log is None:
            raise InvalidConfig("access_log_format needs access_log (the file to write)")
        self._validate_tracing()

    def _validate_tracing(self) -> None:
        if (self.tracer is None) != (self.trace_collector is None):
            raise InvalidConfig("give both tracer and trace_collector (or neither)")
        if self.tracer is not None and self.tracer not in ("otlp", "zipkin"):
            raise InvalidConfig(f"tracer must be otlp or zipkin, got {self.tracer!r}")
        if self.trace_collector is not None:
            split_host_port(self.trace_collector, what="trace_collector")

    def _validate_pdp_tls(self) -> None:
        """Refuse half a TLS setting (Envoy would either not start or not verify the PDP)."""
        given = [
            name
            for name in ("pdp_tls_ca_file", "pdp_tls_cert_file", "pdp_tls_key_file")
            if getattr(self, name) is not None
        ]
        if self.pdp_tls_server_name is not None:
            given.append("pdp_tls_server_name")
        if not given:
            return
        if self.address is None:
            raise InvalidConfig("PDP TLS needs the PDP on TCP (address); a Unix socket is plain")
        if self.pdp_tls_ca_file is None:
            raise InvalidConfig(
                f"{given[0]} without pdp_tls_ca_file: Envoy would not verify the PDP's certificate"
            )
        if (self.pdp_tls_cert_file is None) != (self.pdp_tls_key_file is None):
            raise InvalidConfig("give both pdp_tls_cert_file and pdp_tls_key_file (or neither)")

    @property
    def behind_proxy(self) -> bool:
        """Envoy reads the client address itself: a PROXY line, or trusted ``x-forwarded-for``."""
        return self.proxy_protocol or self.xff_trusted_hops > 0

    def with_(self, **changes: Any) -> EnvoyConfigOptions:
        """A copy with some options changed (switching transport clears the other one)."""
        if changes.get("address") is not None:
            changes.setdefault("socket", None)
        if changes.get("socket") is not None:
            changes.setdefault("address", None)
        return replace(self, **changes)


def split_host_port(value: str, *, what: str = "address") -> tuple[str, int]:
    """``"host:port"`` / ``"[::1]:port"`` → ``(host, port)``; ``InvalidConfig`` otherwise."""
    host, sep, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise InvalidConfig(f"{what} must be HOST:PORT, got {value!r}")
    return host, int(port_text)


def demo_jwks() -> str:
    """The JWKS (one ``oct`` HS256 key) matching ``DEMO_JWT_SECRET``."""
    k = base64.urlsafe_b64encode(DEMO_JWT_SECRET).rstrip(b"=").decode("ascii")
    key = {"kty": "oct", "alg": "HS256", "kid": DEMO_JWT_KID, "k": k}
    return json.dumps({"keys": [key]}, separators=(",", ":"))


def metadata_keys(mode: AuthzMode) -> dict[str, str]:
    """The decision's fields, each by its key in ext_authz's dynamic metadata under ``mode``.

    gRPC mode's keys are the ``CheckResponse.dynamic_metadata`` names (``envoy.response``);
    HTTP mode has only ``dynamic_metadata_from_headers``, keyed by the answer's header names
    (``envoy.http_response``). ``status`` and ``hits`` are set for MONITOR (and BLOCK in gRPC
    mode). Imported here, not at the top: the CLI loads this module to build its parser.
    """
    if mode == "http":
        from ..envoy.http_response import (
            HEADER_DECISION,
            HEADER_DECISION_ID,
            HEADER_RULE_HITS,
            HEADER_STATUS,
        )

        return {
            "decision": HEADER_DECISION_ID,
            "action": HEADER_DECISION,
            "status": HEADER_STATUS,
            "hits": HEADER_RULE_HITS,
        }
    return {
        "decision": "decisionId",
        "action": "action",
        "status": "statusCode",
        "hits": "ruleHits",
    }


def access_log_format(mode: AuthzMode = "grpc") -> str:
    """One line per request: method, path, status, then ``name=value`` fields, the decision's
    from dynamic metadata under ``mode``'s keys (``metadata_keys``)."""
    decision = " ".join(
        f"{name}=%DYNAMIC_METADATA({EXT_AUTHZ_FILTER}:{key})%"
        for name, key in metadata_keys(mode).items()
    )
    return (
        "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% "
        f"{decision} trace=%TRACE_ID% request=%REQ(X-REQUEST-ID)%\n"
    )
