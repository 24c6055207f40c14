"""ServerConfig: flags beat environment, environment beats defaults; bad values are refused."""

from __future__ import annotations

import argparse

import pytest

from extauthz import InvalidConfig
from extauthz.cli import build_parser
from extauthz.server.config import MIN_MAX_REQUEST_BYTES, ServerConfig


def flags(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_defaults() -> None:
    c = ServerConfig.resolve(flags(), {})
    assert (c.unix_socket, c.socket_mode, c.grpc_port) == (None, 0o660, 0)
    assert (c.http_port, c.http_host) == (3100, "127.0.0.1")
    assert (c.redis_url, c.log_level, c.hot_reload, c.replay_fail_open) == (
        None,
        "info",
        True,
        False,
    )
    assert c.check_deadline_ms == 150 < 200  # below Envoy's default ext_authz timeout
    assert (c.subject_claim, c.tenant_claim, c.scopes_claim) == ("sub", "tenant", "scope")
    assert c.jwt_metadata_key == "jwt_payload"


def test_environment_beats_defaults() -> None:
    env = {
        "UNIX_SOCKET": "/tmp/cs/pdp.sock",
        "SOCKET_MODE": "0600",
        "GRPC_PORT": "9001",
        "HTTP_PORT": "0",
        "HTTP_HOST": "0.0.0.0",
        "POLICY_PATH": "p.yaml",
        "REDIS_URL": "redis://r:6379/0",
        "LOG_LEVEL": "WARN",
        "HOT_RELOAD": "false",
        "RELOAD_DEBOUNCE_MS": "100",
        "REPLAY_FAIL_OPEN": "yes",
        "CHECK_DEADLINE_MS": "90",
        "TENANT_CLAIM": "org",
    }
    c = ServerConfig.resolve(flags(), env)
    assert c.unix_socket == "/tmp/cs/pdp.sock" and c.socket_mode == 0o600
    assert (c.grpc_port, c.http_port, c.http_host) == (9001, 0, "0.0.0.0")
    assert (c.policy_path, c.redis_url, c.log_level) == ("p.yaml", "redis://r:6379/0", "warning")
    assert (c.hot_reload, c.reload_debounce_ms, c.replay_fail_open) == (False, 100, True)
    assert (c.check_deadline_ms, c.tenant_claim) == (90, "org")


def test_flags_beat_environment() -> None:
    env = {
        "HTTP_PORT": "5000",
        "POLICY_PATH": "env.yaml",
        "HOT_RELOAD": "true",
        "LOG_LEVEL": "debug",
    }
    args = flags(
        "--http-port", "6000", "--policy", "flag.yaml", "--no-hot-reload", "--log-level", "error"
    )
    c = ServerConfig.resolve(args, env)
    assert (c.http_port, c.policy_path, c.hot_reload, c.log_level) == (
        6000,
        "flag.yaml",
        False,
        "error",
    )


def test_empty_environment_value_means_unset() -> None:
    assert ServerConfig.resolve(flags(), {"HTTP_PORT": ""}).http_port == 3100


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"GRPC_PORT": "abc"}, "GRPC_PORT"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"SOCKET_MODE": "rw-rw----"}, "SOCKET_MODE"),
        ({"HOT_RELOAD": "maybe"}, "HOT_RELOAD"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"CHECK_DEADLINE_MS": "0"}, "CHECK_DEADLINE_MS"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"HTTP_PORT": "0"}, "nothing to serve"),
        ({"UNIX_SOCKET": "/tmp/" + "x" * 120}, "UNIX_SOCKET"),
    ],
)
def test_invalid_values_give_one_line_reason(env: dict[str, str], names: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        ServerConfig.resolve(flags(), env)
    message = str(info.value)
    assert names in message and "\n" not in message


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(InvalidConfig, match="--grpc-port"):
        ServerConfig.resolve(flags("--grpc-port", "x"), {})


def test_max_request_bytes_sized_from_policy() -> None:
    c = ServerConfig()
    assert c.effective_max_request_bytes(0) == MIN_MAX_REQUEST_BYTES == 8 * 1024 * 1024
    assert c.effective_max_request_bytes(20 * 1024 * 1024) == 21 * 1024 * 1024
    assert ServerConfig(max_request_bytes=100_000).effective_max_request_bytes(10**9) == 100_000


def test_cli_exits_2_with_one_line_reason(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from extauthz.cli import main

    monkeypatch.setenv("GRPC_PORT", "nope")
    assert main(["serve", "--policy", "x.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "GRPC_PORT" in err


@pytest.mark.parametrize(
    ("env", "builtin"),
    [
        ({}, True),  # auto, plaintext: the built-in gRPC server
        ({"GRPC_PORT": "50051"}, True),
        ({"GRPC_TRANSPORT": "grpcio"}, False),
        ({"GRPC_TRANSPORT": "BuiltIn"}, True),
        # auto with TLS on the gRPC port: grpcio, whose certificates reload without a gap
        ({"GRPC_PORT": "50051", "TLS_CERT_FILE": "c.pem", "TLS_KEY_FILE": "k.pem"}, False),
        # TLS only on the HTTP port: gRPC on the Unix socket stays built-in
        ({"HTTP_PORT": "3100", "TLS_CERT_FILE": "c.pem", "TLS_KEY_FILE": "k.pem"}, True),
    ],
)
def test_grpc_transport_is_builtin_unless_grpc_has_tls_or_grpcio_is_asked(
    env: dict[str, str], builtin: bool
) -> None:
    config = ServerConfig.resolve(None, {"UNIX_SOCKET": "/tmp/p.sock", **env})
    assert config.grpc_builtin is builtin


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRPC_TRANSPORT": "h3"}, "GRPC_TRANSPORT: 'h3' is not one of auto, builtin, grpcio"),
        (
            {
                "GRPC_TRANSPORT": "builtin",
                "GRPC_PORT": "50051",
                "TLS_CERT_FILE": "c.pem",
                "TLS_KEY_FILE": "k.pem",
            },
            "GRPC_TRANSPORT: builtin serves plaintext gRPC only",
        ),
    ],
)
def test_grpc_transport_refusals_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        ServerConfig.resolve(None, {"UNIX_SOCKET": "/tmp/p.sock", **env})
