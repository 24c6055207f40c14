"""Loading ContractShield v0.1 policies: read, validate every part, compile once.

``load_policy`` refuses a policy with ``InvalidPolicy`` listing every problem as
``file: path.inside.policy: reason``; it never returns a half-valid policy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._exceptions import InvalidPolicy, PolicyProblem
from ..engine.checks import DETECTORS
from ..engine.model import CompiledPolicy
from ._compile import compile_document
from ._loader import MAX_DOCUMENT_BYTES, parse_document

__all__ = ["CompiledPolicy", "load_policy", "load_policy_bytes", "load_policy_text"]


def load_policy(
    path: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
) -> CompiledPolicy:
    """Load, validate and compile a policy file (YAML or JSON); raise ``InvalidPolicy``.

    Relative file references (``requestSchemaRef``, ``openapiRef``, ``openapi.spec``) resolve
    against the policy file's directory, or against ``base_dir`` when given: upstream's tools
    resolve them against the repository root, so its policies run unchanged with the root as
    ``base_dir`` (``POLICY_BASE_DIR`` / ``--policy-base-dir`` on the command line).
    ``max_document_bytes``: the size limit of each OpenAPI document or schema file it reads.
    """
    p = Path(path)
    source = str(path)
    if base_dir is not None and not Path(base_dir).is_dir():
        raise InvalidPolicy(
            [PolicyProblem(source, "", f"policy base directory {base_dir} is not a directory")]
        )
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InvalidPolicy([PolicyProblem(source, "", "policy file not found")]) from None
    except IsADirectoryError:
        raise InvalidPolicy([PolicyProblem(source, "", "policy path is a directory")]) from None
    except OSError as exc:
        raise InvalidPolicy(
            [PolicyProblem(source, "", f"policy file cannot be read: {exc.strerror or exc}")]
        ) from None
    base = Path(base_dir).resolve() if base_dir is not None else p.resolve().parent
    policy = load_policy_bytes(
        data, source=source, base_dir=base, max_document_bytes=max_document_bytes
    )
    return _with_policy_file(policy, p.resolve())


def load_policy_text(
    text: str, *, source: str = "<string>", base_dir: Path | None = None
) -> CompiledPolicy:
    """Load a policy from text; schema refs resolve against ``base_dir`` (default: cwd)."""
    return load_policy_bytes(text.encode("utf-8"), source=source, base_dir=base_dir)


def load_policy_bytes(
    data: bytes,
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
    sealed: bool = False,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
) -> CompiledPolicy:
    """Load a policy from bytes; ``sealed`` refuses schema files and environment secrets
    (a policy that came from a caller, see ``compile_document``)."""
    doc, problems = parse_document(data, source)
    if problems:
        raise InvalidPolicy(problems)
    policy, problems = compile_document(
        doc,
        source=source,
        base_dir=base_dir or Path.cwd(),
        policy_bytes=data,
        sealed=sealed,
        max_document_bytes=max_document_bytes,
    )
    if policy is None:
        raise InvalidPolicy(problems)
    problems = _unavailable_checks(doc, policy, source)
    if problems:
        raise InvalidPolicy(problems)
    return policy


def _unavailable_checks(doc: Any, policy: CompiledPolicy, source: str) -> list[PolicyProblem]:
    """Where the policy turns on a detector that cannot run here (an optional piece missing).

    Refused rather than run without it: a check that silently did nothing would let through
    what the policy says it blocks.
    """
    missing = [d for d in DETECTORS if d.unavailable is not None]
    if not missing:
        return []
    raw_routes = doc.get("routes") if isinstance(doc, Mapping) else None
    index = {
        r.get("id"): i
        for i, r in enumerate(raw_routes if isinstance(raw_routes, list) else [])
        if isinstance(r, Mapping)
    }
    problems: list[PolicyProblem] = []
    for detector in missing:
        name, reason = detector.name, detector.unavailable or ""
        if policy.defaults.vulnerability.setting(detector.attr).enabled:
            problems.append(PolicyProblem(source, f"defaults.vulnerabilityChecks.{name}", reason))
            continue
        for route in policy.routes:
            if not route.vulnerability.setting(detector.attr).enabled:
                continue
            if route.id in index:
                where = f"routes[{index[route.id]}].vulnerability.{name}"
                problems.append(PolicyProblem(source, where, reason))
            else:  # a route made from an OpenAPI operation
                problems.append(
                    PolicyProblem(source, "openapi", f"route {route.id!r}: {name} {reason}")
                )
    return problems


def _with_policy_file(policy: CompiledPolicy, path: Path) -> CompiledPolicy:
    return replace(policy, files=(path, *policy.files))
