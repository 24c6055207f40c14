"""Instructions per request, stage by stage, for the doors ``door_instructions`` counts whole.

In one process under callgrind (deterministic: no timer, no quiet machine needed), the demo
policy's server pieces are called on ``door_instructions``' requests, each stage alone over
``--n`` calls after a warm-up, counted between callgrind client requests (a few lines of C
built here with gcc and valgrind's ``callgrind.h``):

    conn: whole        the request's bytes fed to the server's connection (``_Connection``,
                       a stub transport): parse, door, decider, engine, answer, serialize
    conn: no-op door   the same with a handler that answers a fixed ``HttpOut``: the HTTP
                       server's own cost
    llhttp + callbacks httptools parsing with empty callbacks: the floor of the above
    door, adapter, decider, answer, serialize: the pieces of the HTTP-mode check
    engine: ...        the engine's phases on that check's context, each alone as
                       ``pipeline.prepare`` calls it (CEL: the view it reads and the rules)

A stage's figure includes the call of a lambda (~460 instructions). Not the event loop
(``door_instructions`` includes it: ~5k a request with uvloop).

Run: ``.venv/bin/python bench/door_stages.py [--n 500]``; needs valgrind (with its headers)
and gcc. Figures: docs/deployment.md, "Sizing".
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

HELPER = """
#include <valgrind/callgrind.h>
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_dump(const char *s) { CALLGRIND_DUMP_STATS_AT(s); }
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
"""
WARMUP = 100
NAMES = (
    "authz conn: whole",
    "authz conn: no-op door",
    "authz llhttp + empty callbacks",
    "authz door (HttpApi)",
    "authz   adapter (+ its HttpIn)",
    "authz   decider.begin",
    "authz   answer (http_answer)",
    "authz   serialize",
    "evaluate conn: whole",
    "evaluate conn: no-op door",
    "engine: pipeline.begin",
    "engine:   canonicalize + match",
    "engine:   body.parse",
    "engine:   vulnerability.check",
    "engine:   limits.check",
    "engine:   contract.check",
    "engine:   CEL view + evaluate",
    "engine:   finish (the Decision)",
    "lambda call",
)


def stages(n: int) -> list[tuple[Callable[[Any], object], list[Any]]]:
    """(call, its arguments) for each of ``NAMES``: built before counting starts."""
    import httptools
    from door_instructions import authz_request, evaluate_request

    from extauthz._http import HttpIn, HttpOut
    from extauthz.engine import body as body_mod
    from extauthz.engine import cel as cel_mod
    from extauthz.engine import limits as limits_mod
    from extauthz.engine import pipeline
    from extauthz.engine import vulnerability as vuln_mod
    from extauthz.engine.canonical import canonicalize
    from extauthz.engine.contract import Contract
    from extauthz.envoy.http_request import forwarded_request_to_context
    from extauthz.envoy.request import AdapterOptions
    from extauthz.server import heap, http_server
    from extauthz.server.app import build_state
    from extauthz.server.config import ServerConfig
    from extauthz.server.grpc_service import AuthorizationServicer
    from extauthz.server.http_api import HttpApi
    from extauthz.server.http_authz import TRANSPORT, http_answer
    from tests._transport import NullTransport

    state = build_state(ServerConfig(policy_path=str(ROOT / "policies/demo.yaml")))
    servicer = AuthorizationServicer(state)
    api = HttpApi(state, servicer)
    heap.freeze()  # as ``serve`` does

    fixed = HttpOut(200)

    def connection(handler: Callable[[HttpIn], Any]) -> Callable[[bytes], None]:
        conn = http_server._Connection(http_server.HttpServer(handler, max_body_bytes=1 << 20))
        conn.connection_made(NullTransport())  # type: ignore[arg-type]
        return conn.data_received

    class Empty:
        def on_url(self, url: bytes) -> None: ...
        def on_header(self, name: bytes, value: bytes) -> None: ...
        def on_headers_complete(self) -> None: ...
        def on_body(self, body: bytes) -> None: ...
        def on_message_complete(self) -> None: ...

    count = n + WARMUP
    authz = [authz_request(i) for i in range(count)]
    evaluate = [evaluate_request(i) for i in range(count)]
    parsed: list[HttpIn] = []
    parse = connection(lambda r: (parsed.append(r), fixed)[1])
    for raw in authz:
        parse(raw)
    options = AdapterOptions.from_config(state.config)

    def checked(r: HttpIn) -> HttpIn:  # the door strips /ext_authz from the path it is given
        return HttpIn(r.method, r.path[len("/ext_authz") :], r.query, r.headers, r.body)

    contexts = [forwarded_request_to_context(checked(r), options) for r in parsed]
    outcome = servicer.decider.begin(contexts[0], TRANSPORT)
    identity = contexts[0].identity
    answer = http_answer(outcome, identity, False)

    def fresh(r: HttpIn) -> HttpIn:  # the door rewrites the path: a new one each call
        return HttpIn(r.method, r.path, r.query, r.headers, r.body)

    # The engine's phases on the HTTP-mode check's context, each called alone as ``prepare``
    # calls it (the route, parsed body and pending decision computed once, beforehand).
    policy = state.policy_source.current()
    request = contexts[0].request
    canonical = canonicalize(request.path)
    found = policy.matcher.match(request.method, canonical.path)
    assert found is not None
    route, params = found
    limits = route.limits
    body_options = policy.defaults.body
    parsed_body = body_mod.parse(
        request.body, request.content_type, limits.max_json_depth, limits.max_body_bytes,
        None, body_options,
    )  # fmt: skip
    value = parsed_body.value
    pending = pipeline.prepare(policy, contexts[0], 0.0)
    assert route.cel is not None and route.contract is not None
    cel_plan, contract = route.cel, route.contract

    def route_of(c: Any) -> object:
        return policy.matcher.match(c.request.method, canonicalize(c.request.path).path)

    def cel_phase(c: Any) -> None:
        view = pipeline.cel_view(c, canonical.path, params, value, route, False)
        cel_mod.evaluate(cel_plan, view, [])

    return [
        (connection(api), authz),
        (connection(lambda r: fixed), authz),
        (httptools.HttpRequestParser(Empty()).feed_data, authz),
        (lambda r: api(fresh(r)), parsed),
        (lambda r: forwarded_request_to_context(checked(r), options), parsed),
        (lambda c: servicer.decider.begin(c, TRANSPORT), contexts),
        (lambda c: http_answer(outcome, identity, False), contexts),
        (lambda c: http_server.serialize(answer, keep_alive=True), contexts),
        (connection(api), evaluate),
        (connection(lambda r: fixed), evaluate),
        (lambda c: pipeline.begin(policy, c, 0.0), contexts),
        (route_of, contexts),
        (lambda c: body_mod.parse(c.request.body, c.request.content_type,
                                  limits.max_json_depth, limits.max_body_bytes, None,
                                  body_options), contexts),
        (lambda c: vuln_mod.check(route.vulnerability, value, c.request.query, False, []),
         contexts),
        (lambda c: limits_mod.check(limits, c.request.body, c.request.headers, parsed_body, []),
         contexts),
        (lambda c: Contract.check(contract, value, [], c.request.body.redacted), contexts),
        (cel_phase, contexts),
        (lambda c: pipeline.finish(pending), contexts),
        (lambda c: None, contexts),
    ]  # fmt: skip


def measure(n: int) -> None:
    """Under callgrind: count each stage, one dump per stage (named by its index)."""
    helper = ctypes.CDLL(os.environ["DOOR_STAGES_HELPER"])
    table = stages(n)
    helper.cg_start()
    assert len(table) == len(NAMES)
    for index, (call, args) in enumerate(table):
        for arg in args[:WARMUP]:
            call(arg)
        helper.cg_zero()
        helper.cg_toggle()
        for arg in args[WARMUP : WARMUP + n]:
            call(arg)
        helper.cg_toggle()
        helper.cg_dump(str(index).encode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="calls counted per stage")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.n)
        return 0
    with tempfile.TemporaryDirectory(prefix="door-stages-") as tmp:
        work = Path(tmp)
        (work / "cg.c").write_text(HELPER)
        helper = work / "libcg.so"
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", helper, work / "cg.c"], check=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0",
               "DOOR_STAGES_HELPER": str(helper), "LOG_LEVEL": "warning"}  # fmt: skip
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
             f"--callgrind-out-file={work}/cg.out", sys.executable, __file__, "--measure",
             "--n", str(args.n)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        print(f"{'stage (instructions per call)':<34} {'instructions':>12}")
        for dump in sorted(work.glob("cg.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1])):
            text = dump.read_text()
            index = int(text.split("Client Request: ", 1)[1].split("\n", 1)[0])
            total = next(
                int(line.split()[1])
                for line in text.splitlines()
                if line.startswith(("summary:", "totals:"))
            )
            print(f"{NAMES[index]:<34} {total / args.n:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
