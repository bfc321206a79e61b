"""A minimal OTLP receiver (gRPC and HTTP/protobuf) on loopback, plain, TLS or mTLS.

It stands in for Tempo and Loki in ``make stack`` (writing what it receives as JSON
lines) and in the test suite (keeping it in memory). Why our own: the Collector is the
real receiver everywhere else; this is the far end a developer can read without
running Tempo and Loki. TLS settings mirror the Collector's receiver (`cert_file`,
`key_file`, `client_ca_file`): with a client CA, clients must present a certificate
signed by it, on both protocols.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import ssl
import threading
import zlib
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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


_HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ServerTls:
    """The receiver's certificate and key, and the CA its clients' certificates need."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set: mutual TLS, a client certificate is required

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.client_ca_file)
        return context

    def grpc_credentials(self) -> Any:
        key, cert = Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes()
        ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
        )


class _TlsHttpServer(ThreadingHTTPServer):
    """HTTPS whose handshake runs in the request's own thread: a client that connects
    and stays silent (or speaks plain HTTP) cannot hold up the accept loop."""

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_HANDSHAKE_TIMEOUT_S)
        try:
            wrapped = self._context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # refused at the handshake: plain text, no or a wrong client cert
        try:
            super().finish_request(wrapped, client_address)
        finally:
            with contextlib.suppress(OSError):
                wrapped.shutdown(socket.SHUT_RDWR)
            wrapped.close()


class OtlpReceiver:
    """Receives OTLP on ``127.0.0.1``; ``reject`` = (HTTP status, gRPC code) refuses all."""

    def __init__(
        self,
        on_request: OnRequest,
        grpc_port: int,
        http_port: int,
        tls: ServerTls | None = None,
    ) -> None:
        self._on_request = on_request
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.tls = tls  # both protocols over TLS (mTLS with a client CA)
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
        address = f"127.0.0.1:{self.grpc_port}"
        if self.tls is not None:
            server.add_secure_port(address, self.tls.grpc_credentials())
        else:
            server.add_insecure_port(address)
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

        address = ("127.0.0.1", self.http_port)
        server = (
            _TlsHttpServer(address, Handler, self.tls.ssl_context())
            if self.tls is not None
            else ThreadingHTTPServer(address, Handler)
        )
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._http_server = server
