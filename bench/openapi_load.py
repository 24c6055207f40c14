"""Policy load time with large OpenAPI descriptions, stage by stage, and the choices made.

Generated Stripe-shaped (~470 operations, ~4 MB) and GitHub-shaped (~1,000 operations,
~10 MB) descriptions (``bench/specgen.py``; ``--spec FILE`` adds a real one, e.g. Stripe's
``spec3.yaml``) are loaded as ``openapi: {spec: ...}`` policies. For each stage the
candidates run in interleaved rounds (A B C, A B C, ...) and the medians and the spread
(min-max) of CPU seconds are printed:

- YAML: PyYAML's pure-Python loader with our refusals (before), libyaml's ``CSafeLoader``
  (no refusals: a reference), the libyaml event reader we use (``_loader._fast_yaml``),
  rapidyaml's parse alone when it is installed (the tree still has to become Python objects);
- the document check: openapi-spec-validator (before) and ``_openapi_check.accepts``;
- schemas, over the distinct body schemas of all operations (and their structural twins):
  fastjsonschema's ``compile`` (before), our lean code generation, jsonschema-rs's
  ``validator_for`` (compiled in Rust; not used: its messages and some verdicts differ from
  fastjsonschema's, and decisions must not change), the 2020-12 metaschema check in Python
  and in jsonschema-rs; the largest single compile (what a lazy compile on first use would
  add to one live check);
- the whole load (``load_policy``), every seam on; with ``--plain`` also every seam off
  (the load before this work, ~15-60 s a round);
- process start to ``/ready`` of ``extauthz serve`` (with the demo policy as the floor).

Run: ``.venv/bin/python bench/openapi_load.py [--rounds 3] [--spec FILE] [--plain]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.specgen import dump, github_like, operation_count, stripe_like  # noqa: E402
from extauthz.devstack import free_port  # noqa: E402
from extauthz.engine import contract, metaschema  # noqa: E402
from extauthz.engine.contract import structural_schema  # noqa: E402
from extauthz.policy import _compile, _loader, _openapi_check, load_policy  # noqa: E402
from extauthz.policy._openapi import OpenApiLoader, _escape, _spec_validator, operations  # noqa: E402

SEAMS = [
    (_loader, "FAST_YAML"),
    (_openapi_check, "FAST_CHECK"),
    (metaschema, "FAST_METASCHEMA"),
    (_compile, "SHARE_METASCHEMA_CHECKS"),
    (contract, "LEAN_CODE"),
]


def cpu(fn: Callable[[], Any]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def rounds(cases: dict[str, Callable[[], Any]], n: int) -> dict[str, list[float]]:
    """Each case once per round, in turn; CPU seconds."""
    out: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(n):
        for name, fn in cases.items():
            out[name].append(cpu(fn))
    return out


def show(title: str, results: dict[str, list[float]], base: str | None = None) -> None:
    print(f"  {title}")
    ref = statistics.median(results[base]) if base else None
    for name, xs in results.items():
        med = statistics.median(xs)
        ratio = f"  {med / ref:5.2f}x of {base}" if ref else ""
        print(f"    {name:34s} {med:7.3f} s  ({min(xs):.3f}-{max(xs):.3f}){ratio}")


def ryml_parse(text: str) -> Callable[[], Any] | None:
    try:
        import ryml
    except ImportError:
        return None
    data = text.encode()
    return lambda: ryml.parse_in_arena(data)


def distinct_bodies(spec_path: Path) -> list[dict[str, Any]]:
    loader = OpenApiLoader(spec_path.parent, 1 << 30)
    doc, _ = loader.document(spec_path)
    seen: dict[str, dict[str, Any]] = {}
    for method, path, _op in operations(doc):
        try:
            op = loader.operation(f"{spec_path.name}#/paths/{_escape(path)}/{method}")
        except Exception:  # an operation the loader refuses is not compiled at all
            continue
        if isinstance(op.body_schema, dict):
            for schema in (op.body_schema, structural_schema(op.body_schema)):
                seen.setdefault(repr(schema), schema)
    return list(seen.values())


def compile_cases(bodies: list[dict[str, Any]]) -> dict[str, Callable[[], Any]]:
    import fastjsonschema

    draft7 = []
    for b in bodies:
        d = copy.deepcopy(b)
        d["$schema"] = "http://json-schema.org/draft-07/schema#"
        draft7.append(d)
    cases: dict[str, Callable[[], Any]] = {
        "fastjsonschema.compile (before)": lambda: [
            fastjsonschema.compile(d, use_default=False) for d in draft7
        ],
        "lean code generation (ours)": lambda: [contract._lean_compile(d) for d in draft7],
        "metaschema, jsonschema (before)": lambda: [metaschema.check_plain(b) for b in bodies],
        "metaschema, jsonschema-rs first": lambda: [metaschema._valid(b) for b in bodies],
    }
    try:
        import jsonschema_rs

        cases["jsonschema-rs validator_for"] = lambda: [
            jsonschema_rs.validator_for(b, validate_formats=True) for b in bodies
        ]
    except ImportError:
        pass
    return cases


def largest_compile(bodies: list[dict[str, Any]]) -> tuple[float, float]:
    """(largest, 99th percentile) wall seconds to compile one body: a lazy compile's stall."""
    times = []
    for b in bodies:
        d = {**b, "$schema": "http://json-schema.org/draft-07/schema#"}
        started = time.perf_counter()
        contract._lean_compile(copy.deepcopy(d))
        times.append(time.perf_counter() - started)
    times.sort()
    return times[-1], times[int(len(times) * 0.99)]


def ready_time(policy: Path) -> float:
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "extauthz", "serve", "--policy", str(policy), "--grpc-port",
         "0", "--http-port", str(port), "--no-hot-reload"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                    return time.perf_counter() - started
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"serve exited during start-up ({policy})") from None
                time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(30)


def skip_refused(policy: Path, doc: dict[str, Any]) -> int:
    """Skip the operations the policy loader refuses (Stripe's object query parameters)."""
    from extauthz._exceptions import InvalidPolicy
    from extauthz.policy._openapi import route_id

    try:
        load_policy(policy)
        return 0
    except InvalidPolicy as exc:
        labels = {p.path.split("]")[0] + "]" for p in exc.errors}
    ids = [
        route_id(op, method, path)
        for method, path, op in operations(doc)
        if f"openapi[{method.upper()} {path}]" in labels
    ]
    lines = "".join(f"    {i}: {{skip: true}}\n" for i in ids)
    name = policy.read_text().split("spec: ")[1].split("}")[0]
    policy.write_text(
        f'policyVersion: "0.1"\nroutes: []\nopenapi:\n  spec: {name}\n  operations:\n{lines}'
    )
    return len(ids)


def set_seams(on: bool) -> None:
    for module, name in SEAMS:
        setattr(module, name, on)


def bench_spec(name: str, spec_path: Path, args: argparse.Namespace) -> None:
    size = spec_path.stat().st_size
    text = spec_path.read_text()
    doc = _loader._fast_yaml(text) if not spec_path.name.endswith(".json") else json.loads(text)
    print(f"\n{name}: {size / 1e6:.2f} MB, {operation_count(doc)} operations")
    policy = spec_path.parent / "policy.yaml"
    policy.write_text(f'policyVersion: "0.1"\nroutes: []\nopenapi: {{spec: ./{spec_path.name}}}\n')
    skipped = skip_refused(policy, doc)
    if skipped:
        print(f"  ({skipped} operations the loader refuses today are skipped: object parameters)")

    yaml_cases: dict[str, Callable[[], Any]] = {
        "pure-Python loader (before)": lambda: yaml.load(text, Loader=_loader._NoAliasLoader),
        "CSafeLoader (no refusals)": lambda: yaml.load(text, Loader=yaml.CSafeLoader),
        "libyaml events (ours)": lambda: _loader._fast_yaml(text),
    }
    parse_ryml = ryml_parse(text)
    if parse_ryml is not None:
        yaml_cases["rapidyaml parse, no objects"] = parse_ryml
    if not spec_path.name.endswith(".json"):
        show("YAML", rounds(yaml_cases, args.rounds), "pure-Python loader (before)")

    dialect = doc["openapi"][:3]
    uri = spec_path.as_uri()
    check_cases = {
        "openapi-spec-validator (before)": lambda: list(
            _spec_validator(dialect)(doc, base_uri=uri).iter_errors()
        ),
        "fast check (ours)": lambda: _openapi_check.accepts(doc, dialect),
    }
    show("the document check", rounds(check_cases, args.rounds), "openapi-spec-validator (before)")

    bodies = distinct_bodies(spec_path)
    print(f"  {len(bodies)} distinct body schemas (with their structural twins)")
    show("schemas", rounds(compile_cases(bodies), args.rounds), "fastjsonschema.compile (before)")
    worst, p99 = largest_compile(bodies)
    print(f"    one body's compile: largest {worst * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (wall)")

    whole = {"load_policy, every seam on": lambda: load_policy(policy)}
    if args.plain:
        whole["load_policy, every seam off (before)"] = lambda: (
            set_seams(False),
            load_policy(policy),
            set_seams(True),
        )
    show("whole load", rounds(whole, args.rounds))
    starts = [ready_time(policy) for _ in range(args.rounds)]
    print(
        f"  start to /ready: {statistics.median(starts):.2f} s ({min(starts):.2f}-{max(starts):.2f}, "
        "wall)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spec", type=Path, action="append", default=[])
    parser.add_argument("--plain", action="store_true", help="also load with every seam off")
    parser.add_argument("--only", choices=("stripe", "github"), help="one generated shape")
    args = parser.parse_args()
    floor = [ready_time(ROOT / "policies" / "demo.yaml") for _ in range(args.rounds)]
    print(
        f"start to /ready with the demo policy (the floor): {statistics.median(floor):.2f} s "
        f"({min(floor):.2f}-{max(floor):.2f}); CPU seconds below unless marked wall"
    )
    with tempfile.TemporaryDirectory(prefix="openapi-load-") as tmp:
        d = Path(tmp)
        shapes = {
            "stripe": lambda: stripe_like(1, object_parameters=False),
            "github": lambda: github_like(1),
        }
        for shape, make in shapes.items():
            if args.only and args.only != shape:
                continue
            sub = d / shape
            sub.mkdir()
            dump(make(), sub / "api.yaml")
            bench_spec(f"{shape}-shaped (generated)", sub / "api.yaml", args)
        for i, spec in enumerate(args.spec):
            sub = d / f"spec{i}"
            sub.mkdir()
            target = sub / spec.name
            target.write_bytes(spec.read_bytes())
            bench_spec(str(spec), target, args)


if __name__ == "__main__":
    main()
