"""Hooks into the official instrumentations, for what spans alone cannot tell.

- Redis ``response_hook``: whether a read command found its key (cache hit or miss),
  for single commands and for pipelines.
- What each database or cache call was executed with, so N+1 detection can tell "same
  statement, different parameters" from a repeated identical query: the Redis
  ``request_hook``, a SQLAlchemy ``after_cursor_execute`` listener, and thin wrappers
  around the DB-API (psycopg2, psycopg, sqlite3...) and asyncpg instrumentations' own
  execute wrappers. The values are held on the live span object until it ends, then
  reduced to a hash; they are never exported.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any

from opentelemetry.trace import Span

from otel_excellence import _semconv as sc
from otel_excellence._diagnostics import internal_error
from otel_excellence._export.metrics import FastMetrics
from otel_excellence._findings import lineage

# Redis read commands whose reply tells hit from miss.
_SINGLE_KEY_READS = frozenset({"GET", "GETEX", "GETDEL", "HGET"})
_MULTI_KEY_READS = frozenset({"MGET", "HMGET"})
_HASH_READS = frozenset({"HGETALL"})
_READS = _SINGLE_KEY_READS | _MULTI_KEY_READS | _HASH_READS
_MAX_PIPELINE_COMMANDS = 1000


# Parameter sets are told apart by at most this many values' hashes (an executemany
# of a million rows must not be walked on the application's thread).
_MAX_HASHED_ITEMS = 64


def parameters_hash(parameters: Any) -> int:
    """A hash telling parameter sets apart, with bounded work whatever their size.

    Hashable parameters (tuples of scalars: most drivers) hash as they are. Otherwise,
    up to _MAX_HASHED_ITEMS values (a dict's, psycopg's usual form, or a sequence's)
    each contribute their own hash, or their type and size when they have none: never
    ``repr`` of a user object, whose cost is the object's (a 10 MB BLOB).
    """
    try:
        return hash(parameters)
    except TypeError:
        pass
    if isinstance(parameters, Mapping):
        items: Iterable[Any] = parameters.items()
    elif isinstance(parameters, list | tuple):
        items = parameters
    else:
        return hash((type(parameters), _size(parameters)))
    return hash(tuple(_value_hash(item) for item in islice(items, _MAX_HASHED_ITEMS)))


def _value_hash(item: Any) -> Any:
    """One value's (or a mapping item's) contribution: its hash, else type and size."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return (item[0], _flat_hash(item[1]))  # a mapping's (name, value)
    return _flat_hash(item)


def _flat_hash(value: Any) -> Any:
    try:
        return hash(value)
    except TypeError:
        return (type(value), _size(value))


def _size(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return -1


def _outcomes(command: str, response: Any) -> list[str]:
    if command in _SINGLE_KEY_READS:
        return ["miss" if response is None else "hit"]
    if command in _MULTI_KEY_READS and isinstance(response, list | tuple):
        return ["miss" if item is None else "hit" for item in response]
    if command in _HASH_READS:
        return ["hit" if response else "miss"]
    return []


def _pipeline_commands(span: Span) -> list[str]:
    """The commands of a traced pipeline, from its statement (one ``CMD ? ?`` per line):
    its command stack is already reset when the response hook runs."""
    attributes = getattr(span, "attributes", None) or {}
    statement = sc.first(attributes, sc.DB_STATEMENT)
    if not isinstance(statement, str):
        return []
    lines = statement.split("\n", _MAX_PIPELINE_COMMANDS)[:_MAX_PIPELINE_COMMANDS]
    return [line.split(" ", 1)[0].upper() for line in lines]


def _note(span: Span, parameters: Any) -> None:
    if span.is_recording():
        setattr(span, lineage.PARAMETERS, parameters)


class LibraryHooks:
    """Configured callables handed to the Redis and SQLAlchemy instrumentations."""

    def __init__(self, instruments: FastMetrics) -> None:
        self._cache = instruments.counter(
            "otel_excellence.cache.requests",
            "{request}",
            "Redis read commands by outcome: hit or miss.",
        )

    def _count(self, command: str, outcome: str, span: Span) -> None:
        key = (command, outcome)
        cell = self._cache.cells.get(key) or self._cache.cell(
            key,
            {sc.CACHE_RESULT: outcome, "db.system.name": "redis", "db.operation.name": command},
        )
        self._cache.add(cell, 1, span.get_span_context())

    def redis_request(self, span: Span, instance: Any, args: Any, kwargs: Any) -> None:
        try:
            _note(span, tuple(args[1:]))
        except Exception:  # noqa: BLE001 - a hook must never fail the Redis call
            internal_error("redis request hook")

    def redis_response(self, span: Span, instance: Any, response: Any) -> None:
        try:
            if hasattr(instance, "command_stack") or hasattr(instance, "_execution_strategy"):
                # A pipeline: its reply is the list of its commands' replies.
                if not isinstance(response, list | tuple):
                    return
                outcomes: list[tuple[str, str]] = []
                for command, reply in zip(_pipeline_commands(span), response, strict=False):
                    outcomes.extend((command, o) for o in _outcomes(command, reply))
            else:
                command = str(getattr(span, "name", "")).upper()
                if command in _SINGLE_KEY_READS:  # GET and its kind: one reply, one outcome
                    outcome = "miss" if response is None else "hit"
                    self._count(command, outcome, span)
                    if span.is_recording():
                        span.set_attribute(sc.CACHE_RESULT, outcome)
                    return
                if command not in _READS:
                    return  # most commands say nothing of hits (SET, INCR, ...)
                outcomes = [(command, o) for o in _outcomes(command, response)]
            for command, outcome in outcomes:
                self._count(command, outcome, span)
            results = {outcome for _, outcome in outcomes}
            if len(results) == 1 and span.is_recording():
                span.set_attribute(sc.CACHE_RESULT, results.pop())
        except Exception:  # noqa: BLE001 - a hook must never fail the Redis call
            internal_error("redis response hook")

    def redis_kwargs(self) -> dict[str, Any]:
        return {"request_hook": self.redis_request, "response_hook": self.redis_response}

    def sqlalchemy_after_execute(
        self,
        conn: Any,
        cursor: Any,
        statement: Any,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        # Class-level listeners run before the instrumentation's per-engine one, which
        # ends the span: here the span still exists and is open.
        try:
            span = getattr(context, "_otel_span", None)
            if span is not None:
                _note(span, parameters)
        except Exception:  # noqa: BLE001 - a listener must never fail the query
            internal_error("sqlalchemy listener")

    def listen_sqlalchemy(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        if not event.contains(Engine, "after_cursor_execute", self.sqlalchemy_after_execute):
            event.listen(Engine, "after_cursor_execute", self.sqlalchemy_after_execute)


# -- driver instrumentations: the parameters of a call, for the span it is about to start
def _with_parameters(
    execute: Callable[..., Any], parameters_of: Callable[[tuple[Any, ...], Any], Any]
) -> Callable[..., Any]:
    # Only the DB-API's synchronous execute (asyncpg's wrappers are async, below).
    @functools.wraps(execute)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            token = lineage.driver_call.set((parameters_of(args, kwargs), True))
        except Exception:  # noqa: BLE001 - the query runs whatever happens here
            internal_error("driver parameters hook")
            return execute(self, *args, **kwargs)
        try:
            return execute(self, *args, **kwargs)
        finally:
            lineage.driver_call.reset(token)

    wrapper.__otel_excellence__ = True  # type: ignore[attr-defined]
    return wrapper


def _with_parameters_async(
    execute: Callable[..., Any],
    parameters_of: Callable[[tuple[Any, ...], Any], Any],
    dbapi: bool = False,
) -> Callable[..., Any]:
    @functools.wraps(execute)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            token = lineage.driver_call.set((parameters_of(args, kwargs), dbapi))
        except Exception:  # noqa: BLE001 - the query runs whatever happens here
            internal_error("driver parameters hook")
            return await execute(self, *args, **kwargs)
        try:
            return await execute(self, *args, **kwargs)
        finally:
            lineage.driver_call.reset(token)

    wrapper.__otel_excellence__ = True  # type: ignore[attr-defined]
    return wrapper


def _wrap(owner: type, name: str, wrapper: Callable[..., Any], of: Any) -> None:
    current = getattr(owner, name, None)
    if callable(current) and not getattr(current, "__otel_excellence__", False):
        setattr(owner, name, wrapper(current, of))


def hook_dbapi() -> None:
    """DB-API drivers (psycopg2, psycopg, sqlite3, pymysql...): ``traced_execution(cursor,
    query_method, statement, parameters)`` starts the driver span; its parameters are
    noted for that span. Looked up on the class at each call, so wrapping works
    whenever it happens."""
    try:
        from opentelemetry.instrumentation.dbapi import CursorTracer
    except ImportError:
        return

    def of(args: tuple[Any, ...], kwargs: Any) -> Any:
        # args = (cursor, query_method, statement[, parameters])
        return args[3] if len(args) > 3 else kwargs.get("parameters", ())

    _wrap(CursorTracer, "traced_execution", _with_parameters, of)
    _wrap(
        CursorTracer,
        "traced_execution_async",
        functools.partial(_with_parameters_async, dbapi=True),
        of,
    )


def hook_asyncpg() -> None:
    """asyncpg: the instrumentor binds its ``_do_*`` methods when it instruments, so this
    runs before it does (``register_instrumentor_hooks(before=...)``)."""
    try:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    except ImportError:
        return

    # _do_execute(func, instance, args, kwargs): args = (query, *parameters)
    def execute_parameters(args: tuple[Any, ...], kwargs: Any) -> Any:
        return tuple(args[2][1:]) if len(args) > 2 else ()

    # _do_prepared_execute(func, instance, args, kwargs): args = parameters
    def prepared_parameters(args: tuple[Any, ...], kwargs: Any) -> Any:
        return tuple(args[2]) if len(args) > 2 else ()

    # _do_cursor_execute(func, instance, args, kwargs): the cursor holds them
    def cursor_parameters(args: tuple[Any, ...], kwargs: Any) -> Any:
        return tuple(getattr(args[1], "_args", ()) or ()) if len(args) > 1 else ()

    _wrap(AsyncPGInstrumentor, "_do_execute", _with_parameters_async, execute_parameters)
    _wrap(AsyncPGInstrumentor, "_do_prepared_execute", _with_parameters_async, prepared_parameters)
    _wrap(AsyncPGInstrumentor, "_do_cursor_execute", _with_parameters_async, cursor_parameters)


def hook_aiosqlite() -> None:
    """aiosqlite runs each sqlite3 call on the connection's own worker thread, in the
    context that thread started with: the threading instrumentation gives it the pool's
    ``connect`` span, so every sqlite3 span of the connection's life lands in that old
    trace, and neither its request nor the SQLAlchemy span executing it is visible there
    (the statement would count twice). Each call now runs in a copy of its caller's
    context, as ``asyncio.to_thread`` does."""
    if importlib.util.find_spec("aiosqlite") is None:
        return
    from aiosqlite.core import Connection

    execute: Any = Connection._execute  # untyped in aiosqlite
    if getattr(execute, "__otel_excellence__", False):
        return

    @functools.wraps(execute)
    async def in_callers_context(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await execute(self, contextvars.copy_context().run, fn, *args, **kwargs)

    in_callers_context.__otel_excellence__ = True  # type: ignore[attr-defined]
    Connection._execute = in_callers_context  # type: ignore[method-assign]


def hook_sqlite3_shortcuts() -> None:
    """sqlite3's ``Connection.execute``/``executemany`` (the shortcuts most scripts use)
    create their cursor in C, past the instrumentation's connection proxy: such
    statements had no span at all. On a traced sqlite3 connection they now go through
    a traced cursor, which is what the shortcuts are documented to do ("create a new
    cursor, call execute() on it, return it")."""
    import sqlite3

    try:
        from opentelemetry.instrumentation.dbapi import TracedConnectionProxy
    except ImportError:
        return

    def shortcut(name: str) -> Callable[..., Any]:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            connection = self.__wrapped__
            if not isinstance(connection, sqlite3.Connection):
                return getattr(connection, name)(*args, **kwargs)
            return getattr(self.cursor(), name)(*args, **kwargs)

        method.__name__ = name
        method.__otel_excellence__ = True  # type: ignore[attr-defined]
        return method

    for name in ("execute", "executemany"):
        current = TracedConnectionProxy.__dict__.get(name)
        if current is None:
            setattr(TracedConnectionProxy, name, shortcut(name))


def after_sqlite3_instrumented() -> None:
    hook_sqlite3_shortcuts()
    hook_aiosqlite()
