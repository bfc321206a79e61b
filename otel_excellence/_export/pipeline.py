"""The processing chain around the exporting processors.

An ended span is immutable to instrumentation code, so the enrichers run where the SDK
still holds the live span: ``_on_ending``, called by ``Span.end()`` after the attributes
are frozen and before any ``on_end``. The recorded changes are written into the span
itself, so every ``on_end`` (ours and any other processor's) receives the enriched span
and nothing is copied: a span that needs no change costs a few attribute reads.

Why private SDK surface: a copy per span (pydantic logfire's approach, and ours before)
cost about as much as the whole enrichment; SDK 1.45 calls ``_on_ending`` with the live
``Span`` whose attributes are a ``BoundedAttributes`` over a plain dict. We pin the SDK
minor, check that surface once at import, and fall back to building an enriched copy in
``on_end`` when it is missing (or for a span that did not come through ``Span.end()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue

from otel_excellence._diagnostics import internal_error


def _sdk_supports_editing_at_end() -> bool:
    return callable(getattr(SpanProcessor, "_on_ending", None)) and hasattr(
        BoundedAttributes(), "_dict"
    )


EDIT_IN_PLACE = _sdk_supports_editing_at_end()


class SpanChanges:
    """What enrichers want changed on an ended span; applied once, in place or in a copy."""

    __slots__ = ("added_events", "attributes", "events", "name", "removed", "status")

    def __init__(self) -> None:
        self.attributes: dict[str, AttributeValue] = {}
        self.removed: set[str] = set()
        self.status: Status | None = None
        self.events: Sequence[Event] | None = None  # replaces the span's events
        self.name: str | None = None  # a database span named after a comment's first word
        self.added_events: list[Event] = []  # appended after them

    def __bool__(self) -> bool:
        return bool(
            self.attributes
            or self.removed
            or self.status
            or self.name
            or self.events is not None
            or self.added_events
        )


class SpanEnricher(Protocol):
    """A configured callable that looks at an ending span and records changes.

    ``on_start`` lets an enricher keep per-span state or set attributes while the span
    is still writable; both must be cheap and are guarded by the processor.
    """

    def on_start(self, span: Span, parent_context: Context | None) -> None: ...

    def __call__(self, span: ReadableSpan, changes: SpanChanges | None) -> SpanChanges | None:
        """Record changes for ``span`` in ``changes`` (creating it if None) and return
        it; return ``changes`` as given when there is nothing to change. Add to the
        object before doing anything that can fail: what was recorded stays."""


def attributes_of(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a plain mapping, without a copy where the SDK allows.

    ``BoundedAttributes`` answers each lookup through Python methods; its inner dict
    does not. Read-only: enrichers record changes in ``SpanChanges``.
    """
    attributes = span._attributes
    inner = getattr(attributes, "_dict", None)
    if inner is not None:
        return inner  # type: ignore[no-any-return]
    return attributes or {}


def _truncated(value: AttributeValue, limit: int | None) -> AttributeValue:
    if limit is not None and isinstance(value, str) and len(value) > limit:
        return value[:limit]
    return value


def edit_in_place(span: Span, changes: SpanChanges) -> None:
    """Apply ``changes`` to a span that is ending, before any processor's ``on_end``."""
    attributes = span._attributes
    if changes.attributes or changes.removed:
        limit = getattr(attributes, "max_value_len", None)
        with attributes._lock:  # type: ignore[union-attr]
            inner = attributes._dict  # type: ignore[union-attr]
            for key in changes.removed:
                inner.pop(key, None)
            for key, value in changes.attributes.items():
                inner[key] = _truncated(value, limit)
    if changes.name is not None:
        span._name = changes.name
    if changes.status is not None:
        span._status = changes.status
    if changes.events is not None or changes.added_events:
        events = span._events
        maxlen = getattr(getattr(events, "_dq", None), "maxlen", None)
        replaced: BoundedList[Event] = BoundedList(maxlen)
        replaced.dropped = getattr(events, "dropped", 0)  # what the SDK already dropped
        for event in events if changes.events is None else changes.events:
            replaced.append(event)
        for event in changes.added_events:
            replaced.append(event)
        span._events = replaced


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
        name=changes.name or span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        # The original bounded lists, so dropped-event/link counts survive the copy.
        events=_events_after(span, changes),
        links=span._links,
        kind=span.kind,
        status=changes.status or span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _events_after(span: ReadableSpan, changes: SpanChanges) -> Sequence[Event]:
    events = span._events if changes.events is None else changes.events
    if not changes.added_events:
        return events
    return (*events, *changes.added_events)


class EnrichingSpanProcessor(SpanProcessor):
    """Runs ``enrichers`` once per ended span and hands the enriched span to ``inner``.

    A failing enricher is reported once and the span goes on with whatever changes were
    recorded before the failure (enrichers protect - sanitize, scrub - before they add
    findings).
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

    def _enrich(self, span: ReadableSpan) -> SpanChanges | None:
        changes = None
        for enricher in self.enrichers:
            try:
                changes = enricher(span, changes)
            except Exception:  # noqa: BLE001 - telemetry must not break the application
                internal_error(type(enricher).__name__)
        return changes if changes is not None and changes else None

    def _on_ending(self, span: Span) -> None:
        if not EDIT_IN_PLACE:
            return
        changes = None
        for enricher in self.enrichers:  # _enrich(), inline: it runs for every span
            try:
                changes = enricher(span, changes)
            except Exception:  # noqa: BLE001 - telemetry must not break the application
                internal_error(type(enricher).__name__)
        attributes: Any = span._attributes
        if changes is not None and changes:
            try:
                edit_in_place(span, changes)
            except Exception:  # noqa: BLE001 - the SDK's private surface moved
                internal_error("editing an ending span")
                attributes._otel_excellence_enriched = changes  # on_end applies them
                return
        # The ReadableSpan that on_end receives shares this attributes object: the mark
        # says it was enriched, with no per-thread lookup on the hot path.
        attributes._otel_excellence_enriched = True

    def on_end(self, span: ReadableSpan) -> None:
        mark = getattr(span._attributes, "_otel_excellence_enriched", None)
        if mark is True:
            self.inner.on_end(span)
            return
        changes = mark if isinstance(mark, SpanChanges) else self._enrich(span)
        # Never export what could not be scrubbed in place: a copy carries the changes.
        self.inner.on_end(rebuild(span, changes) if changes is not None else span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


ProcessorFactory = Callable[[SpanExporter], SpanProcessor]
