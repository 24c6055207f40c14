"""The clusters: the PDP (Unix sockets or TCP, HTTP/2 or HTTP/1.1, health-checked, TLS), the
upstream and the trace collector."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from ._options import (
    COLLECTOR_CLUSTER,
    HEALTH_SERVICE_NAME,
    HTTP_HEALTH_PATH,
    HTTP_IDLE_TIMEOUT_S,
    PDP_CLUSTER,
    EnvoyConfigOptions,
    split_host_port,
)
from ._proto import discovery, load_assignment, ms, pack, tcp


def pdp_cluster(opts: EnvoyConfigOptions) -> Any:
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
        from ..server.workers import worker_sockets

        paths = worker_sockets(os.fspath(opts.socket), opts.workers)
        addresses = [Address(pipe=Pipe(path=path)) for path in paths]
        kind = ClusterDiscoveryType.STATIC
    else:
        assert opts.address is not None
        host, port = split_host_port(opts.address)
        addresses = [tcp(host, port)]
        kind = discovery(host)
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
        connect_timeout=ms(opts.timeout_ms),
        transport_socket=_pdp_transport_socket(opts),
        typed_extension_protocol_options={
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": pack(protocol)
        },
        load_assignment=load_assignment(PDP_CLUSTER, *addresses),
        health_checks=[
            HealthCheck(
                timeout=ms(opts.timeout_ms),
                interval=ms(opts.health_interval_ms),
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
    return TransportSocket(name="envoy.transport_sockets.tls", typed_config=pack(context))


def collector_clusters(opts: EnvoyConfigOptions) -> list[Any]:
    if opts.trace_collector is None:
        return []
    return [tcp_cluster(COLLECTOR_CLUSTER, opts.trace_collector, what="trace_collector")]


def tcp_cluster(name: str, address: str, *, what: str, http2: bool = False) -> Any:
    """A plain cluster of one ``HOST:PORT`` (the upstream, the trace collector), 1 s connect;
    ``http2``: spoken to in HTTP/2 (a gRPC upstream)."""
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster

    host, port = split_host_port(address, what=what)
    extra: dict[str, Any] = {}
    if http2:
        from envoy_data_plane.envoy.config.core.v3 import Http2ProtocolOptions
        from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
            HttpProtocolOptions,
            HttpProtocolOptionsExplicitHttpConfig,
        )

        protocol = HttpProtocolOptions(
            explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                http2_protocol_options=Http2ProtocolOptions()
            )
        )
        extra["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": pack(protocol)
        }
    return Cluster(
        name=name,
        type=discovery(host),
        connect_timeout=timedelta(seconds=1),
        load_assignment=load_assignment(name, tcp(host, port)),
        **extra,
    )
