"""``extauthz serve`` with one fault made on purpose: a check of ``FAULT_PATH`` raises inside the
server, around the engine (test only; run as ``python _faulty_pdp.py serve ...``).

No real request makes the server's decision path raise: the engine turns its own bugs into an
``engine.internalError`` decision, and the adapters refuse what they cannot read. So the test of
what Envoy does with a PDP internal error needs one: the same process, sockets and code as
``extauthz serve``, with ``extauthz.decider.begin`` (the engine step the decider calls)
raising for one path, the failure that the decider's internal-error denial exists for (500
``INTERNAL_ERROR``, an error id in the log).
"""

from __future__ import annotations

import sys
from typing import Any

from extauthz import decider as decide
from extauthz.cli import main

FAULT_PATH = "/internal-error"
_begin = decide.begin


def _faulty_begin(policy: Any, ctx: Any, now: float, *args: Any) -> Any:
    if ctx.request.path == FAULT_PATH:
        raise RuntimeError("injected fault (tests/e2e/_faulty_pdp.py)")
    return _begin(policy, ctx, now, *args)


if __name__ == "__main__":
    decide.begin = _faulty_begin
    sys.exit(main())
