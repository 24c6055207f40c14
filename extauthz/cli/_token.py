"""``extauthz token``: mint a test JWT that the demo Envoy config accepts.

The demo Envoy (``extauthz demo``, ``extauthz envoy-config --demo-jwt``) verifies HS256
tokens signed with the public demo key; this prints one with the claims the demo policy reads
(``sub``, ``tenant``, ``scope``), so trying the stack needs no hand-written signing script.
The key is public: such a token means nothing outside the demo.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "token",
        help="print a test JWT (HS256, the public demo key) for the demo Envoy config",
        description="Print a JWT that the demo Envoy config (--demo-jwt) accepts; "
        "export TOKEN=$(extauthz token --tenant acme) and send 'authorization: Bearer $TOKEN'.",
    )
    parser.add_argument("--sub", default="alice", help="subject claim (default alice)")
    parser.add_argument("--tenant", default="acme", help="tenant claim (default acme)")
    parser.add_argument(
        "--scope",
        action="append",
        help="a scope (repeatable; default licenses:write); the token's 'scope' joins them",
    )
    parser.add_argument(
        "--ttl", type=int, default=3600, help="seconds until it expires (default 3600)"
    )
    parser.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="another claim; the value is JSON if it parses (42, true, [..]), else a string",
    )
    parser.add_argument("--decode", action="store_true", help="print the claims instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.tokens import mint_jwt
    from ._report import fail

    if args.ttl <= 0:
        return fail("extauthz token: --ttl must be a positive number of seconds", 2)
    extra: dict[str, object] = {}
    for item in args.claim:
        name, sep, text = item.partition("=")
        if not sep or not name:
            return fail(f"extauthz token: --claim {item!r}: expected NAME=VALUE", 2)
        try:
            extra[name] = json.loads(text)
        except ValueError:
            extra[name] = text
    token = mint_jwt(
        args.sub, args.tenant, args.scope or ["licenses:write"], ttl_seconds=args.ttl, extra=extra
    )
    if args.decode:
        import base64

        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        print(json.dumps(claims, indent=2))
    else:
        print(token)
    return 0
