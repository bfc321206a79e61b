"""Findings on every ended span: errors classified, slow queries, N+1, DB metrics.

``SpanInsights`` is one enricher (one pass per span) that composes small functions:
``failure()`` reads how a span failed, the classifier decides what kind of failure it
was, ``db_call()`` reads a database client span, ``RootFindings`` counts repeated
statements under a local root. Metrics are recorded here because only here is each span
seen once, finished, with its duration.

One logical database operation counts once. With ``opentelemetry-bootstrap`` a statement
run through SQLAlchemy has two client spans: SQLAlchemy's and the driver's (psycopg2,
psycopg, sqlite3, asyncpg...). The SQLAlchemy span carries the slow flag, the duration
metric and the N+1 count; the driver span ("twin", see ``lineage``) is sanitized like
every span but counted nowhere. Why that one: it exists whenever SQLAlchemy is used
(our distro installs its instrumentation; driver instrumentations come and go with
bootstrap), it wraps the driver call, so its duration includes the driver's, and our
SQLAlchemy hook sees its bound parameters - so the numbers do not change when a driver
instrumentation is added. SQLAlchemy's pool ``connect`` spans are not operations.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from otel_excellence import _semconv as sc
from otel_excellence._config.settings import Settings
from otel_excellence._diagnostics import internal_error
from otel_excellence._export.metrics import FastMetrics
from otel_excellence._export.pipeline import SpanChanges, attributes_of
from otel_excellence._findings import lineage
from otel_excellence._findings.errors import (
    Classifier,
    ErrorClass,
    qualified_name,
    safe_str,
    wrapped,
)
from otel_excellence._findings.fingerprint import (
    fingerprint_exception,
    fingerprint_stacktrace,
    fingerprint_text,
)
from otel_excellence._findings.hooks import parameters_hash
from otel_excellence._findings.n_plus_one import NPlusOne, RootFindings
from otel_excellence._findings.sql import (
    MAX_STATEMENT_READ,
    SQL_OPERATIONS,
    operation_name,
    sanitize_statement,
    scrub_credentials,
    scrub_error_text,
)

# Semantic-convention buckets for db.client.operation.duration (seconds).
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_COUNTED = "_otel_excellence_counted"
# Attributes some instrumentations can be told to fill with bound values (asyncpg's
# capture_parameters, the semconv's db.query.parameter.<key>): values, never exported
# unless statements are exported raw.
_PARAMETER_ATTRIBUTES = ("db.statement.parameters",)
_PARAMETER_PREFIX = "db.query.parameter."
_MAX_STATEMENT_ATTRIBUTE = 256  # the N+1 metric's statement label
_MAX_PLANS = 512  # call sites remembered (SpanInsights._plans)
_MAX_PLANNED = 4096  # characters of statement a remembered call site may hold
# Spans that describe this process's own answer to a request (not calls it made).
_RESPONSE_KINDS = frozenset({SpanKind.SERVER, SpanKind.INTERNAL})


# The SQLAlchemy span in flight in this context (lineage.note_end's test, inline).
_orm_in_flight = lineage.orm_in_flight.get


# -- reading spans ----------------------------------------------------------------------
class DbCall:
    """What a database client span says about the call it measured."""

    # A plain class with slots: built for every database span, a frozen dataclass's
    # object.__setattr__ per field cost more than all the rest of its reading.
    __slots__ = (
        "cell",
        "connect",
        "literals",
        "namespace",
        "operation",
        "server_address",
        "server_port",
        "statement",
        "statement_keys",
        "system",
    )

    def __init__(
        self,
        system: str,
        statement: str | None,
        statement_keys: tuple[str, ...],
        namespace: str | None,
        server_address: str | None,
        server_port: int | None,
        connect: bool,
    ) -> None:
        self.system = system
        self.statement = statement
        self.statement_keys = statement_keys
        self.namespace = namespace
        self.server_address = server_address
        self.server_port = server_port
        # SQLAlchemy's pool connects are not operations on the database (nor is a
        # driver span that is the inner half of a SQLAlchemy span: see counted()).
        self.connect = connect
        self.operation = ""  # db.operation.name, once the statement is read
        self.literals = False  # the raw text carried literals (it tells calls apart)
        self.cell: Any = None  # its duration histogram's cell, once found


def db_call(span: ReadableSpan, attributes: Mapping[str, Any]) -> DbCall | None:
    """The database call behind a client span, or None for any other span."""
    if span._kind is not SpanKind.CLIENT:
        return None
    get = attributes.get
    system = get("db.system.name") or get("db.system")
    if not isinstance(system, str):
        return None
    query_text, old_statement = get("db.query.text"), get("db.statement")
    statement = query_text or old_statement
    port = get("server.port") or get("net.peer.port")
    namespace = get("db.namespace") or get("db.name")
    address = get("server.address") or get("net.peer.name")
    # The SDK's private fields: its public accessors are properties, one call each.
    scope = span._instrumentation_scope
    from_sqlalchemy = scope is not None and scope.name == lineage.SQLALCHEMY_SCOPE
    connect = from_sqlalchemy and span._name == "connect"
    keys = _STATEMENT_KEYS.get((query_text is not None, old_statement is not None))
    return DbCall(
        system,
        statement if isinstance(statement, str) else None,
        keys or (),
        str(namespace) if namespace is not None else None,
        str(address) if address is not None else None,
        port if isinstance(port, int) else None,
        connect,
    )


def counted(span: ReadableSpan, call: DbCall) -> bool:
    """Whether the call counts as an operation (metrics, slow flag, N+1)."""
    return not call.connect and getattr(span, lineage.TWIN, None) is None


# Which statement attributes a span has (stable, old, both with `database/dup`).
_STATEMENT_KEYS = {
    (True, True): ("db.query.text", "db.statement"),
    (True, False): ("db.query.text",),
    (False, True): ("db.statement",),
}


# Database systems whose statements are not SQL: their operation is the command word
# the instrumentation put first (Redis' own "CMD ? ?"), not a SQL verb.
_COMMAND_SYSTEMS = frozenset(
    {"redis", "memcached", "mongodb", "elasticsearch", "opensearch", "cassandra",
     "couchbase", "couchdb", "dynamodb", "hbase", "neo4j", "geode"}
)  # fmt: skip
_COMMAND = re.compile(r"[A-Za-z][A-Za-z_.\-]{0,31}")


@functools.lru_cache(maxsize=4096)
def operation_of(system: str, statement: str | None, span_name: str) -> str:
    """``db.operation.name``: the leading verb of the sanitized statement (or command).

    SQL comes from the sanitized text and a fixed list of verbs (``sql.operation_name``),
    so a leading comment or literal can never become a metric label.
    """
    source = statement if statement is not None else span_name
    if system in _COMMAND_SYSTEMS:
        match = _COMMAND.match(source.lstrip())
        return match.group(0).upper() if match else "OTHER"
    return operation_name(source)


@functools.lru_cache(maxsize=4096)
def statement_facts(
    statement: str, system: str, span_name: str
) -> tuple[str, str, str | None, bool]:
    """(normal form, operation, safe span name or None, literals) of a statement.

    Everything derived from the statement text, once per distinct statement and name:
    the sanitizer's own cache keys on the text too, but one lookup here replaces three.
    ``literals``: the text differs from its normal form by more than spacing, so it
    carried values that tell calls apart; spacing alone (a multi-line statement, a Redis
    pipeline's "GET ?\nSET ? ?") says nothing, and repetition alone then counts.
    """
    normalized = sanitize_statement(statement, system)
    operation = operation_of(system, normalized, span_name)
    renamed = None if system in _COMMAND_SYSTEMS else safe_span_name(span_name, operation)
    literals = statement != normalized and " ".join(statement.split()) != normalized
    return normalized, operation, renamed, literals


@functools.lru_cache(maxsize=1024)
def safe_span_name(name: str, operation: str) -> str | None:
    """A SQL span's name when it does not start with a SQL verb, else None.

    Instrumentations name spans after the statement's first word (asyncpg, the DB-API
    ones) or "<first word> <database>" (SQLAlchemy): a statement that starts with a
    comment would put the comment in the span name. It becomes the operation instead.
    """
    first, _, rest = name.partition(" ")
    if first.upper() in SQL_OPERATIONS:
        return None
    return f"{operation} {rest}" if rest else operation


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
    events = span._events
    # The BoundedList's deque: its own iterator copies it under its lock.
    items = events._dq if type(events) is BoundedList else events  # type: ignore[attr-defined]
    return [e for e in items if e.name == "exception"] if items else []


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
    description = span._status.description
    return exc if description and safe_str(exc).startswith(description) else None


def _handled(span: ReadableSpan, exception_type: str | None) -> BaseException | None:
    """The exception a framework handler answered for this (root) span, if it is the
    one the span failed with."""
    exc = getattr(span, lineage.HANDLED, None)
    if not isinstance(exc, BaseException):
        return None
    if exception_type is not None and qualified_name(type(exc)) != exception_type:
        return None
    return exc


_GRPC_CODE_NAMES = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}  # fmt: skip


def _grpc_code_name(value: Any) -> str | None:
    return _GRPC_CODE_NAMES.get(value) if isinstance(value, int) else None


def failure(span: ReadableSpan, attributes: Mapping[str, Any]) -> Failure | None:
    """Why ``span`` failed, or None if it did not."""
    events = _exception_events(span)
    if span._status.status_code is not StatusCode.ERROR and not events:
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
        found.exception = _live_exception(span, found.exception_type) or _handled(
            span, found.exception_type
        )
    else:
        # A framework's error handler answered the exception (Flask errorhandler,
        # Django's 500 handling, a Starlette exception handler): the request span
        # failed by its status only, but the exception is the verdict - also for the
        # spans that describe sending that response (ASGI's "http send").
        found.exception = _handled(span, None) or _live_exception(span, None)
        if (
            found.exception is None
            and span._kind in _RESPONSE_KINDS
            and (found.http_status or 0) >= 500
        ):
            root = lineage.local_root(span)  # type: ignore[arg-type]
            found.exception = _handled(root, None) if root is not None else None
    if found.exception is not None:
        found.exception_type = qualified_name(type(found.exception))
        found.message = found.message or safe_str(found.exception)
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
    if found.exception_type and found.exception is not None:
        return found.exception_type  # the exception itself says more than a status
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


def first_count(exc: BaseException | None, trace_id: int) -> bool:
    """True the first time an exception (or what it wraps) is seen failing a span of
    this trace.

    One exception fails every span it propagates through; it is one error, counted once.
    """
    if exc is None:
        return True
    if getattr(exc, _COUNTED, None) == trace_id:
        return False
    for inner in wrapped(exc):  # orig or __cause__ may be properties that raise
        if getattr(inner, _COUNTED, None) == trace_id:
            return False
    # Marked with the trace it failed: an exception object the application reuses (a
    # module-level instance), or one unpickled from another process, counts again in
    # another trace. A type without __dict__ counts each time: over- rather than under-.
    try:  # noqa: SIM105 - suppress() builds a context manager per failed span
        setattr(exc, _COUNTED, trace_id)
    except (AttributeError, TypeError):
        pass
    return True


def scrubbed_events(events: Sequence[Event], scrub: Any) -> list[Event] | None:
    """Exception events with scrubbed message and stack trace; None if nothing changed."""
    out: list[Event] | None = None
    for position, event in enumerate(events):
        if event.name != "exception":
            continue
        attributes = event.attributes or {}
        new = None
        for key in (sc.EXCEPTION_MESSAGE, sc.EXCEPTION_STACKTRACE):
            value = attributes.get(key)
            if isinstance(value, str):
                cleaned = scrub(value)
                if cleaned != value:
                    if new is None:
                        new = dict(attributes)
                    new[key] = cleaned
        if new is not None:
            if out is None:
                out = list(events)
            out[position] = Event(event.name, new, event.timestamp)
    return out


# -- the enricher -------------------------------------------------------------------------
class SpanInsights:
    """The otel-excellence enricher: errors, slow queries, N+1, statements, DB metrics."""

    def __init__(
        self, settings: Settings, classifier: Classifier, instruments: FastMetrics
    ) -> None:
        lineage.reserve_note_slots()  # before the first span
        self.classifier = classifier
        self.slow_threshold_s = settings.slow_db_threshold_ms / 1000
        self.statement_mode = settings.db_statement
        self.n_plus_one_threshold = settings.n_plus_one_threshold
        # Per call site: (the call read from its span, its normal form, its edit).
        self._plans: dict[Any, tuple[DbCall, str | None, SpanChanges | None]] = {}
        self._scrub = scrub_credentials if settings.db_statement == "raw" else scrub_error_text
        self._dbapi_records_duration = _stable_database_conventions()
        self._duration = instruments.histogram(
            "db.client.operation.duration",
            "s",
            "Duration of database client operations.",
            DURATION_BUCKETS,
        )
        self._errors = instruments.counter(
            "otel_excellence.errors",
            "{error}",
            "Errors by category and retryability, each exception counted once.",
        )
        self._slow = instruments.counter(
            "otel_excellence.db.slow_queries",
            "{query}",
            "Database operations at or above the slow threshold.",
        )
        self._n_plus_one = instruments.counter(
            "otel_excellence.db.n_plus_one",
            "{pattern}",
            "N+1 patterns: a statement repeated within one request or task.",
        )

    # The function itself, not a method calling it: one call less on every span.
    on_start = staticmethod(lineage.note_start)

    def __call__(self, span: ReadableSpan, changes: SpanChanges | None) -> SpanChanges | None:
        # The hot path: most spans are neither database calls nor failed nor roots with
        # findings, and are done after a handful of reads (no copies of attributes or
        # events - the SDK's accessors copy - and no SpanChanges).
        call = plan = site = None
        if span._kind is SpanKind.CLIENT:
            inner = getattr(span._attributes, "_dict", None)  # attributes_of(), inline
            attributes = inner if inner is not None else attributes_of(span)
            if _orm_in_flight() is span:
                lineage.note_end(span)
            # What a call site's spans say is the same span after span: read and
            # sanitized once, then found by the name, scope and attributes that produced it.
            # Other client spans (HTTP, RPC) are not looked up: their attributes differ
            # call after call.
            if "db.system" in attributes or "db.system.name" in attributes:
                scope = span._instrumentation_scope
                try:
                    site = (span._name, scope and scope._name, *attributes.items())
                    plan = self._plans.get(site)
                except TypeError:  # an unhashable value; read it the long way
                    site = None
                call = plan[0] if plan is not None else db_call(span, attributes)
        events = span._events
        failed = span._status.status_code is StatusCode.ERROR or (
            bool(events._dq if type(events) is BoundedList else events)  # type: ignore[attr-defined]
            and any(event.name == "exception" for event in events)
        )
        findings = getattr(span, lineage.FINDINGS, None)
        patterns = self._patterns(findings) if findings is not None else None
        if call is None and not failed and not patterns:
            return changes
        if call is None:
            attributes = attributes_of(span)  # read only when there is work to do
        # SpanChanges is made when there is a change: most database spans need none
        # (bound parameters, nothing slow), and for them it was a tenth of the work.
        normalized = None
        if call is not None or failed:
            # Protection first and on its own: should a finding below fail, the span
            # still goes out without secrets (changes made before a failure are kept).
            normalized, changes = self._protect(span, attributes, call, plan, site, failed, changes)
        try:
            found = failure(span, attributes) if failed else None
            if found is not None:
                changes = changes if changes is not None else SpanChanges()
                self._failed(span, attributes, found, changes)
            if call is not None and counted(span, call):
                changes = self._database(span, call, normalized, found, changes)
            if patterns:
                changes = changes if changes is not None else SpanChanges()
                self._finish_root(span, attributes, patterns, changes)
        except Exception:  # noqa: BLE001 - findings are optional; the span is not
            internal_error("SpanInsights")
        return changes

    def _protect(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        call: DbCall | None,
        plan: tuple[DbCall, str | None, SpanChanges | None] | None,
        site: Any,
        failed: bool,
        changes: SpanChanges | None,
    ) -> tuple[str | None, SpanChanges | None]:
        """Sanitize the statement (as its call site was, when it is known) and scrub
        error texts; fail closed. The normal form, and the changes (made if any)."""
        normalized = None
        try:
            if plan is not None:
                normalized, edit = plan[1], plan[2]
                if edit is not None:
                    changes = _with_edit(changes, edit)
            elif call is not None:
                normalized, edit = self._protect_call(span, attributes, call, None)
                if edit is not None:
                    changes = _with_edit(changes, edit)
                self._plan(site, call, normalized, edit)
            if failed:
                changes = self._scrub_failure(span, changes)
        except Exception:  # noqa: BLE001 - drop what could not be cleaned, never export it
            changes = self._fail_closed(span, attributes, call, changes)
        return normalized, changes

    def _plan(
        self, site: Any, call: DbCall, normalized: str | None, edit: SpanChanges | None
    ) -> None:
        """Remember what a call site's spans say and how they are sanitized (read-only
        from here on). Bounded: emptied when full; a statement too long to be a call
        site's (a bulk insert with its values) is not kept."""
        if site is None or (call.statement is not None and len(call.statement) > _MAX_PLANNED):
            return
        if edit is not None and any(
            key in _PARAMETER_ATTRIBUTES or key.startswith(_PARAMETER_PREFIX)
            for key in edit.removed
        ):
            return  # bound values among its attributes: every call would be a new site
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        self._plans[site] = (call, normalized, edit)

    @staticmethod
    def _fail_closed(
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        call: DbCall | None,
        changes: SpanChanges | None,
    ) -> SpanChanges:
        """Sanitizing or scrubbing failed: drop what could not be cleaned."""
        internal_error("SpanInsights protection")
        if changes is None:
            changes = SpanChanges()
        if call is not None:
            changes.removed.update(call.statement_keys)
            changes.removed.update(_parameter_attributes(attributes))
            changes.removed.add(sc.CONNECTION_STRING)
        changes.status = Status(span.status.status_code, None)
        changes.events = [e for e in span.events if e.name != "exception"]
        return changes

    def _protect_call(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        call: DbCall,
        changes: SpanChanges | None,
    ) -> tuple[str | None, SpanChanges | None]:
        statement = call.statement
        normalized = None
        if statement is None:
            call.operation = operation_of(call.system, None, span._name)
        else:
            # Keyed on what the sanitizer reads: a cache of whole multi-megabyte bulk
            # statements would hold megabytes per entry.
            normalized, call.operation, renamed, call.literals = statement_facts(
                statement[:MAX_STATEMENT_READ], call.system, span._name
            )
            mode = self.statement_mode
            if mode == "sanitized":
                if normalized != statement:
                    changes = changes if changes is not None else SpanChanges()
                    for key in call.statement_keys:
                        changes.attributes[key] = normalized
            elif mode == "omit":
                changes = changes if changes is not None else SpanChanges()
                changes.removed.update(call.statement_keys)
            if renamed is not None and mode != "raw":
                changes = changes if changes is not None else SpanChanges()
                self._rename(attributes, call.operation, renamed, changes)
        if self.statement_mode != "raw":
            # Bound values some instrumentations can capture; db.query.parameter.<key>
            # exists only with the stable conventions (db.query.text).
            bound = _parameter_attributes(attributes) if "db.query.text" in attributes else []
            if "db.statement.parameters" in attributes:
                bound.append("db.statement.parameters")
            if bound:
                changes = changes if changes is not None else SpanChanges()
                changes.removed.update(bound)
        connection = attributes.get(sc.CONNECTION_STRING)
        if isinstance(connection, str):
            changes = changes if changes is not None else SpanChanges()
            changes.attributes[sc.CONNECTION_STRING] = scrub_credentials(connection)
        return normalized, changes

    def _scrub_failure(self, span: ReadableSpan, changes: SpanChanges | None) -> SpanChanges:
        changes = changes if changes is not None else SpanChanges()  # a failure is noted
        description = span._status.description
        if description:
            cleaned = self._scrub(description)
            if cleaned != description:
                changes.status = Status(StatusCode.ERROR, cleaned)
        events = scrubbed_events(span._events, self._scrub)
        if events is not None:
            changes.events = events
        return changes

    def _patterns(self, findings: RootFindings) -> list[NPlusOne] | None:
        """The N+1 patterns of a local root that is ending (most requests have none)."""
        try:
            return findings.finish(self.n_plus_one_threshold)
        except Exception:  # noqa: BLE001 - findings are optional; the span is not
            internal_error("SpanInsights")
            return None

    def _finish_root(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        patterns: list[NPlusOne],
        changes: SpanChanges,
    ) -> None:
        top = patterns[0]  # one set of attributes per span: the most repeated
        # OTEL_EXCELLENCE_DB_STATEMENT=omit keeps statements out of every signal: the
        # finding then says how often and where, not what.
        omit = self.statement_mode == "omit"
        changes.attributes[sc.N_PLUS_ONE] = True
        changes.attributes[sc.N_PLUS_ONE_COUNT] = top.count
        if not omit:
            changes.attributes[sc.N_PLUS_ONE_STATEMENT] = top.statement
        changes.attributes[sc.N_PLUS_ONE_PARENT] = top.parent
        route = attributes.get("http.route")
        route = route if isinstance(route, str) and route else span.name
        timestamp = span.end_time
        for pattern in patterns:
            event: dict[str, AttributeValue] = {
                sc.N_PLUS_ONE_COUNT: pattern.count,
                sc.N_PLUS_ONE_PARENT: pattern.parent,
            }
            statement = None if omit else pattern.statement[:_MAX_STATEMENT_ATTRIBUTE]
            if not omit:
                event[sc.N_PLUS_ONE_STATEMENT] = pattern.statement
            changes.added_events.append(Event(sc.N_PLUS_ONE, event, timestamp))
            key = (pattern.system, pattern.operation, statement, route)
            cell = self._n_plus_one.cell(
                key,
                _db_attributes(pattern.system, pattern.operation, statement=statement, route=route),
            )
            self._n_plus_one.add(cell, 1, span._context)

    def _failed(
        self,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        found: Failure,
        changes: SpanChanges,
    ) -> None:
        verdict = classify(self.classifier, found)
        kind = error_type(attributes, found)
        print_ = fingerprint(span, found, kind)
        changes.attributes[sc.ERROR_TYPE] = kind
        changes.attributes[sc.ERROR_CATEGORY] = verdict.category
        changes.attributes[sc.ERROR_RETRYABLE] = verdict.retryable
        changes.attributes[sc.ERROR_FINGERPRINT] = print_
        context = span._context
        if first_count(found.exception, context.trace_id if context else 0):
            key = (verdict.category, verdict.retryable, kind, print_)
            cell = self._errors.cell(
                key,
                {
                    sc.ERROR_CATEGORY: verdict.category,
                    sc.ERROR_RETRYABLE: verdict.retryable,
                    sc.ERROR_TYPE: kind,
                    sc.ERROR_FINGERPRINT: print_,
                },
            )
            self._errors.add(cell, 1, span._context)

    def _database(
        self,
        span: ReadableSpan,
        call: DbCall,
        normalized: str | None,
        found: Failure | None,
        changes: SpanChanges | None,
    ) -> SpanChanges | None:
        start, end = span._start_time, span._end_time
        seconds = max(0, end - start) / 1e9 if start is not None and end is not None else 0.0
        operation = call.operation
        failed_as = None
        if found is not None and changes is not None:  # made for the failure
            failed_as = str(changes.attributes.get(sc.ERROR_TYPE, "_OTHER"))
        # The call site's cell, once found (its attributes are the call site's).
        cell = call.cell if failed_as is None else None
        if cell is None:
            key = (
                call.system,
                operation,
                call.namespace,
                call.server_address,
                call.server_port,
                failed_as,
            )
            cell = self._duration.cells.get(key) or self._duration.cell(
                key,
                _db_attributes(
                    call.system,
                    operation,
                    namespace=call.namespace,
                    address=call.server_address,
                    port=call.server_port,
                    error=failed_as,
                ),
            )
            if failed_as is None:
                call.cell = cell
        if not (self._dbapi_records_duration and getattr(span, lineage.DBAPI_TIMED, False)):
            self._duration.record(cell, seconds, span._context)
        if seconds >= self.slow_threshold_s:
            changes = changes if changes is not None else SpanChanges()
            changes.attributes[sc.DB_SLOW] = True
            named = (call.system, operation)
            slow = self._slow.cells.get(named) or self._slow.cell(
                named, _db_attributes(call.system, operation)
            )
            self._slow.add(slow, 1, span._context)
        # lineage.local_root and parent_of, without two calls
        root = getattr(span, lineage.ROOT, None)
        if normalized is None or root is None:
            return changes  # a statement with no request or task around it repeats nothing
        parent = getattr(span, lineage.PARENT, None)
        if parent is not None and parent._kind is SpanKind.PRODUCER:
            # The transport of a message being sent (kombu's Redis LPUSH under Celery's
            # apply_async): enqueuing tasks in a loop is not a database N+1.
            return changes
        findings: RootFindings | None = getattr(root, lineage.FINDINGS, None)
        if findings is None:
            findings = lineage.findings_of(root, RootFindings)
        # What the call ran with, as a hash: bound parameters (seen by a library hook)
        # plus the raw text (literals differ per call); None when nothing tells calls
        # apart.
        parameters = getattr(span, lineage.PARAMETERS, lineage.NO_PARAMETERS)
        identity: int | None
        if parameters is not lineage.NO_PARAMETERS:
            identity = hash((call.statement, parameters_hash(parameters)))
        else:
            identity = hash(call.statement) if call.literals else None
        findings.observe(normalized, call.system, operation, identity, (parent or root)._name)
        return changes

    @staticmethod
    def _rename(
        attributes: Mapping[str, Any], operation: str, name: str, changes: SpanChanges
    ) -> None:
        """Span name and ``db.operation``: never a statement's leading comment."""
        changes.name = name
        for key in sc.DB_OPERATION:
            value = attributes.get(key)
            if isinstance(value, str):
                renamed = safe_span_name(value, operation)
                if renamed is not None:
                    changes.attributes[key] = renamed


def _with_edit(changes: SpanChanges | None, edit: SpanChanges) -> SpanChanges:
    """``changes`` (made if None) with a call site's edit: the edit is shared, never
    handed on itself."""
    if changes is None:
        changes = SpanChanges()
    changes.attributes.update(edit.attributes)
    changes.removed.update(edit.removed)
    if edit.name is not None:
        changes.name = edit.name
    return changes


def _db_attributes(
    system: str,
    operation: str,
    *,
    namespace: str | None = None,
    address: str | None = None,
    port: int | None = None,
    error: str | None = None,
    statement: str | None = None,
    route: str | None = None,
) -> dict[str, AttributeValue]:
    """A database metric's attributes (semantic-convention names, stable ones only)."""
    attributes: dict[str, AttributeValue] = {
        "db.system.name": system,
        "db.operation.name": operation,
    }
    optional = (
        ("db.namespace", namespace or None),
        ("server.address", address or None),
        ("server.port", port),
        (sc.ERROR_TYPE, error),
        (sc.N_PLUS_ONE_STATEMENT, statement),
        (sc.ROUTE, route),
    )
    attributes.update((name, value) for name, value in optional if value is not None)
    return attributes


def _stable_database_conventions() -> bool:
    """With the stable database conventions (``OTEL_SEMCONV_STABILITY_OPT_IN`` names
    ``database`` or ``database/dup``), the DB-API instrumentations record
    ``db.client.operation.duration`` themselves: for the operations they timed, a point
    of ours would be the second one."""
    opted = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    return any(item.strip() in {"database", "database/dup"} for item in opted.split(","))


def _parameter_attributes(attributes: Mapping[str, Any]) -> list[str]:
    return [
        key
        for key in attributes
        if key in _PARAMETER_ATTRIBUTES or key.startswith(_PARAMETER_PREFIX)
    ]


def attribute_names() -> Mapping[str, str]:
    """Every span attribute this module writes (documented in docs/telemetry.md)."""
    return {
        sc.ERROR_TYPE: "fully qualified exception type, or HTTP/gRPC status",
        sc.ERROR_CATEGORY: "error category",
        sc.ERROR_RETRYABLE: "would a retry plausibly succeed",
        sc.ERROR_FINGERPRINT: "stable hash grouping the same error",
        sc.DB_SLOW: "database span at or above the slow threshold",
        sc.N_PLUS_ONE: "N+1 found within this local root",
        sc.N_PLUS_ONE_COUNT: "executions of the repeated statement",
        sc.N_PLUS_ONE_STATEMENT: "the repeated statement, normalised",
        sc.N_PLUS_ONE_PARENT: "the span the repeated statement ran directly under",
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

    def __call__(self, span: ReadableSpan, changes: SpanChanges | None) -> SpanChanges | None:
        return changes
