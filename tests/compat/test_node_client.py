"""Upstream's Node client calling a real ``extauthz serve`` (``node`` from PATH)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "node" / "upstream_client.mjs"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed (.ci/run installs nodejs)"
)


def test_upstream_node_client_gets_decisions(start_server, free_port, tmp_path: Path) -> None:
    server = start_server(http_port=free_port())
    activation = {
        "licenseKey": "ABCD-1234-EFGH-5678",
        "deviceId": "dev-1",
        "tenantId": "acme",
    }
    contexts = [
        {"version": "0.1", "request": {"method": "GET", "path": "/healthz"}},
        {
            "version": "0.1",
            "request": {
                "method": "POST",
                "path": "/api/v1/licenses/activate",
                "headers": {"content-type": "application/json"},
                "contentType": "application/json",
                "body": {"present": True, "sizeBytes": 70, "json": {"sample": activation}},
            },
            "identity": {"authenticated": True, "subject": "u1", "tenant": "globex"},
        },
    ]
    file = tmp_path / "contexts.json"
    file.write_text(json.dumps(contexts))
    run = subprocess.run(
        [NODE, str(SCRIPT), f"http://127.0.0.1:{server.http_port}", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    clean, mismatch = (json.loads(line) for line in run.stdout.splitlines())
    assert clean["decision"]["action"] == "ALLOW" and clean["health"] == "ok"
    assert clean["decision"]["metadata"]["routeId"] == "health"
    assert mismatch["decision"]["action"] == "BLOCK"
    assert [h["id"] for h in mismatch["decision"]["ruleHits"]] == ["tenant.binding"]
    assert mismatch["durationMs"] >= 0
