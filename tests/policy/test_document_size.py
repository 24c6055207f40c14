"""The size limit of the files a policy reads (``MAX_DOCUMENT_BYTES``, 64 MiB by default).

Real API descriptions are larger than the 4 MiB a policy file may be (GitHub's is ~10 MB,
Stripe's JSON form 5.2 MB). A file over the limit is refused with its name, its size, the
limit and the setting that raises it; the policy file itself keeps its own 4 MiB limit (a
policy sent with a request goes through it too).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from extauthz._exceptions import InvalidConfig, InvalidPolicy
from extauthz.policy import load_policy
from extauthz.policy._loader import MAX_DOCUMENT_BYTES, MAX_POLICY_BYTES
from extauthz.server.config import ServerConfig

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/pets": {
            "post": {
                "operationId": "createPet",
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": {"description": "ok"}},
            }
        }
    },
}


def _write(tmp: Path, padding: int) -> tuple[Path, int]:
    spec = {**SPEC, "info": {**SPEC["info"], "description": "x" * padding}}
    (tmp / "api.json").write_text(json.dumps(spec))
    (tmp / "p.yaml").write_text('policyVersion: "0.1"\nroutes: []\nopenapi: {spec: ./api.json}\n')
    return tmp / "p.yaml", (tmp / "api.json").stat().st_size


def test_a_description_over_the_old_4_mib_loads_by_default(tmp_path: Path) -> None:
    assert MAX_DOCUMENT_BYTES == 64 * 1024 * 1024
    path, size = _write(tmp_path, 5 * 1024 * 1024)
    assert size > MAX_POLICY_BYTES
    assert load_policy(path).route_ids == ("createPet",)


def test_a_document_over_the_limit_is_refused_naming_file_size_limit_and_setting(
    tmp_path: Path,
) -> None:
    path, size = _write(tmp_path, 5000)
    with pytest.raises(InvalidPolicy) as exc:
        load_policy(path, max_document_bytes=4096)
    (problem,) = exc.value.errors
    assert problem.path == "openapi.spec"
    assert problem.reason == (
        f"{tmp_path / 'api.json'}: {size} bytes is larger than the 4096-byte limit "
        "(setting MAX_DOCUMENT_BYTES)"
    )
    assert load_policy(path, max_document_bytes=size).route_ids == ("createPet",)


def test_a_schema_file_over_the_limit_is_refused_the_same_way(tmp_path: Path) -> None:
    schema = {"type": "object", "description": "x" * 5000}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    size = (tmp_path / "s.json").stat().st_size
    (tmp_path / "p.yaml").write_text(
        'policyVersion: "0.1"\nroutes:\n  - id: a\n    match: {method: POST, path: /a}\n'
        "    contract: {requestSchemaRef: ./s.json}\n"
    )
    with pytest.raises(InvalidPolicy) as exc:
        load_policy(tmp_path / "p.yaml", max_document_bytes=4096)
    assert exc.value.errors[0].reason == (
        f"schema file {tmp_path / 's.json'}: {size} bytes is larger than the 4096-byte limit "
        "(setting MAX_DOCUMENT_BYTES)"
    )


def test_the_setting_is_read_like_every_server_setting() -> None:
    assert ServerConfig.resolve(environ={}, http_port=1).max_document_bytes == MAX_DOCUMENT_BYTES
    assert ServerConfig.resolve(environ={"MAX_DOCUMENT_BYTES": "1000"}).max_document_bytes == 1000
    with pytest.raises(InvalidConfig, match="MAX_DOCUMENT_BYTES"):
        ServerConfig.resolve(environ={"MAX_DOCUMENT_BYTES": "0"})
    with pytest.raises(InvalidConfig, match="MAX_DOCUMENT_BYTES"):
        ServerConfig.resolve(environ={"MAX_DOCUMENT_BYTES": "lots"})


def test_serve_refuses_a_policy_whose_description_is_over_its_setting(tmp_path: Path) -> None:
    path, size = _write(tmp_path, 5000)
    proc = subprocess.run(
        [sys.executable, "-m", "extauthz", "serve", "--policy", str(path), "--http-port", "0",
         "--grpc-port", "0", "--http-unix-socket", str(tmp_path / "h.sock")],
        env={**__import__("os").environ, "MAX_DOCUMENT_BYTES": "4096"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"{size} bytes is larger than the 4096-byte limit (setting MAX_DOCUMENT_BYTES)" in (
        proc.stderr
    )
