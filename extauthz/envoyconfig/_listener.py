"""The ingress listener: its filters, the connection manager's HTTP filters and route, path
hardening, the client address behind a proxy, the access log and the tracer."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from ._authz import ext_authz, header_mutation, jwt_authn
from ._options import (
    COLLECTOR_CLUSTER,
    EXT_AUTHZ_FILTER,
    GRPC_WEB_FILTER,
    HEADER_MUTATION_FILTER,
    JWT_FILTER,
    PROXY_PROTOCOL_FILTER,
    UPSTREAM_CLUSTER,
    EnvoyConfigOptions,
    Tracer,
    access_log_format,
)
from ._proto import pack, tcp


def listener(opts: EnvoyConfigOptions) -> Any:
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
        common_http_protocol_options=_protocol_options(),
        **_path_hardening(),
        **_client_address(opts),
        **_observability(opts),
    )
    return Listener(
        name="ingress",
        address=tcp(opts.listen_address, opts.listen_port),
        listener_filters=_listener_filters(opts),
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=pack(hcm),
                    )
                ]
            )
        ],
    )


def _http_filters(opts: EnvoyConfigOptions) -> list[Any]:
    """grpc_web (gRPC upstream) → header_mutation → jwt_authn (optional) → ext_authz →
    router.

    grpc_web comes first: the PDP then sees gRPC-Web calls as gRPC (text bodies decoded), and
    a denial, a gRPC status Envoy makes for the call, goes back through it as gRPC-Web.
    """
    from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
    from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
        HttpFilter,
    )

    filters = []
    if opts.grpc_upstream:
        from envoy_data_plane.envoy.extensions.filters.http.grpc_web.v3 import GrpcWeb

        filters.append(HttpFilter(name=GRPC_WEB_FILTER, typed_config=pack(GrpcWeb())))
    if opts.ext_authz:
        filters.append(
            HttpFilter(name=HEADER_MUTATION_FILTER, typed_config=pack(header_mutation()))
        )
    if opts.ext_authz and (opts.demo_jwt or opts.jwks_file is not None):
        filters.append(HttpFilter(name=JWT_FILTER, typed_config=pack(jwt_authn(opts))))
    if opts.ext_authz:
        filters.append(HttpFilter(name=EXT_AUTHZ_FILTER, typed_config=pack(ext_authz(opts))))
    filters.append(HttpFilter(name="envoy.filters.http.router", typed_config=pack(Router())))
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


def _client_address(opts: EnvoyConfigOptions) -> dict[str, Any]:
    """Connection-manager fields for the client address (none for a direct client).

    ``use_remote_address`` makes Envoy's downstream address its own reading (the connection's
    peer, as the PROXY protocol named it) rather than the last ``x-forwarded-for`` entry a
    client wrote; ``xff_num_trusted_hops`` then trusts that many proxies' appended entries.
    """
    if not opts.behind_proxy:
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
    return [ListenerFilter(name=PROXY_PROTOCOL_FILTER, typed_config=pack(ProxyProtocol()))]


def _protocol_options() -> Any:
    """A header name with ``_`` is refused (400): WSGI, PHP and Rack read ``x_contractshield_tenant``
    as ``X-Contractshield-Tenant`` (both become ``HTTP_X_CONTRACTSHIELD_TENANT``), so a client
    could pass as the identity header the filters strip (issue 24)."""
    from envoy_data_plane.envoy.config.core.v3 import (
        HttpProtocolOptions,
    )
    from envoy_data_plane.envoy.config.core.v3 import (
        HttpProtocolOptionsHeadersWithUnderscoresAction as Underscores,
    )

    return HttpProtocolOptions(headers_with_underscores_action=Underscores.REJECT_REQUEST)


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
    return AccessLog(name="envoy.access_loggers.file", typed_config=pack(log))


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
        provider = TracingHttp(name="envoy.tracers.opentelemetry", typed_config=pack(config))
    else:
        config = ZipkinConfig(
            collector_cluster=COLLECTOR_CLUSTER,
            collector_endpoint="/api/v2/spans",
            collector_endpoint_version=ZipkinConfigCollectorEndpointVersion.HTTP_JSON,
            shared_span_context=False,
        )
        provider = TracingHttp(name="envoy.tracers.zipkin", typed_config=pack(config))
    return HttpConnectionManagerTracing(provider=provider, random_sampling=Percent(value=100))
