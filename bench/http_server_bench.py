"""Which HTTP server: the same ``HttpApi`` (``POST /v1/evaluate``, demo policy) behind each
candidate, and each candidate's no-op floor, loaded by wrk with 8 connections over TCP.

Candidates: aiohttp's low-level ``web.Server`` (what the server used before), our
``asyncio.Protocol`` on httptools (``extauthz.server.http_server``), and granian's RSGI (a Rust
server; no-op only: it runs its own event loop and workers, which cannot share the one loop
where gRPC, the replay store and the policy live). Every server runs in its own process on
uvloop, as ``extauthz serve`` does. Rounds are interleaved; figures are ratios to the
aiohttp no-op floor of the same round (the machine is shared: absolutes drift, ratios less).
Run: ``.venv/bin/python bench/http_server_bench.py [--rounds 3] [--duration 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from http_bench import CONTEXTS, run_wrk  # noqa: E402

from extauthz.devstack import free_port, port_answers  # noqa: E402
from extauthz.devstack.server import DEMO_POLICY  # noqa: E402

MODES = ("aiohttp-noop", "httptools-noop", "granian-noop", "aiohttp-api", "httptools-api")
NOOP_BODY = b'{"action":"ALLOW"}'


def _api() -> Any:
    from extauthz.server.app import build_state
    from extauthz.server.config import ServerConfig
    from extauthz.server.grpc_service import AuthorizationServicer
    from extauthz.server.http_api import HttpApi

    config = ServerConfig(policy_path=str(DEMO_POLICY), hot_reload=False, http_port=1)
    state = build_state(config)
    return HttpApi(state, AuthorizationServicer(state))


async def _serve_aiohttp(port: int, api: Any) -> None:
    from aiohttp import web

    from extauthz._http import HttpIn, HttpOut

    async def handler(request: web.BaseRequest) -> web.Response:
        body = await request.read()
        if api is None:
            return web.Response(body=NOOP_BODY, content_type="application/json")
        headers = {k.lower(): v for k, v in request.headers.items()}
        out = api(HttpIn(request.method, request.path, request.query_string, headers, body))
        if not isinstance(out, HttpOut):
            out = await out
        return web.Response(
            body=out.body,
            status=out.status,
            headers={"Content-Type": out.content_type or "application/octet-stream"},
        )

    runner = web.ServerRunner(web.Server(handler, access_log=None), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def _serve_httptools(port: int, api: Any) -> None:
    from extauthz._http import HttpOut
    from extauthz.server.http_server import HttpServer

    noop = HttpOut(200, NOOP_BODY, "application/json")
    server = HttpServer(api if api is not None else (lambda request: noop), max_body_bytes=8 << 20)
    await server.listen_tcp("127.0.0.1", port)
    await asyncio.Event().wait()


def _serve_granian(port: int) -> None:
    from granian.constants import Interfaces
    from granian.server import Server

    Server(
        "http_server_bench:granian_app",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.RSGI,
        workers=1,
        runtime_threads=1,
        log_enabled=False,
    ).serve()


async def granian_app(scope: Any, proto: Any) -> None:
    await proto()
    proto.response_bytes(200, [("content-type", "application/json")], NOOP_BODY)


def serve(mode: str, port: int) -> None:
    if mode == "granian-noop":
        os.chdir(ROOT / "bench")
        _serve_granian(port)
        return
    import uvloop

    api = _api() if mode.endswith("-api") else None
    runner = _serve_aiohttp if mode.startswith("aiohttp") else _serve_httptools
    uvloop.run(runner(port, api))


def start(mode: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not port_answers("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{mode} did not start")
        time.sleep(0.05)
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if not shutil.which("wrk"):
        print("wrk is not on PATH (apt-get install wrk)")
        return 1
    body = json.dumps(CONTEXTS["clean-activate"], separators=(",", ":"))
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    ratios: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        round_rps: dict[str, float] = {}
        for mode in MODES:
            proc, port = start(mode)
            try:
                url = f"http://127.0.0.1:{port}/v1/evaluate"
                run_wrk(url, body, 1, args.connections, 1)  # warm-up
                res = run_wrk(url, body, args.duration, args.connections, 1)
            finally:
                proc.terminate()
                proc.wait(10)
            results[mode].append(res)
            round_rps[mode] = res["rps"]
            print(
                f"round {r + 1} {mode:<15} {res['rps']:>8.0f} req/s  p50 {res['p50_ms']:.2f} ms"
                f"  p99 {res['p99_ms']:.2f} ms  non-2xx {res['non2xx']:.0f}",
                flush=True,
            )
        for mode in MODES:
            ratios[mode].append(round_rps[mode] / round_rps["aiohttp-noop"])
    print(f"\n{'server':<15} {'req/s (median)':>15} {'p99 ms':>8} {'x aiohttp no-op':>16}")
    for mode in MODES:
        rps = statistics.median(x["rps"] for x in results[mode])
        p99 = statistics.median(x["p99_ms"] for x in results[mode])
        print(f"{mode:<15} {rps:>15.0f} {p99:>8.2f} {statistics.median(ratios[mode]):>15.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
