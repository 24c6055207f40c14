"""Where the policy a check runs on comes from: the one ``PolicySource`` seam.

Anything with ``current() -> CompiledPolicy`` is a source: ``FixedPolicy`` (loaded once) or
``PolicyHotReloader`` (``policy.reload``, which keeps the last good version of a file). Each
check calls ``current()`` once, so a reload swaps the policy between checks and never in the
middle of one. A source may also have ``last_error`` (the last refused reload, a string or
None), which ``/health`` reports.

The server (``server.state``) and the embedded middleware (``middleware``) both take a source;
``make_policy_source`` turns what a user hands the middleware into one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from . import CompiledPolicy

__all__ = ["FixedPolicy", "PolicySource", "make_policy_source", "policy_loader"]


@runtime_checkable
class PolicySource(Protocol):
    def current(self) -> CompiledPolicy: ...


@dataclass(frozen=True, slots=True)
class FixedPolicy:
    """A policy loaded once: the source when nothing is watched."""

    policy: CompiledPolicy
    last_error: str | None = None

    def current(self) -> CompiledPolicy:
        return self.policy


def make_policy_source(
    policy: str | os.PathLike[str] | CompiledPolicy | PolicySource, *, hot_reload: bool
) -> tuple[PolicySource, Callable[[], None] | None]:
    """A source for ``policy``, and what stops it (None when there is nothing to stop).

    A source is used as it is; a compiled policy becomes ``FixedPolicy``; a path becomes a
    started ``PolicyHotReloader`` (``hot_reload``) or a policy loaded once. A path that does
    not load raises ``InvalidPolicy``.
    """
    if isinstance(policy, PolicySource):
        return policy, None
    if not isinstance(policy, str | os.PathLike):
        return FixedPolicy(policy), None
    if hot_reload:
        from .reload import PolicyHotReloader

        reloader = PolicyHotReloader(policy).start()
        return reloader, reloader.stop
    from . import load_policy

    return FixedPolicy(load_policy(policy)), None


def policy_loader(
    base_dir: str | os.PathLike[str] | None, max_document_bytes: int | None = None
) -> Callable[[Path], CompiledPolicy]:
    """``load_policy`` resolving references against ``base_dir`` (``POLICY_BASE_DIR``; None:
    the policy file's own directory), for the server's and the supervisor's reloaders;
    ``max_document_bytes``: ``MAX_DOCUMENT_BYTES`` (None: the default)."""
    from . import load_policy

    if max_document_bytes is None:
        return functools.partial(load_policy, base_dir=base_dir)
    return functools.partial(load_policy, base_dir=base_dir, max_document_bytes=max_document_bytes)
