"""Reloading a large description again and again does not make the process grow.

Each measurement runs in a fresh interpreter (a real child process of the test, so nothing
else the test run imported or cached counts): a generated Stripe-shaped description is
loaded, then reloaded many times, the previous policy dropped each time, as ``serve`` does
(``heap.after_reload``). The memory Python keeps (``tracemalloc``, exact) must come back to
about the same level after every reload; the RSS after the last reload must stay within 5 %
of the RSS after the first (it grew by ~47 MB per reload of Stripe's description when
openapi-spec-validator kept every document it validated). Not timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from bench.specgen import _NoAliasDumper, stripe_like

SCRIPT = textwrap.dedent(
    """
    import gc, json, sys, threading, tracemalloc
    from extauthz.policy import load_policy
    from extauthz.policy._child import load_policy_in_child
    from extauthz.server import heap

    path, how, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    load = load_policy_in_child if how == "child" else load_policy

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

    policy = load_policy(path)
    heap.freeze()  # as serve does once it is ready
    tracemalloc.start()
    traced, sizes = [], []
    for _ in range(rounds):
        policy = load(path)
        heap.after_reload()
        for timer in threading.enumerate():  # its second trim, two seconds later
            if isinstance(timer, threading.Timer):
                timer.join()
        gc.collect()
        heap.trim()
        traced.append(tracemalloc.get_traced_memory()[0])
        sizes.append(rss())
    print(json.dumps({"traced": traced, "rss": sizes, "routes": len(policy.route_ids)}))
    """
)


def _measure(tmp: Path, how: str, rounds: int) -> dict[str, list[int]]:
    spec = stripe_like(9, operations=40, schemas=40, object_parameters=False)
    # a $ref to a second file: the description takes openapi-spec-validator's own path too
    spec["components"]["schemas"]["Shared"] = {"$ref": "./common.yaml#/Thing"}
    (tmp / "common.yaml").write_text("Thing: {type: object}\n")
    (tmp / "api.yaml").write_text(yaml.dump(spec, Dumper=_NoAliasDumper, sort_keys=False))
    (tmp / "p.yaml").write_text(
        'policyVersion: "0.1"\nroutes: []\nopenapi: {spec: ./api.yaml, rejectUnknownFields: true}\n'
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp / "p.yaml"), how, str(rounds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, list[int]] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["routes"] >= 40
    return result


def _flat(traced: list[int]) -> None:
    """Python's retained memory: the same after every reload, give or take 256 KiB.

    A policy's worth of memory kept per reload is megabytes (openapi-spec-validator's cache
    kept ~1.1 MB per load of this description); unpickling leaves a few KB in caches that
    settle (~3 KB per reload at first, under 0.5 KB after fifty).
    """
    assert max(traced[1:]) - traced[1] <= 256 * 1024, [round(t / 2**20, 2) for t in traced]


def test_in_process_reloads_keep_no_document_behind(tmp_path: Path) -> None:
    result = _measure(tmp_path, "inline", 5)
    _flat(result["traced"])


def test_child_reloads_keep_the_server_flat(tmp_path: Path) -> None:
    result = _measure(tmp_path, "child", 8)
    _flat(result["traced"])
    rss = result["rss"]
    assert rss[-1] <= rss[0] * 1.05, [round(r / 2**20) for r in rss]
