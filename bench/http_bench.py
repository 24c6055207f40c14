"""``POST /v1/evaluate`` throughput with 8 connections against a real ``extauthz serve``.

The bar (issue 14): >= 0.5x the upstream Node.js ContractShield sidecar, which sustains 15.5k
evaluations/s on this machine class (a figure from the issue's author; the ratio is to that
figure, not to a same-run floor). ``bench/node_sidecar_bench.py`` runs the sidecar itself, when
it is built, in the same run: prefer its ratio. We run the server at its default
log level (no access log) on the demo policy, load it with wrk (8 connections, 1 thread by
default so the load generator takes one core and the server the other) and print throughput
and latency. Without wrk, an aiohttp client does the same job (less precise: it shares the
CPU budget with Python). Run: ``.venv/bin/python bench/http_bench.py [--duration 10]``.
``--workers 1,2`` runs each case against ``extauthz serve --workers W`` (the HTTP port shared
with SO_REUSEPORT, a real Redis as several workers require) and prints eval/s per W.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz.devstack import free_port  # noqa: E402
from extauthz.devstack.server import DEMO_POLICY, ServerProcess  # noqa: E402

CONTEXTS = {
    "clean-activate": {
        "request": {
            "method": "POST",
            "path": "/api/v1/licenses/activate",
            "headers": {"content-type": "application/json"},
            "body": {
                "json": {
                    "sample": {
                        "licenseKey": "ABCD-1234-EFGH-5678",
                        "deviceId": "device-42",
                        "tenantId": "acme",
                        "callbackUrl": "https://app.example.com/hooks/license",
                    }
                }
            },
        },
        "identity": {"authenticated": True, "subject": "alice", "tenant": "acme"},
    },
    "health": {"request": {"method": "GET", "path": "/healthz"}},
}

NODE_SIDECAR_RPS = 15_500

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
"""


def run_wrk(url: str, body: str, duration: int, connections: int, threads: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.replace("{body}", body))
        script = f.name
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            script,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    return parse_wrk(out)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    """Requests/sec, p50, p99 (ms) and non-2xx count from ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


async def run_aiohttp(url: str, body: str, duration: int, connections: int) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    stop = time.perf_counter() + duration
    data = body.encode()

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            async with session.post(
                url, data=data, headers={"content-type": "application/json"}
            ) as r:
                await r.read()
            latencies.append(time.perf_counter() - t)

    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / duration,
        "p50_ms": latencies[n // 2] * 1e3,
        "p99_ms": latencies[int(n * 0.99)] * 1e3,
        "non2xx": 0.0,
        "socket_errors": 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--client", choices=("auto", "wrk", "aiohttp"), default="auto")
    parser.add_argument("--workers", default="1", help="comma-separated worker counts, e.g. 1,2")
    args = parser.parse_args()
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "aiohttp"
    from extauthz.devstack.redis import RedisServer
    from extauthz.server.workers import usable_cores

    counts = [int(w) for w in args.workers.split(",")]
    print(f"usable cores {usable_cores()}")
    if counts == [1]:
        bench(args, client, 1, {})
        return 0
    with RedisServer() as redis:
        for w in counts:
            bench(args, client, w, {"REDIS_URL": redis.url, "DECISION_LOG": "off"})
    return 0


def bench(args: argparse.Namespace, client: str, workers: int, env: dict[str, str]) -> None:
    port = free_port()
    with ServerProcess(policy=DEMO_POLICY, http_port=port, workers=workers, env=env) as server:
        url = f"{server.http_url}/v1/evaluate"
        print(
            f"extauthz HTTP API, demo policy, {workers} worker(s), {args.connections} "
            f"connections, {client}, {args.duration}s per case"
        )
        print(f"{'case':<16} {'eval/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
        for name, ctx in CONTEXTS.items():
            body = json.dumps(ctx, separators=(",", ":"))
            if client == "wrk":
                run_wrk(url, body, 2, args.connections, args.threads)  # warm-up
                r = run_wrk(url, body, args.duration, args.connections, args.threads)
            else:
                asyncio.run(run_aiohttp(url, body, 2, args.connections))
                r = asyncio.run(run_aiohttp(url, body, args.duration, args.connections))
            print(
                f"{name:<16} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['non2xx']:>8.0f}"
                f"  {r['rps'] / NODE_SIDECAR_RPS:.2f}x node"
            )
        print("target: >= 7750 evaluations/s (0.5x the Node.js sidecar's 15.5k/s, issue 14)")


if __name__ == "__main__":
    sys.exit(main())
