"""Findings on every ended span: errors classified, slow queries, N+1, DB metrics.

``SpanInsights`` is one enricher (one pass per span) that composes small functions:
``failure()`` reads how a span failed, the classifier decides what kind of failure it
was, ``db_call()`` reads a database client span, ``NPlusOneDetector`` counts repeated
statements under a parent. Metrics are recorded here because only here is each span
seen once, finished, with its duration.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import baggage, metrics
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from otel_excellence import _semconv as sc
from otel_excellence._config.settings import Settings
from otel_excellence._diagnostics import internal_error
from otel_excellence._export.pipeline import SpanChanges
from otel_excellence._findings.errors import Classifier, ErrorClass, qualified_name
from otel_excellence._findings.fingerprint import (
    fingerprint_exception,
    fingerprint_stacktrace,
    fingerprint_text,
)
from otel_excellence._findings.sql import sanitize_statement, scrub_credentials, scrub_error_text

# Semantic-convention buckets for db.client.operation.duration (seconds).
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_SQL_SYSTEMS_WITHOUT_STATEMENT_OPERATION = frozenset({"redis"})
_COUNTED = "_otel_excellence_counted"
_MAX_PATTERNS_PER_PARENT = 64
_MAX_PENDING_PARAMETERS = 10_000


# -- reading spans ----------------------------------------------------------------------
@dataclass(frozen=True)
class DbCall:
    """What a database client span says about the call it measured."""

    system: str
    operation: str
    statement: str | None
    statement_keys: tuple[str, ...]
    namespace: str | None
    server_address: str | None
    server_port: int | None


def _operation(span: ReadableSpan, statement: str | None) -> str:
    # The SQLAlchemy instrumentation's db.operation is "<verb> <db name>" (its span
    # name); the Redis one sets none. The statement's first word is the operation.
    source = statement or span.name
    word = source.split(None, 1)[0] if source.strip() else ""
    return word.upper().strip("(")


def db_call(span: ReadableSpan, attributes: Mapping[str, Any]) -> DbCall | None:
    """The database call behind a client span, or None for any other span."""
    if span.kind is not SpanKind.CLIENT:
        return None
    system = sc.first(attributes, sc.DB_SYSTEM)
    if not isinstance(system, str):
        return None
    statement = sc.first(attributes, sc.DB_STATEMENT)
    port = sc.first(attributes, sc.SERVER_PORT)
    namespace = sc.first(attributes, sc.DB_NAMESPACE)
    address = sc.first(attributes, sc.SERVER_ADDRESS)
    return DbCall(
        system=system,
        operation=_operation(span, statement if isinstance(statement, str) else None),
        statement=statement if isinstance(statement, str) else None,
        statement_keys=tuple(k for k in sc.DB_STATEMENT if k in attributes),
        namespace=str(namespace) if namespace is not None else None,
        server_address=str(address) if address is not None else None,
        server_port=port if isinstance(port, int) else None,
    )


@dataclass
class Failure:
    """How a span failed: the live exception if still at hand, else exported strings."""

    exception: BaseException | None = None
    exception_type: str | None = None
    message: str = ""
    stacktrace: str = ""
    http_status: int | None = None
    grpc_code: str | None = None


def _exception_events(span: ReadableSpan) -> list[Event]:
    return [e for e in span.events if e.name == "exception"]


def _live_exception(span: ReadableSpan, exception_type: str | None) -> BaseException | None:
    """The exception being handled right now, if it is the one that failed ``span``.

    Spans end inside the handler of their exception (a ``with`` block's ``__exit__``,
    SQLAlchemy's ``handle_error``), so ``sys.exc_info()`` still holds the object with
    its MRO, SQLSTATE and wrapped cause; matched by type or status text to be sure.
    """
    exc = sys.exc_info()[1]
    if exc is None:
        return None
    if exception_type is not None:
        return exc if qualified_name(type(exc)) == exception_type else None
    description = span.status.description
    return exc if description and str(exc).startswith(description) else None


def _grpc_code_name(value: Any) -> str | None:
    codes = {
        1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
        5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
        9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
        13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
    }  # fmt: skip
    return codes.get(value) if isinstance(value, int) else None


def failure(span: ReadableSpan, attributes: Mapping[str, Any]) -> Failure | None:
    """Why ``span`` failed, or None if it did not."""
    events = _exception_events(span)
    if span.status.status_code is not StatusCode.ERROR and not events:
        return None
    found = Failure(
        http_status=_int_or_none(sc.first(attributes, sc.HTTP_STATUS)),
        grpc_code=_grpc_code_name(sc.first(attributes, sc.GRPC_STATUS)),
    )
    if events:
        last = events[-1].attributes or {}
        found.exception_type = _str_or_none(last.get(sc.EXCEPTION_TYPE))
        found.message = str(last.get(sc.EXCEPTION_MESSAGE, ""))
        found.stacktrace = str(last.get(sc.EXCEPTION_STACKTRACE, ""))
    found.exception = _live_exception(span, found.exception_type)
    if found.exception is not None:
        found.exception_type = qualified_name(type(found.exception))
        found.message = found.message or str(found.exception)
    return found


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def classify(classifier: Classifier, found: Failure) -> ErrorClass:
    if found.exception is not None:
        return classifier.classify_exception(found.exception)
    if found.exception_type is not None:
        return classifier.classify_strings(found.exception_type, found.message)
    return classifier.classify_status(found.http_status, found.grpc_code)


def error_type(attributes: Mapping[str, Any], found: Failure) -> str:
    existing = attributes.get(sc.ERROR_TYPE)
    if isinstance(existing, str) and existing:
        return existing
    if found.exception_type:
        return found.exception_type
    if found.http_status is not None:
        return str(found.http_status)
    if found.grpc_code is not None:
        return found.grpc_code
    return "_OTHER"  # the semantic conventions' value when nothing more is known


def fingerprint(span: ReadableSpan, found: Failure, kind: str) -> str:
    if found.exception is not None:
        return fingerprint_exception(kind, found.exception)
    if found.stacktrace:
        return fingerprint_stacktrace(kind, found.stacktrace)
    return fingerprint_text(kind, span.name)


def first_count(exc: BaseException | None) -> bool:
    """True the first time an exception (or what it wraps) is seen failing a span.

    One exception fails every span it propagates through; it is one error, counted once.
    """
    if exc is None:
        return True
    related = (exc, getattr(exc, "orig", None), exc.__cause__)
    if any(getattr(e, _COUNTED, False) for e in related if e is not None):
        return False
    # An exception type without __dict__ is counted each time: over- rather than under-.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _COUNTED, True)
    return True


def scrubbed_events(events: Sequence[Event], scrub: Any) -> list[Event] | None:
    """Exception events with scrubbed message and stack trace; None if nothing changed."""
    changed = False
    out = []
    for event in events:
        attributes = event.attributes or {}
        if event.name == "exception":
            new = dict(attributes)
            for key in (sc.EXCEPTION_MESSAGE, sc.EXCEPTION_STACKTRACE):
                value = attributes.get(key)
                if isinstance(value, str):
                    new[key] = scrub(value)
            if new != dict(attributes):
                changed = True
                out.append(Event(event.name, new, event.timestamp))
                continue
        out.append(event)
    return out if changed else None


# -- N+1 ----------------------------------------------------------------------------------
@dataclass
class _Pattern:
    statement: str
    system: str
    operation: str
    count: int = 0
    first_identity: int | None = None
    varied: bool = False  # seen with at least two different parameter sets

    def note(self, identity: int | None) -> None:
        self.count += 1
        if identity is None:
            return
        if self.first_identity is None:
            self.first_identity = identity
        elif identity != self.first_identity:
            self.varied = True


@dataclass(frozen=True)
class NPlusOne:
    statement: str
    count: int
    system: str
    operation: str


@dataclass
class NPlusOneDetector:
    """Counts executions of each statement under each open parent span, bounded.

    At most ``max_parents`` parents are tracked (the least recently used is forgotten)
    and ``_MAX_PATTERNS_PER_PARENT`` statements per parent, so parents that never end,
    or end in another process, cannot grow memory.
    """

    threshold: int
    max_parents: int
    _parents: OrderedDict[int, dict[str, _Pattern]] = field(default_factory=OrderedDict)
    _pending: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note_parameters(self, span_id: int, identity: int) -> None:
        """Record what a database call was executed with (from a library hook)."""
        with self._lock:
            if len(self._pending) >= _MAX_PENDING_PARAMETERS:
                del self._pending[next(iter(self._pending))]
            self._pending[span_id] = identity

    def observe(self, span: ReadableSpan, call: DbCall, statement: str) -> None:
        parent = span.parent
        context = span.context
        if parent is None or parent.is_remote or context is None:
            return
        with self._lock:
            # What the call ran with: bound parameters (from the library hook) plus the
            # raw text (literals differ per call); unknown if no hook saw the call.
            parameters = self._pending.pop(context.span_id, None)
            identity = None if parameters is None else hash((call.statement, parameters))
            patterns = self._parents.get(parent.span_id)
            if patterns is None:
                patterns = self._parents[parent.span_id] = {}
                if len(self._parents) > self.max_parents:
                    self._parents.popitem(last=False)
            else:
                self._parents.move_to_end(parent.span_id)
            pattern = patterns.get(statement)
            if pattern is None:
                if len(patterns) >= _MAX_PATTERNS_PER_PARENT:
                    return
                pattern = patterns[statement] = _Pattern(statement, call.system, call.operation)
            pattern.note(identity)

    def finish(self, span: ReadableSpan) -> list[NPlusOne]:
        """The N+1 patterns found under ``span``, now that it has ended."""
        context = span.context
        if context is None:
            return []
        with self._lock:
            patterns = self._parents.pop(context.span_id, None)
        if not patterns:
            return []
        found = [
            NPlusOne(p.statement, p.count, p.system, p.operation)
            for p in patterns.values()
            # The same parameters every time is a repeated query, not an N+1; with no
            # parameters observable the repetition alone counts.
            if p.count >= self.threshold and (p.varied or p.first_identity is None)
        ]
        return sorted(found, key=lambda p: -p.count)

    @property
    def tracked_parents(self) -> int:
        return len(self._parents)


# -- the enricher -------------------------------------------------------------------------
class SpanInsights:
    """The otel-excellence enricher: errors, slow queries, N+1, statements, DB metrics."""

    def __init__(
        self,
        settings: Settings,
        classifier: Classifier,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.classifier = classifier
        self.slow_threshold_s = settings.slow_db_threshold_ms / 1000
        self.statement_mode = settings.db_statement
        self.n_plus_one = NPlusOneDetector(
            settings.n_plus_one_threshold, settings.n_plus_one_max_parents
        )
        self._scrub = scrub_credentials if settings.db_statement == "raw" else scrub_error_text
        meter = metrics.get_meter("otel_excellence", meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._errors = meter.create_counter(
            "otel_excellence.errors",
            unit="{error}",
            description="Errors by category and retryability, each exception counted once.",
        )
        self._slow = meter.create_counter(
            "otel_excellence.db.slow_queries",
            unit="{query}",
            description="Database operations at or above the slow threshold.",
        )
        self._n_plus_one = meter.create_counter(
            "otel_excellence.db.n_plus_one",
            unit="{pattern}",
            description="N+1 patterns: a statement repeated under one parent span.",
        )

    def on_start(self, span: Span, parent_context: Context | None) -> None:
        return None

    def __call__(self, span: ReadableSpan, changes: SpanChanges) -> None:
        # One plain-dict copy: the SDK's attribute mapping answers each lookup in Python.
        attributes = dict(span.attributes or {})
        call = db_call(span, attributes)
        # Protection first and on its own: should a finding below fail, the span still
        # goes out without secrets (the processor keeps changes made before a failure).
        normalized = self._protect(span, attributes, call, changes)
        try:
            found = failure(span, attributes)
            if found is not None:
                self._failed(span, attributes, found, changes)
            if call is not None:
                self._database(span, call, normalized, found, changes)
            self._finish_parent(span, changes)
        except Exception:  # noqa: BLE001 - findings are optional; the span is not
            internal_error("SpanInsights")

    def _protect(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        call: DbCall | None,
        changes: SpanChanges,
    ) -> str | None:
        """Sanitize the statement and scrub error texts; fail closed. The normal form."""
        normalized = None
        try:
            if call is not None and call.statement is not None:
                normalized = sanitize_statement(call.statement, call.system)
                self._statement(call, normalized, changes)
            connection = attributes.get(sc.CONNECTION_STRING)
            if isinstance(connection, str):
                changes.attributes[sc.CONNECTION_STRING] = scrub_credentials(connection)
            if span.status.status_code is StatusCode.ERROR or span.events:
                self._scrub_failure(span, changes)
        except Exception:  # noqa: BLE001 - drop what could not be cleaned, never export it
            internal_error("SpanInsights protection")
            if call is not None:
                changes.removed.update(call.statement_keys)
            changes.removed.add(sc.CONNECTION_STRING)
            changes.status = Status(span.status.status_code, None)
            changes.events = [e for e in span.events if e.name != "exception"]
        return normalized

    def _scrub_failure(self, span: ReadableSpan, changes: SpanChanges) -> None:
        description = span.status.description
        if description:
            cleaned = self._scrub(description)
            if cleaned != description:
                changes.status = Status(StatusCode.ERROR, cleaned)
        events = scrubbed_events(span.events, self._scrub)
        if events is not None:
            changes.events = events

    def _finish_parent(self, span: ReadableSpan, changes: SpanChanges) -> None:
        patterns = self.n_plus_one.finish(span)
        if patterns:
            top = patterns[0]  # one set of attributes per span: the most repeated
            changes.attributes[sc.N_PLUS_ONE] = True
            changes.attributes[sc.N_PLUS_ONE_COUNT] = top.count
            changes.attributes[sc.N_PLUS_ONE_STATEMENT] = top.statement
        for pattern in patterns:
            self._n_plus_one.add(1, _db_metric_attributes(pattern.system, pattern.operation))

    def _failed(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        found: Failure,
        changes: SpanChanges,
    ) -> None:
        verdict = classify(self.classifier, found)
        kind = error_type(attributes, found)
        changes.attributes[sc.ERROR_TYPE] = kind
        changes.attributes[sc.ERROR_CATEGORY] = verdict.category
        changes.attributes[sc.ERROR_RETRYABLE] = verdict.retryable
        changes.attributes[sc.ERROR_FINGERPRINT] = fingerprint(span, found, kind)
        if first_count(found.exception):
            self._errors.add(
                1,
                {
                    sc.ERROR_CATEGORY: verdict.category,
                    sc.ERROR_RETRYABLE: verdict.retryable,
                    sc.ERROR_TYPE: kind,
                },
            )

    def _database(
        self,
        span: ReadableSpan,
        call: DbCall,
        normalized: str | None,
        found: Failure | None,
        changes: SpanChanges,
    ) -> None:
        seconds = _duration_s(span)
        dimensions = _db_metric_attributes(call.system, call.operation)
        if call.namespace:
            dimensions["db.namespace"] = call.namespace
        if call.server_address:
            dimensions["server.address"] = call.server_address
        if call.server_port is not None:
            dimensions["server.port"] = call.server_port
        if found is not None:
            dimensions[sc.ERROR_TYPE] = str(changes.attributes.get(sc.ERROR_TYPE, "_OTHER"))
        self._duration.record(seconds, dimensions)
        if seconds >= self.slow_threshold_s:
            changes.attributes[sc.DB_SLOW] = True
            self._slow.add(1, _db_metric_attributes(call.system, call.operation))
        if normalized is not None:
            self.n_plus_one.observe(span, call, normalized)

    def _statement(self, call: DbCall, normalized: str, changes: SpanChanges) -> None:
        if self.statement_mode == "sanitized":
            if normalized != call.statement:
                for key in call.statement_keys:
                    changes.attributes[key] = normalized
        elif self.statement_mode == "omit":
            changes.removed.update(call.statement_keys)


def _duration_s(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return max(0, span.end_time - span.start_time) / 1e9


def _db_metric_attributes(system: str, operation: str) -> dict[str, AttributeValue]:
    return {"db.system.name": system, "db.operation.name": operation}


def attribute_names() -> Mapping[str, str]:
    """Every span attribute this module writes (documented in docs/telemetry.md)."""
    return {
        sc.ERROR_TYPE: "fully qualified exception type, or HTTP/gRPC status",
        sc.ERROR_CATEGORY: "error category",
        sc.ERROR_RETRYABLE: "would a retry plausibly succeed",
        sc.ERROR_FINGERPRINT: "stable hash grouping the same error",
        sc.DB_SLOW: "database span at or above the slow threshold",
        sc.N_PLUS_ONE: "N+1 found under this span",
        sc.N_PLUS_ONE_COUNT: "executions of the repeated statement",
        sc.N_PLUS_ONE_STATEMENT: "the repeated statement, normalised",
    }


class BaggageOnSpans:
    """Copies the configured baggage keys onto every span started under them.

    Done at start, while the span is still writable: no copy needed at the end.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)

    def on_start(self, span: Span, parent_context: Context | None) -> None:
        entries = baggage.get_all(parent_context)
        if not entries:
            return
        for key in self.keys:
            value = entries.get(key)
            if value is not None:
                span.set_attribute(key, str(value))

    def __call__(self, span: ReadableSpan, changes: SpanChanges) -> None:
        return None
