"""Compiling a policy in a child process, so that a reload never holds the server's GIL.

A Stripe-sized policy takes seconds of CPU to compile (parsing, validating the description,
generating validator code). Compiled on a thread of the serving process, that work holds the
GIL in slices of up to 5 ms (longer inside one C call) and checks wait behind it: p99 72x
its value at rest during reloads, the slowest check 578 ms. ``load_policy_in_child`` runs
``load_policy`` in a fresh interpreter (``python -m extauthz.policy._child``) and takes back
the compiled policy as a pickle stream, one route at a time (``serve`` does so for a policy
whose files total 256 KiB or more, ``load_policy_for_reload``; a small one compiles in less
time than an interpreter takes to start):

- what cannot be pickled as it is travels as a recipe: a generated validator as its
  marshalled code object and regex patterns (``contract.recipe``), a route's CEL rules as
  their expressions (compiled again here, milliseconds), RE2 patterns as their source, a
  webhook provider as its name in the registry;
- the stream is unpickled as it arrives (reads release the GIL), route by route; after every
  ~0.5 ms of unpickling the loading thread sleeps briefly, so a check that arrives waits
  for at most one slice (one route: ~1 ms for Stripe's largest body) instead of a policy;
- an invalid policy comes back as its problems (``InvalidPolicy``, the same as in-process);
  a child that dies (killed, out of memory) is a failed reload that names how it ended, and
  leaves the server as it was; a policy this module cannot carry (a pickling error: a
  compiled part without a recipe) is loaded in-process instead, with a warning.

The child runs at the lowest CPU priority (``nice`` 19): on a machine with fewer cores than
busy processes the scheduler gives the server the CPU and the reload what is left (measured
with nice +5: the server lost enough CPU to the compile to double its p99 on two cores).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from .. import webhooks
from .._exceptions import InvalidPolicy, PolicyProblem
from ..engine import cel as cel_mod
from ..engine import contract
from ..engine.model import CompiledPolicy
from ._loader import MAX_DOCUMENT_BYTES

log = logging.getLogger("extauthz.reload")

SLICE_S = 0.0005  # unpickling between two pauses of the loading thread
PAUSE_S = 0.0002
NICE = 19  # the lowest CPU priority: on a busy machine a reload waits, checks do not


class ChildFailed(RuntimeError):
    """The compiling process ended without an answer (killed, crashed)."""


def load_policy_in_child(
    path: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
) -> CompiledPolicy:
    """``load_policy(path, ...)`` compiled in a child process; raises what it raises."""
    base = os.fspath(base_dir) if base_dir is not None else ""
    cmd = [sys.executable, "-m", "extauthz.policy._child", os.fspath(path),
           str(max_document_bytes), base]  # fmt: skip
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            # read as it comes (no copy of the whole stream; reads release the GIL)
            unpickler = pickle.Unpickler(proc.stdout)
            try:
                what, detail = unpickler.load()
                if what == "policy":
                    return _install(unpickler, detail)
            except (EOFError, pickle.UnpicklingError):
                what, detail = "died", None
        finally:
            proc.stdout.close()
            status = proc.wait()
            err.seek(0)
            lines = err.read().decode("utf-8", "replace").splitlines()
            for line in lines:
                log.debug("policy compile process: %s", line)
    if what == "invalid":
        raise InvalidPolicy([PolicyProblem(*p) for p in detail])
    if what == "cannot-carry":
        log.warning(
            "the compiled policy cannot be handed over from a child process (%s); "
            "compiling it in the server's process",
            detail,
        )
        from . import load_policy

        return load_policy(path, base_dir=base_dir, max_document_bytes=max_document_bytes)
    how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
    raise ChildFailed(f"the policy compile process {how}" + (f": {lines[-1]}" if lines else ""))


def load_policy_for_reload(
    path: str | os.PathLike[str],
    current: CompiledPolicy | None,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
) -> CompiledPolicy:
    """A reload of ``path``: in a child process when the policy in place is a large one.

    A small policy (its files under ``CHILD_ABOVE_BYTES`` together, the demo's are 10 KB)
    compiles in milliseconds; in-process it holds the GIL for about as long and is in place
    sooner than a child interpreter starts (~0.5 s). Sized by the policy being replaced: the
    reload that first brings in a large description still compiles in-process.
    """
    if current is not None and _size(current.files) >= CHILD_ABOVE_BYTES:
        return load_policy_in_child(path, base_dir=base_dir, max_document_bytes=max_document_bytes)
    from . import load_policy

    return load_policy(path, base_dir=base_dir, max_document_bytes=max_document_bytes)


CHILD_ABOVE_BYTES = 256 * 1024


def _size(files: tuple[Path, ...]) -> int:
    total = 0
    for f in files:
        with contextlib.suppress(OSError):
            total += f.stat().st_size
    return total


def _install(unpickler: pickle.Unpickler, count: int) -> CompiledPolicy:
    """Unpickle route by route, pausing so that checks get the GIL between slices."""
    started = time.perf_counter()
    for _ in range(count):
        unpickler.load()  # one route; the policy below refers to it through the memo
        if time.perf_counter() - started > SLICE_S:
            time.sleep(PAUSE_S)
            started = time.perf_counter()
    policy: CompiledPolicy = unpickler.load()
    return policy


# -- the child's side --------------------------------------------------------------------------


def _rebuild_cel(specs: tuple[tuple[Any, ...], ...]) -> cel_mod.CelPlan:
    """A route's CEL plan from its rules, compiled as ``_compile._compile_rules`` does."""
    rules = []
    needs: dict[Any, Any] = {}
    for rid, expr, severity, blocking, message in specs:
        program, used = cel_mod.compile_expr(expr)
        cel_mod.merge_needs(needs, used)
        rules.append(cel_mod.CelRule(rid, expr, program, severity, blocking, message))
    return cel_mod.make_plan(tuple(rules), needs)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is types.FunctionType:
            made = contract.recipe(obj)
            if made is not None:
                return contract.rebuild, made
        elif kind is cel_mod.CelPlan:
            specs = tuple((r.id, r.expr, r.severity, r.blocking, r.message) for r in obj.rules)
            return _rebuild_cel, (specs,)
        elif isinstance(obj, webhooks.Provider) and webhooks.find(obj.name) is obj:
            return webhooks.get, (obj.name,)  # the registry's one object, by name
        return NotImplemented


def _child(path: str, max_document_bytes: int, base_dir: str | None) -> int:
    """Load, and write the answer to stdout: a header, then what it announces."""
    from . import load_policy

    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    out = sys.stdout.buffer
    try:
        policy = load_policy(path, base_dir=base_dir, max_document_bytes=max_document_bytes)
    except InvalidPolicy as exc:
        problems = [(p.file, p.path, p.reason) for p in exc.errors]
        pickle.dump(("invalid", problems), out, protocol=5)
        out.flush()
        return 0
    buffer = io.BytesIO()
    pickler = _Pickler(buffer, protocol=5)
    try:  # into memory first: a part that cannot be pickled is reported before any output
        pickler.dump(("policy", len(policy.routes)))
        for route in policy.routes:
            pickler.dump(route)  # one load() each on the other side; shared parts once
        pickler.dump(policy)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        pickle.dump(("cannot-carry", f"{type(exc).__name__}: {exc}"), out, protocol=5)
        out.flush()
        return 0
    out.write(buffer.getbuffer())
    out.flush()
    return 0


if __name__ == "__main__":
    # run this module's own copy (``extauthz.policy._child``, not ``__main__``), so that what
    # it pickles names functions the server's process can import
    from extauthz.policy import _child as _module

    sys.exit(_module._child(sys.argv[1], int(sys.argv[2]), sys.argv[3] or None))
