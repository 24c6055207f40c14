"""The shape of a ContractShield v0.1 policy, as a JSON Schema, and its problem list.

Structural validation is delegated to ``jsonschema`` (every error, not the first); each error
becomes a ``PolicyProblem`` whose path reads like ``routes[2].webhook.provider``. Unknown keys
are errors, one problem per key, because they are almost always typos of a real option.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from .._exceptions import PolicyProblem
from ..engine import checks
from ..webhooks import names as webhook_providers

_SEVERITY = {"enum": ["low", "med", "high", "critical"]}
_MODE = {"enum": ["monitor", "enforce"]}
_STATUS = {"type": "integer", "minimum": 200, "maximum": 599}


def vulnerability_schema(catalogue: checks.Catalogue = checks.CATALOGUE) -> dict[str, Any]:
    """The ``vulnerability``/``vulnerabilityChecks`` section: one key per detector."""
    properties = {d.name: d.schema for d in catalogue.detectors}
    return {"type": "object", "additionalProperties": False, "properties": properties}


def limits_schema(catalogue: checks.Catalogue = checks.CATALOGUE) -> dict[str, Any]:
    """The ``limits`` section: one key per limit."""
    properties = {c.name: c.schema for c in catalogue.limits}
    return {"type": "object", "additionalProperties": False, "properties": properties}


_VULNS = vulnerability_schema()
_LIMITS = limits_schema()
_METHOD = {"type": "string", "pattern": "^(\\*|[A-Z]+)$"}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]*$"}
_TOLERANCE = {"type": "integer", "minimum": 1, "maximum": 86400}
_WEBHOOK_KEYS: dict[str, Any] = {
    "provider": {"enum": list(webhook_providers())},
    "secretRef": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
    "secret": {"type": "string", "minLength": 1},
    "timestampTolerance": _TOLERANCE,
    "toleranceSeconds": _TOLERANCE,  # upstream's older name (deprecated alias)
    "replayProtection": {"type": "boolean"},
    "allowedEventTypes": {"type": "array", "items": {"type": "string", "minLength": 1}},
    "requireRawBody": {"type": "boolean"},
    "header": {"type": "string", "minLength": 1},
    "idempotency": {
        "type": "object",
        "additionalProperties": False,
        "properties": {k: {"type": "string"} for k in ("store", "table", "key")},
    },
}
# The route's ``webhook``; ``provider`` may also come from a webhook rule's config.
_WEBHOOK = {"type": "object", "additionalProperties": False, "properties": _WEBHOOK_KEYS}
_CONTRACT_KEYS: dict[str, Any] = dict(checks.contract.CHECK.schema or {})
# Rule types: ``cel`` is a condition; the others configure a built-in check of the route
# (their ``config`` keys merge into the route's section of the same name).
RULE_TYPES = (
    "cel",
    "webhook",
    "webhook-signature",
    "webhook-replay",
    "limit",
    "limits",
    "contract",
)


def _config(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


_RULE_CONFIG = {
    # Length is checked when compiling (one clear message, without echoing the expression).
    "cel": _config({"expr": {"type": "string", "minLength": 1}}, required=["expr"]),
    "webhook": _config(_WEBHOOK_KEYS),
    "webhook-signature": _config(_WEBHOOK_KEYS),
    "webhook-replay": _config({}),
    "limit": _config(_LIMITS["properties"], minProperties=1),
    "limits": _config(_LIMITS["properties"], minProperties=1),
    "contract": _config(_CONTRACT_KEYS),
}
_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "type"],
    "properties": {
        "id": _ID,
        "type": {"enum": list(RULE_TYPES)},
        # "allow" is in upstream's type but has no meaning there; refused when compiling.
        "action": {"enum": ["block", "monitor", "allow"]},
        "severity": _SEVERITY,
        "message": {"type": "string"},
        "description": {"type": "string"},
        "config": {"type": "object"},
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"const": t}}, "required": ["type"]},
            "then": {
                "properties": {"config": schema},
                **({"required": ["config"]} if t in ("cel", "limit", "limits") else {}),
            },
        }
        for t, schema in _RULE_CONFIG.items()
    ],
}

# ``openapi``: routes from an OpenAPI document (``_openapi.spec_routes``). Each option is
# checked again, with the route schema, as part of every route it makes.
_SPEC_OPTIONS: dict[str, Any] = {
    k: {"type": "object"} for k in ("limits", "vulnerability", "webhook")
} | {
    "mode": {"type": "string"},
    "rules": {"type": "array"},
    "rejectUnknownFields": {"type": "boolean"},
    "rejectUnknownParameters": {"type": "boolean"},
}
_OPENAPI = {
    "type": "object",
    "additionalProperties": False,
    "required": ["spec"],
    "properties": {
        "spec": {"type": "string", "minLength": 1},
        "pathPrefix": {"type": "string", "pattern": "^(/.*)?$"},
        "operations": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {**_SPEC_OPTIONS, "skip": {"type": "boolean"}},
            },
        },
        **_SPEC_OPTIONS,
    },
}

# The route's ``grpc``: the method it protects and the descriptor set that defines it.
_GRPC: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["descriptorSetRef"],
    "properties": {
        "descriptorSetRef": {"type": "string", "minLength": 1},
        "service": {"type": "string", "minLength": 1},
        "method": {"type": "string", "minLength": 1},
        "rejectUnknownFields": {"type": "boolean"},
        "streaming": {"enum": ["refuse", "firstMessage"]},
        "protovalidate": {"type": "boolean"},
    },
}

POLICY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["policyVersion", "routes"],
    "properties": {
        "policyVersion": {"const": "0.1"},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "defaults": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "mode": _MODE,
                "unmatchedRouteAction": {"enum": ["allow", "block", "monitor"]},
                "response": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"blockStatusCode": _STATUS, "malformedStatusCode": _STATUS},
                },
                "limits": _LIMITS,
                "vulnerabilityChecks": _VULNS,
                "body": {  # engine.body.BodyOptions (docs/policy.md, "Hostile bodies")
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "malformed": {"enum": ["refuse", "inspect"]},
                        "duplicateKeys": {"enum": ["refuse", "allow"]},
                        "contentEncoding": {"enum": ["decode", "refuse"]},
                    },
                },
            },
        },
        "openapi": _OPENAPI,
        "routes": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id"],  # and match, unless grpc names the method
                "properties": {
                    "id": _ID,
                    "description": {"type": "string"},
                    "match": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["path"],
                        "properties": {
                            "method": {
                                "oneOf": [
                                    _METHOD,
                                    {"type": "array", "items": _METHOD, "minItems": 1},
                                ]
                            },
                            "path": {"type": "string", "minLength": 1},
                        },
                    },
                    "mode": _MODE,
                    "contract": _config(_CONTRACT_KEYS),
                    "limits": _LIMITS,
                    "vulnerability": _VULNS,
                    "webhook": _WEBHOOK,
                    "grpc": _GRPC,
                    "rules": {"type": "array", "items": _RULE},
                },
            },
        },
    },
}

_VALIDATOR = Draft202012Validator(POLICY_SCHEMA)


def format_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


def _explain(error: Any) -> str:
    v = error.validator
    if v == "enum":
        return f"must be one of {', '.join(repr(x) for x in error.validator_value)}, got {error.instance!r}"
    if v == "const":
        return f"must be {error.validator_value!r}, got {error.instance!r}"
    if v == "oneOf" and error.context:
        best = best_match(error.context)
        if best is not None:
            return _explain(best)
    if v == "additionalProperties":
        return f"unknown key ({error.message})"
    if v == "pattern" and error.validator_value == _METHOD["pattern"]:
        text = str(error.instance)
        return f"{text!r} is not an upper-case HTTP method: write {text.upper()!r} ('*' for any)"
    return str(error.message)


def structure_problems(doc: Any, source: str) -> list[PolicyProblem]:
    """Every structural problem of a policy document, in document order."""
    problems: list[PolicyProblem] = []
    errors = sorted(
        _VALIDATOR.iter_errors(doc),
        key=lambda e: [
            (0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in e.absolute_path
        ],
    )
    for error in errors:
        if error.validator == "oneOf" and error.context:
            # The branch that got furthest into the value says what is wrong with it.
            deepest = max(
                error.context, key=lambda e: (len(e.relative_path), e.validator != "type")
            )
            if deepest.relative_path or deepest.validator != "type":
                error = deepest
        path = list(error.absolute_path)
        if path and path[-1] in ("secret", "secretRef") and error.validator != "required":
            # Never echo a secret (logs, /health, CI output), even a mistyped one.
            what = "a non-empty string" if path[-1] == "secret" else "an environment variable name"
            problems.append(
                PolicyProblem(source, format_path(path), f"must be {what} (value not shown)")
            )
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in allowed:
                    problems.append(
                        PolicyProblem(
                            source,
                            format_path([*path, key]),
                            f"unknown key (allowed: {', '.join(sorted(allowed))})",
                        )
                    )
            continue
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            problems.append(
                PolicyProblem(
                    source,
                    format_path([*path, missing]) if missing else format_path(path),
                    "required key is missing",
                )
            )
            continue
        problems.append(PolicyProblem(source, format_path(path), _explain(error)))
    return problems
