"""otel-excellence: an OpenTelemetry distribution for Python services.

Start a service with ``opentelemetry-instrument python app.py`` and set
``OTEL_SERVICE_NAME`` and ``OTEL_EXPORTER_OTLP_ENDPOINT``; nothing else is needed. For
processes that cannot use the wrapper, call :func:`configure`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otel_excellence._api import configure
from otel_excellence._config.settings import Settings
from otel_excellence._findings.classify import add_error_rules, classify_exception
from otel_excellence._findings.errors import CATEGORIES, ErrorClass, ErrorRule
from otel_excellence._logs.context import current_trace_id, current_traceparent
from otel_excellence.exceptions import ConfigurationError, OtelExcellenceError

if TYPE_CHECKING:  # typed for users; imported on first use (see __getattr__)
    from otel_excellence._logs.bridge import structlog_processors

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The log bridge imports the SDK's logs module, whose import builds a resource from
    # OTEL_RESOURCE_ATTRIBUTES: loaded on first use, it runs after the distro has
    # repaired the settings (``opentelemetry-instrument`` imports this package first).
    if name == "structlog_processors":
        from otel_excellence._logs.bridge import structlog_processors

        return structlog_processors
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CATEGORIES",
    "ConfigurationError",
    "ErrorClass",
    "ErrorRule",
    "OtelExcellenceError",
    "Settings",
    "__version__",
    "add_error_rules",
    "classify_exception",
    "configure",
    "current_trace_id",
    "current_traceparent",
    "structlog_processors",
]
