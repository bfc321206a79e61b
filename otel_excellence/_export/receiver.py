"""A minimal OTLP receiver (gRPC and HTTP/protobuf) on loopback.

It stands in for Tempo and Loki in ``make stack`` (writing what it receives as JSON
lines) and in the test suite (keeping it in memory). Why our own: the Collector is the
real receiver everywhere else; this is the far end a developer can read without
running Tempo and Loki.
"""

from __future__ import annotations

import gzip
import ssl
import threading
import zlib
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

# kind ("traces", "metrics", "logs"), the decoded request, its headers/metadata, via gRPC?
OnRequest = Callable[[str, Any, dict[str, str], bool], None]

_ROUTES: dict[str, tuple[str, Any, Any]] = {
    "/v1/traces": (
        "traces",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "/v1/metrics": (
        "metrics",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "/v1/logs": (
        "logs",
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
}


class OtlpReceiver:
    """Receives OTLP on ``127.0.0.1``; ``reject`` = (HTTP status, gRPC code) refuses all."""

    def __init__(
        self,
        on_request: OnRequest,
        grpc_port: int,
        http_port: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._on_request = on_request
        self.grpc_port = grpc_port
        self.http_port = http_port
        self._tls = tls  # OTLP/HTTP over TLS with this server context
        self.reject: tuple[int, grpc.StatusCode] | None = None
        self._grpc_server: Any = None
        self._http_server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self._start_grpc()
        self._start_http()

    def stop(self) -> None:
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait(5)
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None

    def _start_grpc(self) -> None:
        receiver = self

        def handler(kind: str, response_type: Any) -> Callable[[Any, Any], Any]:
            def export(request: Any, context: Any) -> Any:
                if receiver.reject is not None:
                    context.abort(receiver.reject[1], "rejected")
                receiver._on_request(kind, request, dict(context.invocation_metadata()), True)
                return response_type()

            return export

        class Trace(trace_service_pb2_grpc.TraceServiceServicer):
            Export = staticmethod(handler("traces", trace_service_pb2.ExportTraceServiceResponse))

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            Export = staticmethod(
                handler("metrics", metrics_service_pb2.ExportMetricsServiceResponse)
            )

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            Export = staticmethod(handler("logs", logs_service_pb2.ExportLogsServiceResponse))

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Trace(), server)  # type: ignore[no-untyped-call]
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)  # type: ignore[no-untyped-call]
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        server.start()
        self._grpc_server = server

    def _start_http(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                # Loki takes OTLP under /otlp: accept any prefix before /v1/<signal>.
                path = self.path.split("?", 1)[0].rstrip("/")
                route = next((r for s, r in _ROUTES.items() if path.endswith(s)), None)
                if route is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                if receiver.reject is not None:
                    self.send_response(receiver.reject[0])
                    self.end_headers()
                    return
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                kind, request_type, _ = route
                request = request_type()
                request.ParseFromString(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._on_request(kind, request, headers, False)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", self.http_port), Handler)
        server.daemon_threads = True
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._http_server = server
