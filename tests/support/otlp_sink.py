"""A real OTLP receiver (gRPC and HTTP/protobuf) owned by a test.

It stands in for Tempo and Loki behind the Collector, and receives directly from an
instrumented process in the distro's own end-to-end tests. Everything received is
decoded with the official protobuf definitions and kept in memory; helpers flatten it
into plain dicts for assertions. The server itself is the package's OtlpReceiver (the
one ``make stack`` runs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_excellence._export.receiver import OtlpReceiver, ServerTls
from tests.support.ports import free_port


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    status_code: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    scope: str

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class Log:
    body: Any
    severity_text: str
    severity_number: int
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str


@dataclass
class Metric:
    name: str
    unit: str
    kind: str
    points: list[Any]
    resource: dict[str, Any]
    scope: str


class OtlpSink:
    """The package's OTLP receiver, keeping everything in memory for assertions."""

    def __init__(
        self,
        grpc_port: int | None = None,
        http_port: int | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.log_requests: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self.http_headers: list[dict[str, str]] = []
        self.grpc_metadata: list[dict[str, str]] = []
        self._receiver = OtlpReceiver(
            self._record, grpc_port or free_port(), http_port or free_port(), tls
        )

    @property
    def grpc_port(self) -> int:
        return self._receiver.grpc_port

    @property
    def http_port(self) -> int:
        return self._receiver.http_port

    @property
    def reject(self) -> tuple[int, grpc.StatusCode] | None:
        return self._receiver.reject

    @reject.setter
    def reject(self, value: tuple[int, grpc.StatusCode] | None) -> None:
        self._receiver.reject = value

    @property
    def scheme(self) -> str:
        """What the exporters need in the endpoint: https for a TLS receiver."""
        return "https" if self._receiver.tls is not None else "http"

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def start(self) -> OtlpSink:
        self._receiver.start()
        return self

    def stop(self) -> None:
        self._receiver.stop()

    def __enter__(self) -> OtlpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, kind: str, request: Any, headers: dict[str, str], grpc_call: bool) -> None:
        with self._lock:
            {
                "traces": self.trace_requests,
                "metrics": self.metric_requests,
                "logs": self.log_requests,
            }[kind].append(request)
            (self.grpc_metadata if grpc_call else self.http_headers).append(headers)

    # -- reading back -------------------------------------------------------------------
    def spans(self) -> list[Span]:
        with self._lock:
            requests = list(self.trace_requests)
        out = []
        for request in requests:
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(
                            Span(
                                name=s.name,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_span_id=s.parent_span_id.hex(),
                                kind=s.kind,
                                status_code=s.status.code,
                                start_ns=s.start_time_unix_nano,
                                end_ns=s.end_time_unix_nano,
                                attributes=attributes(s.attributes),
                                events=[(e.name, attributes(e.attributes)) for e in s.events],
                                resource=resource,
                                scope=ss.scope.name,
                            )
                        )
        return out

    def logs(self) -> list[Log]:
        with self._lock:
            requests = list(self.log_requests)
        out = []
        for request in requests:
            for rl in request.resource_logs:
                resource = attributes(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        out.append(
                            Log(
                                body=any_value(r.body),
                                severity_text=r.severity_text,
                                severity_number=r.severity_number,
                                trace_id=r.trace_id.hex(),
                                span_id=r.span_id.hex(),
                                attributes=attributes(r.attributes),
                                resource=resource,
                                scope=sl.scope.name,
                            )
                        )
        return out

    def metrics(self) -> list[Metric]:
        with self._lock:
            requests = list(self.metric_requests)
        out = []
        for request in requests:
            for rm in request.resource_metrics:
                resource = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data") or ""
                        points = list(getattr(m, kind).data_points) if kind else []
                        out.append(Metric(m.name, m.unit, kind, points, resource, sm.scope.name))
        return out

    def metric_total(self, name: str, **match: Any) -> float:
        """A metric's current total over the attribute sets that ``match``: the latest
        cumulative point of each (scope, attribute set) - every export repeats the
        running total - summed; histograms by their counts."""
        latest: dict[tuple[str, frozenset[tuple[str, Any]]], float] = {}
        for metric in self.metrics():  # in arrival order: later exports win
            if metric.name != name:
                continue
            for point in metric.points:
                flat = attributes(point.attributes)
                if any(flat.get(k) != v for k, v in match.items()):
                    continue
                key = (metric.scope, frozenset((k, str(v)) for k, v in flat.items()))
                value = (
                    point.count
                    if hasattr(point, "bucket_counts")
                    else (point.as_int or point.as_double)
                )
                latest[key] = float(value)
        return sum(latest.values())

    def wait_for(
        self, condition: Callable[[], bool], timeout: float = 20.0, interval: float = 0.1
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(interval)
        return condition()
