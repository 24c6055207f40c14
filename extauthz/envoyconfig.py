"""Render an Envoy v3 bootstrap that puts ContractShield in front of an upstream.

The config is built with envoy-data-plane's typed (betterproto2) classes, so a misspelt field or
a wrong type fails here, in Python, rather than at Envoy start-up. That library is a dependency
imported inside the functions only: the PDP's import and hot path never load it.

The shape, in filter order: a listener → ``jwt_authn`` (optional; local JWKS; missing tokens let
through so the *policy* answers token-less calls) → ``ext_authz`` (gRPC to the ``contractshield``
cluster on a Unix socket or TCP, raw body packed as bytes, JWT payload forwarded as metadata) →
``router`` to the ``upstream`` cluster; the connection manager normalises paths and refuses
encoded slashes (``_path_hardening``). The PDP cluster is HTTP/2 and health-checked with the
gRPC health protocol; the admin interface listens on localhost.

This is the one renderer: ``extauthz envoy-config``, the shipped ``envoy/*.yaml`` and
``compose/envoy*.yaml`` (pinned by tests), and ``devstack.envoy`` (tests, the demo, ``bench/``)
all render through ``EnvoyConfigOptions``. A new Envoy setting is a field there and a piece
below (docs/architecture-envoy.md).
"""

from __future__ import annotations

import base64
import json
import os
import warnings
from dataclasses import dataclass, replace
from datetime import timedelta
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any, Literal

from ._exceptions import InvalidConfig

if TYPE_CHECKING:  # pragma: no cover
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

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
HTTP_HEALTH_PATH = "/ready"
HTTP_IDLE_TIMEOUT_S = 60  # below the PDP's 75 s keep-alive: Envoy closes first
HEADER_MUTATION_FILTER = "envoy.filters.http.header_mutation"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
#: Where the tracer sends spans (``trace_collector``).
COLLECTOR_CLUSTER = "trace_collector"

Format = Literal["yaml", "json"]
AuthzMode = Literal["grpc", "http"]
Tracer = Literal["otlp", "zipkin"]
_SNAKE: Any = None  # betterproto2.Casing.SNAKE, bound lazily


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
        if not 0 < self.max_body_bytes < 2**32:
            raise InvalidConfig(f"max_body_bytes must be 1..{2**32 - 1}, got {self.max_body_bytes}")
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
        from .envoy.http_response import (
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


def _require_data_plane() -> None:
    """Import envoy-data-plane (once) or explain how to get it."""
    try:
        with warnings.catch_warnings():
            # its generated pydantic validators trip deprecation warnings that are not ours
            warnings.simplefilter("ignore", DeprecationWarning)
            _import_extensions()
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith(("envoy_data_plane", "betterproto2")):
            raise
        raise InvalidConfig(
            "envoy config generation needs envoy-data-plane (a dependency of extauthz): "
            "pip install envoy-data-plane"
        ) from exc


def build_bootstrap(opts: EnvoyConfigOptions) -> Bootstrap:
    """The typed ``Bootstrap`` message for ``opts``."""
    _require_data_plane()
    from envoy_data_plane.envoy.config.bootstrap.v3 import (
        Admin,
        Bootstrap,
        BootstrapStaticResources,
    )

    return Bootstrap(
        admin=Admin(address=_tcp(opts.admin_address, opts.admin_port)),
        static_resources=BootstrapStaticResources(
            listeners=[_listener(opts)],
            clusters=[
                *([_pdp_cluster(opts)] if opts.ext_authz else []),
                _tcp_cluster(UPSTREAM_CLUSTER, opts.upstream, what="upstream"),
                *_collector_clusters(opts),
            ],
        ),
    )


def to_dict(opts: EnvoyConfigOptions) -> dict[str, Any]:
    """The bootstrap as plain data (proto JSON mapping, snake_case keys as Envoy docs write them)."""
    return bootstrap_to_dict(build_bootstrap(opts))


def bootstrap_to_dict(bootstrap: Bootstrap) -> dict[str, Any]:
    import betterproto2

    return bootstrap.to_dict(casing=betterproto2.Casing.SNAKE)


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    """Parse any bootstrap dict (camel or snake case) through the typed classes and back.

    Two configs with the same meaning (``0.25s`` vs ``0.250s``, defaults spelt out or not,
    camelCase or snake_case) normalise to equal dicts. Raises ``InvalidConfig`` on fields or
    ``@type``s unknown to envoy-data-plane.
    """
    _require_data_plane()
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    try:
        return bootstrap_to_dict(Bootstrap.from_dict(config))
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidConfig(f"not a valid Envoy v3 bootstrap: {exc}") from exc


def render(opts: EnvoyConfigOptions, fmt: Format = "yaml", *, header: str | None = None) -> str:
    """The bootstrap as YAML (default) or JSON text, optionally behind a ``#`` comment header."""
    data = to_dict(opts)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    import yaml

    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
    if header:
        lines = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
        text = lines + text
    return text


# --- pieces -------------------------------------------------------------------------------


def _import_extensions() -> None:
    """Load the typed classes; this also registers every ``@type`` we emit for ``Any``."""
    import envoy_data_plane.envoy.config.bootstrap.v3
    import envoy_data_plane.envoy.config.trace.v3
    import envoy_data_plane.envoy.extensions.access_loggers.file.v3
    import envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3
    import envoy_data_plane.envoy.extensions.filters.http.header_mutation.v3
    import envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3
    import envoy_data_plane.envoy.extensions.filters.http.router.v3
    import envoy_data_plane.envoy.extensions.filters.listener.proxy_protocol.v3
    import envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3
    import envoy_data_plane.envoy.extensions.transport_sockets.tls.v3
    import envoy_data_plane.envoy.extensions.upstreams.http.v3  # noqa: F401


def _pack(message: Any) -> Any:
    from envoy_data_plane.google.protobuf import Any as AnyMessage

    return AnyMessage.pack(message)


def _ms(value: int) -> timedelta:
    return timedelta(milliseconds=value)


def _check_timeout(opts: EnvoyConfigOptions) -> timedelta:
    return _ms(opts.timeout_ms if opts.check_timeout_ms is None else opts.check_timeout_ms)


def _tcp(host: str, port: int) -> Any:
    from envoy_data_plane.envoy.config.core.v3 import Address, SocketAddress

    return Address(socket_address=SocketAddress(address=host, port_value=port))


def _is_ip(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def _listener(opts: EnvoyConfigOptions) -> Any:
    from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
    from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration, VirtualHost
    from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
        HttpConnectionManager,
        HttpConnectionManagerCodecType,
    )

    hcm = HttpConnectionManager(
        stat_prefix="ingress_http",
        codec_type=HttpConnectionManagerCodecType.AUTO,
        route_config=RouteConfiguration(
            name="local_route",
            virtual_hosts=[VirtualHost(name="upstream", domains=["*"], routes=[_route(opts)])],
        ),
        http_filters=_http_filters(opts),
        **_path_hardening(),
        **_client_address(opts),
        **_observability(opts),
    )
    return Listener(
        name="ingress",
        address=_tcp(opts.listen_address, opts.listen_port),
        listener_filters=_listener_filters(opts),
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=_pack(hcm),
                    )
                ]
            )
        ],
    )


def _http_filters(opts: EnvoyConfigOptions) -> list[Any]:
    """header_mutation (HTTP mode) → jwt_authn (optional) → ext_authz → router."""
    from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
    from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
        HttpFilter,
    )

    filters = []
    if opts.ext_authz and opts.authz_mode == "http":
        filters.append(
            HttpFilter(name=HEADER_MUTATION_FILTER, typed_config=_pack(_header_mutation()))
        )
    if opts.ext_authz and (opts.demo_jwt or opts.jwks_file is not None):
        filters.append(HttpFilter(name=JWT_FILTER, typed_config=_pack(_jwt_authn(opts))))
    if opts.ext_authz:
        filters.append(HttpFilter(name=EXT_AUTHZ_FILTER, typed_config=_pack(_ext_authz(opts))))
    filters.append(HttpFilter(name="envoy.filters.http.router", typed_config=_pack(Router())))
    return filters


def _route(opts: EnvoyConfigOptions) -> Any:
    """Everything to the upstream; with ``direct_response``, Envoy's own 200 ``ok``."""
    from envoy_data_plane.envoy.config.core.v3 import DataSource
    from envoy_data_plane.envoy.config.route.v3 import (
        DirectResponseAction,
        Route,
        RouteAction,
        RouteMatch,
    )

    if opts.direct_response:
        answer = DirectResponseAction(status=200, body=DataSource(inline_string="ok\n"))
        return Route(match=RouteMatch(prefix="/"), direct_response=answer)
    return Route(match=RouteMatch(prefix="/"), route=RouteAction(cluster=UPSTREAM_CLUSTER))


def _behind_proxy(opts: EnvoyConfigOptions) -> bool:
    return opts.proxy_protocol or opts.xff_trusted_hops > 0


def _client_address(opts: EnvoyConfigOptions) -> dict[str, Any]:
    """Connection-manager fields for the client address (none for a direct client).

    ``use_remote_address`` makes Envoy's downstream address its own reading (the connection's
    peer, as the PROXY protocol named it) rather than the last ``x-forwarded-for`` entry a
    client wrote; ``xff_num_trusted_hops`` then trusts that many proxies' appended entries.
    """
    if not _behind_proxy(opts):
        return {}
    return {"use_remote_address": True, "xff_num_trusted_hops": opts.xff_trusted_hops}


def _listener_filters(opts: EnvoyConfigOptions) -> list[Any]:
    if not opts.proxy_protocol:
        return []
    from envoy_data_plane.envoy.config.listener.v3 import ListenerFilter
    from envoy_data_plane.envoy.extensions.filters.listener.proxy_protocol.v3 import (
        ProxyProtocol,
    )

    # Required, not optional: a connection without the PROXY header is closed, so nobody
    # who reaches the listener directly can pass as the load balancer's client.
    return [ListenerFilter(name=PROXY_PROTOCOL_FILTER, typed_config=_pack(ProxyProtocol()))]


def _path_hardening() -> dict[str, Any]:
    """HCM path settings for every mode: defence in depth beside the engine's canonicalisation.

    Envoy resolves ``.``/``..`` and ``//`` before routing and before ext_authz, so the PDP, the
    route table and the upstream all see one path; an encoded slash or backslash (``%2F``,
    ``%5C``), which servers read differently, is refused by Envoy with a 400.
    """
    from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
        HttpConnectionManagerPathWithEscapedSlashesAction as EscapedSlashes,
    )

    return {
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": EscapedSlashes.REJECT_REQUEST,
    }


def _jwt_authn(opts: EnvoyConfigOptions) -> Any:
    from envoy_data_plane.envoy.config.core.v3 import DataSource
    from envoy_data_plane.envoy.config.route.v3 import RouteMatch
    from envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3 import (
        JwtAuthentication,
        JwtProvider,
        JwtRequirement,
        JwtRequirementOrList,
        RequirementRule,
    )
    from envoy_data_plane.google.protobuf import Empty

    if opts.jwks_file is not None:
        jwks = DataSource(filename=os.fspath(opts.jwks_file))
    else:
        jwks = DataSource(inline_string=demo_jwks())
    # requires_any [provider, allow_missing]: a valid token sets the payload metadata, no token
    # passes through (the policy's auth.required answers it), a bad token is a 401 from Envoy.
    requirement = JwtRequirement(
        requires_any=JwtRequirementOrList(
            requirements=[
                JwtRequirement(provider_name=JWT_PROVIDER),
                JwtRequirement(allow_missing=Empty()),
            ]
        )
    )
    # gRPC mode reads the payload from metadata; HTTP mode from a header (which a client's copy
    # never reaches: ``_header_mutation`` removes it first).
    if opts.authz_mode == "http":
        provider = JwtProvider(
            local_jwks=jwks, forward=False, forward_payload_header=HTTP_PAYLOAD_HEADER
        )
    else:
        provider = JwtProvider(local_jwks=jwks, forward=False, payload_in_metadata=JWT_PAYLOAD_KEY)
    return JwtAuthentication(
        providers={JWT_PROVIDER: provider},
        rules=[RequirementRule(match=RouteMatch(prefix="/"), requires=requirement)],
    )


def _ext_authz(opts: EnvoyConfigOptions) -> Any:
    from envoy_data_plane.envoy.config.core.v3 import ApiVersion, GrpcService, GrpcServiceEnvoyGrpc
    from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
        BufferSettings,
        ExtAuthz,
    )
    from envoy_data_plane.envoy.type.v3 import HttpStatus

    service: dict[str, Any]
    if opts.authz_mode == "http":
        from envoy_data_plane.envoy.type.matcher.v3 import (
            ListStringMatcher,
            RegexMatcher,
            StringMatcher,
        )

        service = {
            "http_service": _http_service(opts),
            # every client header, as gRPC mode sends them (HTTP mode's default is five)
            "allowed_headers": ListStringMatcher(
                patterns=[StringMatcher(safe_regex=RegexMatcher(regex=".*"))]
            ),
        }
    else:
        service = {
            "grpc_service": GrpcService(
                envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=PDP_CLUSTER),
                timeout=_check_timeout(opts),
            ),
            "metadata_context_namespaces": [JWT_FILTER],
        }
    return ExtAuthz(
        **service,
        transport_api_version=ApiVersion.V3,
        failure_mode_allow=opts.failure_mode_allow,
        status_on_error=HttpStatus(code=_status_code(opts.status_on_error)),
        with_request_body=BufferSettings(
            max_request_bytes=opts.max_body_bytes,
            allow_partial_message=True,
            pack_as_bytes=True,
        ),
    )


def _header_mutation() -> Any:
    from envoy_data_plane.envoy.config.common.mutation_rules.v3 import HeaderMutation as Mutation
    from envoy_data_plane.envoy.extensions.filters.http.header_mutation.v3 import (
        HeaderMutation,
        Mutations,
    )

    return HeaderMutation(
        mutations=Mutations(request_mutations=[Mutation(remove=h) for h in HTTP_TRUSTED_HEADERS])
    )


def _http_service(opts: EnvoyConfigOptions) -> Any:
    from envoy_data_plane.envoy.config.core.v3 import HeaderValue, HttpUri
    from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
        AuthorizationRequest,
        AuthorizationResponse,
        HttpService,
    )
    from envoy_data_plane.envoy.type.matcher.v3 import (
        ListStringMatcher,
        StringMatcher,
    )

    from .envoy.http_response import METADATA_HEADERS

    def exact(*names: str) -> Any:
        return ListStringMatcher(patterns=[StringMatcher(exact=n) for n in names])

    return HttpService(
        server_uri=HttpUri(
            uri=f"http://{PDP_CLUSTER}", cluster=PDP_CLUSTER, timeout=_check_timeout(opts)
        ),
        path_prefix=HTTP_PATH_PREFIX,
        authorization_request=AuthorizationRequest(
            headers_to_add=[
                HeaderValue(key="x-contractshield-client-address", value=_client_formatter(opts)),
                HeaderValue(key="x-contractshield-content-length", value="%REQ(content-length)%"),
            ],
        ),
        authorization_response=AuthorizationResponse(
            allowed_upstream_headers=exact(
                "x-contractshield-decision",
                "x-contractshield-route",
                "x-contractshield-subject",
                "x-contractshield-tenant",
            ),
            allowed_client_headers=exact(
                "content-type", "x-contractshield-decision", "x-contractshield-decision-id"
            ),
            dynamic_metadata_from_headers=exact(*METADATA_HEADERS),
        ),
    )


def _client_formatter(opts: EnvoyConfigOptions) -> str:
    """HTTP mode's client address. Directly reached, the TCP peer (as gRPC mode's
    ``source.address``): without ``use_remote_address`` Envoy's DOWNSTREAM_REMOTE_ADDRESS is
    the last ``x-forwarded-for`` entry, which a client writes. Behind a proxy that setting is
    on (``_client_address``), so DOWNSTREAM_REMOTE_ADDRESS is the PROXY protocol's client or
    the trusted hop's ``x-forwarded-for`` entry."""
    if _behind_proxy(opts):
        return "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
    return "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"


def _status_code(status: int) -> Any:
    from envoy_data_plane.envoy.type.v3 import StatusCode

    known = {int(code) for code in StatusCode}
    if status not in known:
        raise InvalidConfig(f"status_on_error: Envoy has no HTTP status {status}")
    return StatusCode(status)


def _pdp_cluster(opts: EnvoyConfigOptions) -> Any:
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
    from envoy_data_plane.envoy.config.core.v3 import (
        Address,
        HealthCheck,
        HealthCheckGrpcHealthCheck,
        HealthCheckHttpHealthCheck,
        Http1ProtocolOptions,
        Http2ProtocolOptions,
        Pipe,
    )
    from envoy_data_plane.envoy.config.core.v3 import (
        HttpProtocolOptions as CommonHttpProtocolOptions,
    )
    from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
        HttpProtocolOptions,
        HttpProtocolOptionsExplicitHttpConfig,
    )

    if opts.socket is not None:
        from .server.workers import worker_sockets

        paths = worker_sockets(os.fspath(opts.socket), opts.workers)
        addresses = [Address(pipe=Pipe(path=path)) for path in paths]
        kind = ClusterDiscoveryType.STATIC
    else:
        assert opts.address is not None
        host, port = split_host_port(opts.address)
        addresses = [_tcp(host, port)]
        kind = _discovery(host)
    if opts.authz_mode == "http":  # HTTP/1.1, pooled, idled out before the PDP's keep-alive
        protocol = HttpProtocolOptions(
            common_http_protocol_options=CommonHttpProtocolOptions(
                idle_timeout=timedelta(seconds=HTTP_IDLE_TIMEOUT_S)
            ),
            explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                http_protocol_options=Http1ProtocolOptions()
            ),
        )
        health = {"http_health_check": HealthCheckHttpHealthCheck(path=HTTP_HEALTH_PATH)}
    else:
        protocol = HttpProtocolOptions(
            explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                http2_protocol_options=Http2ProtocolOptions()
            )
        )
        health = {"grpc_health_check": HealthCheckGrpcHealthCheck(service_name=HEALTH_SERVICE_NAME)}
    return Cluster(
        name=PDP_CLUSTER,
        type=kind,
        connect_timeout=_ms(opts.timeout_ms),
        transport_socket=_pdp_transport_socket(opts),
        typed_extension_protocol_options={
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _pack(protocol)
        },
        load_assignment=_load_assignment(PDP_CLUSTER, *addresses),
        health_checks=[
            HealthCheck(
                timeout=_ms(opts.timeout_ms),
                interval=_ms(opts.health_interval_ms),
                unhealthy_threshold=2,
                healthy_threshold=1,
                **health,
            )
        ],
    )


def _pdp_transport_socket(opts: EnvoyConfigOptions) -> Any:
    """``UpstreamTlsContext`` for a PDP on TCP with TLS (None: plaintext, the default).

    ALPN ``h2`` as gRPC expects (``http/1.1`` in HTTP mode); the PDP's chain is checked against ``pdp_tls_ca_file`` and,
    with a server name, its DNS names too. Envoy reads the files at start-up.
    """
    if opts.pdp_tls_ca_file is None:
        return None
    from envoy_data_plane.envoy.config.core.v3 import DataSource, TransportSocket
    from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
        CertificateValidationContext,
        CommonTlsContext,
        SubjectAltNameMatcher,
        SubjectAltNameMatcherSanType,
        TlsCertificate,
        UpstreamTlsContext,
    )
    from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher

    validation = CertificateValidationContext(trusted_ca=DataSource(filename=opts.pdp_tls_ca_file))
    if opts.pdp_tls_server_name is not None:
        validation.match_typed_subject_alt_names = [
            SubjectAltNameMatcher(
                san_type=SubjectAltNameMatcherSanType.DNS,
                matcher=StringMatcher(exact=opts.pdp_tls_server_name),
            )
        ]
    certificates = []
    if opts.pdp_tls_cert_file is not None and opts.pdp_tls_key_file is not None:
        certificates.append(
            TlsCertificate(
                certificate_chain=DataSource(filename=opts.pdp_tls_cert_file),
                private_key=DataSource(filename=opts.pdp_tls_key_file),
            )
        )
    context = UpstreamTlsContext(
        common_tls_context=CommonTlsContext(
            alpn_protocols=["h2"] if opts.authz_mode == "grpc" else ["http/1.1"],
            tls_certificates=certificates,
            validation_context=validation,
        ),
        sni=opts.pdp_tls_server_name or "",
    )
    return TransportSocket(name="envoy.transport_sockets.tls", typed_config=_pack(context))


def _observability(opts: EnvoyConfigOptions) -> dict[str, Any]:
    """Connection-manager fields for the access log and the tracer (none by default)."""
    fields: dict[str, Any] = {}
    if opts.access_log is not None:
        fields["access_log"] = [_access_log(opts.access_log, opts.access_log_format, opts)]
    if opts.tracer is not None and opts.trace_collector is not None:
        fields["tracing"] = _tracing(opts.tracer, opts.trace_collector)
    return fields


def _access_log(path: str, fmt: str | None, opts: EnvoyConfigOptions) -> Any:
    from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
    from envoy_data_plane.envoy.config.core.v3 import DataSource, SubstitutionFormatString
    from envoy_data_plane.envoy.extensions.access_loggers.file.v3 import FileAccessLog

    text = fmt if fmt is not None else access_log_format(opts.authz_mode)
    log = FileAccessLog(
        path=os.fspath(path),
        log_format=SubstitutionFormatString(text_format_source=DataSource(inline_string=text)),
    )
    return AccessLog(name="envoy.access_loggers.file", typed_config=_pack(log))


def _tracing(tracer: Tracer, collector: str) -> Any:
    """Every request sampled, spans to ``COLLECTOR_CLUSTER``: OpenTelemetry over OTLP/HTTP
    (W3C ``traceparent``) or Zipkin JSON (B3 headers)."""
    from envoy_data_plane.envoy.config.core.v3 import HttpService, HttpUri
    from envoy_data_plane.envoy.config.trace.v3 import (
        OpenTelemetryConfig,
        TracingHttp,
        ZipkinConfig,
        ZipkinConfigCollectorEndpointVersion,
    )
    from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
        HttpConnectionManagerTracing,
    )
    from envoy_data_plane.envoy.type.v3 import Percent

    if tracer == "otlp":
        uri = HttpUri(
            uri=f"http://{collector}/v1/traces",
            cluster=COLLECTOR_CLUSTER,
            timeout=timedelta(seconds=1),
        )
        config = OpenTelemetryConfig(service_name="envoy", http_service=HttpService(http_uri=uri))
        provider = TracingHttp(name="envoy.tracers.opentelemetry", typed_config=_pack(config))
    else:
        config = ZipkinConfig(
            collector_cluster=COLLECTOR_CLUSTER,
            collector_endpoint="/api/v2/spans",
            collector_endpoint_version=ZipkinConfigCollectorEndpointVersion.HTTP_JSON,
            shared_span_context=False,
        )
        provider = TracingHttp(name="envoy.tracers.zipkin", typed_config=_pack(config))
    return HttpConnectionManagerTracing(provider=provider, random_sampling=Percent(value=100))


def _collector_clusters(opts: EnvoyConfigOptions) -> list[Any]:
    if opts.trace_collector is None:
        return []
    return [_tcp_cluster(COLLECTOR_CLUSTER, opts.trace_collector, what="trace_collector")]


def _tcp_cluster(name: str, address: str, *, what: str) -> Any:
    """A plain cluster of one ``HOST:PORT`` (the upstream, the trace collector), 1 s connect."""
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster

    host, port = split_host_port(address, what=what)
    return Cluster(
        name=name,
        type=_discovery(host),
        connect_timeout=timedelta(seconds=1),
        load_assignment=_load_assignment(name, _tcp(host, port)),
    )


def _discovery(host: str) -> Any:
    """``STATIC`` for an IP address, ``STRICT_DNS`` for a name (e.g. a Kubernetes Service)."""
    from envoy_data_plane.envoy.config.cluster.v3 import ClusterDiscoveryType

    return ClusterDiscoveryType.STATIC if _is_ip(host) else ClusterDiscoveryType.STRICT_DNS


def _load_assignment(cluster: str, *addresses: Any) -> Any:
    from envoy_data_plane.envoy.config.endpoint.v3 import (
        ClusterLoadAssignment,
        Endpoint,
        LbEndpoint,
        LocalityLbEndpoints,
    )

    return ClusterLoadAssignment(
        cluster_name=cluster,
        endpoints=[
            LocalityLbEndpoints(
                lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=a)) for a in addresses]
            )
        ],
    )
