"""ContractShield for Envoy: a policy decision point for Envoy's ext_authz filter.

Data flows one way: Envoy bytes → adapter → ``RequestContext`` → engine → ``Decision`` →
adapter → Envoy bytes. This module only re-exports the public API.
"""

from ._exceptions import (
    ContractShieldError,
    ContractShieldTimeout,
    ContractShieldUnavailable,
    InvalidConfig,
    InvalidContext,
    InvalidPolicy,
    OperationalError,
    PolicyProblem,
    ReplayStoreUnavailable,
    SocketInUse,
    UsageError,
)
from .context import (
    Body,
    BodyJson,
    ClientInfo,
    HttpRequest,
    Identity,
    RequestContext,
    RuntimeInfo,
)
from .decision import Decision, DecisionMetadata, Risk, RuleHit

__version__ = "0.1.0"

# Heavier parts are imported on first use, so that ``import extauthz.client`` pulls in
# neither the engine (CEL, JSON Schema) nor the server's dependencies (watchdog, redis).
_LAZY = {
    "AsyncReplayStore": "extauthz.engine",
    "CompiledPolicy": "extauthz.engine",
    "InMemoryReplayStore": "extauthz.engine",
    "ReplayStore": "extauthz.engine",
    "evaluate": "extauthz.engine",
    "evaluate_async": "extauthz.engine",
    "load_policy": "extauthz.policy",
    "load_policy_text": "extauthz.policy",
    "PolicyHotReloader": "extauthz.policy.reload",
    "RedisReplayStore": "extauthz.replay_redis",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'extauthz' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AsyncReplayStore",
    "Body",
    "BodyJson",
    "ClientInfo",
    "CompiledPolicy",
    "ContractShieldError",
    "ContractShieldTimeout",
    "ContractShieldUnavailable",
    "Decision",
    "DecisionMetadata",
    "HttpRequest",
    "Identity",
    "InMemoryReplayStore",
    "InvalidConfig",
    "InvalidContext",
    "InvalidPolicy",
    "OperationalError",
    "PolicyHotReloader",
    "PolicyProblem",
    "RedisReplayStore",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "RequestContext",
    "Risk",
    "RuleHit",
    "RuntimeInfo",
    "SocketInUse",
    "UsageError",
    "__version__",
    "evaluate",
    "evaluate_async",
    "load_policy",
    "load_policy_text",
]
