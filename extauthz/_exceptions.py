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
    """The base: catch this for every error the package raises on purpose."""

    code = "contractshield_error"


class UsageError(ContractShieldError):
    """The caller or operator got something wrong; asking again the same way fails again."""

    code = "usage_error"


class OperationalError(ContractShieldError):
    """Something outside the caller's control failed; it may work later."""

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
    """A policy refused at load; ``errors`` lists every problem found, not just the first."""

    code = "invalid_policy"

    def __init__(self, errors: list[PolicyProblem] | tuple[PolicyProblem, ...]) -> None:
        self.errors: tuple[PolicyProblem, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or "invalid policy")


class InvalidConfig(UsageError):
    """A server, client or Envoy-config setting is invalid (the message names the setting)."""

    code = "invalid_config"


class InvalidContext(UsageError):
    """A request description (``RequestContext``, client input) cannot be built or parsed."""

    code = "invalid_context"


class ContractShieldUnavailable(OperationalError):
    """The PDP could not be reached: what a client failing closed raises, after its retries."""

    code = "unavailable"


class ContractShieldTimeout(ContractShieldUnavailable):
    """The PDP did not answer within the attempt's deadline: unavailable, for the caller."""

    code = "timeout"


class ReplayStoreUnavailable(OperationalError):
    """The webhook replay store (e.g. Redis) failed: by default the webhook is blocked (503)."""

    code = "replay_store_unavailable"


class SocketInUse(OperationalError):
    """A live server already answers on the Unix socket; a second one refuses to take it over."""

    code = "socket_in_use"
