"""Contracts from OpenAPI 3.0/3.1 documents (``contract.openapiRef``).

``openapiRef`` is ``FILE#POINTER``: a JSON pointer into an OpenAPI document (YAML or JSON,
relative to the policy file) naming an operation (``#/paths/~1pets/post``) or a schema
(``#/components/schemas/Pet``). At load the document is validated with
``openapi-spec-validator``; ``$ref``s (local and to other files) are looked up with
``referencing`` (files are read by ``_retrieve`` here, so each joins the policy's watched files
and version hash) and bundled into one self-contained 2020-12 schema: every referenced schema
becomes an entry of the root's ``$defs`` (recursive schemas stay finite) and OpenAPI 3.0's
dialect is translated (``nullable``, boolean ``exclusiveMinimum``/``exclusiveMaximum``;
``example``, ``discriminator``, ``xml``, ``externalDocs`` and ``x-*`` dropped as annotations;
``readOnly`` properties refused in a request and not required). The result is compiled by
``engine.contract`` like a hand-written schema, so a request costs the same.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT202012

from ..engine.contract import (
    SCHEMA_LISTS,
    SCHEMA_MAPS,
    SCHEMA_ONE,
    BodyMedia,
    SchemaProblem,
    compile_validator,
    field_tree,
)
from ..engine.deserialize import Encoding, shape_of
from ..engine.matcher import PatternError, parse_pattern
from ..engine.metaschema import MetaschemaChecks
from ..engine.parameters import Parameter, ParameterChecks
from . import _openapi_check
from ._loader import DOCUMENT_LIMIT_SETTING, MAX_DOCUMENT_BYTES, parse_schema_file, size_problem

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_FORM = ("application/x-www-form-urlencoded", "multipart/form-data")
_JSON = re.compile(r"(application/json|[a-z0-9.+-]+/[a-z0-9.+-]*\+json)(\s*;.*)?\Z", re.I)
# Styles each location allows (OpenAPI 3, "Style Values"), the first being the default.
_STYLES = {
    "path": ("simple", "label", "matrix"),
    "query": ("form", "spaceDelimited", "pipeDelimited", "deepObject"),
    "header": ("simple",),
    "cookie": ("form",),
}
# ``format``s OpenAPI defines for numbers, as the bounds they imply (``float``: IEEE single,
# ``double``: IEEE double, which also refuses an overflowed infinity).
_FLOAT_MAX = 3.4028234663852886e38
_DOUBLE_MAX = 1.7976931348623157e308
_FORMAT_BOUNDS: dict[str, tuple[float, float]] = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "float": (-_FLOAT_MAX, _FLOAT_MAX),
    "double": (-_DOUBLE_MAX, _DOUBLE_MAX),
}
# Dropped: OpenAPI annotations (``nullable`` is translated first), and ``$id``/``$schema``: every
# ``$ref`` is rewritten to the bundle's root, so no embedded resource may move the base URI.
_ANNOTATION_KEYS = frozenset(
    {"example", "discriminator", "xml", "externalDocs", "nullable", "$id", "$schema"}
)


# A load reading a document this large takes seconds: it says what it is doing on the
# ``extauthz.policy`` logger (``serve`` logs it, ``policy check`` prints it on stderr).
PROGRESS_BYTES = 1024 * 1024
progress = logging.getLogger("extauthz.policy")


class OpenApiProblem(ValueError):
    """A document or pointer that cannot be used; the message names the place in the file."""


@dataclass(frozen=True, slots=True)
class Operation:
    """What a route's contract takes from an OpenAPI operation or schema."""

    body_schema: Any  # a bundled 2020-12 schema, or None (no JSON/form body declared)
    body_required: bool
    parameters: ParameterChecks | None
    where: str  # "file#pointer", for messages
    # the operation's request body by media type (``()``: it declares none, so a body is
    # refused); None for a schema pointer (the body is JSON, as with requestSchemaRef)
    bodies: tuple[BodyMedia, ...] | None = None


def _pointer_parts(pointer: str) -> list[str]:
    if pointer in ("", "/"):
        return [] if pointer == "" else [""]
    if not pointer.startswith("/"):
        raise OpenApiProblem(f"pointer {pointer!r} must start with '/'")
    return [unquote(p).replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


@dataclass
class OpenApiLoader:
    """One per policy load: each document is read, parsed and validated once."""

    base_dir: Path
    max_bytes: int
    files: dict[Path, bytes] = field(default_factory=dict)  # every file read, in order
    _docs: dict[str, Any] = field(default_factory=dict)  # file URI -> parsed document
    _validated: set[str] = field(default_factory=set)
    # parameter schema (canonical JSON) -> validator: most APIs repeat a handful of them,
    # and compiling one (metaschema check + code generation) costs milliseconds
    _param_validators: dict[str, Any] = field(default_factory=dict)
    # what a description asks that is not checked (each said once), for ``policy check``, the
    # server's log and comments in ``from-openapi``'s policy
    warnings: list[str] = field(default_factory=list)
    metaschema: MetaschemaChecks = field(default_factory=MetaschemaChecks)  # shared checks
    large: bool = False  # a document of PROGRESS_BYTES or more was read: say what happens

    # -- files --------------------------------------------------------------------------
    def _read(self, path: Path) -> Any:
        uri = path.as_uri()
        if uri in self._docs:
            return self._docs[uri]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise OpenApiProblem(f"OpenAPI file not found: {path}") from None
        except IsADirectoryError:
            raise OpenApiProblem(f"OpenAPI path is a directory: {path}") from None
        except OSError as exc:
            raise OpenApiProblem(f"{path}: cannot be read: {exc.strerror or exc}") from None
        if len(data) > self.max_bytes:
            raise OpenApiProblem(
                f"{path}: {size_problem(len(data), self.max_bytes, DOCUMENT_LIMIT_SETTING)}"
            )
        large = len(data) >= PROGRESS_BYTES
        if large:
            self.large = True
            progress.info("reading %s (%.1f MB)", path, len(data) / 1e6)
        started = time.perf_counter()
        doc, error = parse_schema_file(data, str(path), max_bytes=self.max_bytes)
        if error is not None:
            raise OpenApiProblem(f"{path}: {error}")
        if large:
            progress.info("%s: read in %.2f s", path, time.perf_counter() - started)
        self.files[path] = data
        self._docs[uri] = doc
        return doc

    def _retrieve(self, uri: str) -> referencing.Resource[Any]:
        if not uri.startswith("file:"):
            raise OpenApiProblem(f"$ref {uri!r}: only references to local files are supported")
        return referencing.Resource.from_contents(
            self._read(Path(unquote(uri[len("file://") :]))), default_specification=DRAFT202012
        )

    def _registry(self) -> referencing.Registry[Any]:
        return referencing.Registry(retrieve=self._retrieve)  # type: ignore[call-arg]

    def document(self, path: Path) -> tuple[Any, str]:
        """(document, dialect "3.0" or "3.1"), validated with openapi-spec-validator."""
        doc = self._read(path)
        uri = path.as_uri()
        version = doc.get("openapi") if isinstance(doc, Mapping) else None
        if not isinstance(version, str) or not re.match(r"3\.[01]\.\d+\Z", version):
            raise OpenApiProblem(
                f"{path}#/openapi: an OpenAPI 3.0.x or 3.1.x document is needed, got {version!r}"
            )
        dialect = version[:3]
        if uri not in self._validated:
            started = time.perf_counter()
            if not _openapi_check.accepts(doc, dialect):
                if self.large:
                    progress.info(
                        "%s: checking it with openapi-spec-validator (slower: a reference to "
                        "another file, or a problem to report)",
                        path,
                    )
                self._validate(doc, uri, path, dialect)
            self._validated.add(uri)
            if self.large:
                progress.info(
                    "%s: OpenAPI %s, %d operations, checked in %.2f s",
                    path,
                    version,
                    len(operations(doc)),
                    time.perf_counter() - started,
                )
        return doc, dialect

    @staticmethod
    def _validate(doc: Any, uri: str, path: Path, dialect: str) -> None:
        """openapi-spec-validator itself: its errors (the first three) refuse the document."""
        errors: list[str] = []
        try:
            for error in _spec_validator(dialect)(doc, base_uri=uri).iter_errors():
                where = error_location(
                    doc, list(getattr(error, "absolute_path", ())), getattr(error, "instance", None)
                )
                errors.append(f"{path}{where}: {getattr(error, 'message', str(error))}")
                if len(errors) >= 3:
                    break
        except Exception as exc:  # the validator's walk can trip over what it reported
            if not errors:
                errors.append(f"{path}: not a valid OpenAPI {dialect} document ({exc!r})")
        finally:
            _forget_validated()
        if errors:
            raise OpenApiProblem("; ".join(errors))

    # -- operations ---------------------------------------------------------------------
    def operation(self, ref: str, *, reject_unknown_parameters: bool = False) -> Operation:
        file_part, _, pointer = ref.partition("#")
        if not file_part:
            raise OpenApiProblem(f"openapiRef {ref!r} must name a file (FILE#/pointer)")
        path = (self.base_dir / file_part).resolve()
        doc, dialect = self.document(path)
        parts = _pointer_parts(pointer)
        where = f"{path}#{pointer}"
        node: Any = doc
        for depth, p in enumerate(parts):
            if isinstance(node, Mapping) and p in node:
                node = node[p]
            elif isinstance(node, list) and p.isdigit() and int(p) < len(node):
                node = node[int(p)]
            else:
                at = "/" + "/".join(_escape(x) for x in parts[:depth])
                raise OpenApiProblem(f"{path}#{pointer}: no {p!r} under {at if depth else '/'}")
        base = path.as_uri()
        if len(parts) == 3 and parts[0] == "paths" and parts[2] in HTTP_METHODS:
            return self._operation(node, doc["paths"][parts[1]], base, dialect, where,
                                   reject_unknown_parameters)  # fmt: skip
        if not isinstance(node, Mapping | bool):
            raise OpenApiProblem(f"{where}: points at neither an operation nor a schema")
        schema = _Bundler(self._registry(), dialect).bundle(node, base, where)
        return Operation(schema, True, None, where)

    def _operation(
        self, op: Any, item: Any, base: str, dialect: str, where: str, reject_unknown: bool
    ) -> Operation:
        if not isinstance(op, Mapping):
            raise OpenApiProblem(f"{where}: an operation must be a mapping")
        registry = self._registry()
        bundler = _Bundler(registry, dialect)
        body_schema: Any = None
        body_required = False
        bodies: list[BodyMedia] = []
        body = op.get("requestBody")
        if body is not None:
            body, body_base, body_where = _deref(registry, body, base, f"{where}/requestBody")
            body_required = bool(body.get("required", False))
            for media, mt in _obj(body.get("content")).items():
                bodies.append(self._media(bundler, str(media), mt, body_base, body_where))
            parsed = [b for b in bodies if b.kind != "other" and b.schema is not None]
            if parsed:
                json_first = sorted(parsed, key=lambda b: b.kind != "json")
                body_schema = json_first[0].schema
        params: dict[tuple[str, str], Parameter] = {}
        declared_query: set[str] = set()
        for container, at in ((item, where.rsplit("/", 1)[0]), (op, where)):
            raw_list = container.get("parameters", []) if isinstance(container, Mapping) else []
            for i, raw_p in enumerate(raw_list if isinstance(raw_list, list) else []):
                p, p_base, p_where = _deref(registry, raw_p, base, f"{at}/parameters/{i}")
                loc = p.get("in")
                name = p.get("name")
                if not isinstance(name, str) or loc not in ("path", "query", "header", "cookie"):
                    raise OpenApiProblem(f"{p_where}: a parameter needs a name and 'in'")
                if loc == "query":
                    declared_query.add(name)
                if loc == "header" and name.lower() in ("accept", "content-type", "authorization"):
                    continue  # not checked (OpenAPI says these three header entries are ignored)
                compiled = self._parameter(
                    bundler, p, p_base, p_where, name, loc, self._param_validators, reject_unknown
                )
                if compiled is not None:
                    params[(loc, name)] = compiled  # an operation's entry overrides the item's
        checks = None
        if params or reject_unknown:
            query = [p for p in params.values() if p.location == "query"]
            open_query = any(
                p.style == "form" and p.explode and p.shape.object_only
                and p.shape.extra is not None for p in query
            )  # fmt: skip
            checks = ParameterChecks(
                tuple(params.values()),
                frozenset(declared_query) if reject_unknown else None,
                frozenset(p.name for p in query),
                open_query,
            )
        return Operation(body_schema, body_required, checks, where, tuple(bodies))

    def _media(self, bundler: _Bundler, media: str, mt: Any, base: str, where: str) -> BodyMedia:
        """One entry of a request body's ``content``."""
        bare = media.split(";")[0].strip().lower()
        kind = (
            "json" if _JSON.match(bare) else
            "form" if bare == _FORM[0] else
            "multipart" if bare == _FORM[1] else "other"
        )  # fmt: skip
        if not isinstance(mt, Mapping):
            return BodyMedia(bare, "other", None)
        at = f"{where}/content/{_escape(media)}"
        schema = bundler.bundle(mt["schema"], base, f"{at}/schema") if "schema" in mt else None
        encodings: dict[str, Encoding] = {}
        part_types: dict[str, tuple[str, ...]] = {}
        for prop, enc in _obj(mt.get("encoding")).items():
            if not isinstance(enc, Mapping):
                continue
            style = enc.get("style", "form")
            if style not in ("form", "spaceDelimited", "pipeDelimited", "deepObject"):
                self.warn(f"{at}/encoding/{_escape(str(prop))}: style {style!r} is not one a "
                          "body property takes; read as 'form'")  # fmt: skip
                style = "form"
            explode = enc.get("explode", style == "form")
            encodings[str(prop)] = Encoding(str(style), bool(explode))
            types = enc.get("contentType")
            if isinstance(types, str) and types.strip():
                part_types[str(prop)] = tuple(
                    t.split(";")[0].strip().lower() for t in types.split(",") if t.strip()
                )
        if schema is None and kind != "other":
            schema = True
        return BodyMedia(bare, kind, schema, encodings, part_types)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def _parameter(
        self,
        bundler: _Bundler,
        p: Mapping[str, Any],
        base: str,
        where: str,
        name: str,
        loc: str,
        cache: dict[str, Any],
        reject_unknown: bool,
    ) -> Parameter | None:
        """The check of one parameter, or None (with a warning) when it cannot be made."""
        media = ""
        raw = p.get("schema")
        at = f"{where}/schema"
        if raw is None:
            content = _obj(p.get("content"))
            if not content:
                self.warn(f"{where}: a parameter with neither schema nor content; not checked")
                return None
            media, mt = next(iter(content.items()))
            media = str(media).split(";")[0].strip().lower()
            raw = _obj(mt).get("schema", True)
            at = f"{where}/content/{_escape(str(media))}/schema"
        schema = bundler.bundle(raw, base, at)
        style = str(p.get("style", _STYLES[loc][0]))
        if style not in _STYLES[loc]:
            self.warn(f"{where}: style {style!r} is not one a {loc} parameter takes; not checked")
            return None
        explode = bool(p.get("explode", style == "form"))
        shape = shape_of(schema)
        if media and not _JSON.match(media) and not shape.string:
            self.warn(f"{where}: a {media} parameter is not parsed; not checked")
            return None
        # deepObject on an array (``expand[]=a``, ``expand[0]=a``, as payment APIs send) or a
        # primitive (read as ``name=value``) is outside OpenAPI's table but read the same way
        key = json.dumps(schema, sort_keys=True, default=repr)
        validate = cache.get(key)
        if validate is None:
            try:
                validate, _ = compile_validator(schema, metaschema=self.metaschema)
            except SchemaProblem as exc:
                self.warn(f"{at}: {exc}; not checked")
                return None
            cache[key] = validate
        required = bool(p.get("required", loc == "path"))
        unknown = field_tree(schema) if reject_unknown and style == "deepObject" else None
        return Parameter(name, loc, required, style, explode, shape, validate, media, unknown)


@lru_cache(maxsize=2)
def _spec_validator(dialect: str) -> type[Any]:
    """The validator class, its document check pinned to ``jsonschema``.

    Left to itself, openapi-spec-validator checks the document with ``jsonschema-rs`` whenever
    that is installed (we install it), and words its errors differently; a refusal's text and
    place stay what they were with the Python backend.
    """
    from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator
    from openapi_spec_validator.schemas import schema_v30, schema_v31
    from openapi_spec_validator.schemas.backend.jsonschema import create_validator

    base = OpenAPIV30SpecValidator if dialect == "3.0" else OpenAPIV31SpecValidator
    schema = dict(schema_v30 if dialect == "3.0" else schema_v31)
    return type(base.__name__, (base,), {"schema_validator": create_validator(schema)})


def _forget_validated() -> None:
    """Empty openapi-spec-validator's ``iter_errors`` cache (unbounded, keyed by validator).

    It keeps every validator it ran, and with it the whole document: ~47 MB per reload of
    Stripe's description, never given back.
    """
    from openapi_spec_validator.validation.validators import SpecValidator

    fn: Any = SpecValidator.iter_errors
    for _ in range(8):
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()
        fn = getattr(fn, "__wrapped__", None)
        if fn is None:
            return


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _deref(
    registry: referencing.Registry[Any], node: Any, base: str, where: str
) -> tuple[Mapping[str, Any], str, str]:
    """Follow a (non-schema) ``$ref`` chain: (object, its base URI, its place)."""
    for _ in range(32):
        if not isinstance(node, Mapping):
            raise OpenApiProblem(f"{where}: must be a mapping")
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return node, base, where
        target = urljoin(base, ref)
        try:
            node = registry.resolver(base_uri=base).lookup(ref).contents
        except OpenApiProblem:
            raise
        except referencing.exceptions.Unresolvable as exc:
            raise OpenApiProblem(f"{where}/$ref: {ref!r} cannot be resolved ({exc})") from None
        base, frag = urldefrag(target)
        where = f"{unquote(base[len('file://') :])}#{frag}"
    raise OpenApiProblem(f"{where}: $ref chain is too long")


class _Bundler:
    """Inline-free bundling: each referenced schema becomes one ``$defs`` entry."""

    def __init__(self, registry: referencing.Registry[Any], dialect: str) -> None:
        self.registry = registry
        self.dialect = dialect

    def bundle(self, schema: Any, base: str, where: str) -> Any:
        self._defs: dict[str, Any] = {}
        self._names: dict[str, str] = {}  # absolute URI -> $defs name
        root = self._walk(schema, base, where)
        if self._defs:
            if root is True:
                root = {}
            if root is False:
                root = {"not": {}}
            root = {**root, "$defs": {**root.get("$defs", {}), **self._defs}}
        return root

    def _ref(self, ref: str, base: str, where: str) -> str:
        target = urljoin(base, ref)
        if target in self._names:
            return "#/$defs/" + self._names[target]
        try:
            resolved = self.registry.resolver(base_uri=base).lookup(ref)
        except OpenApiProblem as exc:
            raise OpenApiProblem(f"{where}/$ref: {exc}") from None
        except referencing.exceptions.Unresolvable as exc:
            raise OpenApiProblem(f"{where}/$ref: {ref!r} cannot be resolved ({exc})") from None
        new_base, frag = urldefrag(target)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", (frag.rsplit("/", 1)[-1] or Path(
            unquote(new_base)).stem) or "schema")  # fmt: skip
        name, n = stem, 1
        while name in self._defs or name in self._names.values():
            n += 1
            name = f"{stem}_{n}"
        self._names[target] = name
        self._defs[name] = {}  # placeholder while walking: cycles end here
        place = f"{unquote(new_base[len('file://') :])}#{frag}"
        self._defs[name] = self._walk(resolved.contents, new_base, place)
        return "#/$defs/" + name

    def _walk(self, s: Any, base: str, where: str) -> Any:
        if isinstance(s, bool):
            return s
        if not isinstance(s, Mapping):
            raise OpenApiProblem(f"{where}: a schema must be a mapping or a boolean")
        ref = s.get("$ref")
        if isinstance(ref, str):
            out_ref = {"$ref": self._ref(ref, base, where)}
            if self.dialect == "3.0":
                return out_ref  # 3.0: siblings of $ref are ignored
        out: dict[str, Any] = {}
        for key, value in s.items():
            if key == "$ref":
                continue
            if not isinstance(key, str) or key.startswith("x-") or key in _ANNOTATION_KEYS:
                continue
            if key in SCHEMA_MAPS and isinstance(value, Mapping):
                out[key] = {k: self._walk(v, base, f"{where}/{key}/{k}") for k, v in value.items()}
            elif key in SCHEMA_ONE and isinstance(value, Mapping | bool):
                out[key] = self._walk(value, base, f"{where}/{key}")
            elif key in SCHEMA_LISTS and isinstance(value, list):
                out[key] = [self._walk(v, base, f"{where}/{key}/{i}") for i, v in enumerate(value)]
            else:
                out[key] = value
        if isinstance(ref, str):
            out["$ref"] = out_ref["$ref"]
        if self.dialect == "3.0":
            _translate_30(s, out)
        _format_bounds(out)
        self._read_only(s, out, base)
        return out

    def _read_only(self, raw: Mapping[str, Any], out: dict[str, Any], base: str) -> None:
        """A request must not carry a ``readOnly`` property; its ``required`` is for responses."""
        props = raw.get("properties")
        if not isinstance(props, Mapping):
            return
        hidden = set()
        for name, p in props.items():
            target = p
            if isinstance(p, Mapping) and isinstance(p.get("$ref"), str):
                try:
                    target = self.registry.resolver(base_uri=base).lookup(p["$ref"]).contents
                except (referencing.exceptions.Unresolvable, OpenApiProblem):
                    continue  # reported by the walk
            if isinstance(target, Mapping) and target.get("readOnly") is True:
                hidden.add(name)
        if not hidden:
            return
        out["properties"] = {k: (False if k in hidden else v) for k, v in out["properties"].items()}
        if isinstance(out.get("required"), list):
            out["required"] = [k for k in out["required"] if k not in hidden]


def _format_bounds(out: dict[str, Any]) -> None:
    """``format: int32``/``int64``/``float``/``double`` as the bounds they imply.

    JSON Schema validators leave these formats unchecked; OpenAPI means them as ranges, so
    ``minimum``/``maximum`` are tightened to them (an existing, tighter bound stays).
    """
    bounds = _FORMAT_BOUNDS.get(out.get("format")) if isinstance(out.get("format"), str) else None
    if bounds is None:
        return
    low, high = bounds
    floor = out.get("minimum")
    ceiling = out.get("maximum")
    if not isinstance(floor, int | float) or isinstance(floor, bool) or floor < low:
        out["minimum"] = low
    if not isinstance(ceiling, int | float) or isinstance(ceiling, bool) or ceiling > high:
        out["maximum"] = high


def _translate_30(raw: Mapping[str, Any], out: dict[str, Any]) -> None:
    """OpenAPI 3.0's schema dialect (an extended subset of draft 4/5) to 2020-12."""
    if raw.get("nullable") is True:
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        flag = out.get(exclusive)
        if isinstance(flag, bool):
            if flag and bound in out:
                out[exclusive] = out.pop(bound)
            else:
                del out[exclusive]


# -- routes from a spec (``openapi: {spec: ...}``) ----------------------------------------
_ID_BAD = re.compile(r"[^A-Za-z0-9_.:-]+")
_OPTION_KEYS = ("mode", "limits", "vulnerability", "rules", "webhook")
_CONTRACT_OPTIONS = ("rejectUnknownFields", "rejectUnknownParameters")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def route_id(op: Mapping[str, Any], method: str, path: str) -> str:
    """A policy route id for an operation: its ``operationId``, made a valid id."""
    raw = op.get("operationId")
    text = raw if isinstance(raw, str) and raw else f"{method}-{path}"
    return _ID_BAD.sub("-", text).strip("-_.:") or method


def operations(doc: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(method, path, operation) for every operation of a document, in document order."""
    found = []
    for path, item in _obj(doc.get("paths")).items():
        for method in HTTP_METHODS:
            op = _obj(item).get(method)
            if isinstance(op, Mapping):
                found.append((method, path, op))
    return found


@dataclass(frozen=True, slots=True)
class SpecOperation:
    """One operation of a description, as a route: where it is and the path it matches."""

    method: str
    path: str  # as the description writes it
    match: str  # the route's path pattern: the server's path prefix, then ``path``
    op: Mapping[str, Any]
    rid: str


def server_prefix(servers: Any, loader: OpenApiLoader, where: str) -> str:
    """The path part of ``servers[].url`` (variables at their defaults), "" for none.

    Servers are alternatives (usually hosts); when their paths differ, the first is used and
    a warning says so (``pathPrefix``/``--path-prefix`` chooses).
    """
    found: list[str] = []
    for server in servers if isinstance(servers, list) else ():
        url = _obj(server).get("url")
        if not isinstance(url, str):
            continue
        for name, var in _obj(_obj(server).get("variables")).items():
            default = _obj(var).get("default")
            if isinstance(default, str):
                url = url.replace("{" + str(name) + "}", default)
        path = urlsplit(url).path if "//" in url else url.partition("?")[0]
        path = unquote(path).rstrip("/")
        if path and not path.startswith("/"):
            path = "/" + path
        found.append(path)
    if not found:
        return ""
    distinct = list(dict.fromkeys(found))
    if len(distinct) > 1:
        shown = ", ".join(repr(p or "/") for p in distinct[:4])
        loader.warn(
            f"{where}/servers: the server URLs have different paths ({shown}); routes use "
            f"the first, {distinct[0] or '/'!r} (pathPrefix or --path-prefix chooses another)"
        )
    return distinct[0]


def spec_operations(
    doc: Mapping[str, Any], loader: OpenApiLoader, path_prefix: str | None, where: str
) -> list[SpecOperation]:
    """Every operation that can be a route; each one that cannot is a warning.

    ``path_prefix``: given, it replaces the servers' path prefixes ("" for none).
    """
    out: list[SpecOperation] = []
    seen_match: dict[tuple[str, tuple[str, ...]], str] = {}
    seen_ids: set[str] = set()
    for method, path, op in operations(doc):
        label = f"{method.upper()} {path}"
        if path_prefix is not None:
            prefix = path_prefix.rstrip("/")
        else:
            item = _obj(_obj(doc.get("paths")).get(path))
            servers = op.get("servers") or item.get("servers") or doc.get("servers")
            at = f"{where}#/paths/{_escape(path)}" if servers is not doc.get("servers") else where
            prefix = server_prefix(servers, loader, at)
        full = (prefix + path).rstrip("/") or "/"
        reason = None
        if "/*" in full or "**" in full:
            reason = "'*' in a path is a wildcard in a policy, not a literal"
        else:
            try:
                segments = parse_pattern(full).segments
            except PatternError as exc:
                reason = str(exc)
        if reason is not None:
            loader.warn(f"{where}: {label}: its path cannot be a route ({reason}); skipped")
            continue
        key = (method.upper(), segments)
        if key in seen_match:
            loader.warn(
                f"{where}: {label}: matches the same requests as {seen_match[key]}; skipped"
            )
            continue
        seen_match[key] = label
        rid = route_id(op, method, path)
        base, n = rid, 1
        while rid in seen_ids:
            n += 1
            rid = f"{base}-{n}"
        seen_ids.add(rid)
        out.append(SpecOperation(method, path, full, op, rid))
    return out


def _cel_rules(rid: str, op: Mapping[str, Any]) -> list[dict[str, Any]]:
    cel = op.get("x-cel-expression")
    exprs = [cel] if isinstance(cel, str) else cel if isinstance(cel, list) else []
    return [
        {"id": f"{rid}.cel" + (f".{n}" if len(exprs) > 1 else ""), "type": "cel",
         "config": {"expr": expr}}
        for n, expr in enumerate(exprs)
    ]  # fmt: skip


def spec_routes(
    section: Mapping[str, Any], loader: OpenApiLoader
) -> list[tuple[str, dict[str, Any]]]:
    """(label, route document) for each operation of ``section['spec']``.

    A route's parts, later ones winning: the section's defaults, the operation's
    ``x-contractshield`` and ``x-cel-expression``, then the policy's ``operations.<id>``.
    ``pathPrefix`` replaces the servers' path prefixes.
    """
    spec = section["spec"]
    spec_path = (loader.base_dir / spec).resolve()
    doc, _ = loader.document(spec_path)
    given = section.get("pathPrefix")
    prefix = str(given) if given is not None else None
    overrides = _obj(section.get("operations"))
    routes: list[tuple[str, dict[str, Any]]] = []
    for found in spec_operations(doc, loader, prefix, str(spec_path)):
        method, path, op, rid = found.method, found.path, found.op, found.rid
        ext = _obj(op.get("x-contractshield"))
        mine = _obj(overrides.get(route_id(op, method, path)))
        if ext.get("skip") is True or mine.get("skip") is True:
            continue
        contract: dict[str, Any] = {
            "openapiRef": f"{spec}#/paths/{_escape(path)}/{method}",
            **{k: section[k] for k in _CONTRACT_OPTIONS if k in section},
            **{k: ext[k] for k in _CONTRACT_OPTIONS if k in ext},
            **{k: mine[k] for k in _CONTRACT_OPTIONS if k in mine},
        }
        route: dict[str, Any] = {
            "id": rid,
            "match": {"method": method.upper(), "path": found.match},
            "contract": contract,
        }
        for key in _OPTION_KEYS:
            for source in (section, ext, mine):
                if key in source and key != "rules":
                    route[key] = source[key]
        rules = _cel_rules(rid, op)
        for source in (section, ext, mine):
            if isinstance(source.get("rules"), list):
                rules.extend(source["rules"])
        if rules:
            route["rules"] = rules
        routes.append((f"openapi[{method.upper()} {path}]", route))
    return routes


@dataclass
class GeneratedPolicy:
    """``from-openapi``'s result: the policy, and what is not checked, for comments."""

    doc: dict[str, Any]
    skipped: list[str]  # warnings not tied to a generated route (skipped operations, servers)
    notes: dict[str, list[str]]  # route id -> what in its operation is not checked


def policy_from_spec(
    spec_path: Path, spec_ref: str, path_prefix: str | None = None
) -> GeneratedPolicy:
    """An editable policy for a spec (``extauthz policy from-openapi``): one route each.

    Each operation is read the way ``policy check`` will read it, so what it cannot check is
    known here and said in a comment; an operation that cannot be read at all is skipped.
    """
    loader = OpenApiLoader(spec_path.parent, MAX_DOCUMENT_BYTES)
    doc, _ = loader.document(spec_path)
    routes = []
    notes: dict[str, list[str]] = {}
    for found in spec_operations(doc, loader, path_prefix, str(spec_path)):
        ref = f"#/paths/{_escape(found.path)}/{found.method}"
        before = len(loader.warnings)
        try:
            loader.operation(f"{spec_path.name}{ref}")
        except OpenApiProblem as exc:
            loader.warn(f"{found.method.upper()} {found.path}: {exc}; skipped")
            continue
        if len(loader.warnings) > before:
            notes[found.rid] = loader.warnings[before:]
            del loader.warnings[before:]
        route: dict[str, Any] = {
            "id": found.rid,
            "match": {"method": found.method.upper(), "path": found.match},
            "contract": {"openapiRef": f"{spec_ref}{ref}"},
        }
        rules = _cel_rules(found.rid, found.op)
        if rules:
            route["rules"] = rules
        routes.append(route)
    title = _obj(doc.get("info")).get("title")
    out: dict[str, Any] = {"policyVersion": "0.1"}
    if isinstance(title, str):
        out["name"] = title
    out["defaults"] = {"mode": "enforce", "unmatchedRouteAction": "block"}
    out["routes"] = routes
    return GeneratedPolicy(out, list(loader.warnings), notes)


def _pointer(parts: list[Any]) -> str:
    return "#/" + "/".join(_escape(str(p)) for p in parts)


def _at(node: Any, parts: list[Any]) -> tuple[bool, Any]:
    """(found, value) of ``parts`` under ``node``."""
    for p in parts:
        in_object = isinstance(node, Mapping) and p in node
        in_array = isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node)
        if not (in_object or in_array):
            return False, None
        node = node[p]
    return True, node


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _nodes(node: Any, parts: list[Any]) -> Iterator[tuple[list[Any], Any]]:
    """Every object and array in the document, with its path (the document itself first)."""
    yield parts, node
    items = node.items() if isinstance(node, Mapping) else enumerate(node)
    for key, value in items:
        if isinstance(value, Mapping | list):
            yield from _nodes(value, [*parts, key])


def error_location(doc: Any, parts: list[Any], instance: Any) -> str:
    """Where in ``doc`` an openapi-spec-validator error is, as ``#/json/pointer``.

    The validator checks each schema (under ``components`` or an operation) in a run of its
    own and reports a problem there by its path *inside that schema*
    (``properties/x/pattern``), which read from the document's root points elsewhere or
    nowhere. A path that leads somewhere from the root is taken as it is (the validator's own
    reports, and a ``$ref`` it followed, whose value is the target's); one that leads nowhere
    is looked for, with the reported value at its end, under every object of the document:
    one match is the place; several are named (up to three); none, and the path is said to
    be relative to a schema the validator did not name.
    """
    if not parts or _at(doc, parts)[0]:
        return _pointer(parts)
    matches = []
    for prefix, node in _nodes(doc, []):
        hit, value = _at(node, parts)
        if hit and _same(value, instance):
            matches.append(_pointer([*prefix, *parts]))
    if len(matches) == 1:
        return matches[0]
    relative = _pointer(parts)[1:]  # "/properties/x/pattern"
    if matches:
        shown = ", ".join(matches[:3]) + (", ..." if len(matches) > 3 else "")
        return f" (one of {len(matches)} places: {shown}; the validator named only {relative})"
    return f" (in a schema the validator did not name, at {relative})"
