"""The bootstrap from its parts, as the typed message, plain data or YAML/JSON text."""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidConfig
from ._clusters import collector_clusters, pdp_cluster, tcp_cluster
from ._listener import listener
from ._options import UPSTREAM_CLUSTER, EnvoyConfigOptions, Format
from ._proto import tcp

if TYPE_CHECKING:  # pragma: no cover
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap


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
        admin=Admin(address=tcp(opts.admin_address, opts.admin_port)),
        static_resources=BootstrapStaticResources(
            listeners=[listener(opts)],
            clusters=[
                *([pdp_cluster(opts)] if opts.ext_authz else []),
                tcp_cluster(
                    UPSTREAM_CLUSTER, opts.upstream, what="upstream", http2=opts.grpc_upstream
                ),
                *collector_clusters(opts),
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


def _import_extensions() -> None:
    """Load the typed classes; this also registers every ``@type`` we emit for ``Any``."""
    import envoy_data_plane.envoy.config.bootstrap.v3
    import envoy_data_plane.envoy.config.trace.v3
    import envoy_data_plane.envoy.extensions.access_loggers.file.v3
    import envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3
    import envoy_data_plane.envoy.extensions.filters.http.grpc_web.v3
    import envoy_data_plane.envoy.extensions.filters.http.header_mutation.v3
    import envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3
    import envoy_data_plane.envoy.extensions.filters.http.router.v3
    import envoy_data_plane.envoy.extensions.filters.listener.proxy_protocol.v3
    import envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3
    import envoy_data_plane.envoy.extensions.transport_sockets.tls.v3
    import envoy_data_plane.envoy.extensions.upstreams.http.v3  # noqa: F401
