"""Receivers for the benchmarks that answer without parsing, so they are never the bottleneck.

- ``HttpSink``: OTLP/HTTP (and Prometheus remote write): reads the body, answers 200 with
  an empty protobuf message (a valid ``Export*ServiceResponse``), keeps the raw bodies
  for a check after the measured process has exited (``decode``), up to a byte cap.
- ``GrpcSink``: OTLP/gRPC with raw-bytes handlers (no deserializer), answering an empty
  message; counts calls and bytes.

The decoding happens after a run, outside any measured window.
"""

from __future__ import annotations

import gzip
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_MAX_KEPT_BYTES = 512 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as exporters use it
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.sink.record(self.path, self.headers.get("Content-Encoding"), body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sink: HttpSink


@dataclass
class HttpSink:
    """An OTLP/HTTP receiver on loopback that keeps what it gets and parses nothing."""

    keep: bool = True
    requests: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    bodies: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    _kept: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> HttpSink:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.sink = self
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, path: str, encoding: str | None, body: bytes) -> None:
        with self._lock:
            self.requests[path] += 1
            self.bytes[path] += len(body)
            if self.keep and self._kept + len(body) <= _MAX_KEPT_BYTES:
                self.bodies.append((path, encoding, body))
                self._kept += len(body)

    def take(self) -> list[tuple[str, str | None, bytes]]:
        """What arrived since the last call (and forget it)."""
        with self._lock:
            taken, self.bodies, self._kept = self.bodies, [], 0
            self.requests.clear()
            self.bytes.clear()
        return taken

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Received:
    """What one process exported, decoded after it exited."""

    spans: int = 0
    logs: int = 0
    metric_points: int = 0
    span_names: Counter[str] = field(default_factory=Counter)
    attribute_keys: Counter[str] = field(default_factory=Counter)
    metric_names: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "spans": self.spans,
            "logs": self.logs,
            "metric_points": self.metric_points,
            "span_names": dict(self.span_names.most_common(20)),
            "metric_names": sorted(self.metric_names),
            "services": sorted(self.services),
            "ours_attributes": sorted(
                k for k in self.attribute_keys if k.startswith("otel_excellence.")
            ),
        }


def _attributes(kvs: Any) -> Iterator[str]:
    for kv in kvs:
        yield kv.key


def _traces(body: bytes, received: Received) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
        received.services.update(
            kv.value.string_value
            for kv in resource_spans.resource.attributes
            if kv.key == "service.name"
        )
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                received.spans += 1
                received.span_names[span.name] += 1
                received.attribute_keys.update(_attributes(span.attributes))


def _logs(body: bytes, received: Received) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    for resource_logs in ExportLogsServiceRequest.FromString(body).resource_logs:
        for scope in resource_logs.scope_logs:
            received.logs += len(scope.log_records)


def _metrics(body: bytes, received: Received) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                received.metric_names.add(metric.name)
                kind = metric.WhichOneof("data")
                if kind is not None:
                    received.metric_points += len(getattr(metric, kind).data_points)


def decode(bodies: list[tuple[str, str | None, bytes]]) -> Received:
    """Count spans, log records and metric points in OTLP/HTTP protobuf bodies."""
    received = Received()
    readers = {"/v1/traces": _traces, "/v1/logs": _logs, "/v1/metrics": _metrics}
    for path, encoding, raw in bodies:
        body = gzip.decompress(raw) if encoding == "gzip" else raw
        for suffix, read in readers.items():
            if path.endswith(suffix):
                read(body, received)
    return received


class GrpcSink:
    """OTLP/gRPC on loopback: raw-bytes handlers for the three Export methods."""

    SERVICES = (
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "opentelemetry.proto.collector.logs.v1.LogsService",
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
    )

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self._lock = threading.Lock()

    def start(self) -> GrpcSink:
        from concurrent import futures

        import grpc

        def handler(service: str) -> Any:
            def export(request: bytes, context: Any) -> bytes:
                with self._lock:
                    self.calls[service] += 1
                    self.bytes[service] += len(request)
                return b""

            # No (de)serializers: the request stays bytes, the reply is an empty message.
            return grpc.method_handlers_generic_handler(
                service, {"Export": grpc.unary_unary_rpc_method_handler(export)}
            )

        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        for service in self.SERVICES:
            self._server.add_generic_rpc_handlers((handler(service),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=1)
