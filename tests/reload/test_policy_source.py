"""One ``PolicySource`` seam for the server and the embedded middleware (``policy.source``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from reload_helpers import ping_ctx, policy_yaml, wait_for

from extauthz import InvalidPolicy, load_policy
from extauthz.engine import evaluate
from extauthz.policy.reload import PolicyHotReloader
from extauthz.policy.source import FixedPolicy, PolicySource, make_policy_source


def ping_action(source: PolicySource) -> str:
    return evaluate(source.current(), ping_ctx()).action


@pytest.fixture
def policy_file(policy_dir: Path) -> Path:
    path = policy_dir / "policy.yaml"
    path.write_text(policy_yaml(ping_expr="true"))
    return path


def test_a_path_with_hot_reload_is_a_started_reloader_that_follows_edits(
    policy_file: Path,
) -> None:
    source, stop = make_policy_source(policy_file, hot_reload=True)
    try:
        assert isinstance(source, PolicyHotReloader) and source.running
        assert stop is not None and ping_action(source) == "ALLOW"
        policy_file.write_text(policy_yaml(ping_expr="false"))
        wait_for(lambda: ping_action(source) == "BLOCK")
    finally:
        if stop is not None:
            stop()
    assert not source.running


def test_a_path_without_hot_reload_is_loaded_once(policy_file: Path) -> None:
    source, stop = make_policy_source(str(policy_file), hot_reload=False)
    assert isinstance(source, FixedPolicy) and stop is None
    policy_file.write_text(policy_yaml(ping_expr="false"))
    assert ping_action(source) == "ALLOW"  # nothing watches the file
    assert source.last_error is None


def test_a_compiled_policy_and_a_source_are_taken_as_they_are(policy_file: Path) -> None:
    policy = load_policy(policy_file)
    fixed, stop = make_policy_source(policy, hot_reload=True)
    assert isinstance(fixed, FixedPolicy) and fixed.current() is policy and stop is None
    again, stop = make_policy_source(fixed, hot_reload=True)
    assert again is fixed and stop is None


def test_a_path_that_does_not_load_is_refused(policy_dir: Path) -> None:
    for hot_reload in (True, False):
        with pytest.raises(InvalidPolicy, match="not found"):
            make_policy_source(policy_dir / "missing.yaml", hot_reload=hot_reload)


def test_both_sources_satisfy_the_one_protocol(policy_file: Path) -> None:
    with PolicyHotReloader(policy_file) as reloader:
        for source in (reloader, FixedPolicy(reloader.current())):
            assert isinstance(source, PolicySource)
            assert ping_action(source) == "ALLOW"


def test_server_and_middleware_share_it_and_the_middleware_stays_light() -> None:
    code = (
        "import json, sys\n"
        "import extauthz.middleware, extauthz.middleware._common as common\n"
        "light = 'extauthz.policy' not in sys.modules and 'extauthz.engine' not in sys.modules\n"
        "from extauthz.policy import source\n"
        "from extauthz.server import state\n"
        "print(json.dumps({'light': light, 'same': state.PolicySource is source.PolicySource,\n"
        "    'fixed': state.StaticPolicySource is source.FixedPolicy,\n"
        "    'own': [n for n in ('PolicySource', 'FixedPolicy') if n in vars(common)]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"light": True, "same": True, "fixed": True, "own": []}
