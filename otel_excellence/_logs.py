"""stdlib logging and structlog as OpenTelemetry log records, each exported once.

The official instrumentations do the bridging: ``opentelemetry-instrumentation-logging``
puts a handler on the root logger (and keeps it through ``basicConfig``/``dictConfig``),
``opentelemetry-instrumentation-structlog`` puts a processor in structlog's chain (and
keeps it through the app's ``structlog.configure``). What they do not do is notice that
an app routing structlog through stdlib logging gets every event twice: once from the
structlog processor, once from the root handler. We swap in a subclass of the structlog
processor that marks an event it emitted and is about to hand to stdlib, and a filter on
the root handler drops exactly that record.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.instrumentation.structlog import StructlogInstrumentor, StructlogProcessor

from otel_excellence._distro import register_instrumentor_hooks
from otel_excellence._log import internal_error

_STDLIB_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

# (logger name, level) of the structlog event just emitted and forwarded to stdlib.
_forwarded: ContextVar[tuple[str, int] | None] = ContextVar(
    "otel_excellence_structlog_forwarded", default=None
)


def _otel_handler() -> logging.Handler | None:
    handler = LoggingInstrumentor._logging_handler
    return handler if isinstance(handler, logging.Handler) else None


def _reaches(logger: logging.Logger, handler: logging.Handler, level: int) -> bool:
    """Would a record at ``level`` on ``logger`` reach ``handler`` (stdlib's own walk)?"""
    if level < handler.level:
        return False
    current: logging.Logger | None = logger
    while current is not None:
        if handler in current.handlers:
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


class BridgeProcessor(StructlogProcessor):
    """The official structlog processor, plus the mark that prevents duplicates.

    When the wrapped logger is a stdlib logger whose record will reach the OTel root
    handler, the event is still emitted here (this is where the structured fields are)
    and the record the handler is about to receive is marked for dropping.
    """

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
        level = _STDLIB_LEVELS.get(method_name)
        if level is None or not isinstance(logger, logging.Logger):
            return super().__call__(logger, method_name, event_dict)
        if not logger.isEnabledFor(level):
            # stdlib will drop it, so the app never sees it: neither does the backend.
            return event_dict
        result = super().__call__(logger, method_name, event_dict)
        handler = _otel_handler()
        if handler is not None and _reaches(logger, handler, level):
            _forwarded.set((logger.name, level))
        return result


class _DropForwardedStructlog(logging.Filter):
    """Drops the stdlib record of a structlog event the bridge processor already emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        mark = _forwarded.get()
        if mark is not None and mark == (record.name, record.levelno):
            _forwarded.set(None)
            return False
        return True


def _after_logging_instrumented() -> None:
    handler = _otel_handler()
    if handler is not None and not any(
        isinstance(f, _DropForwardedStructlog) for f in handler.filters
    ):
        handler.addFilter(_DropForwardedStructlog())


def _after_structlog_instrumented() -> None:
    import structlog

    official = StructlogInstrumentor._processor
    if official is None or isinstance(official, BridgeProcessor):
        return
    ours = BridgeProcessor(logger_provider=official._logger_provider)  # type: ignore[no-untyped-call]
    # The instrumentor re-inserts whatever sits in _processor when the app later calls
    # structlog.configure(); swapping it there keeps ours in every chain.
    StructlogInstrumentor._processor = ours
    processors = [
        ours if p is official else p for p in structlog.get_config().get("processors", [])
    ]
    StructlogInstrumentor._original_configure(processors=processors)


def _safe(fn: Any) -> Any:
    def run() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - telemetry must not break the application
            internal_error(fn.__name__)

    run.__name__ = fn.__name__
    return run


def install() -> None:
    """Register the log bridge's hooks on the logging and structlog instrumentors."""
    register_instrumentor_hooks("logging", after=_safe(_after_logging_instrumented))
    register_instrumentor_hooks("structlog", after=_safe(_after_structlog_instrumented))
