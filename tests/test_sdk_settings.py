"""Standard OTEL_* variables: every bad value is repaired before the SDK reads it.

In process and fast: for each variable in ``sdk_settings.SDK_SETTINGS``, a bad value goes
through the distro's ``apply_defaults`` (as under ``opentelemetry-instrument``), then
everything the SDK builds from the environment is built (providers, batch processors,
limits, sampler, id generator, metric reader, the six OTLP exporters). The variable gets
exactly one warning naming it and its value, and the SDK neither raises nor warns.
``tests/test_bad_settings.py`` runs the same table end to end.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetrics,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetrics,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk import _configuration as sdk_configuration
from opentelemetry.sdk._logs import LogRecordLimits
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_excellence._config import sdk_settings
from otel_excellence._config.distro import apply_defaults
from otel_excellence._config.sdk_settings import SDK_SETTINGS

SITE = Path(sdk_configuration.__file__).parents[2]
SECRET = "s3cret-token"
GRPC_ONLY = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
HTTPS = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:9"}
RATIO = {"OTEL_TRACES_SAMPLER": "traceidratio"}


def _otlp_cases() -> dict[str, tuple[str, dict[str, str]]]:
    cases: dict[str, tuple[str, dict[str, str]]] = {}
    for infix, timeout in (("", "0"), ("TRACES_", "-3"), ("METRICS_", "soon"), ("LOGS_", "10000")):
        name = f"OTEL_EXPORTER_OTLP_{infix}"
        cases[f"{name}ENDPOINT"] = ("http://collector:port", {})
        cases[f"{name}TIMEOUT"] = (timeout, {})
        cases[f"{name}COMPRESSION"] = ("deflate", GRPC_ONLY)
        cases[f"{name}HEADERS"] = (f"Authorization Bearer {SECRET}", {})
        cases[f"{name}INSECURE"] = ("maybe", {})
        for kind in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"):
            cases[f"{name}{kind}"] = ("/nonexistent/tls.pem", HTTPS)
    return cases


# variable -> (a bad value, other variables that make it matter)
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "OTEL_SDK_DISABLED": ("yes please", {}),
    "OTEL_RESOURCE_ATTRIBUTES": ("team=payments,oops", {}),
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": ("docker", {}),
    "OTEL_TRACES_SAMPLER": ("sometimes", {}),
    "OTEL_TRACES_SAMPLER_ARG": ("half", RATIO),
    "OTEL_PYTHON_ID_GENERATOR": ("uuid", {}),
    "OTEL_PYTHON_TRACER_CONFIGURATOR": ("nope", {}),
    "OTEL_PYTHON_METER_CONFIGURATOR": ("nope", {}),
    "OTEL_PYTHON_LOGGER_CONFIGURATOR": ("nope", {}),
    "OTEL_ATTRIBUTE_COUNT_LIMIT": ("lots", {}),
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": ("-1", {}),
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": ("-5", {}),
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": ("1e3", {}),
    "OTEL_SPAN_EVENT_COUNT_LIMIT": ("x", {}),
    "OTEL_SPAN_LINK_COUNT_LIMIT": ("-1", {}),
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": ("many", {}),
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT": ("-2", {}),
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT": ("x", {}),
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT": ("-1", {}),
    "OTEL_BSP_SCHEDULE_DELAY": ("-5", {}),
    "OTEL_BSP_EXPORT_TIMEOUT": ("soon", {}),
    "OTEL_BSP_MAX_QUEUE_SIZE": ("0", {}),
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": ("4096", {}),
    "OTEL_BLRP_SCHEDULE_DELAY": ("0", {}),
    "OTEL_BLRP_EXPORT_TIMEOUT": ("-1", {}),
    "OTEL_BLRP_MAX_QUEUE_SIZE": ("-1", {}),
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": ("0", {}),
    "OTEL_METRIC_EXPORT_INTERVAL": ("-1", {}),
    "OTEL_METRIC_EXPORT_TIMEOUT": ("0", {}),
    "OTEL_METRICS_EXEMPLAR_FILTER": ("sometimes", {}),
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": ("weekly", {}),
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": ("buckets", {}),
    **_otlp_cases(),
    "OTEL_PYTHON_EXPORTER_OTLP_GRPC_RETRYABLE_ERROR_CODES": ("UNAVAILABLE,SOMETIMES", {}),
    **{
        setting.env: ("vault", {})
        for setting in SDK_SETTINGS
        if setting.env.endswith("_CREDENTIAL_PROVIDER")
    },
    "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": ("on", {}),
    "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": ("on", {}),
}

# What the SDK and the OTLP exporters read that the table does not check, and why.
UNCHECKED = {
    "OTEL_SERVICE_NAME": "any text is a name",
    "OTEL_CONFIG_FILE": "declarative configuration: the SDK builds everything from the file",
    "OTEL_TRACES_EXPORTER": "repaired by the distro (_repair_exporter_names)",
    "OTEL_METRICS_EXPORTER": "repaired by the distro",
    "OTEL_LOGS_EXPORTER": "repaired by the distro",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "repaired by the distro (_repair_protocols)",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "repaired by the distro",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "repaired by the distro",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "repaired by the distro",
    "OTEL_LOG_LEVEL": "documented, not read by the Python SDK",
    "OTEL_EXPORTER_ZIPKIN_ENDPOINT": "exporter not installed",
    "OTEL_EXPORTER_ZIPKIN_TIMEOUT": "exporter not installed",
    "OTEL_EXPORTER_PROMETHEUS_HOST": "exporter not installed",
    "OTEL_EXPORTER_PROMETHEUS_PORT": "exporter not installed",
    # Names of the SDK's own metrics and attributes, not variables:
    "OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE": "",
    "OTEL_SDK_PROCESSOR_LOG_QUEUE_SIZE": "",
    "OTEL_COMPONENT_TYPE": "",
    "OTEL_COMPONENT_NAME": "",
    "OTEL_SPAN_PARENT_ORIGIN": "",
    "OTEL_SPAN_SAMPLING_RESULT": "",
    "OTEL_TRACE_STATE_KEY": "",
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """os.environ without OTEL_* variables, pointed at a closed local port."""
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    yield os.environ  # type: ignore[misc]


def build_everything() -> None:
    """What the SDK builds from the environment, built as its configurator does."""
    Resource.create({})
    SpanLimits()
    LogRecordLimits()
    sampler = sdk_configuration._import_sampler(sdk_configuration._get_sampler())
    id_generator = sdk_configuration._import_id_generator(sdk_configuration._get_id_generator())
    tracer_provider = TracerProvider(sampler=sampler, id_generator=id_generator)
    spans = BatchSpanProcessor(InMemorySpanExporter())
    logs = BatchLogRecordProcessor(InMemoryLogRecordExporter())
    exporters = [cls() for cls in (GrpcSpans, GrpcLogs, HttpSpans, HttpLogs, HttpMetrics)]
    meter_provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(GrpcMetrics())])
    for component in (spans, logs, tracer_provider, meter_provider, *exporters):
        component.shutdown()


def sdk_warnings(records: Sequence[logging.LogRecord]) -> list[str]:
    return [
        r.getMessage() for r in records if r.name.startswith("opentelemetry") and r.levelno >= 30
    ]


def our_warnings(records: Sequence[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name == "otel_excellence"]


class TestTable:
    def test_every_variable_the_sdk_reads_is_checked_or_explained(self) -> None:
        """An SDK upgrade that reads a new OTEL_* variable fails here until it is handled."""
        read = set()
        for folder in ("sdk", "exporter"):
            for path in (SITE / "opentelemetry" / folder).rglob("*.py"):
                read |= set(re.findall(r'"(_?OTEL_[A-Z0-9_]+)"', path.read_text()))
        read = {name.lstrip("_") for name in read}
        checked = {setting.env for setting in SDK_SETTINGS}
        assert read - checked - set(UNCHECKED) == set()

    def test_cases_cover_every_checked_variable(self) -> None:
        """A variable cannot join the table without a bad value tested here."""
        assert set(CASES) == {setting.env for setting in SDK_SETTINGS}

    def test_the_configuration_docs_list_the_table(self) -> None:
        """docs/configuration.md carries the generated table verbatim."""
        docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
        assert sdk_settings.render_markdown() in docs


@pytest.mark.parametrize("variable", sorted(CASES))
def test_a_bad_value_warns_once_and_the_sdk_builds_with_its_default(
    variable: str, environ: dict[str, str], warnings_seen: pytest.LogCaptureFixture
) -> None:
    """One warning naming the variable (and the value, unless secret); the SDK then
    builds every component without raising or warning."""
    bad, context = CASES[variable]
    environ.update(context)
    environ[variable] = bad
    apply_defaults(environ)
    apply_defaults(environ)  # the configurator checks again: still one warning
    named = [m for m in our_warnings(warnings_seen.records) if variable in m.split()[0]]
    assert len(named) == 1, our_warnings(warnings_seen.records)
    secret = next(s.secret for s in SDK_SETTINGS if s.env == variable)
    if secret:
        assert SECRET not in warnings_seen.text
    else:
        assert f"{variable}={bad!r}" in named[0]
    warnings_seen.clear()
    build_everything()
    assert sdk_warnings(warnings_seen.records) == []


class TestRepairs:
    def repaired(self, environ: dict[str, str], **values: str) -> dict[str, str]:
        environ.update(values)
        apply_defaults(environ)
        return {key: environ.get(key, "<unset>") for key in values}

    def test_a_queue_below_the_default_batch_size_exports_in_batches_of_the_queue(
        self, environ: dict[str, str], warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """OTEL_BSP_MAX_QUEUE_SIZE=100 alone is valid, but the SDK's default batch of 512
        is above it and the SDK raises: the batch size follows the queue, silently."""
        self.repaired(environ, OTEL_BSP_MAX_QUEUE_SIZE="100")
        assert environ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] == "100"
        assert our_warnings(warnings_seen.records) == []
        build_everything()

    def test_values_valid_by_the_specification_are_normalised_quietly(
        self, environ: dict[str, str], warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """Case-insensitive enums, compression none over gRPC, a ratio sampler without
        its argument, an empty value (unset; for a limit, no limit): no warning is due."""
        got = self.repaired(
            environ,
            OTEL_METRICS_EXEMPLAR_FILTER="ALWAYS_ON",
            OTEL_EXPORTER_OTLP_COMPRESSION="none",
            OTEL_TRACES_SAMPLER="TraceIdRatio",
            OTEL_BSP_SCHEDULE_DELAY=" ",
            OTEL_SPAN_EVENT_COUNT_LIMIT="",
        )
        assert got == {
            "OTEL_METRICS_EXEMPLAR_FILTER": "always_on",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "<unset>",
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_BSP_SCHEDULE_DELAY": "<unset>",
            "OTEL_SPAN_EVENT_COUNT_LIMIT": "",  # the SDK's "no limit"
        }
        assert environ["OTEL_TRACES_SAMPLER_ARG"] == "1.0"
        assert our_warnings(warnings_seen.records) == []
        build_everything()
        assert sdk_warnings(warnings_seen.records) == []

    def test_an_endpoint_without_a_scheme_gets_one(
        self, environ: dict[str, str], warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """'collector:4317' is TLS to the gRPC exporter (it reads 'collector' as the
        scheme): kept as TLS, never downgraded, unless INSECURE=true says plain text."""
        got = self.repaired(environ, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="127.0.0.1:4317")
        assert got == {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://127.0.0.1:4317"}
        assert "has no scheme" in warnings_seen.text
        got = self.repaired(
            environ,
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="127.0.0.1:4317",
            OTEL_EXPORTER_OTLP_TRACES_INSECURE="true",
        )
        assert got["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:4317"

    def test_only_the_unusable_header_entries_are_dropped(
        self, environ: dict[str, str], warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """Good entries are kept; a name that looks like one is named, values never."""
        got = self.repaired(
            environ,
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            OTEL_EXPORTER_OTLP_HEADERS=f"x-tenant=a,api!key={SECRET},Authorization: {SECRET}",
            OTEL_EXPORTER_OTLP_LOGS_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_LOGS_HEADERS=f"api!key={SECRET}",
        )
        assert got["OTEL_EXPORTER_OTLP_HEADERS"] == "x-tenant=a"
        # HTTP takes any token character in a name; gRPC metadata does not.
        assert got["OTEL_EXPORTER_OTLP_LOGS_HEADERS"] == f"api!key={SECRET}"
        assert SECRET not in warnings_seen.text
        assert "'api!key'" in warnings_seen.text
        assert "entry 3;" in warnings_seen.text

    def test_compression_deflate_is_kept_for_http(self, environ: dict[str, str]) -> None:
        """deflate is valid for OTLP/HTTP, which is the only protocol in use here."""
        got = self.repaired(
            environ,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_COMPRESSION="deflate",
        )
        assert got["OTEL_EXPORTER_OTLP_COMPRESSION"] == "deflate"

    def test_a_bad_value_of_a_distro_default_falls_back_to_the_distro_default(
        self, environ: dict[str, str]
    ) -> None:
        """The distro exports metrics every 15 s; a bad interval keeps that, not 60 s."""
        got = self.repaired(environ, OTEL_METRIC_EXPORT_INTERVAL="0")
        assert got == {"OTEL_METRIC_EXPORT_INTERVAL": "15000"}

    def test_credentials_in_an_endpoint_are_not_printed(
        self, environ: dict[str, str], warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """The warning names the endpoint with its password masked."""
        self.repaired(environ, OTEL_EXPORTER_OTLP_ENDPOINT=f"ftp://user:{SECRET}@collector:4317")
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in warnings_seen.text
        assert SECRET not in warnings_seen.text


def test_a_batch_processor_the_sdk_still_refuses_is_built_with_the_sdk_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the repair (set after it, as an app might): the SDK raises on a zero queue;
    traces and logs still get a working processor, with the defaults declared once in
    sdk_settings (the SDK's own: 2048, 5000/1000 ms, 512, 30000 ms)."""
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    from otel_excellence._config import configurator

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "0")
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "0")
    with pytest.raises(ValueError, match="max_queue_size"):
        BatchLogRecordProcessor(InMemoryLogRecordExporter())
    spans = configurator._batch_span_processor(ConsoleSpanExporter())._batch_processor
    logs = configurator._batch_log_processor(InMemoryLogRecordExporter())._batch_processor
    try:
        assert (spans._max_queue_size, spans._schedule_delay_millis) == (2048, 5000)
        assert (spans._max_export_batch_size, spans._export_timeout_millis) == (512, 30000)
        assert (logs._max_queue_size, logs._schedule_delay_millis) == (2048, 1000)
        assert (logs._max_export_batch_size, logs._export_timeout_millis) == (512, 30000)
    finally:
        spans.shutdown()
        logs.shutdown()
