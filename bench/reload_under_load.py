"""Check latency while a Stripe-sized policy reloads, against the same server at rest.

A real ``extauthz serve`` runs a policy of one route per operation of a Stripe-shaped
description (``bench/specgen.py``: ~470 operations, ~4 MB of YAML; ``--spec FILE`` for
another). A client process sends ``POST /v1/evaluate`` at a steady rate over one keep-alive
connection (open loop: a late answer does not delay the next send) and records each check's
latency. The bench alternates rounds: ``--rest`` seconds of nothing, then ``--reloads``
reloads one after another (SIGHUP, the reload done when the server logs it). A check is
"during a reload" if it was sent between a SIGHUP and 0.3 s after that reload's log line,
"at rest" if it was sent more than 1 s away from any reload (reloads are 2.5 s apart).
Printed: p50/p99/max and the count above 50 ms for each, their ratios (same run), and the
server's RSS after the first load and 2.5 s after every reload (the growth over all).

Run: ``.venv/bin/python bench/reload_under_load.py [--rounds 4] [--reloads 5] [--rate 400]``.
``--pythonpath DIR`` runs the server from another checkout (the "before" figures in
docs/deployment.md came from main before the change).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.specgen import dump, stripe_like  # noqa: E402
from extauthz.devstack import free_port  # noqa: E402

CONTEXT = {
    "request": {
        "method": "POST",
        "path": "/v1/...",  # the description's first POST without path parameters
        "headers": {"content-type": "application/json"},
        "query": {"limit": "10"},
        "body": {"json": {"sample": {"metadata": {"order_id": "6735"}, "expand": ["data"]}}},
    },
    "identity": {"authenticated": True, "subject": "alice"},
}


def _client(port: int, path: str, rate: float, stop: Any, out: Any) -> None:
    """Send checks at ``rate``/s until ``stop`` is set; put the (sent_at, seconds) pairs."""
    context = {**CONTEXT, "request": {**CONTEXT["request"], "path": path}}
    body = json.dumps(context).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    interval = 1.0 / rate
    samples: list[tuple[float, float]] = []
    next_at = time.monotonic()
    while True:
        now = time.monotonic()
        if stop.is_set():
            break
        if now < next_at:
            time.sleep(next_at - now)
        sent = time.monotonic()
        conn.request("POST", "/v1/evaluate", body, {"content-type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        samples.append((sent, time.monotonic() - sent))
        next_at += interval
        if next_at < sent:  # far behind (a stall): do not burst to catch up
            next_at = sent + interval
    conn.close()
    out.put(samples)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stats(latencies: list[float]) -> dict[str, float]:
    xs = sorted(latencies)
    if not xs:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan"), "over50": 0}
    return {
        "n": len(xs),
        "p50": xs[len(xs) // 2] * 1000,
        "p99": xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000,
        "max": xs[-1] * 1000,
        "over50": sum(x > 0.05 for x in xs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, help="an OpenAPI document (default: generated)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reloads", type=int, default=5, help="reloads per round")
    parser.add_argument("--rest", type=float, default=8.0, help="seconds at rest per round")
    parser.add_argument("--rate", type=float, default=400.0, help="checks per second")
    parser.add_argument("--pythonpath", help="run the server from this checkout")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="reload-bench-") as tmp:
        d = Path(tmp)
        spec = d / "api.yaml"
        if args.spec:
            spec.write_bytes(args.spec.read_bytes())
            from extauthz.policy._loader import load_yaml

            doc = load_yaml(spec.read_text())
        else:
            doc = stripe_like(1, object_parameters=False)
            size = dump(doc, spec)
            print(f"generated Stripe-shaped description: {size / 1e6:.2f} MB")
        path = next(p for p, item in doc["paths"].items() if "{" not in p and "post" in item)
        policy = d / "policy.yaml"
        policy.write_text(
            'policyVersion: "0.1"\ndefaults: {unmatchedRouteAction: block}\nroutes: []\n'
            "openapi: {spec: ./api.yaml}\n"
        )
        port = free_port()
        env = dict(os.environ)
        if args.pythonpath:
            env["PYTHONPATH"] = args.pythonpath
        cmd = [sys.executable, "-m", "extauthz", "serve", "--policy", str(policy),
               "--grpc-port", "0", "--http-port", str(port), "--no-hot-reload"]  # fmt: skip
        started = time.monotonic()
        server = subprocess.Popen(  # cwd: ``-m`` would import extauthz from here first
            cmd, env=env, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        reloaded: list[float] = []
        cond = threading.Condition()

        def read_log() -> None:
            assert server.stderr is not None
            for line in server.stderr:
                if "reload refused" in line:
                    print("server:", line.rstrip())
                if "policy reloaded" in line or "reload refused" in line:
                    with cond:
                        reloaded.append(time.monotonic())
                        cond.notify_all()
                elif re.search(r"Traceback|ERROR", line):
                    print("server:", line.rstrip())

        threading.Thread(target=read_log, daemon=True).start()
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                        break
                except OSError:
                    if server.poll() is not None:
                        raise SystemExit("the server exited during start-up") from None
                    time.sleep(0.05)
            print(f"ready after {time.monotonic() - started:.2f} s")
            rss: list[float] = []  # before each reload (2.5 s after the previous), and at the end
            ctx = multiprocessing.get_context("spawn")
            queue, stop = ctx.Queue(), ctx.Event()
            client = ctx.Process(target=_client, args=(port, path, args.rate, stop, queue))
            client.start()
            windows: list[tuple[float, float]] = []
            time.sleep(2.0)  # the client's connection warms up
            for _ in range(args.rounds):
                time.sleep(args.rest)
                for _ in range(args.reloads):
                    rss.append(_rss_mb(server.pid))  # the steady state after the last reload
                    with cond:
                        seen = len(reloaded)
                        t0 = time.monotonic()
                        server.send_signal(signal.SIGHUP)
                        while len(reloaded) == seen:
                            if not cond.wait(120):
                                raise SystemExit("no reload within 120 s")
                        windows.append((t0, reloaded[-1] + 0.3))
                    time.sleep(2.5)
            time.sleep(args.rest)
            rss.append(_rss_mb(server.pid))
            stop.set()
            samples = queue.get(timeout=60)
            client.join(10)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)

    def phase(sent: float) -> str:
        for a, b in windows:
            if a <= sent <= b:
                return "reload"
        if all(sent < a - 1.0 or sent > b + 1.0 for a, b in windows):
            return "rest"
        return "edge"

    slow = [(sent, lat) for sent, lat in samples if lat > 0.02]
    for sent, lat in slow[:20]:  # where the slow checks fall: seconds from the nearest SIGHUP
        a, b = min(windows, key=lambda w: abs(sent - w[0]))
        print(f"slow check: {lat * 1000:.1f} ms, {sent - a:+.2f} s from a SIGHUP "
              f"(its reload logged at {b - 0.3 - a:+.2f} s)")  # fmt: skip
    groups: dict[str, list[float]] = {"rest": [], "reload": []}
    for sent, latency in samples:
        p = phase(sent)
        if p in groups:
            groups[p].append(latency)
    rest, during = _stats(groups["rest"]), _stats(groups["reload"])
    durations = [b - 0.3 - a for a, b in windows]
    print(
        f"{len(windows)} reloads, each {statistics.median(durations):.2f} s "
        f"(median; {min(durations):.2f}-{max(durations):.2f} s)"
    )
    for name, s in (("at rest", rest), ("during reloads", during)):
        print(
            f"{name:15s} n={s['n']:6d}  p50 {s['p50']:6.2f} ms  p99 {s['p99']:6.2f} ms  "
            f"max {s['max']:7.2f} ms  >50 ms: {s['over50']}"
        )
    print(
        f"ratios (reload/rest): p50 {during['p50'] / rest['p50']:.2f}x  "
        f"p99 {during['p99'] / rest['p99']:.2f}x"
    )
    growth = (rss[-1] - rss[0]) / rss[0] * 100
    print(
        f"RSS: {rss[0]:.0f} MB after the first load; after {len(rss) - 1} reloads "
        f"{rss[-1]:.0f} MB ({growth:+.1f} %); max {max(rss):.0f} MB"
    )
    if len(rss) > 2:
        steady = (rss[-1] - rss[1]) / rss[1] * 100
        print(f"RSS after the first reload {rss[1]:.0f} MB, after the last {rss[-1]:.0f} MB "
              f"({steady:+.1f} %); every reload: {' '.join(f'{x:.0f}' for x in rss[1:])}")  # fmt: skip


if __name__ == "__main__":
    main()
