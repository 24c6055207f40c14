"""One exception hierarchy for the whole package.

    ContractShieldError                  base; every error has a stable snake_case ``code``
    ├── UsageError                       the caller or operator got something wrong
    │   ├── InvalidPolicy                policy refused at load (``errors`` lists each problem)
    │   ├── InvalidConfig                a server/client setting is invalid
    │   └── InvalidContext               a RequestContext that cannot be built or parsed
    └── OperationalError                 something outside the caller's control failed
        ├── ContractShieldUnavailable    the PDP could not be reached (client, fail closed)
        ├── ContractShieldTimeout        the PDP did not answer in time
        ├── ReplayStoreUnavailable       the webhook replay store (e.g. Redis) failed
        └── SocketInUse                  a live server already answers on the Unix socket

Third-party errors (grpc, redis, yaml) are mapped at the boundary with ``raise ... from exc``.
The ``code`` doubles as a Prometheus label value, so it never carries request data.
"""

from __future__ import annotations

from dataclasses import dataclass


class ContractShieldError(Exception):
    code = "contractshield_error"


class UsageError(ContractShieldError):
    code = "usage_error"


class OperationalError(ContractShieldError):
    code = "operational_error"


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One reason a policy was refused: ``file: path.inside.policy: reason``."""

    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '<root>'}: {self.reason}"


class InvalidPolicy(UsageError):
    code = "invalid_policy"

    def __init__(self, errors: list[PolicyProblem] | tuple[PolicyProblem, ...]) -> None:
        self.errors: tuple[PolicyProblem, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or "invalid policy")


class InvalidConfig(UsageError):
    code = "invalid_config"


class InvalidContext(UsageError):
    code = "invalid_context"


class ContractShieldUnavailable(OperationalError):
    code = "unavailable"


class ContractShieldTimeout(ContractShieldUnavailable):
    code = "timeout"


class ReplayStoreUnavailable(OperationalError):
    code = "replay_store_unavailable"


class SocketInUse(OperationalError):
    code = "socket_in_use"
