"""What the body phase's issue-24 work costs a clean JSON request: ``evaluate()`` on the demo
policy's license activation (schema, detectors, CEL), in this checkout and in another one
(``--against``, e.g. the main branch's), interleaved rounds in fresh subprocesses, medians in
µs and their ratio. Also the cost of the lenient paths themselves (a repeated key, a BOM,
UTF-16, gzip) in this checkout.

Run: ``.venv/bin/python bench/body_bench.py --against ../main [-n 20000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import gzip, json, sys, time
from extauthz.context import Body, HttpRequest, Identity, RequestContext
from extauthz.engine import evaluate
from extauthz.policy import load_policy

policy = load_policy(sys.argv[1] + "/policies/demo.yaml")
n = int(sys.argv[2])
clean = json.dumps({"licenseKey": "ABCD-1234-EFGH-5678", "deviceId": "device-42",
                    "tenantId": "tenant-a", "callbackUrl": "https://app.example.com/hooks/license"})
variants = {"clean": (clean.encode(), {})}
if sys.argv[3] == "all":
    variants.update({
        "repeated-key": ((clean[:-1] + ', "deviceId": "device-43"}').encode(), {}),
        "bom": (b"\xef\xbb\xbf" + clean.encode(), {}),
        "utf-16": (clean.encode("utf-16"), {}),
        "gzip": (gzip.compress(clean.encode()), {"content-encoding": "gzip"}),
    })
out = {}
for name, (raw, extra) in variants.items():
    headers = {"content-type": "application/json", "content-length": str(len(raw)), **extra}
    ctx = RequestContext(
        request=HttpRequest(method="POST", path="/api/v1/licenses/activate", headers=headers,
                            content_type="application/json",
                            body=Body(present=True, size_bytes=len(raw), raw=raw)),
        identity=Identity(authenticated=True, subject="u", tenant="tenant-a", scopes=("licenses:write",)),
        id="bench",
    )
    for _ in range(2000):
        evaluate(policy, ctx)
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        evaluate(policy, ctx)
        samples.append(time.perf_counter_ns() - t)
    samples.sort()
    out[name] = samples[len(samples) // 2] / 1000
print(json.dumps(out))
"""


def run(root: Path, n: int, which: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), str(n), which],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--against", type=Path, required=True, help="the checkout to compare")
    parser.add_argument("-n", type=int, default=20_000, help="evaluations per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        mine.append(run(ROOT, args.n, "clean")["clean"])
        theirs.append(run(args.against.resolve(), args.n, "clean")["clean"])
    m, t = statistics.median(mine), statistics.median(theirs)
    print(f"clean JSON activation, median of {args.rounds} rounds of {args.n}:")
    print(f"  this checkout {m:.2f} µs, {args.against} {t:.2f} µs, ratio {m / t:.3f}")
    lenient = run(ROOT, max(args.n // 4, 1000), "all")
    print("this checkout, p50 by body dress (µs):")
    for name, value in lenient.items():
        print(f"  {name:13} {value:.2f}")


if __name__ == "__main__":
    main()
