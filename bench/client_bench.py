"""Client SDK latency against the REAL server: cache hit, remote Check over a Unix socket and
over TCP, and (for the deployment-patterns table) the embedded middleware's in-process path.

Prints figures only (never a pass/fail): the cache-hit target is <= 10 us per ``evaluate``.
The request is a clean license activation with a JSON body and an identity (demo policy).
Run: ``.venv/bin/python bench/client_bench.py [--remote N] [--hits N]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz import Identity  # noqa: E402
from extauthz.client import ContractShieldClient, describe  # noqa: E402
from extauthz.devstack import free_port  # noqa: E402
from extauthz.devstack.server import DEMO_POLICY, ServerProcess  # noqa: E402

PATH = "/api/v1/licenses/activate"
HEADERS = {
    "content-type": "application/json",
    "user-agent": "bench/1.0",
    "accept": "application/json",
    "x-request-id": "bench-1",
}
BODY = json.dumps(
    {
        "licenseKey": "ABCD-1234-EFGH-5678",
        "deviceId": "device-42",
        "tenantId": "tenant-a",
        "callbackUrl": "https://app.example.com/hooks/license",
    }
).encode()
IDENTITY = Identity(
    authenticated=True, subject="alice", tenant="tenant-a", scopes=("licenses:write",)
)


def call(client: ContractShieldClient) -> Callable[[], object]:
    def once() -> object:
        return client.evaluate("POST", PATH, headers=HEADERS, body=BODY, identity=IDENTITY)

    return once


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Per-call latencies in microseconds (GC off while measuring)."""
    samples: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(n):
            start = clock()
            fn()
            samples.append((clock() - start) / 1000)
    finally:
        gc.enable()
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(label: str, samples: list[float]) -> str:
    return (
        f"{label:<40} n={len(samples):>7}  mean={statistics.fmean(samples):9.1f} us"
        f"  p50={pct(samples, 0.50):9.1f} us  p99={pct(samples, 0.99):9.1f} us"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=200_000, help="cache-hit calls")
    parser.add_argument("--remote", type=int, default=3_000, help="remote calls per transport")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cs-bench-", dir="/tmp"))
    sock = workdir / "pdp.sock"
    port = free_port()
    server = ServerProcess(
        policy=DEMO_POLICY, unix_socket_path=sock, grpc_port=port, http_port=0, workdir=workdir
    )
    server.env["LOG_LEVEL"] = "warning"
    targets = {"unix": f"unix://{sock}", "tcp": f"127.0.0.1:{port}"}
    results: dict[str, list[float]] = {}
    with server:  # killed on exit, even on error
        print(f"server: extauthz serve, demo policy, {targets['unix']} and {targets['tcp']}")

        with ContractShieldClient(targets["unix"], timeout_ms=1000) as client:
            first = call(client)()
            assert getattr(first, "action", None) == "ALLOW", first
            once = call(client)
            timed(once, 10_000)  # warm-up
            hits = timed(once, args.hits)
            stats = client.stats()
            assert stats.hits >= args.hits, stats
        results["hit"] = hits
        print(line("cache hit (evaluate, sync)", hits))

        for kind, target in targets.items():
            with ContractShieldClient(target, timeout_ms=1000, cache_enabled=False) as client:
                once = call(client)
                timed(once, 300)  # warm-up: connection, server caches
                samples = timed(once, args.remote)
                assert client.stats().errors == 0
            results[kind] = samples
            print(line(f"remote Check over {kind} (no cache)", samples))

    try:
        from extauthz.middleware._common import EmbeddedDecider, FixedPolicy
        from extauthz.policy import load_policy

        decider = EmbeddedDecider(FixedPolicy(load_policy(DEMO_POLICY)))
        inp = describe("POST", PATH, headers=HEADERS, body=BODY, identity=IDENTITY)
        timed(lambda: decider.decide(inp), 300)  # warm-up
        embedded = timed(lambda: decider.decide(inp), args.remote)
        results["embedded"] = embedded
        print(line("embedded (adapter + engine, in-process)", embedded))
    except ImportError as exc:  # the embedded path needs the engine
        print(f"embedded: skipped ({exc})")

    shutil.rmtree(workdir, ignore_errors=True)
    u50, t50 = pct(results["unix"], 0.5), pct(results["tcp"], 0.5)
    u99, t99 = pct(results["unix"], 0.99), pct(results["tcp"], 0.99)
    print(f"ratio tcp/unix: p50 {t50 / u50:.2f}x  p99 {t99 / u99:.2f}x")
    print(f"ratio remote(unix) p50 / cache hit p50: {u50 / pct(results['hit'], 0.5):.0f}x")
    hit50 = pct(results["hit"], 0.5)
    print(f"cache-hit target <= 10 us: p50 {hit50:.1f} us -> {'met' if hit50 <= 10 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
