"""Our encoder in the real exporters, end to end: an app under ``opentelemetry-instrument``
exports over gRPC and over HTTP/protobuf to a real OTLP receiver, which must decode
exactly what the SDK's own encoder makes of the same telemetry (kept in memory by the
app, encoded with the SDK at exit). A failing encode falls back to the SDK's encoder
and the telemetry still arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_excellence import _diagnostics
from otel_excellence._export import otlp_encoding
from tests.launch import instrumented
from tests.support.otlp_sink import OtlpSink

pytestmark = pytest.mark.services


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as receiver:
        yield receiver


def spans_by_id(requests: list[ExportTraceServiceRequest]) -> dict[bytes, tuple[Any, ...]]:
    """Each span with the resource and scope it was sent under (batches differ)."""
    out = {}
    for request in requests:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out[span.span_id] = (rs.resource, rs.schema_url, ss.scope, ss.schema_url, span)
    return out


def log_records(requests: list[ExportLogsServiceRequest]) -> list[tuple[Any, ...]]:
    """Each log record with its resource and scope, in a batch-independent order."""
    out = []
    for request in requests:
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    out.append((rl.resource, rl.schema_url, sl.scope, sl.schema_url, record))
    return sorted(out, key=lambda item: item[-1].SerializeToString())


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_receiver_decodes_what_the_sdk_encoder_would_have_sent(
    sink: OtlpSink, tmp_path: Path, protocol: str
) -> None:
    """Spans of every kind and shape (remote parent with trace state, links, events,
    dropped counts, values of every type, two scopes) and log records (stdlib records,
    an event with a map body) arrive exactly as the SDK's encoder encodes them."""
    endpoint = sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint
    result = instrumented(
        "encoding_app.py",
        {
            "OTEL_SERVICE_NAME": "encoding-e2e",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_METRICS_EXPORTER": "none",
            "EXPECTED_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    assert "not delivered" not in result.stderr, result.stderr
    encoders = dict(line.split() for line in (tmp_path / "encoders").read_text().splitlines())
    assert encoders and set(encoders.values()) == {"True"}, encoders  # ours, not the SDK's

    expected_spans = ExportTraceServiceRequest.FromString((tmp_path / "spans.pb").read_bytes())
    received = spans_by_id(sink.trace_requests)
    expected = spans_by_id([expected_spans])
    assert len(expected) == 6
    assert received == expected
    job = next(s for *_, s in expected.values() if s.name == "process")
    assert (job.dropped_attributes_count, job.dropped_events_count) == (2, 2)

    expected_logs = ExportLogsServiceRequest.FromString((tmp_path / "logs.pb").read_bytes())
    received_logs = log_records(sink.log_requests)
    assert len(received_logs) >= 3
    assert received_logs == log_records([expected_logs])


class TestFallbackStillDelivers:
    @pytest.fixture(autouse=True)
    def _installed(self) -> Iterator[None]:
        _diagnostics.raise_internal_errors = False
        otlp_encoding.install()
        yield
        otlp_encoding.uninstall()
        _diagnostics.raise_internal_errors = True

    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_a_failing_encoder_falls_back_and_the_telemetry_arrives(
        self,
        sink: OtlpSink,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        protocol: str,
    ) -> None:
        """With our span and log encoders broken, the official exporters still deliver
        every span and record (the SDK encodes them), with one warning per signal."""

        def broken(*args: object) -> bytes:
            raise RuntimeError("encoder bug")

        monkeypatch.setattr(otlp_encoding, "_span_fields", broken)
        monkeypatch.setattr(otlp_encoding, "_log_record", broken)
        resource = Resource({"service.name": "fallback"})
        if protocol == "grpc":
            span_exporter: Any = GrpcSpanExporter(endpoint=sink.grpc_endpoint, insecure=True)
            log_exporter: Any = GrpcLogExporter(endpoint=sink.grpc_endpoint, insecure=True)
        else:
            span_exporter = HttpSpanExporter(endpoint=f"{sink.http_endpoint}/v1/traces")
            log_exporter = HttpLogExporter(endpoint=f"{sink.http_endpoint}/v1/logs")
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        tracer = tracer_provider.get_tracer("fallback.test")
        logger = logger_provider.get_logger("fallback.test")
        with caplog.at_level("WARNING", logger="otel_excellence"):
            for n in range(3):
                with tracer.start_as_current_span(f"span {n}", attributes={"n": n}):
                    logger.emit(LogRecord(body=f"record {n}", attributes={"n": n}))
        tracer_provider.shutdown()
        logger_provider.shutdown()

        assert sorted(s.name for s in sink.spans()) == ["span 0", "span 1", "span 2"]
        assert [s.attributes for s in sorted(sink.spans(), key=lambda s: s.name)] == [
            {"n": 0},
            {"n": 1},
            {"n": 2},
        ]
        assert sorted(r.body for r in sink.logs()) == ["record 0", "record 1", "record 2"]
        reports = [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()]
        assert len(reports) == 2, reports  # one for spans, one for logs, not one per batch
        assert any("span encoding" in r for r in reports)
        assert any("log encoding" in r for r in reports)
