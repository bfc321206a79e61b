"""``otel-excellence doctor``: why don't I see my traces?

Prints the effective configuration (secrets masked) and which instrumentations load,
then sends one real test span to the configured traces endpoint, the way the exporter
would, and turns what happens into a diagnosis: nothing listening, gRPC spoken to an
HTTP receiver or the reverse, TLS on one side only, rejected credentials, no answer.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from otel_excellence._config.distro import apply_defaults
from otel_excellence._config.instrumentations import instrumentation_statuses
from otel_excellence._config.settings import Settings, all_settings
from otel_excellence._findings.sql import scrub_credentials

TIMEOUT_S = 3.0
_SECRET_NAME = re.compile(r"HEADERS|PASSWORD|SECRET|TOKEN|API_KEY|CREDENTIAL", re.I)

# Exit codes, one per diagnosis, so scripts can tell them apart.
OK = 0
NOTHING_LISTENING = 2
PROTOCOL_MISMATCH = 3
TLS_MISMATCH = 4
REJECTED_CREDENTIALS = 5
TIMED_OUT = 6
UNRESOLVABLE = 7
OTHER = 8


@dataclass(frozen=True)
class Diagnosis:
    code: int
    title: str
    advice: str = ""

    @property
    def healthy(self) -> bool:
        return self.code == OK


@dataclass(frozen=True)
class Target:
    """Where the traces exporter sends, as the SDK's exporters resolve it."""

    protocol: str  # grpc | http/protobuf
    url: str  # for HTTP: the full URL including /v1/traces
    host: str
    port: int
    tls: bool
    headers: dict[str, str]


def mask(name: str, value: str) -> str:
    """A variable's value fit to print: header values, secrets and passwords hidden."""
    if "HEADERS" in name.upper():
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        return ",".join(f"{k.strip()}=***" for k, _, _ in pairs)
    if _SECRET_NAME.search(name):
        return "***"
    return scrub_credentials(value)


def _headers(environ: Mapping[str, str]) -> dict[str, str]:
    raw = environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or environ.get(
        "OTEL_EXPORTER_OTLP_HEADERS", ""
    )
    headers = {}
    for pair in raw.split(","):
        key, _, value = pair.partition("=")
        if key.strip():
            headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def target(environ: Mapping[str, str]) -> Target:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    specific = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    general = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if protocol.startswith("http"):
        url = specific or (general or "http://localhost:4318").rstrip("/") + "/v1/traces"
    else:
        url = specific or general or "http://localhost:4317"
    if "//" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    insecure = environ.get("OTEL_EXPORTER_OTLP_INSECURE")
    if protocol == "grpc" and insecure is not None and parts.scheme != "https":
        tls = insecure.strip().lower() != "true"
    default_port = 4317 if protocol == "grpc" else (443 if tls else 80)
    return Target(
        protocol=protocol,
        url=url,
        host=parts.hostname or "localhost",
        port=parts.port or default_port,
        tls=tls,
        headers=_headers(environ),
    )


def _test_span(service: str) -> ReadableSpan:
    context = SpanContext(
        trace_id=random.getrandbits(128),
        span_id=random.getrandbits(64),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    now = time.time_ns()
    return ReadableSpan(
        name="otel-excellence doctor",
        context=context,
        kind=SpanKind.INTERNAL,
        resource=Resource.create({"service.name": service}),
        attributes={"otel_excellence.doctor": True},
        start_time=now - 1_000_000,
        end_time=now,
    )


def _payload(service: str) -> bytes:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return bytes(encode_spans([_test_span(service)]).SerializeToString())


# -- what is at the other end -----------------------------------------------------------
def _connect(host: str, port: int) -> Diagnosis | None:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except socket.gaierror as error:
        return Diagnosis(
            UNRESOLVABLE,
            f"cannot resolve {host!r} ({error.strerror})",
            "Check the host name in OTEL_EXPORTER_OTLP_ENDPOINT.",
        )
    except ConnectionRefusedError:
        return Diagnosis(
            NOTHING_LISTENING,
            f"nothing is listening on {host}:{port}",
            "Start the Collector (make stack, or docker compose up), or fix the port in "
            "OTEL_EXPORTER_OTLP_ENDPOINT (4317 for gRPC, 4318 for HTTP).",
        )
    except TimeoutError:
        return Diagnosis(
            TIMED_OUT,
            f"{host}:{port} did not accept a connection within {TIMEOUT_S:g} s",
            "A firewall, a wrong address, or an overloaded Collector.",
        )
    except OSError as error:
        return Diagnosis(OTHER, f"cannot connect to {host}:{port}: {error}")


def _speaks_tls(host: str, port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def _speaks_http1(host: str, port: int, tls: bool) -> bool:
    connection: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT_S, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _grpc_export(t: Target, payload: bytes) -> tuple[str | None, str]:
    """(gRPC status name or None for success, details)."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    address = f"{t.host}:{t.port}"
    channel = (
        grpc.secure_channel(address, grpc.ssl_channel_credentials())
        if t.tls
        else grpc.insecure_channel(address)
    )
    try:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(payload)
        stub.Export(request, timeout=TIMEOUT_S, metadata=list(t.headers.items()))
        return None, ""
    except grpc.RpcError as error:
        return error.code().name, str(error.details() or "")
    finally:
        channel.close()


def _http_export(t: Target, payload: bytes) -> tuple[int | None, str]:
    """(HTTP status or None when no HTTP answer came, details)."""
    parts = urlsplit(t.url)
    connection: http.client.HTTPConnection
    if t.tls:
        cafile = os.environ.get("OTEL_EXPORTER_OTLP_CERTIFICATE") or None
        context = ssl.create_default_context(cafile=cafile)
        connection = http.client.HTTPSConnection(t.host, t.port, timeout=TIMEOUT_S, context=context)
    else:
        connection = http.client.HTTPConnection(t.host, t.port, timeout=TIMEOUT_S)
    headers = {"Content-Type": "application/x-protobuf", **t.headers}
    try:
        connection.request("POST", parts.path or "/v1/traces", body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.reason
    except ssl.SSLError as error:
        return None, f"ssl: {error}"
    except TimeoutError:
        return None, "timeout"
    except (OSError, http.client.HTTPException) as error:
        return None, f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def _shown(t: Target) -> str:
    return scrub_credentials(t.url)


def _credentials(status: str | int) -> Diagnosis:
    return Diagnosis(
        REJECTED_CREDENTIALS,
        f"the endpoint rejected the credentials ({status})",
        "Check OTEL_EXPORTER_OTLP_HEADERS (e.g. authorization=Bearer%20<token>): a missing, "
        "expired or wrong token.",
    )


def _timeout(t: Target) -> Diagnosis:
    return Diagnosis(
        TIMED_OUT,
        f"connected to {t.host}:{t.port}, but no answer within {TIMEOUT_S:g} s",
        "The Collector may be overloaded (memory_limiter refusing) or this is not an OTLP "
        "port; check the Collector's logs.",
    )


def _probe_grpc(t: Target, payload: bytes) -> Diagnosis:  # noqa: PLR0911 - one return per verdict
    status, details = _grpc_export(t, payload)
    if status is None:
        return Diagnosis(OK, f"the test span was accepted over OTLP/gRPC by {t.host}:{t.port}")
    if status in {"UNAUTHENTICATED", "PERMISSION_DENIED"}:
        return _credentials(status)
    if status == "DEADLINE_EXCEEDED":
        return _timeout(t)
    if status == "UNIMPLEMENTED":
        return Diagnosis(
            PROTOCOL_MISMATCH,
            f"{t.host}:{t.port} speaks gRPC but has no OTLP trace service",
            "Point OTEL_EXPORTER_OTLP_ENDPOINT at the Collector's OTLP port (4317).",
        )
    lowered = details.lower()
    if t.tls and ("ssl" in lowered or "handshake" in lowered or "tls" in lowered):
        return Diagnosis(
            TLS_MISMATCH,
            f"TLS handshake with {t.host}:{t.port} failed: the endpoint speaks plain text",
            "Use http:// in OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_INSECURE=true), "
            "or enable TLS on the Collector's receiver.",
        )
    if not t.tls and _speaks_tls(t.host, t.port):
        return Diagnosis(
            TLS_MISMATCH,
            f"{t.host}:{t.port} expects TLS, but the exporter speaks plain text",
            "Use https:// in OTEL_EXPORTER_OTLP_ENDPOINT (and OTEL_EXPORTER_OTLP_CERTIFICATE "
            "for a private CA).",
        )
    if _speaks_http1(t.host, t.port, t.tls):
        return Diagnosis(
            PROTOCOL_MISMATCH,
            f"{t.host}:{t.port} is an HTTP endpoint, but the exporter speaks gRPC",
            "Set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or use the gRPC port (4317).",
        )
    return Diagnosis(OTHER, f"gRPC export failed: {status} {details}")


def _probe_http(t: Target, payload: bytes) -> Diagnosis:  # noqa: PLR0911 - one return per verdict
    status, details = _http_export(t, payload)
    if status is not None and 200 <= status < 300:
        return Diagnosis(OK, f"the test span was accepted over OTLP/HTTP at {_shown(t)}")
    if status in {401, 403}:
        return _credentials(status)
    if status == 404:
        return Diagnosis(
            PROTOCOL_MISMATCH,
            f"{_shown(t)} answered 404: no OTLP/HTTP receiver at that path",
            "OTEL_EXPORTER_OTLP_ENDPOINT takes the base URL (http://host:4318); the exporter "
            "adds /v1/traces. A per-signal *_TRACES_ENDPOINT takes the full URL.",
        )
    if details == "timeout":
        return _timeout(t)
    grpc_status, _ = _grpc_export(t, payload) if not t.tls else ("", "")
    if grpc_status is None or grpc_status in {"UNAUTHENTICATED", "PERMISSION_DENIED"}:
        return Diagnosis(
            PROTOCOL_MISMATCH,
            f"{t.host}:{t.port} is a gRPC endpoint, but the exporter speaks HTTP",
            "Set OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or use the HTTP port (4318).",
        )
    if status is not None:
        return Diagnosis(OTHER, f"{_shown(t)} answered {status} {details}")
    if t.tls and details.startswith("ssl:"):
        if "certificate" in details.lower():
            return Diagnosis(
                TLS_MISMATCH,
                f"the TLS certificate of {t.host}:{t.port} is not trusted ({details[5:]})",
                "Set OTEL_EXPORTER_OTLP_CERTIFICATE to the CA that signed it.",
            )
        return Diagnosis(
            TLS_MISMATCH,
            f"TLS handshake with {t.host}:{t.port} failed: the endpoint speaks plain text",
            "Use http:// in OTEL_EXPORTER_OTLP_ENDPOINT, or enable TLS on the Collector.",
        )
    if not t.tls and _speaks_tls(t.host, t.port):
        return Diagnosis(
            TLS_MISMATCH,
            f"{t.host}:{t.port} expects TLS, but the exporter speaks plain text",
            "Use https:// in OTEL_EXPORTER_OTLP_ENDPOINT.",
        )
    return Diagnosis(OTHER, f"HTTP export failed: {details}")


def diagnose(environ: Mapping[str, str]) -> tuple[Target, Diagnosis]:
    t = target(environ)
    problem = _connect(t.host, t.port)
    if problem is not None:
        return t, problem
    payload = _payload(environ.get("OTEL_SERVICE_NAME") or "otel-excellence-doctor")
    probe = _probe_grpc if t.protocol == "grpc" else _probe_http
    return t, probe(t, payload)


# -- the report --------------------------------------------------------------------------
def run(print_line: Callable[[str], None] = print) -> int:
    environ = dict(os.environ)
    apply_defaults(environ)  # what the distro will use, on a copy
    print_line("Effective configuration (secrets masked):")
    for name in sorted(k for k in environ if k.startswith("OTEL_")):
        print_line(f"  {name}={mask(name, environ[name])}")
    settings = Settings.load(environ)
    for setting in all_settings():
        if setting.env not in environ:
            value = setting.parser.render(getattr(settings, setting.field))
            print_line(f"  {setting.env}={value} (default)")
    print_line("")
    print_line("Instrumentations:")
    for status in sorted(instrumentation_statuses(), key=lambda s: (s.status, s.name)):
        reason = f" - {status.reason}" if status.reason else ""
        print_line(f"  {status.status:<11} {status.name}{reason}")
    print_line("")
    t, diagnosis = diagnose(environ)
    url = scrub_credentials(t.url)
    print_line(f"Traces endpoint: {url} ({t.protocol}{', TLS' if t.tls else ''})")
    mark = "OK" if diagnosis.healthy else "PROBLEM"
    print_line(f"{mark}: {diagnosis.title}")
    if diagnosis.advice:
        print_line(f"  {diagnosis.advice}")
    return diagnosis.code
