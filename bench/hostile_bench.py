"""How long hostile inputs take: detectors, schema regexes, whole decisions, policy loads.

The tests prove these costs are bounded by construction (linear work counted, limits that
fire before the parser, regex shapes, RE2) and time nothing; this prints the wall-clock
figures users ask about. Each figure is the best of ``--rounds`` runs, next to a floor taken
in the same run: ``json.loads`` of a benign JSON body of the same size. The ratio is what to
compare between machines and revisions; seconds on a loaded machine mean little.

Run: ``.venv/bin/python bench/hostile_bench.py [--rounds 5] [--only PREFIX]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extauthz import InvalidPolicy  # noqa: E402
from extauthz.context import Body, HttpRequest, RequestContext  # noqa: E402
from extauthz.engine import body as body_mod  # noqa: E402
from extauthz.engine import canonical, evaluate, ssrf  # noqa: E402
from extauthz.engine import vulnerability as v  # noqa: E402
from extauthz.engine.contract import compile_contract  # noqa: E402
from extauthz.policy import load_policy, load_policy_text  # noqa: E402

N = 100_000  # characters per hostile string
ALL_ON = v.VulnerabilityConfig(
    prototype_pollution=v.Check(True),
    path_traversal=v.Check(True),
    ssrf_internal=v.Check(True),
    command_injection=v.Check(True),
    nosql_injection=v.Check(True),
)
STRINGS = {
    "semicolons": ";" * N,
    "separator-letters": "; " + "a" * N,
    "backticks": "`" * N,
    "glued-commands": ";a" * (N // 2),
    "dollar-paren": "$(" * (N // 2),
    "escaped-quote-pairs": '"' + '\\"' * (N // 2),
    "dot-segments": "../" * (N // 3),
    "percent-2e": "%2e" * (N // 3),
    "url-at": "http://" + "@" * N,
    "url-labels": "http://" + "a." * (N // 2) + "nip.io/",
    "brackets": "[" * N,
    "mixed": "a;b|c&d`e$f(g{h[i]j}k" * (N // 20),
}
DETECTORS: dict[str, Callable[[str], Any]] = {
    "canonicalize": lambda s: canonical.canonicalize("/" + s),
    "vulnerability": lambda s: v.check(ALL_ON, {"f": s, s[:1000]: 1}, {}, False, []),
    "ssrf": lambda s: ssrf.ssrf_reason(s, bare_host=False),
    "json_depth": lambda s: body_mod.json_depth(s.encode("utf-8", "surrogatepass")),
}
SCHEMA_REGEXES = {  # backtracking takes hours on these; RE2 reads the value once
    "^(a+)+$": "a" * N + "!",
    "^(a|aa)+$": "a" * N + "!",
    "^a*a*a*$": "a" * N + "!",
    "[a-z]+@": "a" * N,
}
BULK_POLICY = """
policyVersion: "0.1"
defaults:
  vulnerabilityChecks: {prototypePollution: true, pathTraversal: true, ssrfInternal: true,
                        commandInjection: true, nosqlInjection: true}
routes:
  - id: bulk
    match: {method: POST, path: /bulk}
    limits: {maxBodyBytes: 8388608, maxJsonDepth: 32, maxArrayLength: 1000}
"""
BODIES = {
    "100k-deep-arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep-inside-strings": b'{"a":"' + b"[" * 200_000 + b'"}',
    "million-element-array": b"[" + b"0," * 999_999 + b"0]",
    "million-element-nested": b'{"a":[' + b"{}," * 999_999 + b"{}]}",
    "300k-keys": b"{" + b",".join(b'"k%d":0' % i for i in range(300_000)) + b"}",
    "huge-escapes": b'["' + b"\\u0000" * 500_000 + b'"]',
    "invalid-utf8-megabyte": b"\xc0\xae" * 500_000,
    "duplicate-keys-many": b"{" + b'"a":1,' * 200_000 + b'"a":2}',
}


def floor_body(size: int) -> bytes:
    """A benign JSON body of about ``size`` bytes: the same-run floor."""
    item = b'{"name": "item", "tags": ["a", "b"], "n": 12345}'
    count = max(1, size // (len(item) + 2))
    return b'{"items": [' + b", ".join([item] * count) + b"]}"


def best(rounds: int, fn: Callable[..., Any], *args: Any) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def report(name: str, size: int, rounds: int, fn: Callable[..., Any], *args: Any) -> None:
    spent = best(rounds, fn, *args)
    floor = best(rounds, json.loads, floor_body(size))
    ratio = spent / floor if floor else float("inf")
    print(f"{name:<48} {size:>10,} B {spent * 1000:>10.2f} ms {ratio:>8.1f}x json.loads")


def decide(policy: Any, raw: bytes) -> Any:
    request = HttpRequest(
        "POST", "/bulk", {}, content_type="application/json", body=Body(True, len(raw), raw=raw)
    )
    return evaluate(policy, RequestContext(request=request))


def policy_cases(tmp: Path) -> Iterator[tuple[str, Path]]:
    header = 'policyVersion: "0.1"\n'
    route = "routes:\n  - id: r\n    match: {method: POST, path: /x}\n"
    laughs = ['lol0: &lol0 "lol"'] + [
        f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 10)}]" for i in range(1, 10)
    ]
    texts = {
        "billion-laughs": header + "\n".join(laughs) + "\n" + route,
        "100k-deep-flow-yaml": header + route + "description: " + "[" * 100_000 + "]" * 100_000,
        "100k-deep-json": '{"policyVersion": "0.1", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "2000-routes": header
        + "routes:\n"
        + "".join(
            f"  - id: r{i}\n    match: {{method: GET, path: '/api/v{i}/items/{{id}}'}}\n"
            for i in range(2000)
        ),
    }
    for name, text in texts.items():
        path = tmp / (name + (".json" if name.endswith("json") else ".yaml"))
        path.write_text(text)
        yield name, path


def load_or_refuse(path: Path) -> None:
    with contextlib.suppress(InvalidPolicy):
        load_policy(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="run only the groups starting with this")
    args = parser.parse_args()
    rounds = args.rounds
    print(f"best of {rounds}; ratio: against json.loads of a benign body of the same size")

    def wanted(group: str) -> bool:
        return group.startswith(args.only) or args.only.startswith(group)

    if wanted("detector"):
        for dname, fn in DETECTORS.items():
            for sname, text in STRINGS.items():
                report(f"detector {dname} / {sname}", len(text), rounds, fn, text)
    if wanted("schema"):
        for pattern, value in SCHEMA_REGEXES.items():
            schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": pattern}}}
            contract = compile_contract(schema, reject_unknown=False, source="<bench>")
            report(f"schema regex {pattern}", len(value), rounds, contract.validate, {"v": value})
    if wanted("body"):
        policy = load_policy_text(BULK_POLICY)
        for name, raw in BODIES.items():
            hits = ",".join(decide(policy, raw).rule_ids)
            report(f"body {name} ({hits})", len(raw), rounds, decide, policy, raw)
    if wanted("policy"):
        with tempfile.TemporaryDirectory() as tmp:
            for name, path in policy_cases(Path(tmp)):
                report(f"policy {name}", path.stat().st_size, rounds, load_or_refuse, path)


if __name__ == "__main__":
    main()
