"""The PDP server: gRPC ext_authz (Unix socket and/or TCP), HTTP API, probes and metrics.

The names below are imported on first use, so that a light submodule (``server.workers``'
socket names for ``envoy-config``, ``server.socket`` for the devstack) does not load the
policy compiler and the engine with it.
"""

_LAZY = {
    "FixedPolicy": "extauthz.policy.source",
    "PolicySource": "extauthz.policy.source",
    "ServerConfig": "extauthz.server.config",
    "ServerState": "extauthz.server.state",
    "StaticPolicySource": "extauthz.server.state",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'extauthz.server' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["FixedPolicy", "PolicySource", "ServerConfig", "ServerState", "StaticPolicySource"]
