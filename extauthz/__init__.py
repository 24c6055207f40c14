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

__all__ = [
    "Body",
    "BodyJson",
    "ClientInfo",
    "ContractShieldError",
    "ContractShieldTimeout",
    "ContractShieldUnavailable",
    "Decision",
    "DecisionMetadata",
    "HttpRequest",
    "Identity",
    "InvalidConfig",
    "InvalidContext",
    "InvalidPolicy",
    "OperationalError",
    "PolicyProblem",
    "ReplayStoreUnavailable",
    "RequestContext",
    "Risk",
    "RuleHit",
    "RuntimeInfo",
    "SocketInUse",
    "UsageError",
    "__version__",
]
