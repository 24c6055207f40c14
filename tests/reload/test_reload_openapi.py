"""Hot reload of routes from an OpenAPI document: the spec and a file it references."""

from __future__ import annotations

import shutil
from pathlib import Path

from reload_helpers import wait_for, write_atomic

from extauthz.engine import evaluate
from extauthz.policy.reload import PolicyHotReloader
from tests.engine.conftest import build_ctx

DATA = Path(__file__).resolve().parents[1] / "policy" / "data" / "openapi"


def test_a_changed_spec_or_referenced_file_reloads(policy_dir: Path) -> None:
    for f in DATA.iterdir():
        shutil.copy(f, policy_dir / f.name)
    policy = policy_dir / "policy.yaml"
    policy.write_text('policyVersion: "0.1"\nroutes: []\nopenapi: {spec: ./shop30.yaml}\n')

    body = {"name": "Rex", "kind": {"type": "cat"}}

    def trace(value: str) -> str:
        """createPet's ``trace`` query parameter is a boolean declared in common.yaml."""
        ctx = build_ctx("POST", "/pets", body=body, headers={"x-tenant": "acme"},
                        query={"trace": value})  # fmt: skip
        return evaluate(r.current(), ctx).action

    with PolicyHotReloader(policy, debounce_ms=200) as r:
        assert trace("1") == "BLOCK" and trace("true") == "ALLOW"
        common = policy_dir / "common.yaml"
        write_atomic(common, common.read_text().replace("type: boolean", "type: integer"))
        wait_for(lambda: trace("1") == "ALLOW")
        assert trace("true") == "BLOCK"
        spec = policy_dir / "shop30.yaml"
        text = spec.read_text()
        assert "name: {type: string, minLength: 1, example: Rex}" in text
        write_atomic(
            spec, text.replace("minLength: 1, example: Rex", "minLength: 5, example: Rexxx")
        )
        wait_for(lambda: trace("1") == "BLOCK")  # "Rex" is now too short
        assert r.stats.failures == 0
