"""The pure policy engine: ``RequestContext`` + ``CompiledPolicy`` → ``Decision``.

Imports nothing of grpc, protobuf, HTTP, YAML, Redis or the file system (a test enforces it);
policies are loaded and compiled by ``extauthz.policy``.
"""

from .model import CompiledPolicy, CompiledRoute, Defaults
from .pipeline import DEFAULT_REPLAY_STORE, evaluate, evaluate_async
from .replay import AsyncReplayStore, InMemoryReplayStore, ReplayStore

__all__ = [
    "DEFAULT_REPLAY_STORE",
    "AsyncReplayStore",
    "CompiledPolicy",
    "CompiledRoute",
    "Defaults",
    "InMemoryReplayStore",
    "ReplayStore",
    "evaluate",
    "evaluate_async",
]
