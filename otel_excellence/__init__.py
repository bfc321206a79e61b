"""otel-excellence: an OpenTelemetry distribution for Python services.

Start a service with ``opentelemetry-instrument python app.py`` and set
``OTEL_SERVICE_NAME`` and ``OTEL_EXPORTER_OTLP_ENDPOINT``; nothing else is needed. For
processes that cannot use the wrapper, call :func:`configure`.
"""

from __future__ import annotations

from otel_excellence._api import configure
from otel_excellence._config.settings import Settings
from otel_excellence._findings.classify import add_error_rules, classify_exception
from otel_excellence._findings.errors import CATEGORIES, ErrorClass, ErrorRule
from otel_excellence._logs.bridge import structlog_processors
from otel_excellence._logs.context import current_trace_id, current_traceparent
from otel_excellence.exceptions import ConfigurationError, OtelExcellenceError

__version__ = "0.1.0"

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
