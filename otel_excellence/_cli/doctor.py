"""``otel-excellence doctor``: why don't I see my telemetry?

Prints the effective configuration (secrets masked), which distro and instrumentations
will run and which installed libraries have no instrumentation, then follows each
signal (traces, metrics, logs) to where it goes. A signal that is off or goes to the
console is said to be so and not probed. For OTLP, one real request is sent the way
that signal's exporter would send it — same endpoint, protocol, headers, CA file and
client certificate, resolved from the same variables — and what happens becomes a
diagnosis: nothing listening, gRPC spoken to an HTTP receiver or the reverse, TLS on
one side only, an untrusted server certificate, a client certificate missing or
refused, rejected credentials, no answer.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.util.re import parse_env_headers

from otel_excellence._config.distro import DEV_EXPORTER, DISTRO_NAME, apply_defaults
from otel_excellence._config.instrumentations import (
    instrumentation_statuses,
    missing_instrumentations,
)
from otel_excellence._config.settings import DEV, Settings, all_settings
from otel_excellence._findings.sql import scrub_credentials

TIMEOUT_S = 3.0
SIGNALS = ("traces", "metrics", "logs")
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
TELEMETRY_OFF = 9
DISTRO_NOT_USED = 10

_OTLP_EXPORTERS = {"otlp": None, "otlp_proto_grpc": "grpc", "otlp_proto_http": "http/protobuf"}


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
    """Where one signal's OTLP exporter sends, resolved as that exporter resolves it."""

    signal: str
    protocol: str  # grpc | http/protobuf
    url: str  # HTTP: the full URL including /v1/<signal>; gRPC: the endpoint as given
    host: str
    port: int
    tls: bool
    headers: dict[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    # The variable in effect for each setting, so that advice names the right one.
    names: dict[str, str] = field(default_factory=dict)

    @property
    def sends_client_cert(self) -> bool:
        # The gRPC exporter loads a client certificate only together with a CA file.
        return bool(self.client_cert) and (self.protocol != "grpc" or bool(self.ca_file))

    def key(self) -> tuple[Any, ...]:
        """Targets equal by this key behave the same: probed once."""
        return (
            self.protocol,
            self.url if self.protocol != "grpc" else (self.host, self.port),
            self.tls,
            tuple(sorted(self.headers.items())),
            self.ca_file,
            self.client_cert if self.sends_client_cert else None,
            self.client_key if self.sends_client_cert else None,
        )


def mask(name: str, value: str) -> str:
    """A variable's value fit to print: header values, secrets and passwords hidden."""
    if "HEADERS" in name.upper():
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        return ",".join(f"{k.strip()}=***" for k, _, _ in pairs)
    if _SECRET_NAME.search(name):
        return "***"
    return scrub_credentials(value)


# -- where each signal goes ---------------------------------------------------------------
def _setting(environ: Mapping[str, str], signal: str, suffix: str) -> tuple[str, str | None]:
    """(variable in effect, value): the per-signal variable wins over the general one."""
    specific = f"OTEL_EXPORTER_OTLP_{signal.upper()}_{suffix}"
    if environ.get(specific):
        return specific, environ[specific]
    general = f"OTEL_EXPORTER_OTLP_{suffix}"
    return general, environ.get(general) or None


def _protocol(environ: Mapping[str, str], signal: str, exporter: str) -> str:
    fixed = _OTLP_EXPORTERS.get(exporter)
    if fixed:
        return fixed
    _, value = _setting(environ, signal, "PROTOCOL")
    return (value or "grpc").strip()


def target(environ: Mapping[str, str], signal: str = "traces", exporter: str = "otlp") -> Target:
    protocol = _protocol(environ, signal, exporter)
    names: dict[str, str] = {}
    specific_endpoint = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    names["endpoint"] = (
        specific_endpoint if environ.get(specific_endpoint) else "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    names["headers"], raw_headers = _setting(environ, signal, "HEADERS")
    headers = {k.lower(): v for k, v in parse_env_headers(raw_headers or "", liberal=True).items()}
    if protocol.startswith("http"):
        return _http_target(environ, signal, protocol, headers, names)
    return _grpc_target(environ, signal, headers, names)


def _http_target(
    environ: Mapping[str, str],
    signal: str,
    protocol: str,
    headers: dict[str, str],
    names: dict[str, str],
) -> Target:
    # As opentelemetry-exporter-otlp-proto-http resolves it (_resolve_endpoint and
    # _build_transport): a per-signal endpoint is the full URL; the general one is a
    # base to which /v1/<signal> is added; each TLS file per signal, else general.
    specific = environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318/"
    url = specific or f"{base.removesuffix('/')}/v1/{signal}"
    parts = urlsplit(url if "//" in url else "http://" + url)
    tls = parts.scheme == "https"
    names["certificate"], ca_file = _setting(environ, signal, "CERTIFICATE")
    names["client_certificate"], client_cert = _setting(environ, signal, "CLIENT_CERTIFICATE")
    names["client_key"], client_key = _setting(environ, signal, "CLIENT_KEY")
    return Target(
        signal=signal,
        protocol=protocol,
        url=url,
        host=parts.hostname or "localhost",
        port=parts.port or (443 if tls else 80),
        tls=tls,
        headers=headers,
        ca_file=ca_file,
        client_cert=client_cert,
        client_key=client_key,
        names=names,
    )


def _grpc_target(
    environ: Mapping[str, str], signal: str, headers: dict[str, str], names: dict[str, str]
) -> Target:
    # As opentelemetry-exporter-otlp-proto-grpc resolves it (the signal's exporter, then
    # OTLPExporterMixin): https forces TLS; otherwise *_INSECURE decides, and without it
    # only an http:// endpoint is plain text (no scheme at all means TLS). A per-signal
    # CA file brings the per-signal client files; the general CA file the general ones.
    upper = signal.upper()
    endpoint = (
        environ.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4317"
    )
    parts = urlsplit(endpoint)
    insecure: bool | None = None
    specific_insecure = environ.get(f"OTEL_EXPORTER_OTLP_{upper}_INSECURE")
    if specific_insecure is not None:
        insecure = specific_insecure.strip().lower() == "true"
    if parts.scheme == "https":
        insecure = False
    if insecure is None:
        general_insecure = environ.get("OTEL_EXPORTER_OTLP_INSECURE")
        if general_insecure is not None:
            insecure = general_insecure.strip().lower() == "true"
        else:
            insecure = parts.scheme == "http"
    prefix = f"OTEL_EXPORTER_OTLP_{upper}_"
    if not insecure and environ.get(prefix + "CERTIFICATE") is not None:
        chosen = prefix
    else:
        chosen = "OTEL_EXPORTER_OTLP_"
    for role, suffix in (
        ("certificate", "CERTIFICATE"),
        ("client_certificate", "CLIENT_CERTIFICATE"),
        ("client_key", "CLIENT_KEY"),
    ):
        names[role] = chosen + suffix
    address = parts.netloc if parts.netloc else endpoint
    host, _, port = address.rpartition(":")
    if not host:
        host, port = address, ""
    return Target(
        signal=signal,
        protocol="grpc",
        url=endpoint,
        host=host.strip("[]") or "localhost",
        port=int(port) if port.isdigit() else 4317,
        tls=not insecure,
        headers=headers,
        ca_file=(environ.get(names["certificate"]) or None) if not insecure else None,
        client_cert=(environ.get(names["client_certificate"]) or None) if not insecure else None,
        client_key=(environ.get(names["client_key"]) or None) if not insecure else None,
        names=names,
    )


# -- the test requests -------------------------------------------------------------------
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


def _request(signal: str, service: str) -> Any:
    """The request to send: one test span for traces; empty (valid) requests for metrics
    and logs, so that nothing made up lands in the user's metrics or logs."""
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        return encode_spans([_test_span(service)])
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

        return metrics_service_pb2.ExportMetricsServiceRequest()
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    return logs_service_pb2.ExportLogsServiceRequest()


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _grpc_export(t: Target, request: Any) -> tuple[str | None, str]:
    """(gRPC status name or None for success, details)."""
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    address = f"{t.host}:{t.port}"
    if t.tls:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(t.ca_file) if t.ca_file else None,
            private_key=_read(t.client_key) if t.sends_client_cert and t.client_key else None,
            certificate_chain=_read(t.client_cert)
            if t.sends_client_cert and t.client_cert
            else None,
        )
        channel = grpc.secure_channel(address, credentials)
    else:
        channel = grpc.insecure_channel(address)
    stubs: dict[str, Callable[[Any], Any]] = {
        "traces": trace_service_pb2_grpc.TraceServiceStub,
        "metrics": metrics_service_pb2_grpc.MetricsServiceStub,
        "logs": logs_service_pb2_grpc.LogsServiceStub,
    }
    try:
        stub = stubs[t.signal](channel)
        stub.Export(request, timeout=TIMEOUT_S, metadata=list(t.headers.items()))
        return None, ""
    except grpc.RpcError as error:
        return error.code().name, str(error.details() or "")
    finally:
        channel.close()


def _http_session(environ: Mapping[str, str], signal: str) -> Any:
    """The session the HTTP exporter would send with: from the credential-provider
    entry point named in the environment (as the distro sets it for a CA file), else a
    plain ``requests.Session``."""
    import requests
    from opentelemetry.util._importlib_metadata import entry_points

    name = environ.get("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER") or environ.get(
        f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal.upper()}_CREDENTIAL_PROVIDER"
    )
    if name:
        for entry_point in entry_points(group="opentelemetry_otlp_credential_provider", name=name):
            session = entry_point.load()()
            if isinstance(session, requests.Session):
                return session
    return requests.Session()


def _http_export(t: Target, payload: bytes, environ: Mapping[str, str]) -> tuple[int | None, str]:
    """(HTTP status or None when no HTTP answer came, details); sent exactly as the HTTP
    exporter's transport sends: a session with ``verify``/``cert`` set on it (so that
    REQUESTS_CA_BUNDLE has the same say here as there)."""
    import requests

    session = _http_session(environ, t.signal)
    session.verify = t.ca_file or True
    if t.client_cert:
        session.cert = (t.client_cert, t.client_key) if t.client_key else t.client_cert
    headers = {"Content-Type": "application/x-protobuf", **t.headers}
    try:
        response = session.post(t.url, data=payload, headers=headers, timeout=TIMEOUT_S)
        return response.status_code, response.reason or ""
    except requests.exceptions.SSLError as error:
        return None, f"ssl: {error}"
    except requests.exceptions.Timeout:
        return None, "timeout"
    except (OSError, requests.exceptions.RequestException) as error:
        return None, f"{type(error).__name__}: {error}"
    finally:
        session.close()


# -- what is at the other end -----------------------------------------------------------
def _connect(host: str, port: int, endpoint_name: str) -> Diagnosis | None:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except socket.gaierror as error:
        return Diagnosis(
            UNRESOLVABLE,
            f"cannot resolve {host!r} ({error.strerror})",
            f"Check the host name in {endpoint_name}.",
        )
    except ConnectionRefusedError:
        return Diagnosis(
            NOTHING_LISTENING,
            f"nothing is listening on {host}:{port}",
            "Start the Collector (make stack, or docker compose up), or fix the port in "
            f"{endpoint_name} (4317 for gRPC, 4318 for HTTP).",
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


def _speaks_http1(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as raw:
            raw.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return raw.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


# The first bytes a gRPC (HTTP/2) client sends, and an empty SETTINGS frame: enough for
# a server to check a TLS 1.3 client certificate, which it does after the handshake.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_CLIENT_CERT_REQUIRED = ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE", "PEER_DID_NOT_RETURN")
_CLIENT_CERT_REFUSED = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "DECRYPT_ERROR")


def _file_problem(t: Target) -> Diagnosis | None:
    for role, path in (
        ("certificate", t.ca_file),
        ("client_certificate", t.client_cert),
        ("client_key", t.client_key),
    ):
        if path and not os.path.isfile(path):
            return Diagnosis(
                TLS_MISMATCH,
                f"{t.names[role]}={path}: no such file",
                "The exporter cannot load it: give the path of a PEM file readable by the service.",
            )
    if t.client_cert and not t.client_key:
        return Diagnosis(
            TLS_MISMATCH,
            f"{t.names['client_certificate']} is set without {t.names['client_key']}",
            "A client certificate needs its private key (PEM) in the _CLIENT_KEY variable.",
        )
    return None


def _client_context(t: Target, verify: bool) -> ssl.SSLContext:
    import certifi

    context = ssl.create_default_context(cafile=t.ca_file or certifi.where())
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if t.sends_client_cert and t.client_cert:
        context.load_cert_chain(t.client_cert, t.client_key)
    context.set_alpn_protocols(["h2"] if t.protocol == "grpc" else ["http/1.1"])
    return context


@dataclass
class _Handshake:
    error: BaseException | None = None  # None: a TLS session was set up
    cert_requested: bool = False  # the server asked for a client certificate
    closed_silently: bool = False  # ... then closed without a byte, as gRPC servers do


def _handshake(t: Target, verify: bool) -> _Handshake:
    """Set up TLS as the exporter would, send the protocol's first bytes, read one."""
    outcome = _Handshake()

    def watch(*args: Any) -> None:
        # ssl's message callback (private, but in every CPython since 3.8) shows the
        # handshake messages: the only way to see that the server asked for a client
        # certificate when it then just closes the connection.
        if getattr(args[4], "name", "") == "CERTIFICATE_REQUEST":
            outcome.cert_requested = True

    try:
        context = _client_context(t, verify)
        with contextlib.suppress(AttributeError):
            context._msg_callback = watch  # type: ignore[attr-defined]
        with (
            socket.create_connection((t.host, t.port), timeout=TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=t.host) as tls,
        ):
            tls.sendall(
                _H2_PREFACE
                if t.protocol == "grpc"
                else f"GET / HTTP/1.1\r\nHost: {t.host}\r\nConnection: close\r\n\r\n".encode()
            )
            outcome.closed_silently = tls.recv(1) == b""
    except TimeoutError:
        pass  # TLS is up; the server just said nothing more
    except (OSError, ssl.SSLError, ValueError) as error:
        outcome.error = error
    return outcome


def _client_cert_advice(t: Target) -> str:
    advice = (
        f"Set {t.names['client_certificate']} and {t.names['client_key']} to a certificate "
        "signed by the CA the receiver trusts (its client_ca_file) and its key."
    )
    if t.protocol == "grpc" and t.client_cert and not t.ca_file:
        advice += (
            f" The gRPC exporter presents a client certificate only when "
            f"{t.names['certificate']} is set too: set it to the server's CA."
        )
    return advice


def _tls_verdict(t: Target) -> Diagnosis | None:  # noqa: PLR0911 - one return per verdict
    """Why TLS to ``t`` fails, found with Python's ssl and the exporter's own files."""
    if _handshake(t, verify=False).error is not None and not _speaks_tls(t.host, t.port):
        return Diagnosis(
            TLS_MISMATCH,
            f"TLS handshake with {t.host}:{t.port} failed: the endpoint speaks plain text",
            f"Use http:// in {t.names['endpoint']}"
            + (" (or OTEL_EXPORTER_OTLP_INSECURE=true)" if t.protocol == "grpc" else "")
            + ", or enable TLS on the Collector's receiver.",
        )
    outcome = _handshake(t, verify=True)
    error = outcome.error
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or str(error)
        if "mismatch" in reason.lower():
            return Diagnosis(
                TLS_MISMATCH,
                f"the certificate of {t.host}:{t.port} is not valid for {t.host!r} ({reason})",
                f"Use a host name in {t.names['endpoint']} that the certificate lists "
                "(subjectAltName), or issue the certificate for this name.",
            )
        if t.ca_file:
            advice = (
                f"{t.names['certificate']}={t.ca_file} is not the CA that signed the "
                "receiver's certificate: point it at that CA's certificate (PEM)."
            )
        else:
            advice = f"Set {t.names['certificate']} to the CA certificate (PEM) that signed it."
        return Diagnosis(
            TLS_MISMATCH,
            f"the TLS certificate of {t.host}:{t.port} is not trusted ({reason})",
            advice,
        )
    text = str(error or "the receiver closed the connection after the handshake")
    upper = text.upper()
    refused = error is not None or outcome.closed_silently
    # A server that refuses a client certificate sends an alert, or (gRPC, and
    # sometimes Python's ssl under load) just closes: EOF right after the handshake.
    abrupt = outcome.closed_silently or isinstance(
        error, (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError)
    )
    if (
        not t.sends_client_cert
        and refused
        and (outcome.cert_requested or any(word in upper for word in _CLIENT_CERT_REQUIRED))
    ):
        return Diagnosis(
            TLS_MISMATCH,
            f"{t.host}:{t.port} requires a client certificate (mutual TLS) and none was presented",
            _client_cert_advice(t),
        )
    if t.sends_client_cert and (
        any(word in upper for word in _CLIENT_CERT_REFUSED) or (outcome.cert_requested and abrupt)
    ):
        return Diagnosis(
            TLS_MISMATCH,
            f"{t.host}:{t.port} refused the client certificate {t.client_cert} ({text})",
            "The receiver accepts only client certificates signed by its client_ca_file: "
            f"use one signed by that CA in {t.names['client_certificate']}.",
        )
    if isinstance(error, ssl.SSLError):
        return Diagnosis(TLS_MISMATCH, f"TLS with {t.host}:{t.port} failed: {text}")
    return None


# -- diagnoses ---------------------------------------------------------------------------
def _credentials(t: Target, status: str | int) -> Diagnosis:
    return Diagnosis(
        REJECTED_CREDENTIALS,
        f"the endpoint rejected the credentials ({status})",
        f"Check {t.names['headers']} (e.g. authorization=Bearer%20<token>): a missing, "
        "expired or wrong token.",
    )


def _timeout(t: Target) -> Diagnosis:
    return Diagnosis(
        TIMED_OUT,
        f"connected to {t.host}:{t.port}, but no answer within {TIMEOUT_S:g} s",
        "The Collector may be overloaded (memory_limiter refusing) or this is not an OTLP "
        "port; check the Collector's logs.",
    )


def _expects_tls(t: Target) -> Diagnosis:
    return Diagnosis(
        TLS_MISMATCH,
        f"{t.host}:{t.port} expects TLS, but the exporter speaks plain text",
        f"Use https:// in {t.names['endpoint']} (and OTEL_EXPORTER_OTLP_CERTIFICATE for a "
        "private CA).",
    )


def _accepted(t: Target, over: str) -> Diagnosis:
    what = (
        "the test span was accepted"
        if t.signal == "traces"
        else f"an empty {t.signal} export was accepted"
    )
    where = f"{t.host}:{t.port}" if t.protocol == "grpc" else scrub_credentials(t.url)
    return Diagnosis(OK, f"{what} over {over} by {where}")


def _probe_grpc(t: Target, request: Any) -> Diagnosis:  # noqa: PLR0911 - one return per verdict
    status, details = _grpc_export(t, request)
    if status is None:
        return _accepted(t, "OTLP/gRPC" + (" with TLS" if t.tls else ""))
    if status in {"UNAUTHENTICATED", "PERMISSION_DENIED"}:
        return _credentials(t, status)
    if status == "DEADLINE_EXCEEDED":
        return _timeout(t)
    if status == "UNIMPLEMENTED":
        return Diagnosis(
            PROTOCOL_MISMATCH,
            f"{t.host}:{t.port} speaks gRPC but has no OTLP {t.signal} service",
            f"Point {t.names['endpoint']} at the Collector's OTLP port (4317).",
        )
    if t.tls:
        verdict = _tls_verdict(t)
        if verdict is not None:
            return verdict
    elif _speaks_tls(t.host, t.port):
        return _expects_tls(t)
    if _speaks_http1(t.host, t.port):
        return Diagnosis(
            PROTOCOL_MISMATCH,
            f"{t.host}:{t.port} is an HTTP endpoint, but the exporter speaks gRPC",
            "Set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or use the gRPC port (4317).",
        )
    return Diagnosis(OTHER, f"gRPC export failed: {status} {details}")


def _probe_http(  # noqa: PLR0911 - one return per verdict
    t: Target, request: Any, environ: Mapping[str, str]
) -> Diagnosis:
    status, details = _http_export(t, bytes(request.SerializeToString()), environ)
    if status is not None and 200 <= status < 300:
        return _accepted(t, "OTLP/HTTP")
    if status in {401, 403}:
        return _credentials(t, status)
    if status == 404:
        return Diagnosis(
            PROTOCOL_MISMATCH,
            f"{scrub_credentials(t.url)} answered 404: no OTLP/HTTP receiver at that path",
            "OTEL_EXPORTER_OTLP_ENDPOINT takes the base URL (http://host:4318); the exporter "
            f"adds /v1/{t.signal}. A per-signal OTEL_EXPORTER_OTLP_{t.signal.upper()}_ENDPOINT "
            "takes the full URL.",
        )
    if details == "timeout":
        return _timeout(t)
    if t.tls and details.startswith("ssl:"):
        verdict = _tls_verdict(t)
        if verdict is not None:
            return verdict
    if not t.tls and status is None and _speaks_tls(t.host, t.port):
        return _expects_tls(t)
    grpc_target = replace(t, protocol="grpc")
    grpc_status, _ = _grpc_export(grpc_target, request)
    if grpc_status is None or grpc_status in {"UNAUTHENTICATED", "PERMISSION_DENIED"}:
        return Diagnosis(
            PROTOCOL_MISMATCH,
            f"{t.host}:{t.port} is a gRPC endpoint, but the exporter speaks HTTP",
            "Set OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or use the HTTP port (4318).",
        )
    if status is not None:
        return Diagnosis(OTHER, f"{scrub_credentials(t.url)} answered {status} {details}")
    return Diagnosis(OTHER, f"HTTP export failed: {details}")


def probe(t: Target, service: str, environ: Mapping[str, str]) -> Diagnosis:
    """Send one request as ``t``'s exporter would and name what happened."""
    problem = _file_problem(t) if t.tls else None
    problem = problem or _connect(t.host, t.port, t.names["endpoint"])
    if problem is not None:
        return problem
    request = _request(t.signal, service)
    if t.protocol == "grpc":
        return _probe_grpc(t, request)
    return _probe_http(t, request, environ)


@dataclass(frozen=True)
class Route:
    """One exporter of one signal: where it goes, and the verdict."""

    signal: str
    exporter: str
    destination: str
    diagnosis: Diagnosis
    target: Target | None = None


def routes(environ: Mapping[str, str]) -> list[Route]:
    """Where each signal goes; OTLP destinations probed (each distinct one once)."""
    service = environ.get("OTEL_SERVICE_NAME") or "otel-excellence-doctor"
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        off = Diagnosis(
            TELEMETRY_OFF,
            "telemetry is off: OTEL_SDK_DISABLED=true",
            "Unset OTEL_SDK_DISABLED (or set it to false) to export.",
        )
        return [Route(signal, "-", "nowhere", off) for signal in SIGNALS]
    probed: dict[tuple[Any, ...], Diagnosis] = {}  # by endpoint
    found: list[Route] = []
    dev = DEV.read(environ)
    for signal in SIGNALS:
        variable = f"OTEL_{signal.upper()}_EXPORTER"
        value = environ.get(variable, "").strip()
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names or value.lower() == "none":
            found.append(
                Route(
                    signal,
                    "none",
                    "nowhere",
                    Diagnosis(
                        TELEMETRY_OFF,
                        f"{signal} are off: {variable}={value or '(empty)'}",
                        f"Set {variable}=otlp to send them to a Collector.",
                    ),
                )
            )
            continue
        for name in names:
            found.append(_route(environ, signal, name, dev, service, probed))
    return found


def _route(
    environ: Mapping[str, str],
    signal: str,
    name: str,
    dev: bool,
    service: str,
    probed: dict[tuple[Any, ...], Diagnosis],
) -> Route:
    if name == DEV_EXPORTER:
        why = f" ({DEV.env}=true)" if dev else ""
        return Route(
            signal,
            name,
            "the dev console (stdout)",
            Diagnosis(
                OK,
                f"{signal} go to the dev console on stdout{why}; nothing is sent to a Collector",
                f"Unset {DEV.env} and set OTEL_EXPORTER_OTLP_ENDPOINT to send them." if dev else "",
            ),
        )
    if name == "console":
        return Route(
            signal,
            name,
            "stdout",
            Diagnosis(
                OK,
                f"{signal} are printed to stdout by the SDK's console exporter; nothing is "
                "sent to a Collector",
                f"Set OTEL_{signal.upper()}_EXPORTER=otlp to send them.",
            ),
        )
    if name not in _OTLP_EXPORTERS:
        return Route(
            signal,
            name,
            name,
            Diagnosis(OK, f"{signal} are exported by {name!r}, which doctor does not check"),
        )
    t = target(environ, signal, name)
    # One failed probe speaks for the endpoint (nothing listening, TLS, timeout: the
    # next signal would wait for the same answer); after a success each signal's own
    # service is checked, since a receiver may serve traces and not logs.
    earlier = probed.get(t.key())
    diagnosis = (
        earlier if earlier is not None and not earlier.healthy else probe(t, service, environ)
    )
    probed[t.key()] = diagnosis
    return Route(signal, name, describe_target(t), diagnosis, t)


def describe_target(t: Target) -> str:
    shown = scrub_credentials(t.url)
    details = [("OTLP/gRPC" if t.protocol == "grpc" else "OTLP/HTTP")]
    if t.tls:
        details.append("TLS")
        if t.ca_file:
            details.append(f"CA {t.ca_file}")
        if t.sends_client_cert:
            details.append(f"client certificate {t.client_cert}")
    return f"{shown} ({', '.join(details)})"


# -- which distro runs --------------------------------------------------------------------
def _distro_names() -> list[str]:
    """Distro entry points in the order ``opentelemetry-instrument`` finds them: it puts
    the working directory first on the path, where an ``*.egg-info`` counts too."""
    from importlib import metadata

    path = [os.getcwd(), *(p for p in sys.path if p != os.getcwd())]
    names: list[str] = []
    seen: set[str] = set()
    for dist in metadata.distributions(path=path):
        key = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if key in seen:
            continue  # the first copy on the path is the one imported
        seen.add(key)
        names += [ep.name for ep in dist.entry_points if ep.group == "opentelemetry_distro"]
    return names


def distro_diagnosis(environ: Mapping[str, str]) -> Diagnosis:
    """Which distro ``opentelemetry-instrument`` will load, the way it chooses: the one
    named by OTEL_PYTHON_DISTRO, else the first entry point found."""
    installed = _distro_names()
    chosen_name = environ.get("OTEL_PYTHON_DISTRO")
    others = [name for name in installed if name != DISTRO_NAME]
    if chosen_name is not None and chosen_name not in installed:
        chosen: str | None = None
    else:
        chosen = chosen_name or (installed[0] if installed else None)
    if chosen != DISTRO_NAME:
        runs = f"{chosen!r}" if chosen else "no distro (OTEL_PYTHON_DISTRO names none installed)"
        return Diagnosis(
            DISTRO_NOT_USED,
            f"opentelemetry-instrument will run {runs}, not otel-excellence "
            f"(installed distros, in the order found: {', '.join(installed) or 'none'})",
            f"Set OTEL_PYTHON_DISTRO={DISTRO_NAME}, or uninstall the other distro.",
        )
    configurator = environ.get("OTEL_PYTHON_CONFIGURATOR", DISTRO_NAME)
    if configurator != DISTRO_NAME:
        return Diagnosis(
            DISTRO_NOT_USED,
            f"OTEL_PYTHON_CONFIGURATOR={configurator}: otel-excellence's configurator will not "
            "run (no findings, no enrichment, no bounded exit)",
            "Unset OTEL_PYTHON_CONFIGURATOR.",
        )
    if others and chosen_name is None:
        return Diagnosis(
            OK,
            f"otel-excellence runs, found first among the distros installed "
            f"({', '.join(installed)}); which one runs depends on that order",
            f"Set OTEL_PYTHON_DISTRO={DISTRO_NAME} to make the choice explicit.",
        )
    return Diagnosis(OK, "otel-excellence is the distro opentelemetry-instrument will run")


# -- the report --------------------------------------------------------------------------
def _print_diagnosis(print_line: Callable[[str], None], diagnosis: Diagnosis) -> None:
    mark = "OK" if diagnosis.healthy else "PROBLEM"
    print_line(f"  {mark}: {diagnosis.title}")
    if diagnosis.advice:
        print_line(f"    {diagnosis.advice}")


def run(print_line: Callable[[str], None] = print) -> int:
    environ = dict(os.environ)
    apply_defaults(environ)  # what the distro will use, on a copy
    # The distro drops a TLS file that does not exist (with a warning) and exports with
    # the system's CA store; the diagnosis names the file the user meant instead.
    for name, value in os.environ.items():
        if name.startswith("OTEL_EXPORTER_OTLP_") and name.endswith(("CERTIFICATE", "KEY")):
            environ.setdefault(name, value)
    print_line("Effective configuration (secrets masked):")
    for name in sorted(k for k in environ if k.startswith("OTEL_")):
        print_line(f"  {name}={mask(name, environ[name])}")
    settings = Settings.load(environ)
    for setting in all_settings():
        if setting.env not in environ:
            value = setting.parser.render(getattr(settings, setting.field))
            print_line(f"  {setting.env}={value} (default)")
    print_line("")
    print_line("Distro:")
    distro = distro_diagnosis(environ)
    _print_diagnosis(print_line, distro)
    print_line("")
    print_line("Instrumentations:")
    for status in sorted(instrumentation_statuses(), key=lambda s: (s.status, s.name)):
        reason = f" - {status.reason}" if status.reason else ""
        print_line(f"  {status.status:<11} {status.name}{reason}")
    missing = missing_instrumentations()
    if missing:
        print_line("")
        print_line("Installed libraries without their instrumentation (not traced):")
        for item in missing:
            if not item.our_dependency:
                print_line(f"  {item.library} {item.version}: {item.command}")
        ours = [item for item in missing if item.our_dependency]
        if ours:
            print_line("  Installed for the OTLP exporters; if your code uses them too:")
            for item in ours:
                print_line(f"    {item.library} {item.version}: {item.command}")
    print_line("")
    codes = [distro.code]
    for route in routes(environ):
        print_line(f"{route.signal} → {route.destination}")
        _print_diagnosis(print_line, route.diagnosis)
        codes.append(route.diagnosis.code)
    return next((code for code in codes if code != OK), OK)
