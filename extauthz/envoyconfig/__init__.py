"""Render an Envoy v3 bootstrap that puts ContractShield in front of an upstream.

The config is built with envoy-data-plane's typed (betterproto2) classes, so a misspelt field or
a wrong type fails here, in Python, rather than at Envoy start-up. That library is a dependency
imported inside the functions only: the PDP's import and hot path never load it.

The shape, in filter order: a listener → ``jwt_authn`` (optional; local JWKS; missing tokens let
through so the *policy* answers token-less calls) → ``ext_authz`` (gRPC to the ``contractshield``
cluster on a Unix socket or TCP, raw body packed as bytes, JWT payload forwarded as metadata) →
``router`` to the ``upstream`` cluster; the connection manager normalises paths and refuses
encoded slashes. The PDP cluster is HTTP/2 and health-checked with the gRPC health protocol;
the admin interface listens on localhost.

This is the one renderer: ``extauthz envoy-config``, the shipped ``envoy/*.yaml`` and
``compose/envoy*.yaml`` (pinned by tests), and ``devstack.envoy`` (tests, the demo, ``bench/``)
all render ``EnvoyConfigOptions``. A new setting is a field there (``_options``) and a piece in
the part it changes: ``_listener`` (listener, routes, connection manager, access log, tracing),
``_authz`` (jwt_authn, ext_authz, header_mutation) or ``_clusters`` (docs/architecture-envoy.md).
The names the rendered config uses internally (filter names, HTTP mode's paths and headers)
live in ``_options``.
"""

from ._options import (
    COLLECTOR_CLUSTER,
    DEFAULT_ADMIN_ADDRESS,
    DEFAULT_ADMIN_PORT,
    DEFAULT_HEALTH_INTERVAL_MS,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_LISTEN_PORT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_SOCKET,
    DEFAULT_STATUS_ON_ERROR,
    DEFAULT_TIMEOUT_MS,
    DEFAULT_UPSTREAM,
    DEMO_JWT_ISSUER,
    DEMO_JWT_KID,
    DEMO_JWT_SECRET,
    PDP_CLUSTER,
    UPSTREAM_CLUSTER,
    AuthzMode,
    EnvoyConfigOptions,
    Format,
    Tracer,
    access_log_format,
    demo_jwks,
    metadata_keys,
    split_host_port,
)
from ._render import bootstrap_to_dict, build_bootstrap, normalise, render, to_dict

__all__ = [
    "COLLECTOR_CLUSTER",
    "DEFAULT_ADMIN_ADDRESS",
    "DEFAULT_ADMIN_PORT",
    "DEFAULT_HEALTH_INTERVAL_MS",
    "DEFAULT_LISTEN_ADDRESS",
    "DEFAULT_LISTEN_PORT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_SOCKET",
    "DEFAULT_STATUS_ON_ERROR",
    "DEFAULT_TIMEOUT_MS",
    "DEFAULT_UPSTREAM",
    "DEMO_JWT_ISSUER",
    "DEMO_JWT_KID",
    "DEMO_JWT_SECRET",
    "PDP_CLUSTER",
    "UPSTREAM_CLUSTER",
    "AuthzMode",
    "EnvoyConfigOptions",
    "Format",
    "Tracer",
    "access_log_format",
    "bootstrap_to_dict",
    "build_bootstrap",
    "demo_jwks",
    "metadata_keys",
    "normalise",
    "render",
    "split_host_port",
    "to_dict",
]
