"""Our decisions against an independent OpenAPI request validator, openapi-core (issue 28
item 7).

Requests are generated from each description (tests/oracle/_oracle.py): valid ones must be
ALLOWed and one-mutation invalid ones BLOCKed by the policy ``extauthz policy from-openapi``
writes, decided as Envoy's ``CheckRequest`` reaches the engine. Every disagreement with
openapi-core must be one of its known errors, each pinned below with the reason it is
openapi-core that is wrong (docs/policy.md, "Agreement with openapi-core"). A fixed,
derandomized Hypothesis budget keeps the module bounded (~20-40 s on a quiet machine);
``bench/openapi_oracle.py`` runs a bigger one and prints the agreement rate.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import specgen
from tests.oracle._documents import OAI_EXAMPLES_AND_STYLES
from tests.oracle._oracle import (
    AUTH,
    BOUNDARY,
    FORM,
    MULTIPART,
    Outcome,
    Req,
    Subject,
    cases,
    decide,
    describe,
    load_subject,
    oracle,
    oracle_error,
    ours,
    without_unsupported_styles,
)

pytestmark = pytest.mark.timeout(300)

BUDGET = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
SHAPED = {
    "stripe-like": lambda: specgen.stripe_like(7, operations=40, schemas=60),
    "stripe-like-plain": lambda: without_unsupported_styles(
        specgen.stripe_like(7, operations=40, schemas=60)
    ),
    "github-like": lambda: specgen.github_like(7, operations=40, schemas=60),
}
DOCUMENTS = {**OAI_EXAMPLES_AND_STYLES, **SHAPED}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oracle")


@pytest.fixture(scope="module")
def subjects() -> dict[str, Subject]:
    """Loaded documents, by name (each loaded once, when a test first needs it)."""
    return {}


def _subject(subjects: dict[str, Subject], workdir: Path, name: str) -> Subject:
    if name not in subjects:
        subjects[name] = load_subject(name, DOCUMENTS[name](), workdir)
    return subjects[name]


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_generated_requests_decided_as_the_description_says(
    name: str, subjects: dict[str, Subject], workdir: Path
) -> None:
    subject = _subject(subjects, workdir, name)
    seen: list[Outcome] = []

    @BUDGET
    @given(st.data())
    def check(data: st.DataObject) -> None:
        o = decide(subject, data.draw(cases(subject)))
        seen.append(o)
        # ours: what the description says (valid ALLOWed, mutated BLOCKed)
        assert o.we_are_right, describe(o)
        # openapi-core: the same, or one of its known errors
        assert o.agree or oracle_error(o) is not None, describe(o)

    check()
    assert len(seen) >= 4  # api-with-examples has two parameterless operations only
    assert any(o.case.valid for o in seen) and any(not o.case.valid for o in seen)
    if name != "stripe-like":  # openapi-core decides nothing on Stripe's list shapes
        assert any(o.agree and o.case.valid for o in seen)
        # api-with-examples has no invalid request but a body openapi-core does not look at
        assert any(o.agree and not o.case.valid for o in seen) or name == "api-with-examples"


# -- openapi-core's known errors, pinned ----------------------------------------------------


def test_oracle_error_a_body_on_an_operation_without_request_body(
    subjects: dict[str, Subject], workdir: Path
) -> None:
    """openapi-core validates a body only against a declared ``requestBody``: a JSON body sent
    to ``GET /pets/{petId}`` passes. We answer 415 (``contract.mediaType``): the upstream was
    not described as taking one, so what it does with it is unchecked (docs/policy.md)."""
    s = _subject(subjects, workdir, "petstore")
    req = Req("GET", "/v1/pets/7", "", (("content-type", "application/json"),), b'{"a": 1}')
    assert oracle(s.oracle, req) == (True, "")
    assert ours(s.policy, req) == (False, ("contract.mediaType",))
    # without the body both allow it
    bare = Req("GET", "/v1/pets/7", "", ())
    assert oracle(s.oracle, bare)[0] is True and ours(s.policy, bare)[0] is True


def test_oracle_error_a_default_does_not_fill_a_required_property(
    subjects: dict[str, Subject], workdir: Path
) -> None:
    """uspto's search form requires ``criteria`` and gives it ``default: '*:*'``. openapi-core
    fills the default in before validating, so a form without ``criteria`` passes. In JSON
    Schema (and OpenAPI) ``default`` is an annotation: a missing required property is
    invalid, and the upstream, which receives the form without it, was promised one."""
    s = _subject(subjects, workdir, "uspto")
    req = Req("POST", "/ds-api/a/v1/records", "", (("content-type", FORM),), b"rows=632")
    assert oracle(s.oracle, req) == (True, "")
    allowed, hits = ours(s.policy, req)
    assert (allowed, hits) == (False, ("contract.schema.invalid",))
    good = Req("POST", "/ds-api/a/v1/records", "", (("content-type", FORM),), b"criteria=x")
    assert oracle(s.oracle, good)[0] is True and ours(s.policy, good)[0] is True


def test_oracle_cannot_decide_stripe_deep_object_shapes(
    subjects: dict[str, Subject], workdir: Path
) -> None:
    """Stripe's list operations declare ``created`` as a deepObject ``anyOf [object, integer]``
    and ``expand`` as a deepObject array; openapi-core raises ``DeserializeError`` on every
    request to them (even one without those parameters), so it gives no verdict there. We
    read both forms (docs/policy.md, deepObject), and block a bad one."""
    s = _subject(subjects, workdir, "stripe-like")
    path = s.prefix + next(op.path for op in s.ops if op.method == "GET" and "{" not in op.path)
    for query, allowed in (
        ("", True),
        ("created=1690000000", True),
        ("created%5Bgte%5D=1690000000", True),
        ("expand%5B0%5D=data", True),
        ("created%5Bgte%5D=notanumber", False),
        ("created=soon", False),
    ):
        req = Req("GET", path, query, (AUTH,))  # its security: basic or bearer
        verdict, says = oracle(s.oracle, req)
        assert verdict is None and "DeserializeError" in says, (query, says)
        assert ours(s.policy, req)[0] is allowed, query


def test_both_agree_on_plain_cases(subjects: dict[str, Subject], workdir: Path) -> None:
    """The harness itself: a few hand-written requests both validators decide alike."""
    s = _subject(subjects, workdir, "petstore")
    json_ct = (("content-type", "application/json"),)
    for req, allowed in (
        (Req("GET", "/v1/pets", "limit=10", ()), True),
        (Req("GET", "/v1/pets", "limit=101", ()), False),
        (Req("GET", "/v1/pets", "limit=x", ()), False),
        (Req("POST", "/v1/pets", "", json_ct, b'{"id": 1, "name": "a"}'), True),
        (Req("POST", "/v1/pets", "", json_ct, b'{"id": "1", "name": "a"}'), False),
        (Req("POST", "/v1/pets", "", json_ct, b'{"name": "a"}'), False),
    ):
        assert oracle(s.oracle, req)[0] is allowed, req
        assert ours(s.policy, req)[0] is allowed, req


def test_oracle_error_form_keys_outside_the_schema(
    subjects: dict[str, Subject], workdir: Path
) -> None:
    """A Stripe-shaped form body is ``additionalProperties: false``. openapi-core builds the
    object from the schema's ``properties`` only, so an undeclared key never reaches its
    validation and the form passes; the upstream (Rails, PHP, Stripe's own) receives it. We
    build the object from every pair and refuse the undeclared key."""
    s = _subject(subjects, workdir, "stripe-like-plain")
    op = next(o for o in s.ops if o.method == "DELETE")  # its form body declares nothing
    path = s.prefix + op.path.replace("{", "").replace("}", "")
    req = Req("DELETE", path, "", (AUTH, ("content-type", FORM)), b"zz_undeclared=1")
    assert oracle(s.oracle, req) == (True, "")
    assert ours(s.policy, req) == (False, ("contract.schema.invalid",))


def test_oracle_error_nested_deep_object_keys(subjects: dict[str, Subject], workdir: Path) -> None:
    """OpenAPI defines ``deepObject`` one level deep (``a[b]=1``); Stripe, Rails and PHP nest
    (``a[b][c]=1``, ``a[b][0]=x``), and Stripe-shaped form properties are nested objects with
    ``deepObject`` encoding. openapi-core reads the first level only, so a nested array or
    object arrives as a string and a valid form is refused (``CastError``). We build the
    nested value (docs/policy.md, form bodies) and check it against the schema."""
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "nested", "version": "1"},
        "paths": {
            "/charges": {
                "post": {
                    "requestBody": {
                        "content": {
                            FORM: {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "shipping": {
                                            "type": "object",
                                            "properties": {
                                                "tags": {"type": "array", "items": {"type": "string"}},
                                                "address": {
                                                    "type": "object",
                                                    "properties": {"line": {"type": "string"}},
                                                },
                                            },
                                        }
                                    },
                                },
                                "encoding": {"shipping": {"style": "deepObject", "explode": True}},
                            }
                        }
                    },
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }  # fmt: skip
    s = load_subject("nested", doc, workdir)
    ctype = (("content-type", FORM),)
    one_level = Req("POST", "/charges", "", ctype, b"shipping%5Btags%5D=a")
    nested = Req("POST", "/charges", "", ctype, b"shipping%5Btags%5D%5B0%5D=a")
    deeper = Req("POST", "/charges", "", ctype, b"shipping%5Baddress%5D%5Bline%5D=x")
    for req in (nested, deeper):
        verdict, says = oracle(s.oracle, req)
        assert verdict is False and "CastError" in says, says
        assert ours(s.policy, req) == (True, ())
    # one level deep, both read a string where the schema has an array
    assert oracle(s.oracle, one_level)[0] is False
    assert ours(s.policy, one_level)[0] is True  # a repeated-or-single key is a 1-item array


def test_oracle_error_label_and_matrix_path_styles(
    subjects: dict[str, Subject], workdir: Path
) -> None:
    """openapi-core finds no value for a ``label`` (``.1,2``) or ``matrix`` (``;id=1;id=2``)
    path parameter and reports it missing, whatever its value: it refuses every valid request.
    We read both styles (docs/policy.md, the style table) and check the values."""
    s = _subject(subjects, workdir, "styles")
    for path, allowed in (
        ("/styles/points/.1,2/;matrix=3;matrix=4/5", True),
        ("/styles/points/.1,2/;matrix=3;matrix=x/5", False),  # an item is not an integer
        ("/styles/points/.1,2001/;matrix=3/5", False),  # an item above the maximum
        ("/styles/points/1,2/;matrix=3/5", False),  # label without its '.'
    ):
        req = Req("GET", path, "", ())
        verdict, says = oracle(s.oracle, req)
        assert verdict is False and "MissingRequiredParameter" in says, says
        assert ours(s.policy, req)[0] is allowed, path


def test_oracle_error_space_delimited_and_multipart(
    subjects: dict[str, Subject], workdir: Path
) -> None:
    """Two of openapi-core's gaps on valid requests. ``spaceDelimited`` arrays are not split
    (``spaced=red%20blue`` is the one item ``'red blue'``, not in the enum). A multipart text
    part is validated as the string it is (``pages`` = ``'3'`` is not an integer), where its
    ``urlencoded`` twin is coerced; OpenAPI serializes primitive properties as ``text/plain``
    parts, so the text is the integer. An undeclared part is dropped unseen, as a form key is."""
    s = _subject(subjects, workdir, "styles")
    spaced = Req("GET", "/styles/query", "count=1&spaced=red%20blue", ())
    assert oracle(s.oracle, spaced)[0] is False
    assert ours(s.policy, spaced) == (True, ())
    not_listed = Req("GET", "/styles/query", "count=1&spaced=red%20pink", ())
    assert ours(s.policy, not_listed) == (False, ("contract.parameter.invalid",))

    def upload(*parts: tuple[str, str]) -> Req:
        body = (
            b"".join(
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n'.encode()
                for n, v in parts
            )
            + f"--{BOUNDARY}--\r\n".encode()
        )
        ctype = ("content-type", f"{MULTIPART}; boundary={BOUNDARY}")
        return Req("POST", "/styles/uploads", "", (ctype,), body)

    pages = upload(("file", "abc"), ("purpose", "avatar"), ("pages", "3"))
    verdict, says = oracle(s.oracle, pages)
    assert verdict is False and "is not of type 'integer'" in says
    assert ours(s.policy, pages) == (True, ())
    assert (
        ours(s.policy, upload(("file", "abc"), ("purpose", "avatar"), ("pages", "0")))[0] is False
    )
    # a file part is bytes to openapi-core, and JSON Schema's maxLength passes non-strings: a
    # 65-byte file passes 'maxLength: 64'. The upstream gets the 65 bytes; we count them.
    big = upload(("file", "a" * 65), ("purpose", "avatar"))
    assert oracle(s.oracle, big) == (True, "")
    assert ours(s.policy, big) == (False, ("contract.schema.invalid",))
    # with an `encoding` entry that names no contentType, the parts of an array of strings are
    # bytes to openapi-core (OpenAPI's default for string items is text/plain), so not strings
    nested = load_subject("text", _one_property_upload(), workdir)
    note = upload(("notes", "café"), ("notes", "tea"))
    verdict, says = oracle(nested.oracle, note)
    assert verdict is False and "is not of type 'string'" in says
    assert ours(nested.policy, note) == (True, ())
    extra = upload(("file", "abc"), ("purpose", "avatar"), ("zz", "1"))
    assert oracle(s.oracle, extra) == (True, "")
    assert ours(s.policy, extra) == (False, ("contract.schema.invalid",))


def _one_property_upload() -> dict[str, object]:
    return {
        "openapi": "3.0.0",
        "info": {"title": "text", "version": "1"},
        "servers": [{"url": "/styles"}],
        "paths": {"/uploads": {"post": {
            "requestBody": {"content": {MULTIPART: {
                "schema": {"type": "object",
                           "properties": {"notes": {"type": "array", "items": {"type": "string"}}}},
                "encoding": {"notes": {"style": "form", "explode": True}}}}},
            "responses": {"200": {"description": "ok"}}}}},
    }  # fmt: skip
