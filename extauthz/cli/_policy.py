"""``extauthz policy check FILE``: validate a policy the way the server would load it.

``extauthz policy demo-path [NAME]`` prints where the shipped demo policy is, or a file or
folder beside it (``examples/attack-activation.json``, ``tests``), in the wheel or the clone.
``extauthz policy from-openapi SPEC [-o FILE]``: an editable policy with one route per operation;
what it cannot check is a warning on stderr and a comment in the policy.
``extauthz policy from-descriptors SET [-o FILE]``: one route per gRPC method of a descriptor
set (``protoc --descriptor_set_out --include_imports``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import _report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "policy", help="policy tools (check, demo-path, from-openapi, from-descriptors)"
    )
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="validate a policy; exit 0 when valid, 1 with every problem on stderr",
    )
    check.add_argument("file", help="policy file (YAML or JSON)")
    _report.add_policy_base_dir(check)
    check.set_defaults(func=run)
    demo_path = sub.add_parser(
        "demo-path",
        help="print the path of the shipped demo policy, or of NAME beside it (in the wheel "
        "or the clone)",
    )
    demo_path.add_argument(
        "name",
        nargs="?",
        default="demo.yaml",
        help="a file or folder beside the demo policy: examples/clean-activation.json, "
        "examples/attack-activation.json, tests, schemas (default demo.yaml)",
    )
    demo_path.set_defaults(func=run_demo_path)
    gen = sub.add_parser(
        "from-openapi",
        help="print a policy with one route per operation of an OpenAPI 3.0/3.1 document",
    )
    gen.add_argument("spec", help="OpenAPI document (YAML or JSON)")
    gen.add_argument(
        "-o",
        "--output",
        help="write the policy to this file (its openapiRefs relative to the file's directory); "
        "default: standard output, openapiRefs relative to the current directory",
    )
    gen.add_argument(
        "--ref",
        help="the spec's path as the policy's openapiRefs give it, relative to where the "
        "policy will be (default: computed, see --output)",
    )
    gen.add_argument(
        "--path-prefix",
        help="prepended to every path of the spec instead of the path of its servers[].url "
        "('' for none)",
    )
    gen.set_defaults(func=run_from_openapi)
    desc = sub.add_parser(
        "from-descriptors",
        help="print a policy with one route per gRPC method of a descriptor set "
        "(protoc --descriptor_set_out --include_imports, or buf build)",
    )
    desc.add_argument("set", help="descriptor set file (a FileDescriptorSet, e.g. api.binpb)")
    desc.add_argument(
        "-o",
        "--output",
        help="write the policy to this file (its descriptorSetRef relative to the file's "
        "directory); default: standard output, relative to the current directory",
    )
    desc.set_defaults(func=run_from_descriptors)


def run_demo_path(args: argparse.Namespace) -> int:
    from .._shipped import shipped_dir

    root = shipped_dir("policies")
    path = (root / args.name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.exists():
        shipped = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        print(
            f"extauthz policy demo-path: no {args.name!r} beside the demo policy; shipped: "
            + ", ".join(shipped),
            file=sys.stderr,
        )
        return 1
    print(path)
    return 0


def _progress_on_stderr(command: str) -> None:
    """What a long load is doing (``extauthz.policy``: large documents only), on stderr."""
    import logging

    class Stderr(logging.StreamHandler):  # type: ignore[type-arg]
        """Writes to whatever ``sys.stderr`` is when it writes."""

        @property  # type: ignore[override]
        def stream(self) -> Any:
            return sys.stderr

        @stream.setter
        def stream(self, value: Any) -> None:
            pass

    logger = logging.getLogger("extauthz.policy")
    logger.handlers = [h for h in logger.handlers if type(h).__name__ != "Stderr"]
    handler = Stderr()
    handler.setFormatter(logging.Formatter(f"extauthz policy {command}: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run_from_openapi(args: argparse.Namespace) -> int:
    import os

    from ..policy._openapi import OpenApiProblem, policy_from_spec

    _progress_on_stderr("from-openapi")
    spec = Path(args.spec).resolve()
    out = Path(args.output).resolve() if args.output else None
    ref = args.ref or os.path.relpath(spec, out.parent if out is not None else Path.cwd())
    try:
        made = policy_from_spec(spec, Path(ref).as_posix(), args.path_prefix)
    except OpenApiProblem as exc:
        print(f"{args.spec}: {exc}", file=sys.stderr)
        return 1
    for warning in made.skipped:
        print(f"warning: {warning}", file=sys.stderr)
    for rid, notes in made.notes.items():
        for note in notes:
            print(f"warning: {rid}: {note}", file=sys.stderr)
    text = policy_text(made.doc, made.skipped, made.notes, args.spec)
    return _write_policy(text, out, args.output, len(made.doc["routes"]))


def _write_policy(text: str, out: Path | None, name: str | None, routes: int) -> int:
    """A generated policy to stdout, or to ``out`` with its route count on stderr."""
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{name}: cannot be written: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{name}: {routes} routes", file=sys.stderr)
    return 0


def run_from_descriptors(args: argparse.Namespace) -> int:
    import os

    import yaml

    from ..policy._grpc import GrpcProblem, policy_from_descriptors
    from ..policy._loader import MAX_DOCUMENT_BYTES

    path = Path(args.set).resolve()
    out = Path(args.output).resolve() if args.output else None
    ref = Path(os.path.relpath(path, out.parent if out is not None else Path.cwd())).as_posix()
    try:
        doc = policy_from_descriptors(path, ref, MAX_DOCUMENT_BYTES)
    except GrpcProblem as exc:
        print(f"{args.set}: {exc}", file=sys.stderr)
        return 1
    text = (
        f"# Generated by `extauthz policy from-descriptors {args.set}`.\n"
        "# Streaming methods are refused (streaming: refuse); streaming: firstMessage checks "
        "what Envoy buffers.\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    )
    return _write_policy(text, out, args.output, len(doc["routes"]))


def policy_text(
    doc: dict[str, Any], skipped: list[str], notes: dict[str, list[str]], spec: str
) -> str:
    """The policy as YAML, with what is not checked as comments (above it, and per route)."""
    import yaml

    def dump(value: Any) -> str:
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100)

    lines = [f"# Generated by `extauthz policy from-openapi {spec}`."]
    if skipped:
        lines.append("# Not made into routes, or not checked (warnings):")
        lines.extend(f"#   {w}".replace("\n", " ") for w in skipped)
    head = {k: v for k, v in doc.items() if k != "routes"}
    lines.append(dump(head).rstrip("\n"))
    lines.append("routes:" if doc["routes"] else "routes: []")
    for route in doc["routes"]:
        for note in notes.get(route["id"], ()):
            lines.append(f"# not checked: {note}".replace("\n", " "))
        lines.append(dump([route]).rstrip("\n"))
    return "\n".join(lines) + "\n"


# A load slower than this says what it is doing (a large OpenAPI document can take seconds).
SLOW_LOAD_NOTICE_S = 1.0


def run(args: argparse.Namespace) -> int:
    import threading

    from .._exceptions import InvalidPolicy
    from ..policy import load_policy

    _progress_on_stderr("check")
    notice = threading.Timer(
        SLOW_LOAD_NOTICE_S,
        lambda: print(
            f"{args.file}: loading: parsing the policy, then validating and compiling every "
            "schema and OpenAPI document it references (once, as the server would) ...",
            file=sys.stderr,
            flush=True,
        ),
    )
    notice.daemon = True
    notice.start()
    try:
        policy = load_policy(args.file, base_dir=_report.policy_base_dir(args))
    except InvalidPolicy as exc:
        for problem in exc.errors:
            print(problem, file=sys.stderr)
        noun = "problem" if len(exc.errors) == 1 else "problems"
        print(f"{args.file}: policy refused ({len(exc.errors)} {noun})", file=sys.stderr)
        return 1
    finally:
        notice.cancel()
    for warning in policy.warnings:
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    routes, files = len(policy.route_ids), len(policy.files) - 1
    print(
        f"{args.file}: OK ({policy.version}, {routes} route{'' if routes == 1 else 's'}, "
        f"{files} schema file{'' if files == 1 else 's'})"
    )
    return 0
