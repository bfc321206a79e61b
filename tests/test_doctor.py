"""`otel-excellence doctor` against real endpoints, one per diagnosis."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.launch import BIN, clean_env
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port
from tests.support.services import find_tool, missing


def doctor(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "otel-excellence"), "doctor"],
        env=clean_env({"OTEL_SERVICE_NAME": "doctor-test", **env}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def tls_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtlpSink]:
    """An OTLP/HTTP receiver that speaks only TLS (self-signed certificate)."""
    if find_tool("openssl") is None:
        missing("openssl", "`make test` installs the openssl package")
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with OtlpSink(tls=context) as receiver:
        receiver.cert = cert  # type: ignore[attr-defined]
        yield receiver


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    for connection in held:
        connection.close()
    server.close()


class TestHealthy:
    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_a_healthy_endpoint_receives_the_test_span(self, sink: OtlpSink, protocol: str) -> None:
        endpoint = sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint
        before = len(sink.spans())
        result = doctor(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK: the test span was accepted" in result.stdout
        new = sink.spans()[before:]
        assert [s.name for s in new] == ["otel-excellence doctor"]
        assert new[0].resource["service.name"] == "doctor-test"

    def test_report_shows_configuration_with_secrets_masked_and_instrumentations(
        self, sink: OtlpSink
    ) -> None:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.grpc_endpoint,
            OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20s3cr3t-token,x-tenant=acme",
            OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS="250",
        )
        assert result.returncode == 0
        assert "OTEL_EXPORTER_OTLP_HEADERS=authorization=***,x-tenant=***" in result.stdout
        assert "s3cr3t-token" not in result.stdout
        assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in result.stdout  # the distro's choice
        assert "OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS=250" in result.stdout
        assert "OTEL_EXCELLENCE_N_PLUS_ONE_THRESHOLD=5 (default)" in result.stdout
        for name in ("sqlalchemy", "redis", "logging", "structlog"):
            assert f"loads       {name}" in result.stdout


class TestDiagnoses:
    def test_nothing_listening(self) -> None:
        result = doctor(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}")
        assert result.returncode == 2
        assert "nothing is listening" in result.stdout

    def test_grpc_endpoint_spoken_to_over_http(self, sink: OtlpSink) -> None:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.grpc_endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        )
        assert result.returncode == 3, result.stdout
        assert "is a gRPC endpoint, but the exporter speaks HTTP" in result.stdout
        assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in result.stdout

    def test_http_endpoint_spoken_to_over_grpc(self, sink: OtlpSink) -> None:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.http_endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc"
        )
        assert result.returncode == 3, result.stdout
        assert "is an HTTP endpoint, but the exporter speaks gRPC" in result.stdout

    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_tls_endpoint_spoken_to_without_tls(self, tls_sink: OtlpSink, protocol: str) -> None:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=tls_sink.http_endpoint,  # http:// to a TLS port
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        )
        assert result.returncode == 4, result.stdout
        assert "expects TLS, but the exporter speaks plain text" in result.stdout

    def test_plain_endpoint_spoken_to_with_tls(self, sink: OtlpSink) -> None:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"https://127.0.0.1:{sink.http_port}",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        )
        assert result.returncode == 4, result.stdout
        assert "the endpoint speaks plain text" in result.stdout

    def test_an_untrusted_certificate_is_named(self, tls_sink: OtlpSink) -> None:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"https://127.0.0.1:{tls_sink.http_port}",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        )
        assert result.returncode == 4, result.stdout
        assert "is not trusted" in result.stdout
        assert "OTEL_EXPORTER_OTLP_CERTIFICATE" in result.stdout

    def test_the_tls_endpoint_is_healthy_with_its_ca(self, tls_sink: OtlpSink) -> None:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"https://127.0.0.1:{tls_sink.http_port}",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_CERTIFICATE=str(tls_sink.cert),  # type: ignore[attr-defined]
        )
        assert result.returncode == 0, result.stdout

    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_rejected_credentials(self, protocol: str) -> None:
        with OtlpSink() as rejecting:
            rejecting.reject = (401, grpc.StatusCode.UNAUTHENTICATED)
            endpoint = rejecting.grpc_endpoint if protocol == "grpc" else rejecting.http_endpoint
            result = doctor(
                OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol
            )
        assert result.returncode == 5, result.stdout
        assert "rejected the credentials" in result.stdout
        assert "OTEL_EXPORTER_OTLP_HEADERS" in result.stdout

    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_timeout(self, silent_port: int, protocol: str) -> None:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{silent_port}",
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        )
        assert result.returncode == 6, result.stdout
        assert "no answer within" in result.stdout


def test_exit_codes_are_documented() -> None:
    help_text = subprocess.run(
        [str(BIN / "otel-excellence"), "doctor", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "2 nothing listening" in help_text
    assert Path(BIN / "otel-excellence").exists()
