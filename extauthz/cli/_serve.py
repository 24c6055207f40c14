"""``extauthz serve``: run the PDP (gRPC ext_authz on a Unix socket and/or TCP, plus HTTP)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """The flags come from the settings' declaration (``server.config.SETTINGS``)."""
    from ..server.config import SETTINGS

    env_only = ", ".join(s.env for s in SETTINGS if s.flag is None)
    p = subparsers.add_parser(
        "serve",
        help="run the policy decision point for Envoy ext_authz",
        description="Flags beat environment variables (in brackets), which beat defaults.",
        epilog=f"Set in the environment only: {env_only} (docs/deployment.md).",
    )
    for s in SETTINGS:
        if s.flag is None:
            continue
        if s.switch is None:
            p.add_argument(s.flag, dest=s.name, help=s.help_line)
        else:
            p.add_argument(
                s.flag,
                dest=s.name,
                action="store_const",
                const=s.switch,
                default=None,
                help=s.help_line,
            )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from .._exceptions import InvalidConfig, InvalidPolicy, SocketInUse
    from ..server.config import ServerConfig
    from ._report import fail

    try:
        config = ServerConfig.resolve(args)
    except InvalidConfig as exc:
        return fail(f"extauthz serve: {exc}", 2)
    from ..server.app import build_state, serve

    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("extauthz.server").info(
        "loading policy %s (schemas and OpenAPI documents are compiled now)", config.policy_path
    )
    if config.workers > 1:
        return _supervise(config)
    try:
        state = build_state(config)
    except InvalidConfig as exc:
        return fail(f"extauthz serve: {exc}", 2)
    except InvalidPolicy as exc:
        return fail(f"extauthz serve: invalid policy:\n{exc}", 2)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(config.event_loop)) as runner:
            return runner.run(serve(config, state))
    except SocketInUse as exc:
        return fail(f"extauthz serve: {exc}", 1)
    except InvalidConfig as exc:
        return fail(f"extauthz serve: {exc}", 2)


def _supervise(config: Any) -> int:
    """N workers under a supervisor (``server.workers``); a bad policy is refused here."""
    from .._exceptions import InvalidConfig, InvalidPolicy
    from ..server.workers import Supervisor
    from ._report import fail

    try:
        return Supervisor(config).run()
    except InvalidConfig as exc:
        return fail(f"extauthz serve: {exc}", 2)
    except InvalidPolicy as exc:
        return fail(f"extauthz serve: invalid policy:\n{exc}", 2)


def _loop_factory(event_loop: str) -> Any:
    """uvloop when installed (it roughly halves the HTTP stack's per-request cost), else asyncio;
    ``EVENT_LOOP=asyncio`` turns it off."""
    if event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
