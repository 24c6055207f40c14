"""A policy compiled in a child process (``policy._child``) is the policy compiled in-process.

Real child processes throughout: the shipped and test policies (CEL rules, webhooks of every
provider, schemas, OpenAPI contracts, a generated Stripe-shaped description) must come back
with the same version and routes and decide a set of requests exactly alike, rule hit
messages included; a refused policy comes back with the same problems; a child that is
killed is a failed reload that says so; a policy the hand-over cannot carry is compiled
in-process instead.
"""

from __future__ import annotations

import pickle
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.specgen import _NoAliasDumper, stripe_like
from extauthz._exceptions import InvalidPolicy
from extauthz.engine.model import CompiledPolicy
from extauthz.policy import _child, load_policy
from extauthz.policy._child import ChildFailed, load_policy_for_reload, load_policy_in_child
from tests.engine.conftest import decide_all

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "tests" / "policy" / "data" / "openapi"


def _openapi_policy(tmp: Path) -> Path:
    for f in OPENAPI.iterdir():
        shutil.copy(f, tmp / f.name)
    (tmp / "p.yaml").write_text(
        'policyVersion: "0.1"\nroutes:\n'
        "  - id: store-order\n    match: {method: POST, path: /store/orders}\n"
        '    contract: {openapiRef: "./store31.json#/paths/~1orders/post", '
        "rejectUnknownFields: true}\n"
        "openapi: {spec: ./shop30.yaml, rejectUnknownFields: true, rejectUnknownParameters: true}\n"
    )
    return tmp / "p.yaml"


def _generated_policy(tmp: Path) -> Path:
    spec = stripe_like(5, operations=60, schemas=50, object_parameters=False)
    (tmp / "api.yaml").write_text(yaml.dump(spec, Dumper=_NoAliasDumper, sort_keys=False))
    (tmp / "p.yaml").write_text(
        'policyVersion: "0.1"\ndefaults: {unmatchedRouteAction: block}\nroutes: []\n'
        "openapi: {spec: ./api.yaml, rejectUnknownFields: true}\n"
    )
    return tmp / "p.yaml"


POLICIES = {
    "demo": lambda tmp: ROOT / "policies" / "demo.yaml",
    "catalogue": lambda tmp: ROOT / "tests" / "data" / "catalogue_policy.yaml",
    "compat": lambda tmp: ROOT / "tests" / "compat" / "data" / "policy.yaml",
    "openapi": _openapi_policy,
    "stripe-like": _generated_policy,
}
BODIES: list[Any] = [None, {}, {"name": "x"}, {"a": [1, {"b": "' OR 1=1 --"}]}, [1, 2], "text",
                     {"url": "http://169.254.169.254/", "__proto__": {"x": 1}}]  # fmt: skip


def _requests(policy: CompiledPolicy) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for route in policy.routes:
        path = "/" + "/".join(
            "1" if seg.startswith("{") else ("x" if seg in ("*", "**") else seg)
            for seg in route.pattern.text.strip("/").split("/")
        )
        method = route.methods[0] if route.methods[0] != "*" else "POST"
        for body in BODIES:
            yield method, path, {"body": body} if body is not None else {}
        yield method, path, {"query": {"limit": "abc", "zz": "1"}}
        yield method, path, {"sample": {"name": "***"}, "redacted": True}
        yield method, path, {"headers": {"x-tenant": "acme", "stripe-signature": "t=1,v1=00"}}
    yield "GET", "/nowhere/at/all", {}


def _native(plan: Any) -> tuple[bool, bool] | None:
    """Whether a route's CEL plan (and its fast path) runs without the library."""
    if plan is None:
        return None
    return plan.native is not None, plan.fast is not None and plan.fast.native is not None


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_policy_from_a_child_decides_as_the_one_compiled_in_process(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for provider in ("STRIPE_WEBHOOK_SECRET", "GITHUB_WEBHOOK_SECRET", "SLACK_SIGNING_SECRET"):
        monkeypatch.setenv(provider, "whsec_test_secret")  # the child inherits the environment
    path = POLICIES[name](tmp_path)
    here = load_policy(path)
    there = load_policy_in_child(path)
    assert (there.version, there.route_ids, there.source) == (
        here.version,
        here.route_ids,
        here.source,
    )
    assert there.files == here.files and there.defaults == here.defaults
    for a, b in zip(here.routes, there.routes, strict=True):
        assert (a.id, a.methods, a.pattern, a.mode, a.limits, a.vulnerability, a.webhook) == (
            b.id, b.methods, b.pattern, b.mode, b.limits, b.vulnerability, b.webhook
        )  # fmt: skip
        assert _native(a.cel) == _native(b.cel)  # the rebuilt plan skips the library alike
        assert (a.contract is None) == (b.contract is None)
        if a.contract is not None and b.contract is not None:
            assert (a.contract.engine, a.contract.unknown) == (
                b.contract.engine,
                b.contract.unknown,
            )
    requests = list(_requests(here))
    got_here, got_there = decide_all(here, requests), decide_all(there, requests)
    for request, x, y in zip(requests, got_here, got_there, strict=True):
        assert x == y, request
    assert len({str(d) for d in got_here}) > 2  # the requests tell the routes apart


def test_a_refused_policy_comes_back_with_the_same_problems(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        'policyVersion: "0.1"\nroutes:\n  - id: a\n    match: {method: GET, path: /a}\n'
        '    rules: [{id: r, type: cel, config: {expr: "request.nope ++"}}]\n'
        "  - id: a\n    match: {method: GET, path: /b}\n"
    )
    with pytest.raises(InvalidPolicy) as here:
        load_policy(tmp_path / "p.yaml")
    with pytest.raises(InvalidPolicy) as there:
        load_policy_in_child(tmp_path / "p.yaml")
    assert [str(p) for p in there.value.errors] == [str(p) for p in here.value.errors]
    assert len(here.value.errors) == 2


def _fake_python(tmp: Path, script: str) -> str:
    """An "interpreter" for the child that runs ``script`` (sh) instead."""
    exe = tmp / "python"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def test_a_killed_child_is_a_failed_reload_that_says_how_it_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sys, "executable", _fake_python(tmp_path, "echo compiling >&2\nkill -9 $$\n")
    )
    with pytest.raises(ChildFailed, match="killed by signal 9: compiling"):
        load_policy_in_child(ROOT / "policies" / "demo.yaml")


def test_a_child_that_exits_without_an_answer_fails_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path, "exit 3\n"))
    with pytest.raises(ChildFailed, match="exited with status 3"):
        load_policy_in_child(ROOT / "policies" / "demo.yaml")


def test_a_policy_that_cannot_be_handed_over_is_compiled_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    header = tmp_path / "header.pickle"
    header.write_bytes(pickle.dumps(("cannot-carry", "PicklingError: a lambda")))
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path, f"cat {header}\n"))
    policy = load_policy_in_child(ROOT / "policies" / "demo.yaml")
    assert policy.version == load_policy(ROOT / "policies" / "demo.yaml").version
    assert "cannot be handed over" in caplog.text and "a lambda" in caplog.text


def test_reloads_of_a_small_policy_stay_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below CHILD_ABOVE_BYTES a child would only add an interpreter's start-up."""
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path, "kill -9 $$\n"))
    demo = ROOT / "policies" / "demo.yaml"
    current = load_policy(demo)
    assert load_policy_for_reload(demo, current).version == current.version  # no child ran
    monkeypatch.setattr(_child, "CHILD_ABOVE_BYTES", 1)
    with pytest.raises(ChildFailed):
        load_policy_for_reload(demo, current)
