"""Soak: a fixed request rate through a real Envoy to the real PDP for N minutes.

The traffic is a mix of clean requests (license activation and lookup with a demo JWT, the
health route), attacks (SSRF, prototype pollution, path traversal, the admin area, truncated
JSON) and freshly signed Stripe and GitHub webhooks. Every answer is compared with the status
the demo policy gives that request; anything else (including Envoy's 503 when the PDP is slow
or gone) is an error, and the target is zero.

Prints, per interval: requests sent, achieved rate, errors, p50/p99 latency and the PDP's
resident memory (VmRSS from /proc/PID/status); then totals and RSS at start and end. Exit
status 1 when any error occurred. Figures, never a pass/fail timing: run it on a quiet machine.

Run: ``.venv/bin/python bench/soak.py [--minutes 2] [--rate 200] [--redis]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from _reliability_support import (  # noqa: E402
    Load,
    Sample,
    mint_jwt,
    rss_kib,
    running_stack,
    traffic_mix,
)

from extauthz.devstack.redis import RedisServer  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def _row(label: str, samples: list[Sample], seconds: float, rss: int | None) -> str:
    lat = sorted(s.latency * 1000 for s in samples)
    errors = sum(1 for s in samples if not s.expected)
    rate = len(samples) / seconds if seconds > 0 else 0.0
    rss_text = f"{rss / 1024:8.1f}" if rss is not None else "       -"
    return (
        f"{label:>10} {len(samples):>9} {rate:>8.1f} {errors:>7} "
        f"{_pct(lat, 0.50):>8.2f} {_pct(lat, 0.99):>8.2f} {rss_text}"
    )


def _pdp_slow_decisions(metrics_url: str, threshold: str = "0.1") -> tuple[int, int]:
    """(decisions over ``threshold`` s, all decisions) from the PDP's own latency histogram.

    Tells a slow PDP apart from a starved machine: Envoy's timeout counts scheduling delays
    of every process on the path, the histogram only the PDP's time on a decision.
    """
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    name = "contractshield_decision_duration_seconds"
    under = total = 0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket") and 'transport="grpc"' in line:
            if f'le="{threshold}"' in line:
                under = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith(f"{name}_count") and 'transport="grpc"' in line:
            total = int(float(line.rsplit(" ", 1)[1]))
    return total - under, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="duration (default 2)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s (default 200)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per report row")
    parser.add_argument("--workers", type=int, default=8, help="client threads (keep-alive)")
    parser.add_argument("--redis", action="store_true", help="shared Redis replay store")
    args = parser.parse_args()

    redis = RedisServer().start() if args.redis else None
    env = {"REDIS_URL": redis.url} if redis else {}
    try:
        # The shipped ext_authz timeout (0.2 s): a slow decision shows up as an error here.
        with running_stack(env=env, ext_authz_timeout="0.2s") as stack:
            pid = stack.pdp_pid()
            rss_start = rss_kib(pid)
            duration = args.minutes * 60
            print(
                f"soak: {args.minutes:g} min at {args.rate:g} req/s through Envoy :{stack.port} "
                f"(PDP pid {pid}, replay store {'redis' if redis else 'in-memory'}, "
                f"{args.workers} client threads)"
            )
            print(f"{'t (s)':>10} {'requests':>9} {'req/s':>8} {'errors':>7} "
                  f"{'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8}")  # fmt: skip
            load = Load(stack.port, traffic_mix(mint_jwt()), rate=args.rate, workers=args.workers)
            load.start()
            t = 0.0
            try:
                while t < duration:
                    step = min(args.interval, duration - t)
                    time.sleep(max(0.0, load.started + t + step - time.monotonic()))
                    t += step
                    window = [s for s in load.snapshot() if t - step <= s.at < t]
                    print(_row(f"{t:.0f}", window, step, rss_kib(pid)), flush=True)
            finally:
                everything = load.stop()
            rss_end = rss_kib(pid)
            time.sleep(0.5)  # let the last forwarded requests reach the upstream counter
            upstream = stack.upstream.count
            allowed = sum(1 for s in everything if s.status == 200)
            samples = [s for s in everything if s.at < duration]
            print(_row("total", samples, duration, rss_end))
            kinds = Counter((s.kind, s.status) for s in samples)
            print("statuses:", ", ".join(f"{k}:{st}={n}" for (k, st), n in sorted(kinds.items())))
            bad = [s for s in samples if not s.expected]
            print(
                f"requests {len(samples)}, errors {len(bad)} (unexpected statuses: "
                f"{dict(Counter(s.status for s in bad)) or 'none'}), upstream saw {upstream} "
                f"(clients got {allowed} x 200)"
            )
            print(
                f"PDP RSS: start {rss_start / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB "
                f"({(rss_end - rss_start) / 1024:+.1f} MiB)"
            )
            slow, decided = _pdp_slow_decisions(f"{stack.server.http_url}/metrics")
            print(f"PDP decisions over 100 ms (its own histogram): {slow} of {decided}")
            return 1 if bad else 0
    finally:
        if redis is not None:
            redis.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
