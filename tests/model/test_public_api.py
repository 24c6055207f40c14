"""The curated public surface: sorted, complete, importable, and light to import."""

from __future__ import annotations

import subprocess
import sys

import extauthz

EXPECTED = {
    "AsyncReplayStore", "Body", "BodyJson", "ClientInfo", "CompiledPolicy",
    "ContractShieldError", "ContractShieldTimeout", "ContractShieldUnavailable", "Decision",
    "DecisionMetadata", "HttpRequest", "Identity", "InMemoryReplayStore", "InvalidConfig",
    "InvalidContext", "InvalidPolicy", "OperationalError", "PolicyHotReloader", "PolicyProblem",
    "RedisReplayStore", "ReplayStore", "ReplayStoreUnavailable", "RequestContext", "Risk",
    "RuleHit", "RuntimeInfo", "SocketInUse", "UsageError", "__version__", "evaluate",
    "evaluate_async", "load_policy", "load_policy_text",
}  # fmt: skip


def test_all_is_sorted_and_exactly_the_public_names() -> None:
    assert list(extauthz.__all__) == sorted(extauthz.__all__)
    assert set(extauthz.__all__) == EXPECTED


def test_every_exported_name_resolves() -> None:
    for name in extauthz.__all__:
        assert getattr(extauthz, name) is not None, name


def test_engine_entry_points_work_from_the_top_level() -> None:
    policy = extauthz.load_policy_text(
        "policyVersion: '0.1'\nroutes:\n  - id: r\n    match: {method: GET, path: /x}\n"
    )
    ctx = extauthz.RequestContext.from_dict({"request": {"method": "GET", "path": "/x"}})
    decision = extauthz.evaluate(policy, ctx)
    assert decision.action == "ALLOW" and decision.metadata.route_id == "r"


def test_importing_the_package_stays_light() -> None:
    code = (
        "import sys, extauthz\n"
        "heavy = {'cel', 'fastjsonschema', 'jsonschema', 're2', 'grpc', 'watchdog', 'redis', 'yaml',"
        " 'aiohttp', 'httptools', 'prometheus_client'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
