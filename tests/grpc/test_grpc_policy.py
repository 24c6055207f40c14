"""gRPC routes in a policy: naming the method, the descriptor set read relative to the
policy, the refusals (file, path and reason), reloads watching the set, protovalidate's
absence, and ``extauthz policy from-descriptors``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from extauthz._exceptions import InvalidPolicy
from extauthz.policy import CompiledPolicy, _grpc, load_policy
from extauthz.policy.reload import PolicyHotReloader


def write(folder: Path, routes: str, set_bytes: bytes | None = None) -> Path:
    if set_bytes is not None:
        (folder / "api.binpb").write_bytes(set_bytes)
    path = folder / "p.yaml"
    path.write_text('policyVersion: "0.1"\nroutes:\n' + routes)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(InvalidPolicy) as info:
        load_policy(path)
    return [str(p) for p in info.value.errors]


def test_a_route_names_its_method_by_path_or_by_service_and_method(
    shop_policy: CompiledPolicy, shop_policy_file: Path
) -> None:
    routes = {r.id: r for r in shop_policy.routes}
    create, get = routes["create-order"], routes["get-order"]
    assert (create.methods, create.pattern.text) == (("POST",), "/shop.v1.Orders/CreateOrder")
    assert (get.methods, get.pattern.text) == (("POST",), "/shop.v1.Orders/GetOrder")
    assert create.grpc is not None and create.grpc.input_type == "shop.v1.CreateOrderRequest"
    assert get.grpc is not None and not get.grpc.streaming
    assert routes["chat"].grpc.streaming and not routes["chat"].grpc.first_message
    assert routes["upload-items"].grpc.first_message
    # the descriptor set is read relative to the policy file, watched, and in the version
    assert shop_policy_file.parent / "api.binpb" in shop_policy.files
    assert routes["create-order"].locations["@grpc"] == "routes[0].grpc"
    assert routes["create-order"].locations["@contract"] == "routes[0].grpc"  # for explain


def test_the_set_resolves_against_the_base_dir_when_given(shop_protos: Any, tmp_path: Path) -> None:
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "api.binpb").write_bytes(shop_protos.descriptor_set.read_bytes())
    (tmp_path / "policies").mkdir()
    path = write(
        tmp_path / "policies",
        "  - id: g\n    match: {path: /shop.v1.Orders/GetOrder}\n"
        "    grpc: {descriptorSetRef: sets/api.binpb}\n",
    )
    assert load_policy(path, base_dir=tmp_path).routes[0].grpc is not None
    assert "descriptor set not found" in problems(path)[0]


def test_refusals_name_the_file_the_path_and_the_reason(shop_protos: Any, tmp_path: Path) -> None:
    data = shop_protos.descriptor_set.read_bytes()
    (tmp_path / "junk.binpb").write_bytes(b"\xff\xff\xff")
    (tmp_path / "empty.binpb").write_bytes(b"")
    path = write(
        tmp_path,
        "  - id: a\n    match: {path: /shop.v1.Orders/Nope}\n"
        "    grpc: {descriptorSetRef: api.binpb}\n"
        "  - id: b\n    match: {path: /shop.v1.Orders/GetOrder}\n"
        "    grpc: {descriptorSetRef: missing.binpb}\n"
        "  - id: c\n    grpc: {descriptorSetRef: junk.binpb, service: s.S, method: M}\n"
        "  - id: d\n    match: {path: /shop.v1.Orders/GetOrder}\n"
        "    grpc: {descriptorSetRef: api.binpb, service: shop.v1.Orders, method: CreateOrder}\n"
        "  - id: e\n    match: {path: /not/a/grpc/path}\n    grpc: {descriptorSetRef: api.binpb}\n"
        "  - id: f\n    grpc: {descriptorSetRef: empty.binpb, service: s.S, method: M}\n"
        "  - id: g\n    grpc: {descriptorSetRef: api.binpb, service: shop.v1.Orders}\n"
        "  - id: h\n    grpc: {descriptorSetRef: api.binpb, streaming: sometimes,"
        " service: shop.v1.Orders, method: Chat}\n"
        "  - id: i\n    description: no match and no grpc\n",
        data,
    )
    found = problems(path)
    src = str(path)
    assert all(p.startswith(src + ": ") for p in found), found
    text = "\n".join(found)
    assert "routes[0].grpc: " in text and "has no method /shop.v1.Orders/Nope" in text
    assert "/shop.v1.Orders/GetOrder" in text  # the methods it has are listed
    assert "routes[1].grpc.descriptorSetRef: descriptor set not found: " in text
    assert "routes[2].grpc.descriptorSetRef: " in text and "is not a FileDescriptorSet" in text
    assert "routes[3].match.path: /shop.v1.Orders/GetOrder is not the path of grpc method" in text
    assert "routes[4].grpc: name the method" in text
    assert "routes[5].grpc.descriptorSetRef: " in text and "holds no files" in text
    assert "routes[6].grpc: give both service and method" in text
    assert "routes[7].grpc.streaming: " in text
    assert "routes[8].match: required key is missing" in text


def test_a_set_without_its_imports_is_refused(shop_protos: Any, tmp_path: Path) -> None:
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(shop_protos.descriptor_set.read_bytes())
    only = descriptor_pb2.FileDescriptorSet(file=[f for f in fds.file if f.name == "shop.proto"])
    path = write(
        tmp_path,
        "  - id: g\n    match: {path: /shop.v1.Orders/GetOrder}\n"
        "    grpc: {descriptorSetRef: api.binpb}\n",
        only.SerializeToString(),
    )
    (found,) = problems(path)
    assert "routes[0].grpc.descriptorSetRef: " in found and "--include_imports" in found


def test_without_protovalidate_a_route_with_rules_is_refused_unless_it_opts_out(
    shop_protos: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "protovalidate", None)  # import fails as if absent
    route = "  - id: g\n    match: {path: /shop.v1.Orders/GetOrder}\n    grpc: {descriptorSetRef: api.binpb%s}\n"
    path = write(tmp_path, route % "", shop_protos.descriptor_set.read_bytes())
    (found,) = problems(path)
    assert "routes[0].grpc: " in found
    assert "protovalidate is not installed" in found and "extauthz[grpc]" in found
    path = write(tmp_path, route % ", protovalidate: false")
    assert load_policy(path).routes[0].grpc.validator is None


def test_unknown_fields_may_be_allowed_per_route(shop_protos: Any, tmp_path: Path) -> None:
    route = "  - id: g\n    match: {path: /shop.v1.Orders/GetOrder}\n    grpc: {descriptorSetRef: api.binpb, rejectUnknownFields: false}\n"
    policy = load_policy(write(tmp_path, route, shop_protos.descriptor_set.read_bytes()))
    method = policy.routes[0].grpc
    uuid = b"\x0a\x24" + b"123e4567-e89b-12d3-a456-426614174000"
    parsed = method.decode(uuid + b"\x98\x06\x01", 8)
    assert (parsed.kind, parsed.problems) == ("json", ())


def test_a_changed_descriptor_set_changes_the_policy_version(
    shop_protos: Any, tmp_path: Path
) -> None:
    route = "  - id: g\n    match: {path: /shop.v1.Orders/GetOrder}\n    grpc: {descriptorSetRef: api.binpb}\n"
    data = shop_protos.descriptor_set.read_bytes()
    first = load_policy(write(tmp_path, route, data)).version
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    fds.file[-1].package = fds.file[-1].package  # same content, re-serialised
    fds.file[-1].options.java_package = "changed"
    second = load_policy(write(tmp_path, route, fds.SerializeToString())).version
    assert first != second


def test_policy_from_descriptors_prints_one_checked_route_per_method(
    shop_protos: Any, tmp_path: Path
) -> None:
    (tmp_path / "api.binpb").write_bytes(shop_protos.descriptor_set.read_bytes())
    out = subprocess.run(
        [sys.executable, "-m", "extauthz", "policy", "from-descriptors", "api.binpb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    import yaml

    doc = yaml.safe_load(out.stdout)
    paths = [r["match"]["path"] for r in doc["routes"]]
    assert paths == [
        "/shop.v1.Orders/CreateOrder",
        "/shop.v1.Orders/GetOrder",
        "/shop.v1.Orders/UploadItems",
        "/shop.v1.Orders/Chat",
    ]
    assert [r["grpc"].get("streaming") for r in doc["routes"]] == [None, None, "refuse", "refuse"]
    (tmp_path / "gen.yaml").write_text(out.stdout)
    policy = load_policy(tmp_path / "gen.yaml")  # what it prints loads as it is
    assert len(policy.routes) == 4
    bad = subprocess.run(
        [sys.executable, "-m", "extauthz", "policy", "from-descriptors", "gen.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "is not a FileDescriptorSet" in bad.stderr


def test_split_path() -> None:
    assert _grpc.split_path("/a.b.S/M") == ("a.b.S", "M")
    for bad in ("/a/b/c", "a.S/M", "/S/", "//M", "/a b/M"):
        assert _grpc.split_path(bad) is None


def test_a_reload_compiled_in_a_child_process_carries_the_grpc_methods(
    shop_policy: CompiledPolicy,
    shop_policy_file: Path,
    messages: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import pickle

    from extauthz.policy._child import load_policy_in_child

    copy = pickle.loads(pickle.dumps(shop_policy.routes[0].grpc))
    assert (copy.path, copy.reject_unknown, copy.validator is not None) == (
        "/shop.v1.Orders/CreateOrder",
        True,
        True,
    )
    bad = messages["create-order"](customer_email="nope").SerializeToString()
    assert [i for i, _ in copy.decode(bad, 8).problems] == ["contract.protovalidate"]
    with caplog.at_level("WARNING", logger="extauthz.reload"):
        policy = load_policy_in_child(shop_policy_file)
    assert not caplog.records  # carried over, not compiled again in this process
    assert [r.grpc.path for r in policy.routes] == [r.grpc.path for r in shop_policy.routes]
    assert policy.version == shop_policy.version
    assert policy.routes[3].grpc.streaming and policy.routes[2].grpc.first_message


def test_a_policy_sent_with_a_request_may_not_read_a_descriptor_set(shop_protos: Any) -> None:
    from extauthz.policy import load_policy_bytes

    text = (
        'policyVersion: "0.1"\nroutes:\n  - id: g\n    match: {path: /shop.v1.Orders/GetOrder}\n'
        f"    grpc: {{descriptorSetRef: {shop_protos.descriptor_set}}}\n"
    )
    with pytest.raises(InvalidPolicy) as info:
        load_policy_bytes(text.encode(), sealed=True)
    (problem,) = info.value.errors
    assert problem.path == "routes[0].grpc.descriptorSetRef"
    assert "cannot read the server's files" in problem.reason


def test_a_json_schema_contract_may_add_to_a_grpc_route(shop_protos: Any, tmp_path: Path) -> None:
    import base64

    from extauthz.context import RequestContext
    from extauthz.engine.pipeline import evaluate

    route = (
        "  - id: g\n    match: {path: /shop.v1.Orders/GetOrder}\n"
        "    grpc: {descriptorSetRef: api.binpb, protovalidate: false}\n"
        "    contract:\n      requestSchema: {properties: {id: {maxLength: 3}}}\n"
    )
    policy = load_policy(write(tmp_path, route, shop_protos.descriptor_set.read_bytes()))
    payload = b"\x0a\x05abcde"  # GetOrderRequest{id: "abcde"}
    body = b"\x00" + len(payload).to_bytes(4, "big") + payload
    ctx = RequestContext.from_dict(
        {
            "request": {
                "method": "POST",
                "path": "/shop.v1.Orders/GetOrder",
                "headers": {"content-type": "application/grpc"},
                "body": {"rawBase64": base64.b64encode(body).decode(), "present": True},
            }
        }
    )
    decision = evaluate(policy, ctx)
    assert decision.rule_ids == ("contract.schema.invalid",)  # the schema reads the mapping


def test_a_hot_reload_follows_the_descriptor_set_and_keeps_the_policy_on_a_broken_one(
    shop_protos: Any, tmp_path: Path
) -> None:
    """The reloader watches the set like any referenced file: an edit reloads (new version),
    a set that no longer parses is refused with its file named and the running policy stays."""

    def wait_for(condition: Any) -> None:
        deadline = time.monotonic() + 30  # a hang guard, not a speed bound
        while not condition():
            assert time.monotonic() < deadline, "the reloader never got there"
            time.sleep(0.05)

    route = "  - id: g\n    match: {path: /shop.v1.Orders/GetOrder}\n    grpc: {descriptorSetRef: api.binpb}\n"
    data = shop_protos.descriptor_set.read_bytes()
    path = write(tmp_path, route, data)
    with PolicyHotReloader(path, debounce_ms=200) as reloader:
        first = reloader.current()
        assert (tmp_path / "api.binpb").resolve() in {Path(f).resolve() for f in first.files}
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
        fds.file[-1].options.java_package = "changed"
        (tmp_path / "api.binpb").write_bytes(fds.SerializeToString())
        wait_for(lambda: reloader.stats.reloads == 1)
        second = reloader.current()
        assert second.version != first.version and second.routes[0].grpc is not None
        (tmp_path / "api.binpb").write_bytes(b"\x0a\xff\xff not a descriptor set")
        wait_for(lambda: reloader.stats.failures == 1)
        assert reloader.current() is second
        assert "api.binpb" in (reloader.last_error or ""), reloader.last_error
