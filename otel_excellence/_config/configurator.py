"""Build the SDK providers through the SDK's own configurator, with our chain around it.

One code path serves the ``opentelemetry_configurator`` entry point (zero-code launch)
and ``otel_excellence.configure()`` (gunicorn ``post_fork``, notebooks).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.context import Context
from opentelemetry.metrics import get_meter_provider
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.environment_variables import OTEL_SDK_DISABLED
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otel_excellence._config.distro import register_instrumentor_hooks
from otel_excellence._config.resource import resource_attributes
from otel_excellence._config.settings import Settings
from otel_excellence._diagnostics import internal_error, logger, warn_once
from otel_excellence._export.delivery import (
    CountingLogExporter,
    CountingLogRecordProcessor,
    CountingSpanExporter,
    CountingSpanProcessor,
    DeliveryCounter,
)
from otel_excellence._export.metrics import FastMetrics, readers_of
from otel_excellence._export.pipeline import EnrichingSpanProcessor, SpanEnricher
from otel_excellence._export.shutdown import ShutdownPlan
from otel_excellence._findings.error_rules import CLASSIFIER
from otel_excellence._findings.errors import load_rules
from otel_excellence._findings.frameworks import install_framework_hooks
from otel_excellence._findings.hooks import (
    LibraryHooks,
    hook_aiosqlite,
    hook_asyncpg,
    hook_dbapi,
)
from otel_excellence._findings.insights import BaggageOnSpans, SpanInsights
from otel_excellence._findings.sql import scrub_credentials
from otel_excellence._logs import bridge as _logs
from otel_excellence._logs.bridge import BaggageLogProcessor

_lock = threading.Lock()
_configured = False


class _FanOut(SpanProcessor):
    """Hands each span to every exporting processor (one per configured exporter)."""

    def __init__(self) -> None:
        self.processors: list[SpanProcessor] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self.processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)


class _Placeholder(SpanProcessor):
    """What the SDK registers per exporter; the real work happens in the one chain."""


def _abort(exporter: Any) -> Callable[[], None]:
    return exporter.shutdown  # type: ignore[no-any-return]


def _endpoint_description() -> str:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "the default OTLP endpoint"
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    # Printed to stderr, which is often collected: never with credentials in it.
    return f"{scrub_credentials(endpoint)} ({protocol})"


def _enrichers(settings: Settings, instruments: FastMetrics) -> list[SpanEnricher]:
    """The span findings, and the instrumentor hooks that feed them."""
    reference = settings.error_rules  # configure(error_rules=...) wins over the environment
    CLASSIFIER.load_user_rules(lambda: load_rules(reference) if reference else [])
    insights = SpanInsights(settings, CLASSIFIER, instruments)
    hooks = LibraryHooks(instruments)
    register_instrumentor_hooks("redis", kwargs=hooks.redis_kwargs)
    register_instrumentor_hooks("sqlalchemy", after=hooks.listen_sqlalchemy)
    register_instrumentor_hooks("asyncpg", before=hook_asyncpg)
    register_instrumentor_hooks("sqlite3", after=hook_aiosqlite)
    hook_dbapi()
    install_framework_hooks()
    enrichers: list[SpanEnricher] = [insights]
    if settings.baggage_keys:
        enrichers.insert(0, BaggageOnSpans(settings.baggage_keys))
    return enrichers


def _log_processors(settings: Settings) -> list[LogRecordProcessor]:
    if settings.baggage_keys:
        return [BaggageLogProcessor(settings.baggage_keys)]
    return []


def _sdk_kwargs(settings: Settings, plan: ShutdownPlan, instruments: FastMetrics) -> dict[str, Any]:
    """The kwargs for the SDK's ``_initialize_components``: our chain and resource."""
    fan_out = _FanOut()
    chain = EnrichingSpanProcessor(fan_out, _enrichers(settings, instruments))

    def counter(signal: str, exporter: object, existing: int) -> DeliveryCounter:
        # One count per exporter: each delivers (or not) on its own.
        label = signal if not existing else f"{signal} via {type(exporter).__name__}"
        made = DeliveryCounter(label)
        plan.counters.append(made)
        return made

    def export_span_processor(exporter: SpanExporter) -> SpanProcessor:
        plan.aborts.append(_abort(exporter))
        spans = counter("spans", exporter, len(fan_out.processors))
        batch = BatchSpanProcessor(CountingSpanExporter(exporter, spans))
        fan_out.processors.append(CountingSpanProcessor(batch, spans))
        return _Placeholder()

    log_exporters: list[LogRecordExporter] = []

    def export_log_record_processor(exporter: LogRecordExporter) -> LogRecordProcessor:
        plan.aborts.append(_abort(exporter))
        records = counter("log records", exporter, len(log_exporters))
        log_exporters.append(exporter)
        return CountingLogRecordProcessor(
            BatchLogRecordProcessor(CountingLogExporter(exporter, records)), records
        )

    return {
        "resource_attributes": resource_attributes(settings),
        "span_processors": [chain],
        "export_span_processor": export_span_processor,
        "log_record_processors": _log_processors(settings),
        "export_log_record_processor": export_log_record_processor,
    }


def _register_metric_exporter_aborts(plan: ShutdownPlan) -> None:
    # No configurator kwarg reaches metric exporters; the readers hold them privately.
    readers, _ = readers_of(get_meter_provider())
    for reader in readers:
        exporter = getattr(reader, "_exporter", None)
        if exporter is not None:
            plan.aborts.append(_abort(exporter))


def _sdk_disabled() -> bool:
    return os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"


def configure_sdk(
    overrides: Mapping[str, Any] | None = None, sdk_kwargs: Mapping[str, Any] | None = None
) -> bool:
    """Configure the providers once per process; True if this call did it."""
    global _configured  # noqa: PLW0603 - one SDK per process is the point
    with _lock:
        if _configured:
            warn_once(
                "configure-twice",
                "OpenTelemetry is already configured in this process; this call does nothing",
            )
            return False
        _configured = True
    try:
        settings = Settings.load(overrides=overrides)
        settings.apply_log_level()
        if _sdk_disabled():
            logger.info("%s=true: telemetry is off", OTEL_SDK_DISABLED)
            return True
        _logs.install(raw_statements=settings.db_statement == "raw")
        if os.environ.get("OTEL_CONFIG_FILE"):
            warn_once(
                "config-file",
                "OTEL_CONFIG_FILE is set: the SDK builds its providers from that file, so "
                "otel-excellence's span enrichment, log processors and bounded shutdown "
                "are not applied",
            )
            _OTelSDKConfigurator()._configure(**dict(sdk_kwargs or {}))  # type: ignore[no-untyped-call]
            return True
        plan = ShutdownPlan(settings.shutdown_timeout_ms, _endpoint_description())
        instruments = FastMetrics()
        kwargs = {**_sdk_kwargs(settings, plan, instruments), **dict(sdk_kwargs or {})}
        _OTelSDKConfigurator()._configure(**kwargs)  # type: ignore[no-untyped-call]
        instruments.attach(*readers_of(get_meter_provider()))
        _register_metric_exporter_aborts(plan)
        for signal, provider in (
            ("traces", trace.get_tracer_provider()),
            ("metrics", get_meter_provider()),
            ("logs", get_logger_provider()),
        ):
            plan.add_provider(signal, provider)
        plan.install()
    except Exception:  # noqa: BLE001 - configuration never raises into the application
        internal_error("SDK configuration")
    return True


class OtelExcellenceConfigurator(_OTelSDKConfigurator):
    """The ``opentelemetry_configurator`` entry point."""

    def _configure(self, **kwargs: Any) -> None:
        configure_sdk(sdk_kwargs=kwargs)


def _reset_for_tests() -> None:
    global _configured  # noqa: PLW0603
    with _lock:
        _configured = False
