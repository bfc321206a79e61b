"""The OpenTelemetry log handler as a tap at the root, not a handler in the hierarchy.

``opentelemetry-instrumentation-logging`` adds its ``LoggingHandler`` to the root
logger. A handler there changes what the application prints, because the standard
library and libraries decide what to print by looking for handlers:

- Python's last resort (``logging.lastResort``) prints WARNING and above to stderr only
  when no handler is found for a record: an app that never configures logging prints
  ``logger.warning("disk almost full")`` plainly, and nothing at all with a root handler
  (not even with ``OTEL_LOGS_EXPORTER=none``);
- werkzeug and Flask add their console handler only when no handler at their level is
  found up the hierarchy: the development server's "Running on http://…" and request
  lines vanish;
- Celery's worker clears the root logger's handlers (``worker_hijack_root_logger``),
  which silently removed the OpenTelemetry handler from every worker.

Vanilla OpenTelemetry does this only to users who opt into the handler; our distro turns
it on by default, so keeping the application's output as it was is on us. The handler
is therefore taken off the root logger and called from ``Logger.callHandlers`` after
the standard walk, for exactly the records that reach the root (every logger on the way
propagates) at or above the handler's level: the records it received before, after the
application's own handlers as before, and nothing the application prints changes.
Patching ``callHandlers`` is the one place every record of every logger passes once,
after the logger's level and filters have accepted it, whoever configures logging when
(Sentry's SDK captures log records the same way, for the same reason).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentelemetry.instrumentation.logging import LoggingInstrumentor

_original_call_handlers: Callable[[logging.Logger, logging.LogRecord], None] = (
    logging.Logger.callHandlers
)
_installed = False


def tapped_handler() -> logging.Handler | None:
    """The OpenTelemetry handler, if the logging instrumentation installed one."""
    handler = LoggingInstrumentor._logging_handler
    return handler if isinstance(handler, logging.Handler) else None


def reaches_root(logger: logging.Logger) -> bool:
    """Would a record handled by ``logger`` reach the root's handlers (stdlib's walk)?"""
    current = logger
    while current.parent is not None:
        if not current.propagate:
            return False
        current = current.parent
    return current is logging.root


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    _original_call_handlers(self, record)
    handler = LoggingInstrumentor._logging_handler
    if handler is not None and record.levelno >= handler.level and reaches_root(self):
        handler.handle(record)


class _NotOpenTelemetry(logging.Filter):
    """On ``logging.lastResort``: the SDK's and exporters' own records stay off the console.

    Without the distro there are no such records, so the application's output is not
    concerned; with the OpenTelemetry handler on the root they never printed either.
    Printed, they would repeat on every retry ("Transient error ... retrying") and show
    the endpoint as configured, credentials included; the distro reports delivery
    problems itself, once, scrubbed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "opentelemetry" or record.name.startswith("opentelemetry."))


def install() -> None:
    """Move the instrumentation's root handler into the tap (idempotent)."""
    global _installed  # noqa: PLW0603 - patched once per process
    handler = tapped_handler()
    if handler is None:
        return
    root = logging.getLogger()
    if handler in root.handlers:
        # The instrumentation re-adds it after basicConfig/dictConfig/fileConfig only if
        # it was there when they were called: once removed, it stays out.
        root.removeHandler(handler)
    if not _installed:
        _installed = True
        if logging.lastResort is not None:
            logging.lastResort.addFilter(_NotOpenTelemetry())
        logging.Logger.callHandlers = _call_handlers  # type: ignore[method-assign]
