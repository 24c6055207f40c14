"""The compiled, immutable policy the pipeline runs: built once per load by ``extauthz.policy``.

Everything a request needs is precomputed here (matcher, schema validators, CEL programs and
the variables they read, resolved secrets), so a snapshot can be shared across threads and a
reload swaps one reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .body import DEFAULT_OPTIONS as DEFAULT_BODY_OPTIONS
from .body import BodyOptions
from .cel import CelPlan
from .contract import Contract
from .decoders.grpc import GrpcMethod
from .limits import Limits
from .matcher import Pattern, RouteMatcher
from .vulnerability import VulnerabilityConfig
from .webhook import WebhookConfig

DEFAULT_LIMITS = Limits()
DEFAULT_VULNERABILITY = VulnerabilityConfig()
ENFORCE = "enforce"
MONITOR_MODE = "monitor"


@dataclass(frozen=True, slots=True)
class Defaults:
    mode: str = MONITOR_MODE
    unmatched_route_action: str = "allow"  # allow | block | monitor
    block_status_code: int = 403
    malformed_status_code: int = 400
    limits: Limits = DEFAULT_LIMITS
    vulnerability: VulnerabilityConfig = DEFAULT_VULNERABILITY
    body: BodyOptions = DEFAULT_BODY_OPTIONS


@dataclass(frozen=True, slots=True)
class HitOverride:
    """What a rule that configures a built-in check (``type: limit``, ``webhook-signature``,
    ...) makes of that check's hits: its own id, its severity (None: the check's own) and
    its action (a ``monitor`` rule's hits never block)."""

    id: str
    severity: str | None = None
    blocking: bool = True


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    id: str
    methods: tuple[str, ...]
    pattern: Pattern
    mode: str
    limits: Limits
    vulnerability: VulnerabilityConfig
    contract: Contract | None = None
    webhook: WebhookConfig | None = None
    cel: CelPlan | None = None
    # built-in hit id (``limit.body.max``) -> the configuring rule's override; usually empty
    overrides: Mapping[str, HitOverride] = field(default_factory=dict)
    # Where each part came from in the policy, for ``explain``: rule (hit) id -> "routes[2].
    # rules[0]", and "@route", "@limits", "@vulnerability", "@contract", "@webhook" -> path.
    locations: Mapping[str, str] = field(default_factory=dict)
    # A gRPC method's route (``grpc`` in the policy): how its body becomes the request message.
    grpc: GrpcMethod | None = None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """An immutable policy snapshot; safe to share across threads."""

    version: str  # "sha256:" + 12 hex digits over the policy and its schema files
    loaded_at: float
    source: str
    files: tuple[Path, ...]
    route_ids: tuple[str, ...]
    max_body_bytes: int
    defaults: Defaults
    routes: tuple[CompiledRoute, ...]
    routes_by_id: Mapping[str, CompiledRoute]
    matcher: RouteMatcher[CompiledRoute]
    # what the policy's API descriptions ask that is not checked (``policy check`` prints
    # them, a (re)load logs them); the policy loads all the same
    warnings: tuple[str, ...] = ()

    def route(self, route_id: str) -> CompiledRoute | None:
        return self.routes_by_id.get(route_id)
