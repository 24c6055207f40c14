"""The ContractShield v0.1 ``Decision``: what the engine concluded about one request."""

from __future__ import annotations

from typing import Any

from ._frozen import frozen_dataclass
from ._json import COMPACT
from ._types import Action, RiskLevel, Severity

DECISION_VERSION = "0.1"
ALLOW: Action = "ALLOW"
BLOCK: Action = "BLOCK"
MONITOR: Action = "MONITOR"
SEVERITIES: tuple[Severity, ...] = ("low", "med", "high", "critical")


@frozen_dataclass
class RuleHit:
    id: str
    severity: Severity
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "severity": self.severity, "message": self.message}


@frozen_dataclass
class Risk:
    score: int = 0
    level: RiskLevel = "none"


NO_RISK = Risk()


@frozen_dataclass
class DecisionMetadata:
    route_id: str | None = None
    mode: str | None = None
    policy_version: str | None = None
    request_id: str | None = None


@frozen_dataclass
class Decision:
    action: Action
    status_code: int = 200
    reason: str = ""
    rule_hits: tuple[RuleHit, ...] = ()
    risk: Risk = NO_RISK
    metadata: DecisionMetadata = DecisionMetadata()
    version: str = DECISION_VERSION

    @property
    def allowed(self) -> bool:
        """True for ALLOW and MONITOR: the request goes on to the upstream."""
        return self.action != BLOCK

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(h.id for h in self.rule_hits)

    def to_dict(self) -> dict[str, Any]:
        m = self.metadata
        return {
            "version": self.version,
            "action": self.action,
            "statusCode": self.status_code,
            "reason": self.reason,
            "ruleHits": [h.to_dict() for h in self.rule_hits],
            "risk": {"score": self.risk.score, "level": self.risk.level},
            "redactions": [],  # upstream's directives for the caller's logs; none are issued
            "metadata": {
                "routeId": m.route_id,
                "mode": m.mode,
                "policyVersion": m.policy_version,
                "requestId": m.request_id,
            },
        }

    def to_json(self) -> str:
        return COMPACT.encode(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        meta = data.get("metadata") or {}
        risk = data.get("risk") or {}
        return cls(
            action=data["action"],
            status_code=int(data.get("statusCode", 200)),
            reason=str(data.get("reason", "")),
            rule_hits=tuple(
                RuleHit(h["id"], h.get("severity", "high"), h.get("message", ""))
                for h in data.get("ruleHits") or ()
            ),
            risk=Risk(int(risk.get("score", 0)), risk.get("level", "none")),
            metadata=DecisionMetadata(
                route_id=meta.get("routeId"),
                mode=meta.get("mode"),
                policy_version=meta.get("policyVersion"),
                request_id=meta.get("requestId"),
            ),
            version=str(data.get("version", DECISION_VERSION)),
        )
