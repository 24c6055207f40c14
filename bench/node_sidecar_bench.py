"""Evaluations per second against upstream ContractShield's Node.js sidecar, same run.

Issue 29's bar: ``POST /v1/evaluate`` >= 1.5x the upstream sidecar per process, on the clean
context and the demo policy. Both servers run as one process each on this machine, loaded in
interleaved rounds by the same ``wrk`` (8 connections, one thread), and the figure is the
median of the rounds' ratios, so a noisy neighbour moves both sides alike.

The sidecar is not shipped with us. Build it from upstream's public repository (Node 20 and
the npm registry; pnpm through npx)::

    git clone https://github.com/zeekmartin/contractshield /tmp/cs && cd /tmp/cs
    printf 'packages:\\n  - "packages/*"\\n' > pnpm-workspace.yaml   # pdp + sidecar only
    npx -y pnpm@9 install --no-frozen-lockfile
    npx -y pnpm@9 --filter @cshield/pdp --filter @cshield/sidecar build

then ``.venv/bin/python bench/node_sidecar_bench.py --sidecar /tmp/cs/packages/sidecar``
(or set ``CONTRACTSHIELD_SIDECAR``). Without it the bench says how to build it and exits 2.

What each side does per request (read the figures with this in mind): the sidecar's
``POST /evaluate`` takes the policy in every request body (its only form) and, started from
its CLI, has no schema loader (so it skips ``requestSchemaRef``) and no CEL library (its
built-in CEL subset knows three shapes of expression, so the bench rewrites the demo's rules
into them: ``identity.authenticated == true`` and ``identity.tenant in ["acme"]``). Ours
loads the policy once and does the whole check: JSON Schema, detectors, CEL. Both answers are
compared before measuring: the bench refuses to run when the two decide differently.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from http_bench import CONTEXTS, run_wrk  # noqa: E402

from extauthz.devstack import free_port  # noqa: E402
from extauthz.devstack.server import DEMO_POLICY, ServerProcess  # noqa: E402

BUILD_HINT = __doc__.split("::", 1)[1].split("then", 1)[0]


def _post(url: str, body: bytes) -> dict[str, object]:
    req = urllib.request.Request(url, body, {"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # a denial still carries the decision
        return json.loads(exc.read())


def _action(answer: dict[str, object]) -> object:
    decision = answer.get("decision", answer)
    return decision.get("action") if isinstance(decision, dict) else None


class NodeSidecar:
    """``node dist/cli.js`` on a free port, logging warnings only; stopped on exit."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1", "LOG_LEVEL": "warn"}
        self.proc = subprocess.Popen(
            ["node", str(directory / "dist" / "cli.js")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> NodeSidecar:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1).read()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("the sidecar exited at start") from None
                time.sleep(0.1)
        raise RuntimeError("the sidecar did not answer /health within 30 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


SUBSET_EXPRS = {
    "auth.required": "identity.authenticated == true",
    "tenant.binding": 'identity.tenant in ["acme"]',
}


def _subset_policy() -> dict[str, object]:
    """The demo policy with its CEL rules in the shapes the sidecar's subset evaluates."""
    policy = yaml.safe_load(DEMO_POLICY.read_text())
    for route in policy["routes"]:
        for rule in route.get("rules", []):
            if rule.get("type") == "cel" and rule["id"] in SUBSET_EXPRS:
                rule["config"]["expr"] = SUBSET_EXPRS[rule["id"]]
    return policy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sidecar", default=os.environ.get("CONTRACTSHIELD_SIDECAR"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    sidecar = Path(args.sidecar) if args.sidecar else None
    if sidecar is None or not (sidecar / "dist" / "cli.js").is_file():
        print("upstream's sidecar is not built here; to build it:" + BUILD_HINT, file=sys.stderr)
        return 2
    if not shutil.which("wrk"):
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    policy = _subset_policy()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.yaml"
        path.write_text(yaml.safe_dump(policy))
        shutil.copytree(DEMO_POLICY.parent / "schemas", Path(tmp) / "schemas")
        return _measure(args, sidecar, policy, path)


def _measure(args: argparse.Namespace, sidecar: Path, policy: object, path: Path) -> int:
    context = CONTEXTS["clean-activate"]
    node_body = json.dumps({"policy": policy, "context": context}, separators=(",", ":"))
    ours_v1 = json.dumps(context, separators=(",", ":"))
    ours_compat = json.dumps({"context": context}, separators=(",", ":"))
    with NodeSidecar(sidecar) as node, ServerProcess(policy=path, http_port=free_port()) as server:
        cases = {
            "node /evaluate": (f"{node.url}/evaluate", node_body),
            "ours /v1/evaluate": (f"{server.http_url}/v1/evaluate", ours_v1),
            "ours /evaluate": (f"{server.http_url}/evaluate", ours_compat),
        }
        actions = {name: _action(_post(url, body.encode())) for name, (url, body) in cases.items()}
        print("decisions:", actions)
        if len(set(actions.values())) != 1:
            print("the two sides decide differently: not measuring", file=sys.stderr)
            return 1
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for url, body in cases.values():
            run_wrk(url, body, 2, args.connections, 1)  # warm-up (JIT, caches)
        for _ in range(args.rounds):
            for name, (url, body) in cases.items():
                rounds[name].append(run_wrk(url, body, args.duration, args.connections, 1))
    print(f"{args.rounds} interleaved rounds x {args.duration}s, wrk -c{args.connections} -t1")
    print(f"{'case':<20} {'eval/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x node (median)':>16}")
    node_rps = [r["rps"] for r in rounds["node /evaluate"]]
    for name, results in rounds.items():
        ratio = statistics.median(r["rps"] / n for r, n in zip(results, node_rps, strict=True))
        print(
            f"{name:<20} {statistics.median(r['rps'] for r in results):>9.0f}"
            f" {statistics.median(r['p50_ms'] for r in results):>8.2f}"
            f" {statistics.median(r['p99_ms'] for r in results):>8.2f} {ratio:>16.2f}"
        )
        if any(r["non2xx"] for r in results):
            print(f"  ({name}: non-2xx answers during the run)")
    print("target (issue 29): ours /v1/evaluate >= 1.5x node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
