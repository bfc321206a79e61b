"""Telemetry of every shape the OTLP encoder writes, plus the SDK encoder's bytes of it.

Run under ``opentelemetry-instrument`` with an OTLP endpoint. The app exports as any app
does; besides, it keeps every span and log record in memory (one more processor on the
same providers) and, before it exits, writes to the directory EXPECTED_DIR:
  spans.pb  the SDK's own ``encode_spans`` of those spans, serialized
  logs.pb   the SDK's own ``encode_logs`` of those log records, serialized
  encoders  which encoder each exporter module calls (ours carries ``__wrapped__``)
"""

import logging
import os
import sys
from pathlib import Path

from opentelemetry import _logs, propagate, trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

EXPECTED = Path(os.environ["EXPECTED_DIR"])

spans_seen = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(spans_seen))
logs_seen = InMemoryLogRecordExporter()
_logs.get_logger_provider().add_log_record_processor(SimpleLogRecordProcessor(logs_seen))

server = trace.get_tracer("encoding.app", "1.2.3")
worker = trace.get_tracer(
    "encoding.worker",
    "0.1",
    schema_url="https://opentelemetry.io/schemas/1.21.0",
    attributes={"team": "core", "shard": 3},
)
log = logging.getLogger("encoding.app")
log.setLevel(logging.INFO)

VALUES = {
    "text": "GET /users/{id}",
    "unicode": "café 日本",
    "empty": "",
    "yes": True,
    "no": False,
    "zero": 0,
    "negative": -1,
    "int64.max": 2**63 - 1,
    "int64.min": -(2**63),
    "float": 0.5,
    "negative.zero": -0.0,
    "inf": float("inf"),
    "bytes": b"\x00\xff",
    "strings": ("a", "b"),
    "ints": (1, -2, 3),
    "floats": (1.5, -2.5),
    "bools": (True, False),
    "mixed": (1, "x", None),
    "nested": {"a": {"b": [1, "x"]}, "c": []},
}

# A request from another service: a remote parent with a trace state.
incoming = propagate.extract(
    {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=v1,other=x",
    }
)
with server.start_as_current_span(
    "GET /users/{id}", context=incoming, kind=SpanKind.SERVER, attributes=VALUES
) as request:
    request.add_event("cache.miss", {"key": "users:7", "ttl": 30})
    with worker.start_as_current_span(
        "process",
        kind=SpanKind.CONSUMER,
        links=[Link(request.get_span_context(), {"link.reason": "follows"})],
    ) as job:
        for n in range(130):  # past the default limit of 128: dropped counts
            job.set_attribute(f"attr.{n}", n)
            job.add_event(f"step {n}")
        log.info("processing %s", "order 7", extra={"order.id": 7, "paid": True})
    for kind in (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.INTERNAL):
        with server.start_as_current_span(f"{kind.name.lower()} call", kind=kind):
            pass
    try:
        with server.start_as_current_span("charge") as charge:
            raise ValueError("card declined")
    except ValueError:
        pass
    request.set_status(Status(StatusCode.ERROR, "payment failed"))
    _logs.get_logger("encoding.events", "1.0").emit(
        LogRecord(
            body={"order": {"id": 7, "items": ["a", "b"]}, "total": 9.5},
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            event_name="order.placed",
            attributes={"n": 1, "ratio": 0.5, "tags": ("x", "y")},
        )
    )
log.warning("outside any span: %d", 3)

(EXPECTED / "spans.pb").write_bytes(
    encode_spans(spans_seen.get_finished_spans()).SerializeToString()
)
(EXPECTED / "logs.pb").write_bytes(encode_logs(logs_seen.get_finished_logs()).SerializeToString())
(EXPECTED / "encoders").write_text(
    "\n".join(
        f"{name} {hasattr(getattr(sys.modules[name], attr), '__wrapped__')}"
        for name, attr in (
            ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "encode_spans"),
            ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "encode_logs"),
            ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "encode_spans"),
            ("opentelemetry.exporter.otlp.proto.http._log_exporter", "encode_logs"),
        )
        if name in sys.modules
    )
)
