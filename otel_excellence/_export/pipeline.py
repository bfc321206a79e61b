"""The processing chain around the exporting processors.

An ended span is immutable, so enrichment wraps the exporting processor: ``on_end``
runs the configured enrichers once, builds an enriched copy and hands that on (the
pattern pydantic's logfire uses).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue

from otel_excellence._diagnostics import internal_error


class SpanChanges:
    """What enrichers want changed on an ended span; applied in one copy."""

    __slots__ = ("attributes", "events", "removed", "status")

    def __init__(self) -> None:
        self.attributes: dict[str, AttributeValue] = {}
        self.removed: set[str] = set()
        self.status: Status | None = None
        self.events: Sequence[Event] | None = None

    def __bool__(self) -> bool:
        return bool(self.attributes or self.removed or self.status or self.events is not None)


class SpanEnricher(Protocol):
    """A configured callable that looks at an ended span and records changes.

    ``on_start`` lets an enricher keep per-span state or set attributes while the span
    is still writable; both must be cheap and are guarded by the processor.
    """

    def on_start(self, span: Span, parent_context: Context | None) -> None: ...

    def __call__(self, span: ReadableSpan, changes: SpanChanges) -> None: ...


def rebuild(span: ReadableSpan, changes: SpanChanges) -> ReadableSpan:
    """A copy of ``span`` with ``changes`` applied (their attributes win on conflict)."""
    old = span.attributes or {}
    merged = {k: v for k, v in old.items() if k not in changes.removed}
    merged.update(changes.attributes)
    attributes: Mapping[str, AttributeValue]
    if span.dropped_attributes:
        # Only BoundedAttributes carries a dropped count; it re-validates every value,
        # which costs more than the rest of the copy, so it is used only when needed.
        bounded = BoundedAttributes(maxlen=None, attributes=merged, immutable=True)
        bounded.dropped = span.dropped_attributes
        attributes = bounded
    else:
        attributes = MappingProxyType(merged)
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        # The original bounded lists, so dropped-event/link counts survive the copy.
        events=span._events if changes.events is None else changes.events,
        links=span._links,
        kind=span.kind,
        status=changes.status or span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class EnrichingSpanProcessor(SpanProcessor):
    """Runs ``enrichers`` on each ended span and passes an enriched copy to ``inner``.

    One pass per span; a failing enricher is reported once and the span goes on with
    whatever changes were recorded before the failure.
    """

    def __init__(self, inner: SpanProcessor, enrichers: Sequence[SpanEnricher] = ()) -> None:
        self.inner = inner
        self.enrichers = tuple(enrichers)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for enricher in self.enrichers:
            try:
                enricher.on_start(span, parent_context)
            except Exception:  # noqa: BLE001 - telemetry must not break the application
                internal_error(f"{type(enricher).__name__}.on_start")
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        changes = SpanChanges()
        for enricher in self.enrichers:
            try:
                enricher(span, changes)
            except Exception:  # noqa: BLE001 - telemetry must not break the application
                # Changes made before the failure stay: enrichers protect (sanitize,
                # scrub) before they add findings.
                internal_error(type(enricher).__name__)
        self.inner.on_end(rebuild(span, changes) if changes else span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


ProcessorFactory = Callable[[SpanExporter], SpanProcessor]
