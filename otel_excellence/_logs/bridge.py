"""stdlib logging and structlog as OpenTelemetry log records: once each, typed, linked.

The official instrumentations do the bridging: ``opentelemetry-instrumentation-logging``
provides the handler (which we call for every record that reaches the root logger,
without leaving it on the root where it would change what the app prints: see
``tap.py``), ``opentelemetry-instrumentation-structlog`` puts a processor in structlog's
chain (and re-inserts it when the app calls ``structlog.configure``). What we add:

- no duplicates when structlog is routed through stdlib logging (both bridges would
  emit the event): our structlog processor marks what it emitted and is about to hand
  to stdlib, and a filter on the root handler drops exactly that record;
- ``trace_id``/``span_id`` in structlog's rendered lines;
- typed attributes (values OpenTelemetry cannot carry become strings instead of being
  dropped) and exception details like the spans': fully qualified ``exception.type``,
  scrubbed message and stack trace, category, retryability, fingerprint;
- configured baggage keys on every record (``BaggageLogProcessor``).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import islice
from typing import Any

from opentelemetry import baggage
from opentelemetry._logs import LogRecord, NoOpLogger, get_logger
from opentelemetry.instrumentation.structlog import StructlogInstrumentor, StructlogProcessor
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.trace import Span
from opentelemetry.trace.propagation import _SPAN_KEY

from otel_excellence import _semconv as sc
from otel_excellence._config.distro import register_instrumentor_hooks
from otel_excellence._diagnostics import internal_error
from otel_excellence._findings.error_rules import CLASSIFIER
from otel_excellence._findings.errors import qualified_name, safe_str
from otel_excellence._findings.fingerprint import (
    MAX_STACKTRACE_READ,
    fingerprint_exception,
    fingerprint_stacktrace,
)
from otel_excellence._findings.lineage import current_context
from otel_excellence._findings.sql import scrub_credentials, scrub_error_text, valid_utf8
from otel_excellence._logs import tap as _tap
from otel_excellence._logs.tap import reaches_root, tapped_handler

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
# structlog keys that are not attributes (the official processor's list, plus ours).
_RESERVED = frozenset(
    {"event", "level", "timestamp", "exc_info", "exception", "_record", "_logger", "_name",
     "_from_structlog", "trace_id", "span_id"}
)  # fmt: skip
TRACE_ID_KEY = "trace_id"
SPAN_ID_KEY = "span_id"

# (logger name, level) of the structlog event just emitted and about to be handed to
# stdlib. The next LogRecord created with that name and level in this context is its
# twin: the record factory tags it (creation happens before any logger filter, so the
# mark is always consumed) and the OTel handler's filter drops tagged records.
_forwarded: ContextVar[tuple[str, int] | None] = ContextVar(
    "otel_excellence_structlog_forwarded", default=None
)
# The twin itself, by identity: tagging the record with an attribute would show up in
# formatters that dump every record attribute (python-json-logger and the like).
_twin: ContextVar[logging.LogRecord | None] = ContextVar(
    "otel_excellence_structlog_twin", default=None
)


@dataclass(frozen=True)
class LogOptions:
    """Resolved once at configuration: how to scrub error texts."""

    scrub: Callable[[str], str] = scrub_error_text


_options = LogOptions()


# -- record content ---------------------------------------------------------------------
_MAX_DEPTH = 8
# Items kept per list or map in a log value (the rest is summarised in one entry): a
# million-item list logged by mistake costs the same as a thousand.
MAX_ITEMS = 1000
# Characters kept of a value we turn into text ourselves (str() of an object): what an
# object's __str__ returns is unbounded; the app's own strings are passed as they are
# (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT is the setting for those).
MAX_TEXT = 16 * 1024
_MORE = "..."
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _text(value: Any) -> str:
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the record
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001
            return f"<unprintable {type(value).__name__}>"
    if not isinstance(text, str):
        return f"<unprintable {type(value).__name__}>"
    return valid_utf8(text[:MAX_TEXT])


_AS_IS = frozenset({type(None), bool, float, bytes})


def typed(value: Any, depth: int = 0) -> Any:  # noqa: PLR0911 - one return per kind
    """A value OpenTelemetry can carry: primitives and their lists/maps as they are,
    anything else as its string (rather than being dropped with a warning). Nesting is
    cut at a fixed depth, so self-referencing structures end too; lists and maps keep
    their first ``MAX_ITEMS`` items; text with a lone surrogate is made valid UTF-8, and
    an integer beyond OTLP's 64 bits becomes its string (either made the encoder reject
    the whole batch)."""
    kind = type(value)
    # Exact types first: a log event's values are nearly all plain text and numbers,
    # and these checks are a fraction of the isinstance chain below.
    if kind is str:
        return value if value.isascii() else valid_utf8(value)
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else _text(value)
    if kind in _AS_IS:
        return value
    if isinstance(value, bool | float | bytes):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else _text(value)
    if isinstance(value, str):
        return valid_utf8(value)
    if depth >= _MAX_DEPTH:
        return _text(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = [typed(item, depth + 1) for item in islice(value, MAX_ITEMS)]
        if len(value) > MAX_ITEMS:
            items.append(f"{_MORE} {len(value) - MAX_ITEMS} more")
        return items
    if isinstance(value, Mapping):
        pairs = {_text(k): typed(v, depth + 1) for k, v in islice(value.items(), MAX_ITEMS)}
        if len(value) > MAX_ITEMS:
            pairs[_MORE] = f"{len(value) - MAX_ITEMS} more"
        return pairs
    return _text(value)


def _key(key: Any) -> str:
    """An attribute's key as valid UTF-8 text (the encoder rejects the batch otherwise)."""
    return key if isinstance(key, str) and key.isascii() else _text(key)


def valid_record(record: LogRecord) -> LogRecord:
    """``record`` with a body, severity text and event name the OTLP encoder accepts.

    One lone surrogate in a body (or a body of a type OTLP has no value for) made the
    encoder raise, and every record of that export was lost. The body becomes what
    ``typed`` makes of it: text stays as it is (an ``isascii()`` check for the common
    case), a lone surrogate becomes ``?``, lists and maps are capped, other objects
    become their string. Only the record we emit changes: the application's
    ``LogRecord`` and event dict, and so its console output, are left as they were.
    """
    # Straight-line checks, no loop or getattr: this runs once per bridged event.
    body = record.body
    if type(body) is not str or not body.isascii():
        record.body = typed(body)
    text = record.severity_text
    if isinstance(text, str) and not text.isascii():
        record.severity_text = valid_utf8(text)
    name = record.event_name
    if isinstance(name, str) and not name.isascii():
        record.event_name = valid_utf8(name)
    return record


def exception_of(exc_info: Any) -> BaseException | None:
    """The exception a logging call refers to (``exc_info=True``, a tuple or an instance)."""
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    return None


def exception_attributes(exc: BaseException) -> dict[str, Any]:
    """The same exception details a failed span carries, for a log record."""
    kind = qualified_name(type(exc))
    verdict = CLASSIFIER.classify_exception(exc)
    scrub = _options.scrub
    return {
        sc.EXCEPTION_TYPE: kind,
        sc.EXCEPTION_MESSAGE: scrub(safe_str(exc)),
        sc.EXCEPTION_STACKTRACE: scrub("".join(traceback.format_exception(exc))),
        sc.ERROR_CATEGORY: verdict.category,
        sc.ERROR_RETRYABLE: verdict.retryable,
        sc.ERROR_FINGERPRINT: fingerprint_exception(kind, exc),
    }


# The exception's own line in a rendered traceback: its type at the start of a line,
# after the last frame (a message may run over several lines after it).
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]{0,255})(?::[ ]|:?$)", re.MULTILINE)
_LAST_FRAME = '\n  File "'


def text_exception_attributes(stacktrace: str) -> dict[str, Any]:
    """Exception details from a rendered traceback alone (no exception object at hand).

    Only the end of the text is read for the type and message (the scrubber and the
    fingerprint have their own caps): the first unindented line after the last frame
    that starts with a dotted name is the exception; the rest of the text its message.
    """
    tail = stacktrace[-MAX_STACKTRACE_READ:]
    frame = tail.rfind(_LAST_FRAME)
    after = tail.find("\n", frame + 1) if frame >= 0 else 0  # the frame line's end
    found = _EXCEPTION_LINE.search(tail, max(after, 0))
    if found is None:
        kind, message = "_OTHER", tail.rstrip().rsplit("\n", 1)[-1]
    else:
        kind, message = found.group(1), tail[found.end() :].rstrip("\n")
    verdict = CLASSIFIER.classify_strings(kind, message)
    return {
        sc.EXCEPTION_TYPE: kind,
        sc.EXCEPTION_MESSAGE: _options.scrub(message),
        sc.EXCEPTION_STACKTRACE: _options.scrub(stacktrace),
        sc.ERROR_CATEGORY: verdict.category,
        sc.ERROR_RETRYABLE: verdict.retryable,
        sc.ERROR_FINGERPRINT: fingerprint_stacktrace(kind, stacktrace),
    }


def _rendered_exception(rendered: Any) -> BaseException | None:
    """The live exception behind structlog's already-rendered ``exception`` key.

    ``format_exc_info``/``dict_tracebacks`` replace ``exc_info`` before our processor
    runs; inside the ``except`` block the exception is still at hand, and it is the
    one rendered when the text ends with its own last line.
    """
    live = sys.exc_info()[1]
    if live is None:
        return None
    if isinstance(rendered, str):
        own = traceback.format_exception_only(live)[-1].strip()
        return live if rendered.rstrip().endswith(own) else None
    return live


# The span of the last event and its formatted ids (None when its context is invalid).
_last_ids: tuple[Any, tuple[str, str] | None] = (None, None)


def add_trace_ids(event_dict: dict[str, Any]) -> None:
    """``trace_id`` and ``span_id`` of the active span, for the rendered line."""
    global _last_ids  # noqa: PLW0603 - one tuple, replaced whole: safe across threads
    # trace.get_current_span() without its layers of calls (this runs per log event).
    span: Span | None = current_context().get(_SPAN_KEY)  # type: ignore[assignment]
    if span is None:
        return
    # Consecutive events mostly come from one span, whose context never changes: its
    # ids are checked and formatted once. The tuple keeps that one span alive until the
    # next event, so its identity cannot be reused meanwhile.
    last = _last_ids
    if last[0] is not span:
        context = span.get_span_context()
        ids = None
        if context.is_valid:
            ids = (format(context.trace_id, "032x"), format(context.span_id, "016x"))
        last = _last_ids = (span, ids)
    ids = last[1]
    if ids is None:
        return
    if TRACE_ID_KEY not in event_dict:
        event_dict[TRACE_ID_KEY] = ids[0]
    if SPAN_ID_KEY not in event_dict:
        event_dict[SPAN_ID_KEY] = ids[1]


# -- structlog --------------------------------------------------------------------------
# The scope the instrumentation names records after when the wrapped logger has no name.
_INSTRUMENTATION_NAME = StructlogProcessor.__module__
# Logger names are few in an application; a bound keeps generated ones from growing it.
_MAX_CACHED_LOGGERS = 256


def _otel_handler() -> logging.Handler | None:
    return tapped_handler()


def _reaches(logger: logging.Logger, handler: logging.Handler, level: int) -> bool:
    """Would a record at ``level`` on ``logger`` reach ``handler`` (tapped at the root)?"""
    return level >= handler.level and reaches_root(logger)


class BridgeProcessor(StructlogProcessor):
    """The official structlog processor, made to emit once and to carry more.

    Put it right before the renderer (the instrumentation does that for every
    ``structlog.configure`` call). It emits the event as an OTel record, then adds
    ``trace_id``/``span_id`` for the renderer. When the wrapped logger is a stdlib logger
    whose record will reach the OTel root handler, that record is marked for dropping:
    this processor already emitted the structured version.
    """

    def __init__(self, logger_provider: Any = None) -> None:
        super().__init__(logger_provider=logger_provider)  # type: ignore[no-untyped-call]
        # The instrumentation asks its provider for the logger on every event (a lock, a
        # set insert and a cache lookup: ~0.8 µs); the provider is fixed, so is the answer.
        self._loggers: dict[str, Any] = {}

    def _emit(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> None:
        """What ``StructlogProcessor.__call__`` does, with the OTel logger cached by name."""
        name = getattr(logger, "name", _INSTRUMENTATION_NAME)
        otel_logger = self._loggers.get(name) if type(name) is str else None
        if otel_logger is None:
            otel_logger = get_logger(name, logger_provider=self._logger_provider)
            if type(name) is str and len(self._loggers) < _MAX_CACHED_LOGGERS:
                self._loggers[name] = otel_logger
        if not isinstance(otel_logger, NoOpLogger):
            otel_logger.emit(self._translate(event_dict, method_name))

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
        try:
            if _forwarded.get() is not None:
                _forwarded.set(None)  # an earlier event's twin that never came is not due
            level = _STDLIB_LEVELS.get(method_name)
            stdlib = isinstance(logger, logging.Logger) and level is not None
            if stdlib and (logger.disabled or not logger.isEnabledFor(level)):
                # stdlib will drop it, so the app never sees it: neither does the backend.
                return event_dict
            self._emit(logger, method_name, event_dict)
            if stdlib:
                handler = _otel_handler()
                if handler is not None and _reaches(logger, handler, level):  # type: ignore[arg-type]
                    _forwarded.set((logger.name, level))  # type: ignore[arg-type]
            add_trace_ids(event_dict)
        except Exception:  # noqa: BLE001 - a log call must never fail because of telemetry
            internal_error("structlog bridge")
        return event_dict

    def _translate(self, event_dict: dict[str, Any], method_name: str | None = None) -> LogRecord:
        record = super()._translate(event_dict, method_name)
        try:
            return valid_record(record)
        except Exception:  # noqa: BLE001 - the record goes out as the instrumentation built it
            internal_error("structlog record body")
            return record

    @staticmethod
    def _get_attributes(event_dict: dict[str, Any]) -> dict[str, Any]:
        attributes = {
            k if type(k) is str and k.isascii() else _key(k): typed(v)
            for k, v in event_dict.items()
            if k not in _RESERVED
        }
        exc_info = event_dict.get("exc_info")
        exc = None if exc_info is None else exception_of(exc_info)
        if exc is None and "exception" in event_dict:
            exc = _rendered_exception(event_dict["exception"])
            if exc is None and isinstance(event_dict["exception"], str):
                attributes.update(text_exception_attributes(event_dict["exception"]))
        if exc is not None:
            attributes.update(exception_attributes(exc))
        return attributes


def structlog_processors() -> list[Any]:
    """The processors to put right before your structlog renderer, for chains the
    instrumentation cannot extend itself (``structlog.wrap_logger(processors=...)``, a
    chain whose last processor is not the renderer)::

        structlog.configure(processors=[
            structlog.processors.add_log_level,
            *otel_excellence.structlog_processors(),
            structlog.processors.JSONRenderer(),
        ])

    The chain then emits each event once as an OpenTelemetry log record and renders
    it with ``trace_id`` and ``span_id``. Safe to use whether or not telemetry is on.
    """
    installed = StructlogInstrumentor._processor
    if isinstance(installed, BridgeProcessor):
        return [installed]
    return [BridgeProcessor()]


# -- stdlib -----------------------------------------------------------------------------
class _BridgeFilter(logging.Filter):
    """On the OTel handler: drops the stdlib twin of a structlog event."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record is _twin.get():
            _twin.set(None)
            return False
        return True


def _tagging_factory(
    create: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = create(*args, **kwargs)
        mark = _forwarded.get()
        if mark is not None:
            _forwarded.set(None)
            if mark == (record.name, record.levelno):
                _twin.set(record)
        return record

    factory.__wrapped__ = create  # type: ignore[attr-defined]
    return factory


def _typed_record_attributes(attributes: Any, record: logging.LogRecord) -> dict[str, Any]:
    """A stdlib record's attributes as OTLP carries them, with its exception's details."""
    try:
        typed_attributes = {_key(k): typed(v) for k, v in attributes.items()} if attributes else {}
        exc = None if record.exc_info is None else exception_of(record.exc_info)
        if exc is not None:
            typed_attributes.update(exception_attributes(exc))
    except Exception:  # noqa: BLE001 - the record still goes out as the handler built it
        internal_error("log record attributes")
        return attributes if attributes is not None else {}
    return typed_attributes


def _typed_stdlib_attributes(
    original: Callable[[logging.LogRecord], tuple[dict[str, Any], Any]],
) -> Callable[[logging.LogRecord], tuple[dict[str, Any], Any]]:
    """The logging instrumentation's handler: its builder returns (attributes, event name)."""

    def get_attributes(record: logging.LogRecord) -> tuple[dict[str, Any], Any]:
        attributes, event_name = original(record)
        return _typed_record_attributes(attributes, record), event_name

    get_attributes.__wrapped__ = original  # type: ignore[attr-defined]
    return get_attributes


def _sdk_attributes(
    original: Callable[[logging.LogRecord], Any],
) -> Callable[[logging.LogRecord], Any]:
    """The same for the SDK's own LoggingHandler (its builder returns attributes only)."""

    def get_attributes(record: logging.LogRecord) -> Any:
        return _typed_record_attributes(original(record), record)

    get_attributes.__wrapped__ = original  # type: ignore[attr-defined]
    return get_attributes


def _valid_translation(
    original: Callable[[logging.LogRecord], LogRecord],
) -> Callable[[logging.LogRecord], LogRecord]:
    """A handler's ``_translate`` whose records the OTLP encoder accepts (``valid_record``)."""

    def translate(record: logging.LogRecord) -> LogRecord:
        translated = original(record)
        try:
            return valid_record(translated)
        except Exception:  # noqa: BLE001 - the record goes out as the handler built it
            internal_error("log record body")
            return translated

    translate.__wrapped__ = original  # type: ignore[attr-defined]
    return translate


def _wrap_translation(handler: logging.Handler) -> None:
    current = getattr(handler, "_translate", None)
    if callable(current) and not hasattr(current, "__wrapped__"):
        handler._translate = _valid_translation(current)  # type: ignore[attr-defined]


def _wrap_sdk_handlers() -> None:
    # With OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true the SDK's LoggingHandler
    # is the one on the root logger: its exception texts must be scrubbed too.
    from opentelemetry.sdk._logs import LoggingHandler as SdkLoggingHandler

    for handler in logging.getLogger().handlers:
        current = getattr(handler, "_get_attributes", None)
        if isinstance(handler, SdkLoggingHandler) and not hasattr(current, "__wrapped__"):
            handler._get_attributes = _sdk_attributes(current)  # type: ignore[arg-type,assignment,method-assign]
        if isinstance(handler, SdkLoggingHandler):
            _wrap_translation(handler)


def _after_logging_instrumented() -> None:
    _wrap_sdk_handlers()
    handler = _otel_handler()
    if handler is None:
        return
    _tap.install()
    if not any(isinstance(f, _BridgeFilter) for f in handler.filters):
        handler.addFilter(_BridgeFilter())
        logging.setLogRecordFactory(_tagging_factory(logging.getLogRecordFactory()))
    current = getattr(handler, "_get_attributes", None)
    if callable(current) and not hasattr(current, "__wrapped__"):
        # The handler's own attribute builder, extended on this one instance: the
        # instrumentation keeps a reference to the handler object itself (to re-add it
        # after dictConfig), so replacing the handler would lose that protection.
        handler._get_attributes = _typed_stdlib_attributes(current)  # type: ignore[attr-defined]
    _wrap_translation(handler)


def _after_structlog_instrumented() -> None:
    import structlog

    official = StructlogInstrumentor._processor
    if official is None or isinstance(official, BridgeProcessor):
        return
    ours = BridgeProcessor(logger_provider=official._logger_provider)
    # The instrumentation re-inserts whatever sits in _processor when the app later
    # calls structlog.configure(); swapping it there keeps ours in every chain.
    StructlogInstrumentor._processor = ours
    processors = [
        ours if p is official else p for p in structlog.get_config().get("processors", [])
    ]
    StructlogInstrumentor._original_configure(processors=processors)


# -- baggage ----------------------------------------------------------------------------
class BaggageLogProcessor(LogRecordProcessor):
    """Copies the configured baggage keys onto every log record emitted under them."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        entries = baggage.get_all()
        if not entries:
            return
        attributes = log_record.log_record.attributes
        if attributes is None:
            return
        for key in self.keys:
            value = entries.get(key)
            if value is not None and key not in attributes:
                attributes[key] = str(value)  # type: ignore[index]

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _safe(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - telemetry must not break the application
            internal_error(fn.__name__)

    run.__name__ = fn.__name__
    return run


def install(raw_statements: bool = False) -> None:
    """Register the log bridge's hooks on the logging and structlog instrumentors."""
    global _options  # noqa: PLW0603 - resolved once per process at configuration
    _options = LogOptions(scrub=scrub_credentials if raw_statements else scrub_error_text)
    register_instrumentor_hooks("logging", after=_safe(_after_logging_instrumented))
    register_instrumentor_hooks("structlog", after=_safe(_after_structlog_instrumented))
