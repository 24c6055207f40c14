"""Loading ContractShield v0.1 policies: read, validate every part, compile once.

``load_policy`` refuses a policy with ``InvalidPolicy`` listing every problem as
``file: path.inside.policy: reason``; it never returns a half-valid policy.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .._exceptions import InvalidPolicy, PolicyProblem
from ..engine.model import CompiledPolicy
from ._compile import compile_document
from ._loader import MAX_DOCUMENT_BYTES, parse_document

__all__ = ["CompiledPolicy", "load_policy", "load_policy_bytes", "load_policy_text"]


def load_policy(
    path: str | os.PathLike[str], *, max_document_bytes: int = MAX_DOCUMENT_BYTES
) -> CompiledPolicy:
    """Load, validate and compile a policy file (YAML or JSON); raise ``InvalidPolicy``.

    ``max_document_bytes``: the size limit of each OpenAPI document or schema file it reads.
    """
    p = Path(path)
    source = str(path)
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
    policy = load_policy_bytes(
        data, source=source, base_dir=p.resolve().parent, max_document_bytes=max_document_bytes
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
    return policy


def _with_policy_file(policy: CompiledPolicy, path: Path) -> CompiledPolicy:
    return replace(policy, files=(path, *policy.files))
