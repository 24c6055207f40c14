"""Envoy + ext_authz throughput and latency, in one go, with a fixed wrk load (8 connections).

Cases (every one through the same Envoy config with a ``direct_response`` route, so no upstream
is in the way and only the authorization path differs):

    envoy-alone      Envoy without jwt_authn/ext_authz                       (the ceiling)
    floor-uds/-tcp   Envoy + a no-op Python grpcio ext_authz server           (the Python floor)
    extauthz-uds/-tcp Envoy + ``extauthz serve`` with policies/demo.yaml (its built-in gRPC server)
    grpcio-uds/-tcp  the same with ``GRPC_TRANSPORT=grpcio`` (``--with-grpcio``): grpc.aio
    floor-http-uds   Envoy (``envoy-http.yaml``, http_service mode) + a no-op aiohttp server
    floor-http-own   the same on our own HTTP stack, with the PDP's answer: all but the decision
    extauthz-http-uds Envoy (``envoy-http.yaml``) + ``extauthz serve --http-unix-socket``

The request is the demo's main route: ``POST /api/v1/licenses/activate`` with a valid HS256
token and a clean JSON body (schema, vulnerability checks and two CEL rules run; ALLOW).
Each case also prints the CPU time the PDP and Envoy spent per request (from /proc, over the
measured run): the machine has few cores, so every µs either process spends is throughput lost.
Targets (issue 3): extauthz keeps >= 70% of the floor's throughput and its p99 stays <= 1.5x
the floor's, on the same transport. Issue 14: extauthz in HTTP mode >= 1.4x the gRPC floor's
(floor-uds) throughput, p99 <= that floor's p99 (the ``x grpc floor`` columns). Run: ``.venv/bin/python bench/envoy_bench.py``.

The floor is a plain grpc.aio server on asyncio, as the issue measured it. ``extauthz serve``
runs on uvloop when it is installed (a default dependency), and uvloop alone makes the no-op
server faster: ``--floor-loop uvloop`` compares against that stricter floor. floor-http-own
always runs on ``extauthz serve``'s loop.

``--workers 1,2,...`` measures ``extauthz serve --workers W`` instead (one Unix socket per
worker, all listed in Envoy's PDP cluster; a real Redis for replay claims, as several workers
require): req/s per worker count, its ratio to one worker, and the machine's usable cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz._http import HttpIn, HttpOut  # noqa: E402
from extauthz.devstack import free_port, port_answers  # noqa: E402
from extauthz.devstack.envoy import HTTP_MODE, SIDECAR, EnvoyProcess, render_config  # noqa: E402
from extauthz.devstack.server import DEMO_POLICY, ServerProcess  # noqa: E402
from extauthz.envoyconfig import EnvoyConfigOptions  # noqa: E402
from extauthz.policy import CompiledPolicy, load_policy  # noqa: E402

JWT_SECRET = b"contractshield-demo-jwt-key"
#: The token's claims besides iat/exp: the identity the PDP's answer names.
CLAIMS = {"sub": "alice", "tenant": "acme", "scope": "licenses:write"}
ROUTE_ID = "license-activate"  # the demo policy's route for the bench's request
#: The own-stack floor's decision id: fixed (a floor decides nothing), a UUID as long as the
#: ``x-request-id`` Envoy generates, which the PDP answers with as its decision id.
FLOOR_DECISION_ID = "00000000-0000-4000-8000-000000000000"
BODY = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "device-42",
    "tenantId": "acme",
    "callbackUrl": "https://app.example.com/hooks/license",
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def demo_token() -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": "contractshield-demo"}
    now = int(time.time())
    claims = {**CLAIMS, "iat": now, "exp": now + 3600}
    signing = ".".join(_b64url(json.dumps(p).encode()) for p in (header, claims))
    return f"{signing}.{_b64url(hmac.new(JWT_SECRET, signing.encode(), hashlib.sha256).digest())}"


def wrk_script(workdir: Path) -> Path:
    lua = f"""
wrk.method = "POST"
wrk.path = "/api/v1/licenses/activate"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {demo_token()}"
wrk.body = [[{json.dumps(BODY)}]]
"""
    path = workdir / "activate.lua"
    path.write_text(lua)
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if m is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "non2xx": float(bad.group(1)) if bad else 0.0,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the no-op ext_authz server (the Python floor) -----------------------------------------
def run_noop_server(target: str, loop: str = "asyncio") -> None:
    """grpc.aio, one generic handler returning a constant OK CheckResponse."""
    import grpc
    from envoy.service.auth.v3.external_auth_pb2 import CheckResponse
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    ok = CheckResponse()
    ok.status.code = 0
    ok.ok_response.SetInParent()
    answer = ok.SerializeToString()

    async def check(request: bytes, context: object) -> bytes:
        return answer

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "envoy.service.auth.v3.Authorization",
                    {"Check": grpc.unary_unary_rpc_method_handler(check)},
                ),
            )
        )
        health_servicer = health.aio.HealthServicer()
        await health_servicer.set(
            "envoy.service.auth.v3.Authorization", health_pb2.HealthCheckResponse.SERVING
        )
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        server.add_insecure_port(target)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(0)

    if loop == "uvloop":  # what ``extauthz serve`` runs on when uvloop is installed
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def run_noop_http_server(socket_path: str, loop: str = "asyncio") -> None:
    """aiohttp's low-level server answering 200 to every request (HTTP mode's OK), as the
    issue measured the HTTP floor."""
    from aiohttp import web

    async def handler(request: web.BaseRequest) -> web.Response:
        await request.read()
        return web.Response(status=200)

    async def main() -> None:
        runner = web.ServerRunner(web.Server(handler, access_log=None), handle_signals=False)
        await runner.setup()
        await web.UnixSite(runner, socket_path).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def floor_answer(policy: CompiledPolicy | None = None) -> HttpOut:
    """The PDP's answer to the bench's request, built by its own encoder (``decision_to_http``)
    for an ALLOW of the demo's route with the token's identity, so that Envoy does the same work
    on the own-stack floor's answer as on the PDP's; the decision id is ``FLOOR_DECISION_ID``.
    ``policy``: the demo policy, loaded. ``tests/bench`` checks it against ``extauthz serve``."""
    from extauthz.context import Identity
    from extauthz.decision import ALLOW, Decision, DecisionMetadata
    from extauthz.envoy.http_response import decision_to_http

    if policy is None:
        policy = load_policy(DEMO_POLICY)
    meta = DecisionMetadata(ROUTE_ID, policy.defaults.mode, policy.version, FLOOR_DECISION_ID)
    identity = Identity(authenticated=True, subject=CLAIMS["sub"], tenant=CLAIMS["tenant"])
    return decision_to_http(Decision(ALLOW, 200, "allowed", metadata=meta), identity)


def run_noop_http_own(socket_path: str) -> None:
    """Our own ``HttpServer`` answering ``floor_answer()`` to every request, on the loop
    ``extauthz serve`` runs on: the HTTP floor without the decision's work."""
    from extauthz.cli._serve import _loop_factory
    from extauthz.server.config import ServerConfig
    from extauthz.server.http_server import HttpServer

    policy = load_policy(DEMO_POLICY)
    answer = floor_answer(policy)
    config = ServerConfig()  # the defaults ``extauthz serve`` runs the bench's PDP with
    max_bytes = config.effective_max_request_bytes(policy.max_body_bytes)

    def handler(request: HttpIn) -> HttpOut:
        return answer

    async def main() -> None:
        server = HttpServer(handler, max_body_bytes=max_bytes)
        await server.listen_unix(socket_path)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.close(grace=0)

    with asyncio.Runner(loop_factory=_loop_factory(config.event_loop)) as runner:
        runner.run(main())


@contextmanager
def noop_server(
    socket_path: str | None, port: int | None, loop: str, http: bool = False, own: bool = False
) -> Iterator[int]:
    """A no-op floor server in a subprocess (its pid): grpc.aio, or with ``http`` aiohttp, or
    with ``own`` (which wins) our own HTTP stack (``run_noop_http_own``)."""
    target = f"unix:{socket_path}" if socket_path else f"127.0.0.1:{port}"
    argv = [sys.executable, __file__, "--noop-server", target, "--floor-loop", loop]
    if http:
        argv = [sys.executable, __file__, "--noop-http-server", str(socket_path)]
        argv += ["--floor-loop", loop]
    if own:
        argv = [sys.executable, __file__, "--noop-http-own", str(socket_path)]
    if socket_path:  # a previous round's file would pass for ready before the server binds
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
    proc = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready = (
                os.path.exists(socket_path) if socket_path else port_answers("127.0.0.1", port or 0)
            )
            if ready:
                break
            time.sleep(0.05)
        else:
            raise TimeoutError("no-op server did not start")
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and its children (a supervisor's workers)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_seconds(int(c)) for c in children)


@contextmanager
def extauthz_server(
    workdir: Path,
    socket_path: str | None,
    port: int | None,
    http: bool = False,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[int]:
    server = ServerProcess(
        policy=DEMO_POLICY,
        unix_socket_path=None if http else socket_path,
        http_unix_socket_path=socket_path if http else None,
        grpc_port=port or 0,
        http_port=0,
        env={"LOG_LEVEL": "warning", **(env or {})},
        workdir=workdir / "pdp",
        workers=workers,
    )
    with server:
        assert server.process is not None
        yield server.process.pid


@contextmanager
def envoy(
    workdir: Path, concurrency: int, template: EnvoyConfigOptions = SIDECAR, **overrides: object
) -> Iterator[EnvoyProcess]:
    config = render_config(
        template,
        listen_port=free_port(),
        admin_port=free_port(),
        direct_response=True,
        **overrides,  # type: ignore[arg-type]
    )
    with EnvoyProcess(config, workdir=workdir / "envoy", concurrency=concurrency) as proc:
        yield proc


#: The HTTP-mode "transports" of the case names: floor-http-own is Envoy's HTTP mode over a Unix
#: socket too, its own name so that the summary reads it apart from floor-http-uds.
HTTP_TRANSPORTS = ("http-uds", "http-own")


def cases(transports: list[str], with_grpcio: bool) -> list[tuple[str, str]]:
    """(kind, transport) of each case in run order; its name is ``f"{kind}-{transport}"``.
    Per transport: its floor, on http-uds then the own-stack floor (floor-http-own), extauthz,
    and with ``with_grpcio`` extauthz on grpc.aio (gRPC transports only)."""
    out: list[tuple[str, str]] = []
    for transport in transports:
        out.append(("floor", transport))
        if transport == "http-uds":
            out.append(("floor", "http-own"))
        out.append(("extauthz", transport))
        if with_grpcio and transport != "http-uds":
            out.append(("grpcio", transport))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians shown")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--envoy-concurrency", type=int, default=1)
    parser.add_argument(
        "--transports",
        default="uds,tcp,http-uds",
        help="comma-separated subset of uds,tcp,http-uds (envoy-alone always runs; http-uds "
        "is Envoy's HTTP ext_authz mode over a Unix socket)",
    )
    parser.add_argument(
        "--floor-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of the no-op floor server (asyncio: the plain grpc.aio server the "
        "target is defined against; uvloop: the loop extauthz itself runs on)",
    )
    parser.add_argument(
        "--with-grpcio",
        action="store_true",
        help="also run extauthz with GRPC_TRANSPORT=grpcio (grpc.aio) on the gRPC transports",
    )
    parser.add_argument(
        "--workers", help="comma-separated worker counts (e.g. 1,2): the scaling run instead"
    )
    parser.add_argument("--noop-server", help=argparse.SUPPRESS)
    parser.add_argument("--noop-http-server", help=argparse.SUPPRESS)
    parser.add_argument("--noop-http-own", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.noop_http_own:
        run_noop_http_own(args.noop_http_own)
        return 0
    if args.noop_http_server:
        run_noop_http_server(args.noop_http_server, args.floor_loop)
        return 0
    if args.noop_server:
        run_noop_server(args.noop_server, args.floor_loop)
        return 0
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    if args.workers:
        return scaling(args, [int(w) for w in args.workers.split(",")])
    workdir = Path(tempfile.mkdtemp(prefix="cs-bench-", dir="/tmp"))
    script = wrk_script(workdir)
    runs: dict[str, list[dict[str, float]]] = {}

    def pdp(kind: str, transport: str) -> tuple[Any, dict[str, Any]]:
        http = transport in HTTP_TRANSPORTS
        sock = str(workdir / f"{kind}-{transport}.sock") if transport != "tcp" else None
        port = free_port() if transport == "tcp" else None
        target: dict[str, Any] = (
            {"pdp_socket": sock} if sock else {"pdp_address": ("127.0.0.1", port)}
        )
        if http:
            target["template"] = HTTP_MODE
        if kind == "floor":
            own = transport == "http-own"
            return noop_server(sock, port, args.floor_loop, http, own), target
        env = {"GRPC_TRANSPORT": "grpcio"} if kind == "grpcio" else None
        return extauthz_server(workdir, sock, port, http, env=env), target

    def measure(name: str, proc: EnvoyProcess, pdp_pid: int | None = None) -> None:
        wrk(proc.url, script, 2, args.connections)  # warm-up
        pids = {"envoy": proc.process.pid if proc.process else None, "pdp": pdp_pid}
        before = {k: cpu_seconds(p) for k, p in pids.items() if p}
        r = wrk(proc.url, script, args.duration, args.connections)
        # CPU per request: where the time goes (wrk's own run includes its start-up, ~1%).
        total = r["rps"] * args.duration
        for k, start in before.items():
            r[f"{k}_us"] = (cpu_seconds(pids[k]) - start) / total * 1e6  # type: ignore[arg-type]
        runs.setdefault(name, []).append(r)
        cpu = "".join(
            f"  {k} {r[k + '_us']:4.0f} µs/req" for k in ("pdp", "envoy") if k + "_us" in r
        )
        print(
            f"  {name:<14} {r['rps']:>9.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms"
            f"  non-2xx {r['non2xx']:.0f}{cpu}",
            flush=True,
        )

    print(
        f"wrk: {args.connections} connections x {args.duration}s, {args.rounds} interleaved "
        f"rounds, Envoy --concurrency {args.envoy_concurrency}, floor on {args.floor_loop}, "
        "POST /api/v1/licenses/activate (JWT + clean JSON body)"
    )
    try:
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}", flush=True)
            with envoy(workdir, args.envoy_concurrency, ext_authz=False) as e:
                measure("envoy-alone", e)
            for kind, transport in cases(args.transports.split(","), args.with_grpcio):
                server, target = pdp(kind, transport)
                with server as pid, envoy(workdir, args.envoy_concurrency, **target) as e:
                    measure(f"{kind}-{transport}", e, pid)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    results = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    print()
    print(f"medians of {args.rounds} round(s):")
    print(
        f"{'case':<18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'rps/floor':>10} {'p99/floor':>10}"
        f" {'x grpc floor':>13} {'p99 x grpc':>11} {'PDP µs/req':>11} {'Envoy µs/req':>13}"
    )
    grpc_floor = results.get("floor-uds")
    for name, r in results.items():
        transport = name.split("-", 1)[-1]
        floor = results.get("floor-" + transport)
        ratios = f"{'':>10} {'':>10}"
        if floor is not None and name != "envoy-alone":
            ratios = f"{r['rps'] / floor['rps']:>10.0%} {r['p99'] / floor['p99']:>9.2f}x"
        vs_grpc = f" {'':>13} {'':>11}"
        if grpc_floor is not None and transport in HTTP_TRANSPORTS:
            vs_grpc = (
                f" {r['rps'] / grpc_floor['rps']:>12.2f}x {r['p99'] / grpc_floor['p99']:>10.2f}x"
            )
        cpu = "".join(
            f" {r[key]:>{width}.0f}" if key in r else f" {'-':>{width}}"
            for key, width in (("pdp_us", 11), ("envoy_us", 13))
        )
        print(
            f"{name:<18} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {ratios}{vs_grpc}{cpu}"
        )
    print("targets: extauthz >= 70% of the floor's req/s, p99 <= 1.5x the floor's (same transport)")
    print("         extauthz-http-uds >= 1.4x floor-uds req/s, p99 <= floor-uds p99 (issue 14)")
    busy = [
        f"{name} {r['envoy_us'] * r['rps'] / 1e6:.2f}"
        for name, r in results.items()
        if name.split("-", 1)[-1] in HTTP_TRANSPORTS and "envoy_us" in r
    ]
    if busy:
        print(
            "floor-http-own: Envoy's worker is the bound in HTTP mode when its CPU per request x "
            f"req/s is near 1 core per worker (--envoy-concurrency {args.envoy_concurrency}): "
            f"{', '.join(busy)} core"
        )
    bad = {name: sum(r["non2xx"] for r in rs) for name, rs in runs.items()}
    bad = {name: n for name, n in bad.items() if n}
    if bad:
        print(f"WARNING: non-2xx responses (the figures are not comparable): {bad}")
    return 0


def scaling(args: argparse.Namespace, counts: list[int]) -> int:
    """req/s of ``extauthz serve --workers W`` through Envoy, per W, interleaved rounds."""
    from extauthz.devstack.redis import RedisServer
    from extauthz.server.workers import usable_cores

    workdir = Path(tempfile.mkdtemp(prefix="cs-bench-", dir="/tmp"))
    script = wrk_script(workdir)
    runs: dict[int, list[dict[str, float]]] = {}
    cores = usable_cores()
    print(
        f"usable cores {cores}; wrk: {args.connections} connections x {args.duration}s, "
        f"{args.rounds} interleaved rounds, Envoy --concurrency {args.envoy_concurrency}, "
        f"workers {counts}, Unix sockets (one per worker), shared Redis"
    )
    try:
        with RedisServer() as redis:
            for round_no in range(1, args.rounds + 1):
                print(f"round {round_no}", flush=True)
                for w in counts:
                    sock = str(workdir / "pdp.sock")

                    env = {"REDIS_URL": redis.url, "DECISION_LOG": "off"}
                    with (
                        extauthz_server(workdir, sock, None, workers=w, env=env) as pid,
                        envoy(workdir, args.envoy_concurrency, pdp_socket=sock, workers=w) as e,
                    ):
                        wrk(e.url, script, 2, args.connections)  # warm-up
                        before = tree_cpu_seconds(pid)
                        r = wrk(e.url, script, args.duration, args.connections)
                        r["pdp_us"] = (tree_cpu_seconds(pid) - before) / (r["rps"] * args.duration)
                        r["pdp_us"] *= 1e6
                        runs.setdefault(w, []).append(r)
                        print(
                            f"  workers {w:<3} {r['rps']:>9.0f} req/s  p99 {r['p99']:6.2f} ms"
                            f"  PDP {r['pdp_us']:4.0f} µs/req  non-2xx {r['non2xx']:.0f}",
                            flush=True,
                        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in runs.items()}
    one = med.get(1)
    print(f"\nmedians of {args.rounds} round(s), usable cores {cores}:")
    print(f"{'workers':<8} {'req/s':>9} {'x 1 worker':>11} {'p99 ms':>8} {'PDP µs/req':>11}")
    for w, r in med.items():
        ratio = f"{r['rps'] / one['rps']:>10.2f}x" if one else f"{'-':>11}"
        print(f"{w:<8} {r['rps']:>9.0f} {ratio} {r['p99']:>8.2f} {r['pdp_us']:>11.0f}")
    print("target (>= W + 2 cores): W workers >= 0.85 W x one worker's req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
