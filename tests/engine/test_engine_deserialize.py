"""engine.deserialize: schema shapes, coercion and bracketed keys, on their own."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from extauthz.engine.deserialize import Encoding, build, parse_key, shape_of

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "n": {"type": "integer"},
        "x": {"type": "number"},
        "flag": {"type": "boolean"},
        "s": {"type": "string"},
        "either": {"anyOf": [{"type": "integer"}, {"type": "string", "enum": [""]}]},
        "tags": {"type": "array", "items": {"type": "integer"}},
        "obj": {"$ref": "#/$defs/Obj"},
        "list": {"type": "array", "items": {"$ref": "#/$defs/Obj"}},
        "map": {"type": "object", "additionalProperties": {"type": "integer"}},
        "lit[eral]": {"type": "integer"},
        "csv": {"type": "array", "items": {"type": "integer"}},
        "kv": {"type": "object", "properties": {"a": {"type": "integer"}}},
    },
    "$defs": {
        "Obj": {
            "type": "object",
            "properties": {"k": {"type": "integer"}, "o": {"$ref": "#/$defs/Obj"}},
        }
    },
}
SHAPE = shape_of(SCHEMA)


def built(*pairs: tuple[str, str], **encodings: Encoding) -> tuple[dict[str, Any], list[str]]:
    return build(pairs, SHAPE, encodings)


def test_parse_key() -> None:
    assert parse_key("a[b][0][]") == ["a", "b", "0", ""]
    assert parse_key("a") is None
    for bad in ("a[b", "a]b[", "[a]", "a[b]c", "a[b]]", "a[[b]]"):
        assert parse_key(bad) is None, bad


def test_scalars_are_coerced_by_the_schema() -> None:
    value, problems = built(("n", "5"), ("x", "1.5"), ("flag", "true"), ("s", "5"), ("either", ""))
    assert (value, problems) == ({"n": 5, "x": 1.5, "flag": True, "s": "5", "either": ""}, [])
    assert built(("either", "7"))[0] == {"either": 7}
    assert built(("n", "five"))[0] == {"n": "five"}  # left for the schema to refuse
    assert built(("n", "0x10"), ("x", "1e999999"))[0] == {"n": "0x10", "x": "1e999999"}


def test_nesting_arrays_and_recursion() -> None:
    value, problems = built(
        ("obj[k]", "1"), ("obj[o][o][k]", "2"), ("list[1][k]", "4"), ("list[0][k]", "3"),
        ("map[a]", "9"), ("tags", "1"), ("tags", "2"), ("lit[eral]", "8"),
    )  # fmt: skip
    assert problems == []
    assert value == {
        "obj": {"k": 1, "o": {"o": {"k": 2}}},
        "list": [{"k": 3}, {"k": 4}],  # by index, compacted
        "map": {"a": 9},
        "tags": [1, 2],
        "lit[eral]": 8,  # declared with its brackets: taken as it is
    }


def test_styles_of_top_level_properties() -> None:
    value, problems = built(
        ("csv", "1,2,3"), ("kv", "a,5"),
        csv=Encoding("form", explode=False), kv=Encoding("form", explode=False),
    )  # fmt: skip
    assert (value, problems) == ({"csv": [1, 2, 3], "kv": {"a": 5}}, [])
    assert built(("csv", "1|2"), csv=Encoding("pipeDelimited", False))[0] == {"csv": [1, 2]}


def test_what_frameworks_read_differently_is_a_problem() -> None:
    for pairs in (
        [("n", "1"), ("n", "2")],
        [("obj", "x"), ("obj[k]", "1")],
        [("obj[k]", "1"), ("obj", "x")],
        [("list[][k]", "1")],
        [("tags[]", "1"), ("tags[0]", "2")],
        [("list[0][k]", "1"), ("list[x]", "1")],
    ):
        assert build(pairs, SHAPE)[1], pairs


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(alphabet="ab[]0123", max_size=12), st.text(alphabet="1a,", max_size=4)),
        max_size=12,
    )
)
def test_any_pairs_give_a_value_or_problems_never_an_exception(
    pairs: list[tuple[str, str]],
) -> None:
    value, problems = build(pairs, SHAPE)
    assert isinstance(value, dict) and isinstance(problems, list)
