"""``extauthz envoy-config``: print an Envoy bootstrap for ContractShield (see ``envoyconfig``).

Each flag is declared once in ``FLAGS`` (the ``EnvoyConfigOptions`` field it sets, how argparse
reads it); the parser, the options and the ``--header`` line that reproduces a file all come
from that table.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import envoyconfig as _ec  # light: envoy-data-plane is imported only when rendering


@dataclass(frozen=True, slots=True)
class Flag:
    """One flag: the option it sets, and how it reads (no ``metavar``: a switch)."""

    option: str  # the EnvoyConfigOptions field, also the argparse dest
    help: str | None = None
    metavar: str | None = None
    type: Callable[[str], Any] = str
    default: Any = None
    flag: str = ""  # default: --OPTION-WITH-DASHES
    group: str | None = None  # a key of GROUPS: mutually exclusive, or a titled section
    choices: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.flag or "--" + self.option.replace("_", "-")


#: Where a flag with a ``group`` goes: ``None`` makes a mutually exclusive pair, a title a
#: section of --help.
GROUPS: dict[str, str | None] = {
    "where": None,
    "jwt": None,
    "tls": "TLS to a PDP on TCP (--address)",
    "behind": "behind a load balancer (docs/envoy.md, 'The client address behind a proxy')",
}

#: In the order the ``--header`` command names them (the shipped files' first lines).
FLAGS: tuple[Flag, ...] = (
    Flag(
        "socket",
        f"the PDP's Unix socket (sidecar; default {_ec.DEFAULT_SOCKET})",
        "PATH",
        group="where",
    ),
    Flag(
        "address",
        "the PDP's TCP address (centralized)",
        "HOST:PORT",
        group="where",
    ),
    Flag(
        "upstream",
        "the protected application (default %(default)s)",
        "HOST:PORT",
        default=_ec.DEFAULT_UPSTREAM,
    ),
    Flag("listen_address", None, "IP", default=_ec.DEFAULT_LISTEN_ADDRESS),
    Flag("listen_port", None, "PORT", int, _ec.DEFAULT_LISTEN_PORT),
    Flag("admin_address", None, "IP", default=_ec.DEFAULT_ADMIN_ADDRESS),
    Flag("admin_port", None, "PORT", int, _ec.DEFAULT_ADMIN_PORT),
    Flag(
        "max_body_bytes",
        "the policy's largest maxBodyBytes; Envoy buffers N + 1 bytes for the PDP "
        "(default %(default)s)",
        "N",
        int,
        _ec.DEFAULT_MAX_BODY_BYTES,
    ),
    Flag(
        "timeout_ms",
        "ext_authz call, connect and health-check timeout (default %(default)s)",
        "MS",
        int,
        _ec.DEFAULT_TIMEOUT_MS,
    ),
    Flag(
        "status_on_error",
        "HTTP status Envoy answers when the PDP fails and failure mode is deny "
        "(default %(default)s)",
        "CODE",
        int,
        _ec.DEFAULT_STATUS_ON_ERROR,
    ),
    Flag(
        "workers",
        "the PDP runs serve --workers N on --socket: one endpoint per worker socket",
        "N",
        int,
        1,
    ),
    Flag(
        "grpc_upstream",
        "the upstream is a gRPC service: HTTP/2 to it, and Envoy's grpc_web filter for "
        "gRPC-Web clients (docs/grpc.md)",
        default=False,
    ),
    Flag(
        "failure_mode_allow",
        "let requests through when the PDP is unreachable (default: deny)",
        default=False,
    ),
    Flag("jwks_file", "verify JWTs against this local JWKS file", "PATH", group="jwt"),
    Flag(
        "demo_jwt",
        "verify JWTs with the inline demo HS256 key (demo only, never production)",
        default=False,
        group="jwt",
    ),
    Flag(
        "pdp_tls_ca_file",
        "verify the PDP against this CA file",
        "PEM",
        flag="--pdp-tls-ca",
        group="tls",
    ),
    Flag(
        "pdp_tls_cert_file",
        "Envoy's client certificate (mTLS)",
        "PEM",
        flag="--pdp-tls-cert",
        group="tls",
    ),
    Flag("pdp_tls_key_file", "its private key", "PEM", flag="--pdp-tls-key", group="tls"),
    Flag("pdp_tls_server_name", "SNI, required among the PDP's DNS names", "DNS", group="tls"),
    Flag(
        "authz_mode",
        "how Envoy asks the PDP: gRPC ext_authz (default) or Envoy's HTTP mode "
        "(http_service; point --socket at the PDP's --http-unix-socket)",
        default="grpc",
        choices=("grpc", "http"),
    ),
    Flag(
        "proxy_protocol",
        "the load balancer speaks the PROXY protocol (required on every connection): "
        "client.ip is the client it names, in both modes",
        default=False,
        group="behind",
    ),
    Flag(
        "xff_trusted_hops",
        "HTTP mode: trust the last N x-forwarded-for hops (use_remote_address + "
        "xff_num_trusted_hops): client.ip is the address the outermost trusted proxy saw",
        "N",
        int,
        0,
        group="behind",
    ),
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "envoy-config",
        help="print an Envoy v3 bootstrap (listener, jwt_authn, ext_authz, clusters)",
        description=(
            "Render an Envoy v3 bootstrap that sends every request through ContractShield's "
            "ext_authz gRPC server (rendered with envoy-data-plane's typed classes)."
        ),
    )
    groups: dict[str | None, Any] = {None: p}
    for flag in FLAGS:
        if flag.group not in groups:
            title = GROUPS[flag.group]  # type: ignore[index]
            groups[flag.group] = (
                p.add_mutually_exclusive_group() if title is None else p.add_argument_group(title)
            )
        target = groups[flag.group]
        if flag.metavar is None and flag.choices is None:
            target.add_argument(flag.name, dest=flag.option, action="store_true", help=flag.help)
            continue
        target.add_argument(
            flag.name,
            dest=flag.option,
            type=flag.type,
            default=flag.default,
            metavar=flag.metavar,
            choices=flag.choices,
            help=flag.help,
        )
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument(
        "--header", action="store_true", help="start the YAML with a 'generated by' comment"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The ``extauthz envoy-config ...`` command that reproduces ``args`` (for the header)."""
    words = ["extauthz", "envoy-config"]
    for flag in FLAGS:
        value = getattr(args, flag.option)
        if value == flag.default:
            continue
        words += [flag.name] if value is True else [flag.name, str(value)]
    if args.format != "yaml":
        words += ["--format", args.format]
    return shlex.join(words)


def options_from_args(args: argparse.Namespace) -> _ec.EnvoyConfigOptions:
    """The generator's options from parsed ``envoy-config`` arguments (raises InvalidConfig)."""
    return _ec.EnvoyConfigOptions(**{flag.option: getattr(args, flag.option) for flag in FLAGS})


def run(args: argparse.Namespace) -> int:
    from .._exceptions import InvalidConfig

    try:
        opts = options_from_args(args)
        header = None
        if args.header and args.format == "yaml":
            header = (
                "Generated by `" + command_line(args) + "` (extauthz/envoyconfig/).\n"
                "Do not edit by hand: change the generator or its options and regenerate."
            )
        text = _ec.render(opts, args.format, header=header)
    except InvalidConfig as exc:
        print(f"extauthz envoy-config: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
