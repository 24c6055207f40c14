"""OpenTelemetry: a span per check, joined to Envoy's trace, exported over OTLP.

On only when the standard variables ask for it (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or ``OTEL_TRACES_EXPORTER=otlp|console``; never with
``OTEL_SDK_DISABLED=true``). The SDK reads the rest itself: ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` (default: parent-based, always on),
``OTEL_EXPORTER_OTLP_HEADERS``/``_TIMEOUT``, ``OTEL_BSP_*``. Export is OTLP/HTTP protobuf,
batched on the SDK's own thread.

Zero cost when off: nothing from ``opentelemetry`` is imported, the servicer registers its
plain ``check`` (the HTTP API its plain HTTP-mode check), and a check pays an ``is None`` test
(``ServerState.tracer``) where it picks the engine's plain phases and one where it annotates.
A sampled check also gets a child span per engine phase (``contractshield.route``, ``.body``,
``.vulnerability``, ``.limits``, ``.contract``, ``.webhook``, ``.cel``, and ``.replay`` for the
claim), timed through the engine's ``Phases`` seam; an unsampled one runs the plain phases.

The parent comes from the ext_authz call's gRPC metadata, where Envoy's tracer puts the
context of its own ext_authz span (W3C ``traceparent`` with the OpenTelemetry tracer, B3 with
Zipkin), falling back to the checked request's headers; for an HTTP-mode check
(``/ext_authz/...``), the authorization request's headers, where Envoy's ext_authz client puts
the same context; for ``/v1/evaluate``, the HTTP request's headers. W3C and both B3 encodings
are understood, whatever ``OTEL_PROPAGATORS`` says (Envoy's choice of tracer decides which
arrives).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..engine.pipeline import PLAIN, Phases, timed

if TYPE_CHECKING:
    from ..decision import Decision

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACE_HEADERS = ("traceparent", "b3", "x-b3-traceid")
SCOPE = "extauthz"


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return exporter in ("otlp", "console") or any(env.get(k) for k in ENDPOINT_VARIABLES)


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits (for the decision log), or None."""
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


class CheckTracer:
    """Spans for checks; the servicer and the HTTP API call it only when tracing is on."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
        from opentelemetry.propagators.composite import CompositePropagator
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._tracer = provider.get_tracer(SCOPE)
        # B3 first, W3C last: a request carrying both is joined to the W3C context.
        self._propagator = CompositePropagator(
            [B3MultiFormat(), B3SingleFormat(), TraceContextTextMapPropagator()]
        )
        self._server = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR)

    def parent(self, carrier: Mapping[str, str]) -> Any:
        """The OTel context to start a check span under (empty when no trace header came)."""
        return self._propagator.extract(carrier)

    def start(self, name: str, carrier: Mapping[str, str], transport: str) -> Any:
        """Start ``name`` as a server span under the carrier's trace and make it current.

        Returns a token for ``end``; the decision log reads the trace id while it is current.
        """
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        span = self._tracer.start_span(
            name,
            context=self.parent(carrier),
            kind=self._server,
            attributes={"contractshield.transport": transport},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return span, token

    def end(self, started: Any) -> None:
        from opentelemetry import context as otel_context

        span, token = started
        otel_context.detach(token)
        span.end()

    def annotate(self, decision: Decision) -> None:
        """Put the decision on the current span (called once per check, in ``decide``)."""
        from opentelemetry import trace

        span = trace.get_current_span()
        if not span.is_recording():
            return
        meta = decision.metadata
        span.set_attributes(
            {
                "contractshield.decision_id": meta.request_id or "",
                "contractshield.route": meta.route_id or "",
                "contractshield.action": decision.action,
                "contractshield.status_code": decision.status_code,
                "contractshield.policy_version": meta.policy_version or "",
                "contractshield.hit_ids": [h.id for h in decision.rule_hits],
            }
        )
        if decision.status_code >= 500:
            span.set_status(self._error)

    def phases(self) -> Phases:
        """The engine's phase evaluators for this check: timed into child spans when its span
        is sampled (recording), the plain ones otherwise (an unsampled check pays nothing)."""
        from opentelemetry import trace

        if not trace.get_current_span().is_recording():
            return PLAIN
        return timed(self.phase)

    def phase(self, name: str, start_ns: int, end_ns: int) -> None:
        """A child span of the current span for one phase, from times already measured."""
        span = self._tracer.start_span(
            f"contractshield.{name}", start_time=start_ns, attributes={"contractshield.phase": name}
        )
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """Export what is buffered (bounded by ``OTEL_BSP_EXPORT_TIMEOUT``) and stop."""
        self.provider.shutdown()


def from_environment(environ: Mapping[str, str] | None = None) -> CheckTracer | None:
    """A ``CheckTracer`` exporting over OTLP/HTTP, or None when the OTEL_* variables say off."""
    env = os.environ if environ is None else environ
    if not enabled(env):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as exc:
        from .._exceptions import InvalidConfig

        raise InvalidConfig(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'extauthz[otel]'"
        ) from exc
    resource = Resource.create(
        {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "contractshield"}
    )
    provider = TracerProvider(resource=resource)
    exporter: Any
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            from .._exceptions import InvalidConfig

            # xds-protos ships older copies of opentelemetry/proto/**/*_pb2.py; installed
            # after opentelemetry-proto, they replace its files (one name, two packages).
            raise InvalidConfig(
                f"OTLP exporter cannot be imported ({exc}); if xds-protos overwrote "
                "opentelemetry-proto's files, run: pip install --force-reinstall --no-deps "
                "opentelemetry-proto"
            ) from exc
        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return CheckTracer(provider)


def carrier_from_metadata(metadata: Any) -> dict[str, str]:
    """gRPC invocation metadata as a header mapping (only the trace headers are needed)."""
    out: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str) and (key in TRACE_HEADERS or key.startswith("x-b3-")):
            out[key] = value
    return out
