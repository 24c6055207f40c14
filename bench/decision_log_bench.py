"""What the decision log costs per check, as a ratio of the check's own CPU.

A "check" is the server's ``decide_now`` on the demo policy (route match, every phase, the
metrics), in process: no gRPC, so the denominator is smaller than a real check's and the ratio
is an upper bound. Three workloads, each run with the log off, and on (BLOCKs and MONITORs
only, the default, to a file sink: the listener thread's CPU is counted too, via
``time.process_time``): all ALLOW (the log only samples: ~0 cost), 10 % BLOCK, all BLOCK.
Several interleaved rounds; the median ratio is printed.
Run: ``.venv/bin/python bench/decision_log_bench.py [--rounds 5] [--n 20000]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz.context import RequestContext  # noqa: E402
from extauthz.metrics import Metrics  # noqa: E402
from extauthz.policy import load_policy  # noqa: E402
from extauthz.server.config import ServerConfig  # noqa: E402
from extauthz.server.decide import decide_now  # noqa: E402
from extauthz.server.decision_log import DecisionLog, DecisionLogSettings  # noqa: E402
from extauthz.server.state import ServerState, StaticPolicySource  # noqa: E402

GOOD = {"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "device-42", "tenantId": "acme"}


def _ctx(tenant: str) -> RequestContext:
    return RequestContext.from_dict(
        {
            "id": "0123456789abcdef0123456789abcdef",
            "request": {
                "method": "POST",
                "path": "/api/v1/licenses/activate",
                "headers": {"content-type": "application/json", "user-agent": "bench/1"},
                "body": {"present": True, "json": {"sample": {**GOOD, "tenantId": tenant}}},
            },
            "identity": {"authenticated": True, "subject": "alice", "tenant": "acme"},
            "client": {"ip": "10.0.0.1"},
        }
    )


def _run(state: ServerState, contexts: list[RequestContext], n: int) -> float:
    """CPU seconds (all threads) for ``n`` checks cycling through ``contexts``."""
    log = state.decision_log
    gc.collect()
    start = time.process_time()
    k = len(contexts)
    for i in range(n):
        decide_now(state, contexts[i % k], "grpc")
    if log is not None:
        log.flush()  # the listener's work is part of the cost
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    policy = load_policy(ROOT / "policies" / "demo.yaml")
    config = ServerConfig(http_port=1)
    off = ServerState(config, StaticPolicySource(policy), Metrics())
    tmp = Path(tempfile.mkdtemp(prefix="cs-dlog-"))
    settings = DecisionLogSettings.from_config(
        ServerConfig(http_port=1, decision_log=f"file:{tmp / 'd.jsonl'}")
    )
    on = ServerState(config, StaticPolicySource(policy), Metrics())
    on.decision_log = DecisionLog(settings)
    allow, block = _ctx("acme"), _ctx("globex")
    workloads = {
        "all ALLOW": [allow],
        "10% BLOCK": [block] + [allow] * 9,
        "all BLOCK": [block],
    }
    _run(off, [allow, block], 2000)  # warm up both
    _run(on, [allow, block], 2000)
    print(f"decision log cost per check (in-process decide_now, {args.n} checks, "
          f"{args.rounds} interleaved rounds, median)")  # fmt: skip
    for name, contexts in workloads.items():
        ratios, per_check = [], []
        for _ in range(args.rounds):
            t_off = _run(off, contexts, args.n)
            t_on = _run(on, contexts, args.n)
            ratios.append((t_on - t_off) / t_off)
            per_check.append(t_off / args.n * 1e6)
        print(
            f"  {name:<10} check {statistics.median(per_check):6.1f} µs CPU, log adds "
            f"{statistics.median(ratios) * 100:+5.1f} % (rounds: "
            + ", ".join(f"{r * 100:+.1f}" for r in ratios)
            + ")"
        )
    on.decision_log.close()


if __name__ == "__main__":
    main()
