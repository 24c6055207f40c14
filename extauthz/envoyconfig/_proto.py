"""Small helpers over envoy-data-plane's typed classes that every part of the config uses."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_address
from typing import Any


def pack(message: Any) -> Any:
    from envoy_data_plane.google.protobuf import Any as AnyMessage

    return AnyMessage.pack(message)


def ms(value: int) -> timedelta:
    return timedelta(milliseconds=value)


def tcp(host: str, port: int) -> Any:
    from envoy_data_plane.envoy.config.core.v3 import Address, SocketAddress

    return Address(socket_address=SocketAddress(address=host, port_value=port))


def is_ip(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def discovery(host: str) -> Any:
    """``STATIC`` for an IP address, ``STRICT_DNS`` for a name (e.g. a Kubernetes Service)."""
    from envoy_data_plane.envoy.config.cluster.v3 import ClusterDiscoveryType

    return ClusterDiscoveryType.STATIC if is_ip(host) else ClusterDiscoveryType.STRICT_DNS


def load_assignment(cluster: str, *addresses: Any) -> Any:
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
