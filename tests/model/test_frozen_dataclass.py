"""``frozen_dataclass`` behaves exactly like ``@dataclass(frozen=True, slots=True)``."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from extauthz import _http, context, decision
from extauthz._frozen import frozen_dataclass
from extauthz.server.decide import Outcome

CLASSES = [
    context.BodyJson,
    context.Body,
    context.HttpRequest,
    context.Identity,
    context.ClientInfo,
    context.RuntimeInfo,
    context.RequestContext,
    decision.RuleHit,
    decision.Risk,
    decision.DecisionMetadata,
    decision.Decision,
    Outcome,
    _http.HttpOut,  # one per HTTP answer
]


def plain_twin(cls: type) -> type:
    """The same fields and defaults under the standard decorator."""
    namespace: dict[str, object] = {"__annotations__": dict(cls.__annotations__)}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            namespace[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f.name] = dataclasses.field(default_factory=f.default_factory)
    return dataclasses.dataclass(frozen=True, slots=True)(type(cls.__name__, (), namespace))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_same_parameters_defaults_and_fields_as_a_plain_frozen_dataclass(cls: type) -> None:
    twin = plain_twin(cls)
    ours = inspect.signature(cls.__init__).parameters
    theirs = inspect.signature(twin.__init__).parameters
    assert list(ours) == list(theirs)
    for name, p in theirs.items():
        if p.default is inspect.Parameter.empty or repr(p.default) == "<factory>":
            continue  # factories: checked below by building instances
        assert ours[name].default == p.default, name
    assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in dataclasses.fields(twin)]
    assert cls.__slots__ == twin.__slots__


def test_instances_equal_those_built_the_standard_way() -> None:
    body = context.Body(True, 3, None, b"abc", None, True)
    req = context.HttpRequest("POST", "/x", {"a": "b"}, {}, "text/plain", None, "h", None, body)
    ctx = context.RequestContext(req, id="r1", timestamp="t")
    assert ctx.request.body.partial is True and ctx.request.headers == {"a": "b"}
    assert ctx.identity is context.ANONYMOUS and ctx.version == context.CONTEXT_VERSION
    twin = plain_twin(context.HttpRequest)
    built = twin("POST", "/x", {"a": "b"}, {}, "text/plain", None, "h", None, body)
    assert repr(req).split("(", 1)[1] == repr(built).split("(", 1)[1]
    assert pickle.loads(pickle.dumps(ctx)) == ctx
    assert dataclasses.replace(ctx, id="r2").id == "r2"


def test_default_factories_give_a_fresh_object_per_instance() -> None:
    a, b = context.HttpRequest("GET", "/"), context.HttpRequest("GET", "/")
    assert a.headers == {} and a.headers is not b.headers
    assert context.Identity().claims is not context.Identity().claims


def test_assignment_and_deletion_are_refused() -> None:
    d = decision.Decision("ALLOW")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.action = "BLOCK"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del d.reason  # type: ignore[misc]
    assert hash(d) == hash(decision.Decision("ALLOW"))


def test_wrong_arguments_fail_like_any_init() -> None:
    with pytest.raises(TypeError):
        decision.RuleHit("id", "high")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        decision.Risk(1, "low", "extra")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        decision.Risk(nope=1)  # type: ignore[call-arg]


def test_unsupported_dataclass_features_are_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="__post_init__"):

        @frozen_dataclass
        class WithPost:
            a: int

            def __post_init__(self) -> None: ...

    with pytest.raises(TypeError, match="plain fields"):

        @frozen_dataclass
        class KwOnly:
            a: int = dataclasses.field(kw_only=True)


@frozen_dataclass
class Wide:
    """Enough fields for the class-switching ``__init__`` (``SWITCH_FIELDS``)."""

    a: int
    b: str = "b"
    c: tuple[int, ...] = ()
    d: dict[str, int] = dataclasses.field(default_factory=dict)
    e: object = None


@frozen_dataclass
class Narrow:
    a: int
    b: str = "b"


def test_both_init_paths_build_what_the_standard_init_builds() -> None:
    from extauthz._frozen import SWITCH_FIELDS

    assert len(dataclasses.fields(Wide)) >= SWITCH_FIELDS > len(dataclasses.fields(Narrow))
    for cls, args in ((Wide, (1, "x", (2,), {"k": 3}, "e")), (Narrow, (1, "x"))):
        twin = plain_twin(cls)
        for n in range(1, len(args) + 1):
            ours, theirs = cls(*args[:n]), twin(*args[:n])
            assert type(ours) is cls
            assert dataclasses.astuple(ours) == dataclasses.astuple(theirs)
            with pytest.raises(dataclasses.FrozenInstanceError):
                ours.a = 2  # type: ignore[misc]
    assert Wide(1).d is not Wide(1).d


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_instance_is_of_its_class(cls: type) -> None:
    required = [
        f for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]  # fmt: skip
    built = cls(*[None] * len(required))
    assert type(built) is cls
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, dataclasses.fields(cls)[0].name, None)


def test_subclasses_and_failing_factories() -> None:
    class Sub(Wide):  # not a dataclass: its instances have their own layout (a __dict__)
        pass

    s = Sub(7, e="x")
    assert type(s) is Sub and (s.a, s.b, s.e) == (7, "b", "x") and s.d == {}

    def boom() -> dict[str, int]:
        raise RuntimeError("factory failed")

    @frozen_dataclass
    class Failing:
        a: int
        b: int = 0
        c: int = 0
        d: dict[str, int] = dataclasses.field(default_factory=boom)

    with pytest.raises(RuntimeError, match="factory failed"):
        Failing(1)
    assert Failing(1, 2, 3, {}).d == {}
