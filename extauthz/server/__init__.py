"""The PDP server: gRPC ext_authz (Unix socket and/or TCP), HTTP API, probes and metrics."""

from .config import ServerConfig
from .state import PolicySource, ServerState, StaticPolicySource

__all__ = ["PolicySource", "ServerConfig", "ServerState", "StaticPolicySource"]
