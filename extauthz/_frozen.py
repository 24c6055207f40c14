"""``frozen_dataclass``: ``@dataclass(frozen=True, slots=True)`` with a cheaper ``__init__``.

A frozen dataclass's ``__init__`` stores each field with ``object.__setattr__`` (the frozen
``__setattr__`` refuses), ~90 ns a field. The classes built on every check (the request
context, the decision, the server's outcome) have ~40 fields between them: ~5 µs of a ~48 µs
check. Storing through each slot's own descriptor (``Cls.field.__set__``) skips the generic
attribute machinery: ~3 µs (measured on this machine, interleaved, 7 classes per check).
From ``SWITCH_FIELDS`` fields up, cheaper still: the new instance becomes an instance of a
twin class with the same slots and no frozen ``__setattr__`` (``__class__`` assignment,
which CPython allows between identical layouts), takes plain slot stores, and becomes a
``cls`` again: ~8.5k of ~358k instructions a check through a real server
(``bench/door_instructions.py``). Everything else is the dataclass's own: fields, defaults, ``repr``,
``eq``, ``hash``, ``replace``, pickling, and ``FrozenInstanceError`` on assignment.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

_MISSING_ARG = object()  # "not given" for a field with a default_factory


@dataclass_transform(frozen_default=True)
def frozen_dataclass(cls: type[T]) -> type[T]:
    """A frozen, slotted dataclass whose ``__init__`` sets slots through their descriptors."""
    cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
    cls.__init__ = _fast_init(cls)  # type: ignore[misc]
    return cls


#: From this many fields up, ``__init__`` stores through a mutable twin (``_twin``).
SWITCH_FIELDS = 4


def _fast_init(cls: type) -> Any:
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: frozen_dataclass does not support __post_init__")
    namespace: dict[str, Any] = {"_MISSING_ARG": _MISSING_ARG, "_cls": cls}
    params: list[str] = []
    setters: list[str] = []  # through each slot's descriptor
    stores: list[str] = []  # plain stores on the twin
    fields = dataclasses.fields(cls)
    for i, f in enumerate(fields):
        if not f.init or f.kw_only or isinstance(f.type, dataclasses.InitVar):
            raise TypeError(f"{cls.__name__}.{f.name}: frozen_dataclass supports plain fields only")
        setter = f"_set{i}"
        namespace[setter] = cls.__dict__[f.name].__set__  # the slot's member descriptor
        value = f.name
        if f.default is not dataclasses.MISSING:
            namespace[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory{i}"] = f.default_factory
            params.append(f"{f.name}=_MISSING_ARG")
            value = f"_factory{i}() if {f.name} is _MISSING_ARG else {f.name}"
        else:
            params.append(f.name)
        setters.append(f"{setter}(self, {value})")
        stores.append(f"self.{f.name} = {value}")
    twin = _twin(cls) if len(fields) >= SWITCH_FIELDS else None
    if twin is None:
        lines = setters or ["pass"]
    else:
        # A plain store on a slot is a few bytecodes; a descriptor's ``__set__`` is a call
        # (~600 instructions a field): past a few fields, two class switches cost less.
        namespace.update(_twin=twin, _switch=object.__dict__["__class__"].__set__)
        lines = [
            "if type(self) is _cls:",
            "    _switch(self, _twin)",
            *(f"    {line}" for line in stores),
            "    self.__class__ = _cls",
            "else:  # a subclass: its own layout",
            *(f"    {line}" for line in setters),
        ]
    body = "\n".join(f"    {line}" for line in lines)
    source = f"def __init__(self, {', '.join(params)}):\n{body}"
    exec(source, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    return init


def _twin(cls: type) -> type | None:
    """A class with ``cls``'s slots and layout and no frozen ``__setattr__``: an instance of
    ``cls`` may become one (``__class__`` assignment checks the layouts match), take plain
    slot stores, and become a ``cls`` again. None when ``cls`` has a base other than object."""
    if cls.__bases__ != (object,):
        return None
    return type(f"_{cls.__name__}Init", (), {"__slots__": cls.__slots__})
