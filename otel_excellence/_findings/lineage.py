"""Where a span sits, noted when it starts: its local root, its parent, its ORM twin.

Findings need facts that an ended span no longer carries: which span is the local root
of this process's part of the trace (N+1 is reported there), what the span's immediate
parent is called, and whether a driver span (psycopg, sqlite3, asyncpg...) is the inner
half of a SQLAlchemy execution that already has a span of its own. All of it is known
when a span starts, so it is noted then, on the SDK ``Span`` object itself, under the
``_oe_*`` names below: nothing global to bound or to clean, and nothing exported. They
are set and read as attributes (``setattr``/``getattr``), never through ``span.__dict__``:
in CPython 3.11+ reading ``__dict__`` turns the object's inline attribute storage into a
real dict, which cost about 10,000 instructions per span, most of it in the SDK's own
later reads of the span.

The ORM/driver correlation happens at execution time, not by comparing names: a
SQLAlchemy statement span is started in ``before_cursor_execute`` and ended in
``after_cursor_execute``/``handle_error``; in between SQLAlchemy calls the driver, whose
instrumentation starts its own span. A context variable holds the SQLAlchemy span in
flight, so a driver span started under it in the same context (thread, asyncio task, or
SQLAlchemy's greenlet, which shares its task's context) is its twin. A variable per
context keeps concurrent requests apart.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry import context as context_api
from opentelemetry.context import Context, get_current
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import Span
from opentelemetry.sdk.trace import _Span as _SdkSpan
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanKind
from opentelemetry.trace.propagation import _SPAN_KEY

SQLALCHEMY_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
# Noted on SDK Span objects (plain Python attributes, never exported).
ROOT = "_oe_root"  # the local root Span; absent on a local root itself (no self-cycle)
PARENT = "_oe_parent"  # the parent Span, when it is local
TWIN = "_oe_twin"  # set on a driver span: the SQLAlchemy span it is the inner half of
PARAMETERS = "_oe_parameters"  # what the call was executed with (from a library hook)
FINDINGS = "_oe_findings"  # on a local root: its RootFindings (N+1 state)
HANDLED = "_oe_handled"  # on a local root: the exception a framework handler answered
# On a span whose operation a DB-API instrumentation timed (its own span, or the SQLAlchemy
# span it is the twin of): with the stable database conventions, that instrumentation
# records db.client.operation.duration itself.
DBAPI_TIMED = "_oe_dbapi_timed"
_OUTER = "_oe_outer"  # on a SQLAlchemy span: the one in flight when it started (a connect)

_SDK_SPANS = frozenset({_SdkSpan})  # what the SDK's tracer creates

# The SQLAlchemy span executing in this context (statement or pool connect), if any.
orm_in_flight: ContextVar[Span | None] = ContextVar("otel_excellence_orm_span", default=None)
# The driver call about to start its span, set by our driver hooks (_findings/hooks.py)
# around the instrumentation's own wrapper and read when the span starts: what it runs
# with, and whether a DB-API instrumentation times it. One variable, not two: each set
# and reset builds a new context mapping.
NO_PARAMETERS: Any = object()
driver_call: ContextVar[tuple[Any, bool] | None] = ContextVar(
    "otel_excellence_driver_call", default=None
)


def _current_context_getter() -> Callable[[], Context]:
    """``get_current`` without the API's two layers of calls (it runs for every span and
    every log event), for the default contextvars runtime; any other runtime keeps the
    API's function."""
    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    if type(runtime) is ContextVarsRuntimeContext:
        variable = getattr(runtime, "_current_context", None)
        if isinstance(variable, ContextVar):
            return variable.get
    return get_current


current_context = _current_context_getter()


_NOTES = (ROOT, PARENT, TWIN, PARAMETERS, FINDINGS, HANDLED, DBAPI_TIMED, _OUTER)


def reserve_note_slots() -> None:
    """Make room for the notes in every span's inline attribute storage.

    CPython 3.11+ stores an instance's attributes inline, in slots named by keys its
    class shares among all its instances; the class takes new names only while few
    instances exist. A note first set after that (a root's findings, set mid-request on
    the thousandth request) turns that span's storage into a dict, and the SDK's every
    later read of the span pays for it. Set once on a span made before any other, each
    note has its slot for all spans to come. Measured: a request's root span was the
    one that paid.
    """
    span = _SdkSpan("otel_excellence.notes", context=INVALID_SPAN_CONTEXT)
    for name in _NOTES:
        setattr(span, name, None)


def note_start(span: Span, parent_context: Context | None) -> None:
    """Note the span's local root and parent, and whether it is a driver twin."""
    # trace.get_current_span(parent_context), without its layers of calls: on_start
    # runs for every span.
    # An empty Context() is falsy but means "no parent" (a new root; extract() of a
    # message without trace headers): only None means the current context.
    context = parent_context if parent_context is not None else current_context()
    current = context.get(_SPAN_KEY)
    # A local SDK span (remote and absent parents are not); a type check, not the ABC's
    # isinstance, which costs more than all the rest here.
    parent = current if type(current) in _SDK_SPANS else None
    if parent is not None:
        setattr(span, PARENT, parent)
        setattr(span, ROOT, getattr(parent, ROOT, parent))
    if span._kind is not SpanKind.CLIENT:
        return
    scope = span._instrumentation_scope
    if scope is not None and scope.name == SQLALCHEMY_SCOPE:
        # Statements run while a pool connect is in flight (dialect initialisation)
        # nest inside it; the connect is in flight again once they end.
        setattr(span, _OUTER, orm_in_flight.get())
        orm_in_flight.set(span)
        return
    orm = orm_in_flight.get()
    driver = driver_call.get()
    # Started inside the SQLAlchemy span's execution, as its sibling (the ORM span is not
    # made current; both may be top-level) or, for pool connects, as its child.
    if (
        orm is not None
        and orm.end_time is None
        and (parent is orm or parent is getattr(orm, PARENT, None))
    ):
        setattr(span, TWIN, orm)
        if driver is not None and driver[1]:
            setattr(orm, DBAPI_TIMED, True)
        return
    if driver is not None:
        parameters, dbapi = driver
        if dbapi:
            setattr(span, DBAPI_TIMED, True)
        setattr(span, PARAMETERS, parameters)


def note_end(span: Span) -> None:
    """A SQLAlchemy span ending is no longer in flight in this context."""
    if orm_in_flight.get() is span:
        outer = getattr(span, _OUTER, None)
        orm_in_flight.set(outer if outer is not None and outer.end_time is None else None)


_T = TypeVar("_T")


_findings_lock = threading.Lock()


def _new_findings_lock() -> None:
    global _findings_lock  # noqa: PLW0603 - replaced whole, in a forked child only
    _findings_lock = threading.Lock()


# A thread of the parent may have held it at the fork; no thread will release it here.
os.register_at_fork(after_in_child=_new_findings_lock)


def findings_of(root: Span, make: Callable[[], _T]) -> _T:
    """The local root's findings state, made once even when threads race to make it
    (a request's database calls fanned out to a thread pool)."""
    with _findings_lock:
        found: _T | None = getattr(root, FINDINGS, None)
        if found is None:
            found = make()
            setattr(root, FINDINGS, found)
    return found


def local_root(span: Span) -> Span | None:
    """The local root above ``span``, or None when ``span`` is a local root itself."""
    root: Span | None = getattr(span, ROOT, None)
    return root


def parent_of(span: Span) -> Span | None:
    parent: Span | None = getattr(span, PARENT, None)
    return parent
