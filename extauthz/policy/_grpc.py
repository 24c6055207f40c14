"""gRPC methods for routes: descriptor sets read at policy load, one message class and one
protovalidate validator per method, compiled once per load.

A descriptor set is ``protoc --descriptor_set_out=api.binpb --include_imports`` (or ``buf
build -o api.binpb``): a ``FileDescriptorSet`` with every file the services need. Each set
becomes its own ``DescriptorPool`` (two sets may define the same names differently), cached
per load by path.

``ProtoMethod.decode`` is what the engine calls (``engine.decoders.grpc.GrpcMethod``): the
payload parsed into the method's input message, unknown fields (anywhere in the message) and
``buf.validate`` violations reported as problems, the JSON mapping as the body the other
checks read. It never raises: a payload protobuf refuses is malformed, a message nested past
the depth limit is refused before it is mapped.

protovalidate is optional (``pip install 'extauthz[grpc]'``): a route whose
message carries ``buf.validate`` rules is refused at load without it, unless it says
``protovalidate: false``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf import message as pb_message
from google.protobuf import unknown_fields as pb_unknown

from ..engine.checks.contract import PROTOVALIDATE, UNKNOWN_FIELD
from ..engine.decoders._base import JSON, MALFORMED, TOO_DEEP, ParsedBody

VALIDATE_PROTO = "buf/validate/validate.proto"
ANY_TYPE = "google.protobuf.Any"
_MAX_VIOLATIONS = 20  # hits per message: enough to fix a request, bounded for a hostile one


class GrpcProblem(ValueError):
    """A descriptor set or method a route cannot use; the message says why."""


@dataclass(frozen=True, slots=True)
class DescriptorSet:
    """One loaded descriptor set: its pool and the methods of its services."""

    path: Path
    pool: descriptor_pool.DescriptorPool
    methods: dict[str, Any]  # "/pkg.Service/Method" -> MethodDescriptor
    files_with_rules: frozenset[str]  # files that import buf/validate/validate.proto (deeply)
    data: bytes = b""  # the serialised set: what a compiled method is rebuilt from (pickling)


def read_descriptor_set(path: Path, max_bytes: int) -> tuple[DescriptorSet, bytes]:
    """Parse ``path``; raise ``GrpcProblem``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GrpcProblem(f"descriptor set not found: {path}") from None
    except IsADirectoryError:
        raise GrpcProblem(f"descriptor set path is a directory: {path}") from None
    except OSError as exc:
        raise GrpcProblem(f"descriptor set cannot be read: {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise GrpcProblem(f"descriptor set {path}: {len(data)} bytes is larger than {max_bytes}")
    return parse_descriptor_set(data, path), data


def parse_descriptor_set(data: bytes, path: Path) -> DescriptorSet:
    """The set in ``data`` (read from ``path``); raise ``GrpcProblem``."""
    try:
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    except (pb_message.DecodeError, RecursionError, ValueError) as exc:
        raise GrpcProblem(f"{path} is not a FileDescriptorSet: {exc}") from None
    if not fds.file:
        raise GrpcProblem(f"{path} holds no files (an empty or non-descriptor file)")
    pool = descriptor_pool.DescriptorPool()
    deps: dict[str, list[str]] = {}
    for f in fds.file:
        try:
            pool.Add(f)
        except (TypeError, ValueError, KeyError) as exc:
            raise GrpcProblem(
                f"{path}: {f.name or '<unnamed file>'} does not load ({exc}); build the set "
                "with --include_imports"
            ) from None
        deps[f.name] = list(f.dependency)
    methods: dict[str, Any] = {}
    try:
        for f in fds.file:
            fd = pool.FindFileByName(f.name)
            for service in fd.services_by_name.values():
                for m in service.methods:
                    methods[f"/{service.full_name}/{m.name}"] = m
    except (KeyError, TypeError) as exc:
        raise GrpcProblem(f"{path}: {exc} (build the set with --include_imports)") from None
    rules = frozenset(_importing(VALIDATE_PROTO, deps))
    return DescriptorSet(path, pool, methods, rules, data)


def _importing(target: str, deps: dict[str, list[str]]) -> set[str]:
    """The files that import ``target``, directly or not."""
    found: set[str] = set()
    memo: dict[str, bool] = {}

    def reaches(name: str, seen: frozenset[str]) -> bool:
        if name in memo:
            return memo[name]
        hit = any(
            d == target or (d not in seen and reaches(d, seen | {d})) for d in deps.get(name, ())
        )
        memo[name] = hit
        return hit

    for name in deps:
        if reaches(name, frozenset({name})):
            found.add(name)
    return found


def protovalidate_missing() -> str | None:
    """Why protovalidate cannot run here, or None."""
    try:
        import protovalidate  # noqa: F401
    except ImportError as exc:
        return (
            f"the message has buf.validate rules and protovalidate is not installed ({exc}); "
            "pip install 'extauthz[grpc]', or set protovalidate: false"
        )
    return None


@dataclass(frozen=True, slots=True)
class ProtoMethod:
    """A route's gRPC method (``engine.decoders.grpc.GrpcMethod``)."""

    path: str
    streaming: bool
    first_message: bool
    message_class: Any
    reject_unknown: bool
    validator: Any = None  # a protovalidate.Validator, or None: constraints not checked
    input_type: str = field(default="")
    # (set bytes, set path): how ``__reduce__`` rebuilds the method in another process (a
    # reload compiled in a child, ``policy._child``): message classes and validators cannot
    # be pickled, the set they come from can
    source: tuple[bytes, str] = (b"", "")
    # the message reaches a google.protobuf.Any, which json_format maps to an OrderedDict:
    # the checks walk plain dicts and lists only (``type(x) is dict``), so it is copied plain
    plain_copy: bool = False

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        options = (self.reject_unknown, self.first_message, self.validator is not None)
        return _rebuild_method, (*self.source, self.path, *options)

    def decode(self, payload: bytes, max_depth: int) -> ParsedBody:
        try:
            msg = self.message_class.FromString(payload)
        except pb_message.DecodeError as exc:
            return ParsedBody(MALFORMED, error=f"not a {self.input_type} message: {exc}"[:300])
        except (RecursionError, ValueError, TypeError, OverflowError) as exc:
            return ParsedBody(MALFORMED, error=f"not a {self.input_type} message: {exc}"[:300])
        try:
            problems: list[tuple[str, str]] = []
            if self.reject_unknown and _has_unknown(msg):
                depth, unknown = _walk(msg, max_depth)  # to name them (and where)
                if depth > max_depth:
                    return ParsedBody(TOO_DEEP, depth=depth)
                problems.append((UNKNOWN_FIELD, "unknown field(s): " + ", ".join(unknown[:20])))
            if self.validator is not None:
                problems.extend(self._violations(msg))
            value = json_format.MessageToDict(
                msg,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
                descriptor_pool=msg.DESCRIPTOR.file.pool,  # google.protobuf.Any: the set's types
            )
        except (RecursionError, ValueError, TypeError, OverflowError, KeyError) as exc:
            # e.g. an Any naming a type the set does not have: not mappable, so not checkable
            return ParsedBody(MALFORMED, error=f"{self.input_type}: {exc}"[:300])
        if self.plain_copy:
            value = _plain(value)
        # depth -1: the limits phase measures the mapping, as it does a JSON body's (protobuf
        # itself refuses a message nested past its recursion limit, 100, as malformed)
        return ParsedBody(JSON, value, None, -1, problems=tuple(problems), grpc=True)

    def _violations(self, msg: Any) -> Iterator[tuple[str, str]]:
        try:
            found = self.validator.collect_violations(msg)
        except Exception as exc:  # a rule that fails to evaluate: refused, never skipped
            yield (PROTOVALIDATE, f"buf.validate rules could not be evaluated: {exc}"[:300])
            return
        for v in found[:_MAX_VIOLATIONS]:
            proto = v.proto
            where = _field_path(proto.field)
            yield (PROTOVALIDATE, f"{where or '(message)'}: {proto.rule_id}: {proto.message}")


def _field_path(path: Any) -> str:
    """``items[0].sku`` from a ``buf.validate.FieldPath`` (protovalidate's own message type)."""
    out = ""
    for e in path.elements:
        out += ("." if out else "") + e.field_name
        sub = getattr(e, "subscript", None)  # a Oneof(field, value): index or map key
        if sub is not None:
            value = sub.value
            out += f"[{value}]" if sub.field == "index" else f"[{value!r}]"
    return out


def _has_unknown(msg: Any) -> bool:
    """Whether the message holds unknown fields anywhere: they are the only bytes a copy
    without them lacks (a C-level copy, far cheaper than walking every submessage)."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    copy.DiscardUnknownFields()
    return copy.ByteSize() != msg.ByteSize()


def _walk(msg: Any, max_depth: int) -> tuple[int, list[str]]:
    """(message nesting depth, dotted names of unknown fields); iterative, stops past
    ``max_depth``."""
    unknown: list[str] = []
    depth = 0
    stack: list[tuple[Any, int, str]] = [(msg, 1, "")]
    while stack:
        m, d, at = stack.pop()
        if d > depth:
            depth = d
            if depth > max_depth:
                break
        for f in pb_unknown.UnknownFieldSet(m):
            unknown.append(f"{at}#{f.field_number}" if at else f"#{f.field_number}")
        for fd, value in m.ListFields():
            if fd.message_type is None:
                continue
            name = f"{at}.{fd.name}" if at else fd.name
            if fd.message_type.GetOptions().map_entry:
                if fd.message_type.fields_by_name["value"].message_type is not None:
                    stack.extend((v, d + 1, f"{name}[{k!r}]") for k, v in value.items())
            elif fd.is_repeated:
                stack.extend((v, d + 1, f"{name}[{i}]") for i, v in enumerate(value))
            else:
                stack.append((value, d + 1, name))
    return depth, unknown


def method_for(
    sets: DescriptorSet,
    path: str,
    *,
    reject_unknown: bool,
    first_message: bool,
    protovalidate: bool,
) -> ProtoMethod:
    """The compiled method at ``path`` ("/pkg.Service/Method"); raise ``GrpcProblem``."""
    m = sets.methods.get(path)
    if m is None:
        known = ", ".join(sorted(sets.methods)[:10]) or "none"
        raise GrpcProblem(f"{sets.path} has no method {path} (it has: {known})")
    cls = message_factory.GetMessageClass(m.input_type)
    validator = None
    if protovalidate and _rule_files(m, sets):
        missing = protovalidate_missing()
        if missing is not None:
            raise GrpcProblem(missing)
        import protovalidate as pv

        validator = pv.Validator()
        try:  # compiles the message's rules now, not on the first request
            validator.collect_violations(cls())
        except Exception as exc:
            raise GrpcProblem(f"buf.validate rules of {m.input_type.full_name}: {exc}") from None
    return ProtoMethod(
        path=path,
        streaming=bool(m.client_streaming),
        first_message=first_message,
        message_class=cls,
        reject_unknown=reject_unknown,
        validator=validator,
        input_type=m.input_type.full_name,
        source=(sets.data, str(sets.path)),
        plain_copy=ANY_TYPE in _reachable_types(m.input_type),
    )


@functools.lru_cache(maxsize=16)
def _unpickled_set(data: bytes, path: str) -> DescriptorSet:
    return parse_descriptor_set(data, Path(path))  # one pool per set, as in the child


def _rebuild_method(
    data: bytes,
    path: str,
    method_path: str,
    reject_unknown: bool,
    first_message: bool,
    protovalidate: bool,
) -> ProtoMethod:
    """``ProtoMethod.__reduce__``'s other half: the same method compiled from the same set."""
    return method_for(
        _unpickled_set(data, path),
        method_path,
        reject_unknown=reject_unknown,
        first_message=first_message,
        protovalidate=protovalidate,
    )


def _reachable_types(root: Any) -> dict[str, Any]:
    """Every message type ``root`` reaches through its fields, by full name."""
    seen: dict[str, Any] = {}
    stack = [root]
    while stack:
        t = stack.pop()
        if t.full_name in seen:
            continue
        seen[t.full_name] = t
        stack.extend(f.message_type for f in t.fields if f.message_type is not None)
    return seen


def _rule_files(m: Any, sets: DescriptorSet) -> set[str]:
    """Files of message types the input message reaches (their rules apply to it too)."""
    files = {t.file.name for t in _reachable_types(m.input_type).values()}
    return files & sets.files_with_rules


def _plain(value: Any) -> Any:
    """``value`` with every mapping a plain ``dict`` (iterative: nesting is not bounded here)."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        parent, key = stack.pop()
        node = parent[key]
        if isinstance(node, dict):
            node = parent[key] = dict(node)
            stack.extend((node, k) for k in node)
        elif isinstance(node, list):
            stack.extend((node, i) for i in range(len(node)))
    return root[0]


def split_path(path: str) -> tuple[str, str] | None:
    """("pkg.Service", "Method") of a gRPC path "/pkg.Service/Method", or None."""
    parts = path.split("/")
    if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
        return None
    if not all(c.isalnum() or c in "._" for c in parts[1] + parts[2]):
        return None
    return parts[1], parts[2]


def policy_from_descriptors(path: Path, ref: str, max_bytes: int) -> dict[str, Any]:
    """A policy document with one route per method of the set's services (raise
    ``GrpcProblem``): unary methods checked, streaming ones refused (``streaming: refuse``,
    stated so that the choice is visible and easy to change)."""
    loaded, _ = read_descriptor_set(path, max_bytes)
    routes: list[dict[str, Any]] = []
    for method_path, m in loaded.methods.items():
        grpc: dict[str, Any] = {"descriptorSetRef": ref}
        if m.client_streaming:
            grpc["streaming"] = "refuse"
        routes.append(
            {
                "id": method_path.strip("/").replace("/", "."),
                "description": f"{m.input_type.full_name} -> {m.output_type.full_name}"
                + (" (client streaming)" if m.client_streaming else ""),
                "match": {"method": "POST", "path": method_path},
                "grpc": grpc,
            }
        )
    return {
        "policyVersion": "0.1",
        "defaults": {"mode": "enforce", "unmatchedRouteAction": "block"},
        "routes": routes,
    }
