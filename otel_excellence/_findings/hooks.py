"""Hooks into the official instrumentations, for what spans alone cannot tell.

- Redis ``response_hook``: whether a read command found its key (cache hit or miss).
- Redis ``request_hook`` and a SQLAlchemy ``after_cursor_execute`` listener: what each
  call was executed with, so N+1 detection can tell "same statement, different
  parameters" from a repeated identical query. Only a hash is kept, never the values.
"""

from __future__ import annotations

import reprlib
from typing import Any

from opentelemetry import metrics
from opentelemetry.trace import Span

from otel_excellence import _semconv as sc
from otel_excellence._diagnostics import internal_error
from otel_excellence._findings.insights import NPlusOneDetector

# Redis read commands whose reply tells hit from miss.
_SINGLE_KEY_READS = frozenset({"GET", "GETEX", "GETDEL", "HGET"})
_MULTI_KEY_READS = frozenset({"MGET", "HMGET"})
_HASH_READS = frozenset({"HGETALL"})


# A bounded repr: an executemany with a million rows must not build a huge string on the
# application's thread just to tell parameter sets apart.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 200
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 32
_REPR.maxlevel = 4


def _parameters_hash(parameters: Any) -> int:
    try:
        return hash(parameters)
    except TypeError:
        return hash(_REPR.repr(parameters))


def _outcomes(command: str, response: Any) -> list[str]:
    if command in _SINGLE_KEY_READS:
        return ["miss" if response is None else "hit"]
    if command in _MULTI_KEY_READS and isinstance(response, list | tuple):
        return ["miss" if item is None else "hit" for item in response]
    if command in _HASH_READS:
        return ["hit" if response else "miss"]
    return []


class LibraryHooks:
    """Configured callables handed to the Redis and SQLAlchemy instrumentations."""

    def __init__(
        self, detector: NPlusOneDetector, meter_provider: metrics.MeterProvider | None = None
    ) -> None:
        self._detector = detector
        meter = metrics.get_meter("otel_excellence", meter_provider=meter_provider)
        self._cache = meter.create_counter(
            "otel_excellence.cache.requests",
            unit="{request}",
            description="Redis read commands by outcome: hit or miss.",
        )

    def _note(self, span: Span, parameters: Any) -> None:
        if span.is_recording():
            self._detector.note_parameters(
                span.get_span_context().span_id, _parameters_hash(parameters)
            )

    def redis_request(self, span: Span, instance: Any, args: Any, kwargs: Any) -> None:
        try:
            self._note(span, tuple(args[1:]))
        except Exception:  # noqa: BLE001 - a hook must never fail the Redis call
            internal_error("redis request hook")

    def redis_response(self, span: Span, instance: Any, response: Any) -> None:
        try:
            if hasattr(instance, "command_stack"):
                return  # a pipeline: its reply is a list of replies, not one command's
            command = str(getattr(span, "name", "")).upper()
            outcomes = _outcomes(command, response)
            for outcome in outcomes:
                self._cache.add(
                    1, {sc.CACHE_RESULT: outcome, "db.system.name": "redis",
                        "db.operation.name": command}
                )  # fmt: skip
            if len(outcomes) == 1 and span.is_recording():
                span.set_attribute(sc.CACHE_RESULT, outcomes[0])
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
                self._note(span, parameters)
        except Exception:  # noqa: BLE001 - a listener must never fail the query
            internal_error("sqlalchemy listener")

    def listen_sqlalchemy(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        if not event.contains(Engine, "after_cursor_execute", self.sqlalchemy_after_execute):
            event.listen(Engine, "after_cursor_execute", self.sqlalchemy_after_execute)
