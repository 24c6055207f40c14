"""ASGI and WSGI middleware, each remote (via the client) or embedded (in-process engine).

Import the flavour you need from ``extauthz.middleware.asgi`` or ``extauthz.middleware.wsgi``;
the embedded classes import the engine only when constructed.
"""

from ._common import (
    ASGI_STATE_KEY,
    DEFAULT_MAX_BODY_BYTES,
    PDP_UNAVAILABLE,
    POLICY_VIOLATION,
    WSGI_ENVIRON_KEY,
    DenyResponse,
)
from .asgi import EmbeddedASGIMiddleware, RemoteASGIMiddleware
from .wsgi import EmbeddedWSGIMiddleware, RemoteWSGIMiddleware

__all__ = [
    "ASGI_STATE_KEY",
    "DEFAULT_MAX_BODY_BYTES",
    "PDP_UNAVAILABLE",
    "POLICY_VIOLATION",
    "WSGI_ENVIRON_KEY",
    "DenyResponse",
    "EmbeddedASGIMiddleware",
    "EmbeddedWSGIMiddleware",
    "RemoteASGIMiddleware",
    "RemoteWSGIMiddleware",
]
