"""Build the SDK providers through the SDK's own configurator, with our chain around it.

One code path serves the ``opentelemetry_configurator`` entry point (zero-code launch)
and ``otel_excellence.configure()`` (gunicorn ``post_fork``, notebooks).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.context import Context
from opentelemetry.metrics import get_meter_provider, set_meter_provider
from opentelemetry.sdk import _configuration as sdk_configuration
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otel_excellence._config import sdk_settings
from otel_excellence._config.distro import DEFAULTS, register_instrumentor_hooks
from otel_excellence._config.resource import resource_attributes
from otel_excellence._config.settings import Settings
from otel_excellence._diagnostics import internal_error, logger, warn_once
from otel_excellence._export import otlp_encoding, sdk_attributes
from otel_excellence._export.delivery import (
    CountingLogExporter,
    CountingLogRecordProcessor,
    CountingMetricExporter,
    CountingSpanExporter,
    CountingSpanProcessor,
    DeliveryCounter,
    LossReporter,
    Pipeline,
    SelfMetrics,
    exporter_component_type,
    watch_batch_processor,
    works_on_start,
)
from otel_excellence._export.metrics import FastMetrics, readers_of
from otel_excellence._export.pipeline import EnrichingSpanProcessor, SpanEnricher
from otel_excellence._export.shutdown import ShutdownPlan
from otel_excellence._findings.error_rules import CLASSIFIER
from otel_excellence._findings.errors import load_rules
from otel_excellence._findings.frameworks import install_framework_hooks
from otel_excellence._findings.hooks import (
    LibraryHooks,
    after_sqlite3_instrumented,
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
        self._starting: tuple[SpanProcessor, ...] = ()

    def add(self, processor: SpanProcessor) -> None:
        self.processors.append(processor)
        # Called at start only if they do something then (the SDK's batch processor
        # does not): a call per span per layer.
        self._starting = tuple(p for p in self.processors if works_on_start(p))

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._starting:
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
    """What the SDK registers per exporter; the real work happens in the one chain.

    Taken out again once the SDK is configured (``_drop_placeholders``): the SDK would
    call its three empty methods for every span.
    """


def _drop_placeholders(provider: object) -> None:
    """Remove our placeholders from the SDK's processors (private in SDK 1.45: a tuple
    replaced under its lock, as ``add_span_processor`` does). Where that surface moved,
    they stay: they do nothing."""
    active = getattr(provider, "_active_span_processor", None)
    lock = getattr(active, "_lock", None)
    if active is None or lock is None:
        return
    with lock:
        processors = getattr(active, "_span_processors", None)
        if isinstance(processors, tuple):
            active._span_processors = tuple(
                p for p in processors if not isinstance(p, _Placeholder)
            )


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
    register_instrumentor_hooks("sqlite3", after=after_sqlite3_instrumented)
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


@dataclass
class _Loss:
    """Delivery counts of every exporting pipeline, and who reports their loss."""

    reporter: LossReporter
    pipelines: list[Pipeline] = field(default_factory=list)

    def pipeline(self, signal: str, label: str, exporter: object) -> DeliveryCounter:
        index = sum(1 for p in self.pipelines if p.signal == signal)
        # One count per exporter: each delivers (or not) on its own.
        name = label if not index else f"{label} via {type(exporter).__name__}"
        counter = self.reporter.add(DeliveryCounter(name))
        self.pipelines.append(
            Pipeline(signal, counter, exporter_component_type(exporter, signal), index)
        )
        return counter


def _batch_span_processor(exporter: SpanExporter) -> BatchSpanProcessor:
    try:
        return BatchSpanProcessor(exporter)
    except ValueError as error:
        # sdk_settings repairs the OTEL_BSP_* variables first; if the SDK still refuses,
        # its documented defaults keep traces flowing.
        warn_once("bsp-defaults", "batch span processor: %s; using the SDK defaults", error)
        return BatchSpanProcessor(exporter, **sdk_settings.processor_defaults("OTEL_BSP"))


def _batch_log_processor(exporter: LogRecordExporter) -> BatchLogRecordProcessor:
    try:
        return BatchLogRecordProcessor(exporter)
    except ValueError as error:
        warn_once("blrp-defaults", "batch log record processor: %s; using the SDK defaults", error)
        return BatchLogRecordProcessor(exporter, **sdk_settings.processor_defaults("OTEL_BLRP"))


def _watch(processor: object, counter: DeliveryCounter) -> None:
    if watch_batch_processor(processor, counter):
        # The SDK logs "Queue full" for every dropped item (a log record built per span
        # on the request thread, then de-duplicated); the drops are counted and
        # reported once a minute instead. Only if the user left that logger alone.
        queue_logger = logging.getLogger("opentelemetry.sdk._shared_internal")
        if queue_logger.level == logging.NOTSET:
            queue_logger.setLevel(logging.ERROR)


def _sdk_kwargs(
    settings: Settings, plan: ShutdownPlan, instruments: FastMetrics, loss: _Loss
) -> dict[str, Any]:
    """The kwargs for the SDK's ``_initialize_components``: our chain and resource."""
    fan_out = _FanOut()
    chain = EnrichingSpanProcessor(fan_out, _enrichers(settings, instruments))

    def counter(signal: str, label: str, exporter: object) -> DeliveryCounter:
        made = loss.pipeline(signal, label, exporter)
        plan.counters.append(made)
        return made

    def export_span_processor(exporter: SpanExporter) -> SpanProcessor:
        plan.aborts.append(_abort(exporter))
        spans = counter("traces", "spans", exporter)
        batch = _batch_span_processor(CountingSpanExporter(exporter, spans, loss.reporter))
        _watch(batch, spans)
        fan_out.add(CountingSpanProcessor(batch, spans))
        return _Placeholder()

    def export_log_record_processor(exporter: LogRecordExporter) -> LogRecordProcessor:
        plan.aborts.append(_abort(exporter))
        records = counter("logs", "log records", exporter)
        batch = _batch_log_processor(CountingLogExporter(exporter, records, loss.reporter))
        _watch(batch, records)
        return CountingLogRecordProcessor(batch, records)

    return {
        "resource_attributes": resource_attributes(settings),
        "span_processors": [chain],
        "export_span_processor": export_span_processor,
        "log_record_processors": _log_processors(settings),
        "export_log_record_processor": export_log_record_processor,
    }


def _periodic_readers() -> list[PeriodicExportingMetricReader]:
    # No configurator kwarg reaches metric exporters; the readers hold them privately.
    readers, _ = readers_of(get_meter_provider())
    return [
        reader
        for reader in readers
        if isinstance(reader, PeriodicExportingMetricReader)
        and getattr(reader, "_exporter", None) is not None
    ]


def _register_metric_exporter_aborts(plan: ShutdownPlan) -> None:
    for reader in _periodic_readers():
        plan.aborts.append(_abort(reader._exporter))


def _count_metric_exports(loss: _Loss) -> None:
    for reader in _periodic_readers():
        exporter = reader._exporter
        counter = loss.pipeline("metrics", "metric data points", exporter)
        reader._exporter = CountingMetricExporter(exporter, counter, loss.reporter)


def _install_self_metrics(loss: _Loss) -> None:
    provider = get_meter_provider()
    if not isinstance(provider, MeterProvider) or not loss.pipelines:
        return
    if os.environ.get(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED, "").strip().lower() == "true":
        return  # the SDK emits these names itself: the same series twice would double count
    SelfMetrics(loss.pipelines, provider)


# -- the SDK's configurator, and what to do when it raises -------------------------------------


def _configure_providers(kwargs: dict[str, Any]) -> None:
    """The SDK's configurator; if it raises, each signal it did not reach on its own.

    The SDK stops at its first exception: an exporter that cannot be built for traces
    would otherwise leave metrics and logs unconfigured too.
    """
    try:
        _OTelSDKConfigurator()._configure(**kwargs)  # type: ignore[no-untyped-call]
        return
    except Exception as error:  # noqa: BLE001 - configuration never raises into the application
        _sdk_failed("the OpenTelemetry SDK's configuration", error)
    _configure_missing_signals(kwargs)


def _sdk_failed(what: str, error: BaseException) -> None:
    # One line; the traceback only at debug level (it says nothing to the user that the
    # exception's own message does not).
    message = " ".join(str(error).split())[:300]
    warn_once(
        ("sdk-failed", what),
        "%s failed (%s: %s); telemetry that can work is set up without it",
        what,
        type(error).__name__,
        scrub_credentials(message),
    )
    logger.debug("%s failed", what, exc_info=error)


def _exporter_classes(signal: str, group: str) -> list[type]:
    classes = []
    for name in sdk_configuration._get_exporter_names(signal):  # type: ignore[arg-type]
        try:
            classes.append(sdk_configuration._import_config_components([name], group)[0][1])
        except Exception as error:  # noqa: BLE001
            _sdk_failed(f"loading the {signal} exporter {name!r}", error)
    return classes


def _each(
    signal: str, classes: list[type], args: Mapping[Any, Any], add: Callable[[Any], Any]
) -> None:
    for cls in classes:
        try:
            add(cls(**args.get(cls, {})))
        except Exception as error:  # noqa: BLE001
            _sdk_failed(f"the {signal} exporter {cls.__name__}", error)


def _configure_missing_signals(kwargs: Mapping[str, Any]) -> None:
    """Set up, one by one and each exporter on its own, the providers not yet set.

    Mirrors the SDK's ``_init_tracing``/``_init_metrics``/``_init_logging`` (private,
    1.45), which cannot be reused here: each stops at its first failing exporter.
    """
    attributes = dict(kwargs.get("resource_attributes") or {})
    if kwargs.get("auto_instrumentation_version"):
        attributes["telemetry.auto.version"] = kwargs["auto_instrumentation_version"]
    resource = Resource.create(attributes)
    args: Mapping[Any, Any] = kwargs.get("exporter_args_map") or {}

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        try:
            tracer_provider = TracerProvider(
                sampler=kwargs.get("sampler")
                or sdk_configuration._import_sampler(sdk_configuration._get_sampler()),
                resource=resource,
            )
            trace.set_tracer_provider(tracer_provider)
            for processor in kwargs.get("span_processors") or ():
                tracer_provider.add_span_processor(processor)
            export = kwargs.get("export_span_processor") or BatchSpanProcessor
            _each(
                "traces",
                _exporter_classes("traces", "opentelemetry_traces_exporter"),
                args,
                lambda exporter: tracer_provider.add_span_processor(export(exporter)),
            )
        except Exception as error:  # noqa: BLE001
            _sdk_failed("setting up traces", error)

    if not isinstance(get_meter_provider(), MeterProvider):
        try:
            readers: list[MetricReader] = []

            def reader(exporter_or_reader: Any) -> None:
                if isinstance(exporter_or_reader, MetricReader):
                    readers.append(exporter_or_reader)
                else:
                    readers.append(PeriodicExportingMetricReader(exporter_or_reader))

            _each(
                "metrics",
                _exporter_classes("metrics", "opentelemetry_metrics_exporter"),
                args,
                reader,
            )
            set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
        except Exception as error:  # noqa: BLE001
            _sdk_failed("setting up metrics", error)

    if not isinstance(get_logger_provider(), LoggerProvider):
        try:
            logger_provider = LoggerProvider(resource=resource)
            set_logger_provider(logger_provider)
            for log_processor in kwargs.get("log_record_processors") or ():
                logger_provider.add_log_record_processor(log_processor)
            export_logs = kwargs.get("export_log_record_processor") or BatchLogRecordProcessor
            _each(
                "logs",
                _exporter_classes("logs", "opentelemetry_logs_exporter"),
                args,
                lambda exporter: logger_provider.add_log_record_processor(export_logs(exporter)),
            )
        except Exception as error:  # noqa: BLE001
            _sdk_failed("setting up logs", error)


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
        # Again here: our configurator may run without our distro (OTEL_PYTHON_DISTRO).
        sdk_settings.repair(os.environ, DEFAULTS)
        # Also when disabled: the logging instrumentation still adds its handler, and
        # the bridge's hook keeps it from changing what the app prints.
        _logs.install(raw_statements=settings.db_statement == "raw")
        if _sdk_disabled():
            logger.info("%s=true: telemetry is off", OTEL_SDK_DISABLED)
            return True
        if os.environ.get("OTEL_CONFIG_FILE"):
            warn_once(
                "config-file",
                "OTEL_CONFIG_FILE is set: the SDK builds its providers from that file, so "
                "otel-excellence's span enrichment, log processors and bounded shutdown "
                "are not applied",
            )
            _OTelSDKConfigurator()._configure(**dict(sdk_kwargs or {}))  # type: ignore[no-untyped-call]
            return True
        endpoint = _endpoint_description()
        plan = ShutdownPlan(settings.shutdown_timeout_ms, endpoint)
        instruments = FastMetrics()
        loss = _Loss(LossReporter(endpoint))
        kwargs = {**_sdk_kwargs(settings, plan, instruments, loss), **dict(sdk_kwargs or {})}
        try:
            sdk_attributes.install()  # the SDK's attribute checks, common case first (issue 13)
            _configure_providers(kwargs)
            _drop_placeholders(trace.get_tracer_provider())
            otlp_encoding.install()  # the exporters' encoders, 4-7x cheaper (issue 13)
            instruments.attach(*readers_of(get_meter_provider()))
            _register_metric_exporter_aborts(plan)
            _count_metric_exports(loss)
            _install_self_metrics(loss)
        finally:
            # Whatever was set up is shut down within the bound.
            _install_shutdown(plan, loss.reporter)
    except Exception:  # noqa: BLE001 - configuration never raises into the application
        internal_error("SDK configuration")
    return True


def _install_shutdown(plan: ShutdownPlan, reporter: LossReporter) -> None:
    for signal, provider in (
        ("traces", trace.get_tracer_provider()),
        ("metrics", get_meter_provider()),
        ("logs", get_logger_provider()),
    ):
        if isinstance(provider, (TracerProvider, MeterProvider, LoggerProvider)):
            plan.add_provider(signal, provider)
    # The running reports stop before the exit summary, however the process ends.
    plan.on_start.append(reporter.stop)
    plan.install()


class OtelExcellenceConfigurator(_OTelSDKConfigurator):
    """The ``opentelemetry_configurator`` entry point."""

    def _configure(self, **kwargs: Any) -> None:
        configure_sdk(sdk_kwargs=kwargs)


def _reset_for_tests() -> None:
    global _configured  # noqa: PLW0603
    with _lock:
        _configured = False
