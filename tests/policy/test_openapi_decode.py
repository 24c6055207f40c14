"""Requests decoded the way an OpenAPI description serializes them (forms30.yaml): form and
multipart bodies, bracketed keys, parameter styles, formats, media types, servers, routes."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from extauthz.decision import Decision
from extauthz.engine import evaluate
from extauthz.engine.model import CompiledPolicy
from extauthz.policy import load_policy
from tests import _multipart
from tests.engine.conftest import build_ctx

DATA = Path(__file__).parent / "data" / "openapi"
FORM = "application/x-www-form-urlencoded"
BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
POLICY = """
policyVersion: "0.1"
defaults: {unmatchedRouteAction: block}
routes: []
openapi: {spec: ./forms30.yaml, rejectUnknownParameters: true}
"""


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> CompiledPolicy:
    tmp = tmp_path_factory.mktemp("forms")
    shutil.copy(DATA / "forms30.yaml", tmp / "forms30.yaml")
    (tmp / "p.yaml").write_text(textwrap.dedent(POLICY))
    return load_policy(tmp / "p.yaml")


def decide(policy: CompiledPolicy, method: str, path: str, **kw: object) -> Decision:
    return evaluate(policy, build_ctx(method, path, **kw))  # type: ignore[arg-type]


def hits(policy: CompiledPolicy, method: str, path: str, **kw: object) -> list[str]:
    return [h.id for h in decide(policy, method, path, **kw).rule_hits]


def message(policy: CompiledPolicy, method: str, path: str, **kw: object) -> str:
    return " | ".join(h.message for h in decide(policy, method, path, **kw).rule_hits)


def form(policy: CompiledPolicy, raw: str, path: str = "/v1/charges") -> list[str]:
    return hits(policy, "POST", path, raw=raw, content_type=FORM)


part = functools.partial(_multipart.part, BOUNDARY)
multipart = functools.partial(_multipart.multipart, BOUNDARY)


PNG = part("file", b"\x89PNG\r\n\x1a\n\x00\x01", "a.png", "image/png")


# -- routes ---------------------------------------------------------------------------------


def test_servers_path_prefix_applies_and_unsupported_paths_are_warnings(
    policy: CompiledPolicy,
) -> None:
    assert hits(policy, "POST", "/v1/no-body") == []
    assert hits(policy, "POST", "/no-body") == ["route.unmatched"]  # the prefix is needed
    # {a}{b} cannot be matched without guessing: skipped, said, never a refused policy
    assert "adjacentTemplates" not in policy.route_ids
    assert any("/pairs/{a}{b}" in w and "skipped" in w for w in policy.warnings)
    # a parameter in XML (not parsed): not checked, said
    assert any("parameters/9" in w and "application/xml" in w for w in policy.warnings)
    assert hits(policy, "GET", "/v1/charges", headers={"x-shape": "<a>1</a>"}) == []
    # two servers whose paths agree (variables at their defaults): no warning about them
    assert not any("servers" in w for w in policy.warnings)


def test_a_body_schema_we_cannot_run_is_a_warning_not_a_refusal(policy: CompiledPolicy) -> None:
    # RE2 cannot run a lookaround: the body's content is not checked, and that is said
    assert any("lookaround" in w and "not checked" in w for w in policy.warnings)
    assert hits(policy, "POST", "/v1/lookaround", body={"name": "admin"}) == []
    # the rest of the operation still is: its media types, its parameters
    assert hits(policy, "POST", "/v1/lookaround", raw="name=x", content_type=FORM) == [
        "contract.mediaType"
    ]
    assert hits(policy, "POST", "/v1/lookaround", body={}, query={"q": "x"}) == [
        "contract.parameter.invalid"
    ]


def test_path_templates_inside_a_segment(policy: CompiledPolicy) -> None:
    assert hits(policy, "GET", "/v1/files/report.csv") == []
    assert hits(policy, "GET", "/v1/files/report.xml") == ["contract.parameter.invalid"]
    assert hits(policy, "GET", "/v1/files/Report.csv") == ["contract.parameter.invalid"]
    # an encoded slash inside a parameter is refused as before
    assert "request.path.ambiguous" in hits(policy, "GET", "/v1/files/a%2Fb.csv")


def test_matrix_and_label_path_styles(policy: CompiledPolicy) -> None:
    assert hits(policy, "GET", "/v1/points/;coords=1;coords=2") == []
    assert hits(policy, "GET", "/v1/points/;coords=1;coords=x") == ["contract.parameter.invalid"]
    assert hits(policy, "GET", "/v1/points/;coords=1") == ["contract.parameter.invalid"]  # minItems
    # a ';' is a path parameter only where a matrix-style parameter takes the whole segment
    # (issue 24): anywhere else it is ambiguous
    assert hits(policy, "GET", "/v1/points/%3Bcoords=1%3Bcoords=2") == []
    assert "request.path.ambiguous" in hits(policy, "GET", "/v1/files/a;b.csv")
    assert "request.path.ambiguous" in hits(policy, "GET", "/v1/labels/.5;x=1")
    assert "request.path.ambiguous" in hits(policy, "GET", "/v1;x/points/;coords=1;coords=2")
    assert hits(policy, "GET", "/v1/labels/.5") == []
    assert hits(policy, "GET", "/v1/labels/5") == ["contract.parameter.invalid"]  # no '.'


# -- form bodies ----------------------------------------------------------------------------


def test_form_values_are_coerced_to_the_schema_types(policy: CompiledPolicy) -> None:
    assert form(policy, "amount=2000&currency=usd") == []
    assert form(policy, "amount=2000&currency=usd&capture=false&ratio=0.5") == []
    assert form(policy, "amount=abc&currency=usd") == ["contract.schema.invalid"]
    assert form(policy, "amount=&currency=usd") == ["contract.schema.invalid"]
    assert form(policy, "amount=1&currency=usd&capture=yes") == ["contract.schema.invalid"]
    assert form(policy, "currency=usd") == ["contract.schema.invalid"]  # required amount
    assert form(policy, "amount=1&currency=usd&other=1") == ["contract.schema.invalid"]


def test_bracketed_keys_build_nested_objects_and_arrays(policy: CompiledPolicy) -> None:
    ok = (
        "amount=1&currency=usd&metadata[order_id]=6735&metadata[note]=x"
        "&shipping[name]=Jo&shipping[address][line1]=1 Main St&expand[]=customer&expand[]=invoice"
        "&items[0][price]=p_1&items[0][quantity]=2&items[1][price]=p_2"
    )
    assert form(policy, ok) == []
    assert form(policy, "amount=1&currency=usd&metadata=") == []  # anyOf: "" unsets
    assert form(policy, "amount=1&currency=usd&items[0][quantity]=two") == [
        "contract.schema.invalid"
    ]
    assert form(policy, "amount=1&currency=usd&shipping[address][line1]=x") == [
        "contract.schema.invalid"  # shipping.name is required
    ]
    assert "body.items[0].quantity must be integer" in message(
        policy, "POST", "/v1/charges", raw="amount=1&currency=usd&items[0][quantity]=x",
        content_type=FORM,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("amount=1&amount=2&currency=usd", "sent 2 times"),
        ("amount=1&currency=usd&metadata[a]=1&metadata[a]=2", "sent 2 times"),
        ("amount=1&currency=usd&shipping=x&shipping[name]=y", "both as a value"),
        ("amount=1&currency=usd&items[][price]=p", "PHP and Rails"),
        ("amount=1&currency=usd&expand[]=a&expand[0]=b", "mixes"),
    ],
)
def test_ambiguous_forms_are_refused(policy: CompiledPolicy, raw: str, why: str) -> None:
    d = decide(policy, "POST", "/v1/charges", raw=raw, content_type=FORM)
    assert [h.id for h in d.rule_hits] == ["contract.schema.invalid"]
    assert why in d.rule_hits[0].message


def test_repeated_keys_are_arrays_where_the_schema_has_one(policy: CompiledPolicy) -> None:
    assert form(policy, "amount=1&currency=usd&tags=a&tags=b") == []
    assert form(policy, "amount=1&currency=usd&tags=a") == []  # one item


def test_integer_and_number_formats_are_bounds(policy: CompiledPolicy) -> None:
    assert form(policy, "amount=1&currency=usd&small=2147483647") == []
    assert form(policy, "amount=1&currency=usd&small=2147483648") == ["contract.schema.invalid"]
    assert form(policy, "amount=1&currency=usd&small=-2147483649") == ["contract.schema.invalid"]
    assert form(policy, "amount=1&currency=usd&ratio=1e39") == ["contract.schema.invalid"]
    assert hits(policy, "GET", "/v1/charges", query={"limit": "2147483648"}) == [
        "contract.parameter.invalid"
    ]


# -- media types ----------------------------------------------------------------------------


def test_declared_media_types_are_enforced(policy: CompiledPolicy) -> None:
    d = decide(policy, "POST", "/v1/charges", body={"amount": 1, "currency": "usd"})
    assert ([h.id for h in d.rule_hits], d.status_code) == (["contract.mediaType"], 415)
    assert hits(policy, "POST", "/v1/json-only", raw="n=1", content_type=FORM) == [
        "contract.mediaType"
    ]
    assert hits(policy, "POST", "/v1/json-only", body={"n": 1}) == []
    # several types, each with its schema; a declared type without a schema is accepted
    assert hits(policy, "POST", "/v1/either", body={"n": 1}) == []
    assert hits(policy, "POST", "/v1/either", raw="n=1", content_type=FORM) == []
    assert hits(policy, "POST", "/v1/either", raw="n=x", content_type=FORM) == [
        "contract.schema.invalid"
    ]
    assert hits(policy, "POST", "/v1/either", raw="{}", content_type="text/plain") == []
    assert hits(policy, "POST", "/v1/either", raw="x", content_type="text/html") == [
        "contract.mediaType"
    ]
    # an adapter's parsed sample without a content type is JSON; raw bytes without one are not
    assert hits(policy, "POST", "/v1/json-only", sample={"n": 1}) == []
    assert hits(policy, "POST", "/v1/json-only", sample={"n": "x"}) == ["contract.schema.invalid"]
    assert hits(policy, "POST", "/v1/json-only", raw='{"n": 1}') == ["contract.mediaType"]
    # a body where the operation declares none; repeated Content-Type headers
    assert hits(policy, "POST", "/v1/no-body", raw="x=1", content_type=FORM) == [
        "contract.mediaType"
    ]
    assert hits(
        policy, "POST", "/v1/either", raw='{"n":1}', content_type=f"application/json, {FORM}"
    ) == ["contract.mediaType"]


# -- multipart ------------------------------------------------------------------------------


def test_multipart_parts_are_checked_against_their_properties(policy: CompiledPolicy) -> None:
    ok = multipart(
        part("purpose", b"dispute_evidence"),
        PNG,
        part("file_link_data[create]", b"true"),
        part("file_link_data[expires_at]", b"1700000000"),
        part("expand[]", b"file_link"),
        part("meta", b'{"pages": 3}', ctype="application/json"),
    )
    assert hits(policy, "POST", "/v1/files", raw=ok, content_type=MULTIPART) == []
    bad = [
        multipart(part("purpose", b"nope"), PNG),
        multipart(part("purpose", b"dispute_evidence")),  # file is required
        multipart(part("purpose", b"dispute_evidence"), PNG, part("file_link_data[create]", b"x")),
        multipart(part("purpose", b"dispute_evidence"), PNG, part("meta", b'{"pages": "x"}')),
        multipart(part("purpose", b"dispute_evidence"), PNG, part("meta", b"{not json")),
        multipart(part("purpose", b"dispute_evidence"), PNG, part("other", b"1")),
        # encoding.contentType: image/png, image/jpeg
        multipart(part("purpose", b"dispute_evidence"), part("file", b"<h1>", "a.html", "text/html")),
        # maxLength on a binary property counts bytes
        multipart(part("purpose", b"dispute_evidence"), part("file", b"\0" * 1001, "a.png", "image/png")),
    ]  # fmt: skip
    for raw in bad:
        assert hits(policy, "POST", "/v1/files", raw=raw, content_type=MULTIPART) == [
            "contract.schema.invalid"
        ], raw[:200]


def test_multipart_text_parts_reach_the_detectors(tmp_path: Path) -> None:
    shutil.copy(DATA / "forms30.yaml", tmp_path / "forms30.yaml")
    (tmp_path / "p.yaml").write_text(
        POLICY.replace("block}", "block, vulnerabilityChecks: {sqlInjection: true}}")
    )
    policy = load_policy(tmp_path / "p.yaml")
    raw = multipart(part("purpose", b"1' OR '1'='1' --"), PNG)
    found = hits(policy, "POST", "/v1/files", raw=raw, content_type=MULTIPART)
    assert "vulnerability.sqlInjection" in found


def test_a_form_body_to_a_multipart_operation_is_refused(policy: CompiledPolicy) -> None:
    assert hits(policy, "POST", "/v1/files", raw="purpose=x", content_type=FORM) == [
        "contract.mediaType"
    ]


# -- parameters -----------------------------------------------------------------------------


def test_any_of_object_or_integer_parameter(policy: CompiledPolicy) -> None:
    assert hits(policy, "GET", "/v1/charges", query={"created": "1690000000"}) == []
    assert hits(policy, "GET", "/v1/charges", query={"created[gte]": "1690000000"}) == []
    q = {"created[gte]": "1", "created[lt]": "2"}
    assert hits(policy, "GET", "/v1/charges", query=q) == []
    for bad in ({"created[gte]": "notanumber"}, {"created": "yesterday"}):
        assert hits(policy, "GET", "/v1/charges", query=bad) == ["contract.parameter.invalid"]
    both = {"created": "1", "created[gte]": "1"}
    assert hits(policy, "GET", "/v1/charges", query=both) == ["contract.parameter.invalid"]


def test_bracketed_query_keys_are_never_ignored(policy: CompiledPolicy) -> None:
    # an undeclared key under a deepObject parameter, with rejectUnknownParameters
    assert hits(policy, "GET", "/v1/charges", query={"created[foo]": "1"}) == [
        "contract.parameter.unknown"
    ]
    # brackets on a parameter of another style read as that parameter (Rails, PHP would)
    assert hits(policy, "GET", "/v1/charges", query={"limit[x]": "1"}) == [
        "contract.parameter.invalid"
    ]
    assert hits(policy, "GET", "/v1/charges", query={"created[gte": "1"}) == [
        "contract.parameter.invalid"
    ]
    assert hits(policy, "GET", "/v1/charges", query={"nope[a]": "1"}) == [
        "contract.parameter.unknown"
    ]


def test_array_parameters_by_style(policy: CompiledPolicy) -> None:
    ok = {"expand[]": "data.customer,data.invoice", "ids": "1,2", "colors": "red,blue",
          "range": "1.5|2"}  # fmt: skip
    assert hits(policy, "GET", "/v1/charges", query=ok) == []
    for bad in (
        {"ids": "1,x"},
        {"colors": "red,pink"},
        {"range": "1|2|3"},
        {"expand[0]": "a" * 51},
    ):
        assert hits(policy, "GET", "/v1/charges", query=bad) == ["contract.parameter.invalid"], bad


def test_content_cookie_and_header_parameters(policy: CompiledPolicy) -> None:
    assert hits(policy, "GET", "/v1/charges", query={"filter": '{"status":"paid"}'}) == []
    for bad in ('{"status":"void"}', "{bad json", '{"status":"paid","x":1}'):
        assert hits(policy, "GET", "/v1/charges", query={"filter": bad}) == [
            "contract.parameter.invalid"
        ], bad
    assert hits(policy, "GET", "/v1/charges", headers={"cookie": "a=1; session=s_abc1"}) == []
    assert hits(policy, "GET", "/v1/charges", headers={"cookie": "session=S-ABC"}) == [
        "contract.parameter.invalid"
    ]
    assert hits(policy, "GET", "/v1/charges", headers={"x-api-version": "2"}) == []
    assert hits(policy, "GET", "/v1/charges", headers={"x-api-version": "4294967296"}) == [
        "contract.parameter.invalid"
    ]
    # the parameter named in the message, not "body"
    assert "created.gte must be integer" in message(
        policy, "GET", "/v1/charges", query={"created[gte]": "x"}
    ) or "created" in message(policy, "GET", "/v1/charges", query={"created[gte]": "x"})


# -- from-openapi ---------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extauthz", "policy", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_from_openapi_writes_a_policy_that_loads_with_comments(tmp_path: Path) -> None:
    spec_dir = tmp_path / "api"
    spec_dir.mkdir()
    shutil.copy(DATA / "forms30.yaml", spec_dir / "forms30.yaml")
    out = tmp_path / "policies" / "nested"
    out.mkdir(parents=True)
    made = _cli("from-openapi", "api/forms30.yaml", "-o", "policies/nested/p.yaml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    text = (out / "p.yaml").read_text()
    assert "openapiRef: ../../api/forms30.yaml#/paths/~1charges/post" in text  # relative to -o
    assert "path: /v1/charges" in text  # the servers' prefix
    assert "# not checked:" in text and "application/xml" in text
    assert "/pairs/{a}{b}" in text and "skipped" in text  # the skipped operation, commented
    assert "warning:" in made.stderr
    checked = _cli("check", "policies/nested/p.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "OK" in checked.stdout and "warning:" in checked.stderr
    # without -o: relative to the current directory; --path-prefix replaces the servers'
    printed = _cli("from-openapi", "forms30.yaml", "--path-prefix", "/api", cwd=spec_dir)
    assert "openapiRef: forms30.yaml#/paths/~1charges/post" in printed.stdout
    assert "path: /api/charges" in printed.stdout
