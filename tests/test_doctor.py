"""`otel-excellence doctor` against real endpoints, one per diagnosis."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from otel_excellence._export.receiver import ServerTls
from tests.launch import BIN, clean_env
from tests.support.certs import Certificates, make_certificates
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port


def doctor(cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "otel-excellence"), "doctor"],
        env=clean_env({"OTEL_SERVICE_NAME": "doctor-test", **env}),
        cwd=cwd,
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
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_sink(certs: Certificates) -> Iterator[OtlpSink]:
    """An OTLP receiver (gRPC and HTTP) that speaks only TLS, with a private CA's cert."""
    with OtlpSink(tls=ServerTls(str(certs.server_cert), str(certs.server_key))) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def mtls_sink(certs: Certificates) -> Iterator[OtlpSink]:
    """Mutual TLS: clients must present a certificate signed by the private CA."""
    tls = ServerTls(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    with OtlpSink(tls=tls) as receiver:
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
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{tls_sink.http_port}",  # TLS port
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


def tls_env(sink: OtlpSink, protocol: str, **extra: str) -> dict[str, str]:
    port = sink.grpc_port if protocol == "grpc" else sink.http_port
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        **extra,
    }


PROTOCOLS = ["grpc", "http/protobuf"]


class TestTls:
    """TLS with a private CA and mutual TLS, over both protocols, against the package's
    receiver serving generated certificates: each case names the variable to fix."""

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_tls_with_the_ca_file_is_healthy_and_the_span_arrives(
        self, tls_sink: OtlpSink, certs: Certificates, protocol: str
    ) -> None:
        """The case doctor used to get wrong for gRPC ("speaks plain text", exit 4)."""
        before = len(tls_sink.spans())
        result = doctor(**tls_env(tls_sink, protocol, OTEL_EXPORTER_OTLP_CERTIFICATE=str(certs.ca)))
        assert result.returncode == 0, result.stdout
        assert f"CA {certs.ca}" in result.stdout
        assert [s.name for s in tls_sink.spans()[before:]] == ["otel-excellence doctor"]

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_tls_without_the_ca_file_names_the_untrusted_certificate(
        self, tls_sink: OtlpSink, protocol: str
    ) -> None:
        result = doctor(**tls_env(tls_sink, protocol))
        assert result.returncode == 4, result.stdout
        assert "is not trusted" in result.stdout
        assert "Set OTEL_EXPORTER_OTLP_CERTIFICATE to the CA certificate" in result.stdout
        assert "speaks plain text" not in result.stdout

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_the_wrong_ca_file_is_named(
        self, tls_sink: OtlpSink, certs: Certificates, protocol: str
    ) -> None:
        rogue_ca = certs.rogue_client_cert.parent / "rogue-ca.pem"
        result = doctor(**tls_env(tls_sink, protocol, OTEL_EXPORTER_OTLP_CERTIFICATE=str(rogue_ca)))
        assert result.returncode == 4, result.stdout
        assert f"OTEL_EXPORTER_OTLP_CERTIFICATE={rogue_ca} is not the CA" in result.stdout

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_a_missing_ca_file_is_named(self, tls_sink: OtlpSink, protocol: str) -> None:
        result = doctor(
            **tls_env(tls_sink, protocol, OTEL_EXPORTER_OTLP_CERTIFICATE="/nonexistent/ca.pem")
        )
        assert result.returncode == 4, result.stdout
        assert "OTEL_EXPORTER_OTLP_CERTIFICATE=/nonexistent/ca.pem: no such file" in result.stdout

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_mutual_tls_with_the_client_certificate_is_healthy(
        self, mtls_sink: OtlpSink, certs: Certificates, protocol: str
    ) -> None:
        before = len(mtls_sink.spans())
        result = doctor(
            **tls_env(
                mtls_sink,
                protocol,
                OTEL_EXPORTER_OTLP_CERTIFICATE=str(certs.ca),
                OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=str(certs.client_cert),
                OTEL_EXPORTER_OTLP_CLIENT_KEY=str(certs.client_key),
            )
        )
        assert result.returncode == 0, result.stdout
        assert f"client certificate {certs.client_cert}" in result.stdout
        assert [s.name for s in mtls_sink.spans()[before:]] == ["otel-excellence doctor"]

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_mutual_tls_without_a_client_certificate_says_one_is_required(
        self, mtls_sink: OtlpSink, certs: Certificates, protocol: str
    ) -> None:
        result = doctor(
            **tls_env(mtls_sink, protocol, OTEL_EXPORTER_OTLP_CERTIFICATE=str(certs.ca))
        )
        assert result.returncode == 4, result.stdout
        assert "requires a client certificate (mutual TLS)" in result.stdout
        assert "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY" in (
            result.stdout
        )

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_mutual_tls_with_a_client_certificate_from_another_ca_is_refused(
        self, mtls_sink: OtlpSink, certs: Certificates, protocol: str
    ) -> None:
        result = doctor(
            **tls_env(
                mtls_sink,
                protocol,
                OTEL_EXPORTER_OTLP_CERTIFICATE=str(certs.ca),
                OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=str(certs.rogue_client_cert),
                OTEL_EXPORTER_OTLP_CLIENT_KEY=str(certs.rogue_client_key),
            )
        )
        assert result.returncode == 4, result.stdout
        assert f"refused the client certificate {certs.rogue_client_cert}" in result.stdout

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_per_signal_tls_variables_are_the_ones_used(
        self, mtls_sink: OtlpSink, certs: Certificates, protocol: str
    ) -> None:
        """Only the _TRACES_/_METRICS_/_LOGS_ forms set: every signal still verifies."""
        env = tls_env(mtls_sink, protocol)
        for signal in ("TRACES", "METRICS", "LOGS"):
            env[f"OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE"] = str(certs.ca)
            env[f"OTEL_EXPORTER_OTLP_{signal}_CLIENT_CERTIFICATE"] = str(certs.client_cert)
            env[f"OTEL_EXPORTER_OTLP_{signal}_CLIENT_KEY"] = str(certs.client_key)
        result = doctor(**env)
        assert result.returncode == 0, result.stdout
        assert result.stdout.count("  OK: ") == 4  # the distro, then three signals


class TestWhereEachSignalGoes:
    """Signals that are off or go to the console are said to be so, and not probed."""

    def test_sdk_disabled_says_telemetry_is_off_and_probes_nothing(self, sink: OtlpSink) -> None:
        before = len(sink.trace_requests) + len(sink.metric_requests) + len(sink.log_requests)
        result = doctor(OTEL_SDK_DISABLED="true", OTEL_EXPORTER_OTLP_ENDPOINT=sink.grpc_endpoint)
        assert result.returncode == 9, result.stdout
        assert result.stdout.count("telemetry is off: OTEL_SDK_DISABLED=true") == 3
        after = len(sink.trace_requests) + len(sink.metric_requests) + len(sink.log_requests)
        assert after == before

    def test_exporters_none_are_off(self, sink: OtlpSink) -> None:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.grpc_endpoint,
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        assert result.returncode == 9, result.stdout
        assert "traces are off: OTEL_TRACES_EXPORTER=none" in result.stdout
        assert "logs are off: OTEL_LOGS_EXPORTER=none" in result.stdout
        assert "nothing is listening" not in result.stdout

    def test_console_and_devconsole_go_to_stdout_and_nothing_is_probed(self) -> None:
        """With nothing listening on the default endpoint, no 'nothing listening'."""
        result = doctor(
            OTEL_TRACES_EXPORTER="devconsole",
            OTEL_METRICS_EXPORTER="console",
            OTEL_LOGS_EXPORTER="devconsole",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",
        )
        assert result.returncode == 0, result.stdout
        assert "traces go to the dev console on stdout" in result.stdout
        assert "metrics are printed to stdout by the SDK's console exporter" in result.stdout
        assert "nothing is listening" not in result.stdout

    def test_dev_mode_says_everything_stays_local(self) -> None:
        result = doctor(OTEL_EXCELLENCE_DEV="true")
        assert result.returncode == 0, result.stdout
        for signal in ("traces", "metrics", "logs"):
            assert (
                f"{signal} go to the dev console on stdout (OTEL_EXCELLENCE_DEV=true)"
                in result.stdout
            )

    def test_per_signal_endpoints_are_each_diagnosed(self, sink: OtlpSink) -> None:
        """Traces to a gRPC receiver, metrics to an HTTP one, logs to a closed port."""
        closed = free_port()
        result = doctor(
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=sink.grpc_endpoint,
            OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=f"{sink.http_endpoint}/v1/metrics",
            OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=f"http://127.0.0.1:{closed}",
        )
        assert result.returncode == 2, result.stdout
        lines = result.stdout.splitlines()
        at = {ln.split(" → ")[0]: i for i, ln in enumerate(lines) if " → " in ln}
        assert "OK: the test span was accepted over OTLP/gRPC" in lines[at["traces"] + 1]
        assert "OK: an empty metrics export was accepted over OTLP/HTTP" in lines[at["metrics"] + 1]
        assert f"nothing is listening on 127.0.0.1:{closed}" in lines[at["logs"] + 1]
        assert "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" in lines[at["logs"] + 2]


def _other_distro(directory: Path) -> Path:
    """A real installed distribution (a dist-info on the path) with a distro entry point."""
    directory.mkdir()
    (directory / "acme_distro.py").write_text(
        "from opentelemetry.instrumentation.distro import BaseDistro\n"
        "class AcmeDistro(BaseDistro):\n"
        "    def _configure(self, **kwargs):\n"
        "        pass\n"
    )
    info = directory / "acme_distro-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-distro\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[opentelemetry_distro]\nacme = acme_distro:AcmeDistro\n"
    )
    return directory


class TestDistroAndInstrumentations:
    def test_another_distro_found_first_is_named(self, sink: OtlpSink, tmp_path: Path) -> None:
        """On the path before ours, it is the one opentelemetry-instrument would run."""
        path = str(_other_distro(tmp_path / "site"))
        result = doctor(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=sink.grpc_endpoint, PYTHONPATH=path)
        assert result.returncode == 10, result.stdout
        assert "opentelemetry-instrument will run 'acme', not otel-excellence" in result.stdout
        assert "Set OTEL_PYTHON_DISTRO=otel_excellence" in result.stdout
        chosen = doctor(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.grpc_endpoint,
            PYTHONPATH=path,
            OTEL_PYTHON_DISTRO="otel_excellence",
        )
        assert chosen.returncode == 0, chosen.stdout

    def test_the_other_distro_really_runs_under_opentelemetry_instrument(
        self, tmp_path: Path
    ) -> None:
        """What doctor says is what happens: our dev console stays silent. (Run outside
        the checkout: its otel_excellence.egg-info in the working directory would be
        found first.)"""
        path = str(_other_distro(tmp_path / "site"))
        env = clean_env({"PYTHONPATH": path, "OTEL_EXCELLENCE_DEV": "true"})
        result = subprocess.run(
            [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", "print('hi')"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Findings" not in result.stdout
        env.pop("PYTHONPATH")
        ours = subprocess.run(
            [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", "print('hi')"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert "Findings" in ours.stdout

    def test_installed_libraries_without_instrumentation_are_named_with_the_command(
        self, sink: OtlpSink
    ) -> None:
        """jinja2 (installed with Flask) has an official instrumentation that is not
        installed here; grpcio is there for our exporter and is listed apart."""
        result = doctor(OTEL_EXPORTER_OTLP_ENDPOINT=sink.grpc_endpoint)
        out = result.stdout
        assert "Installed libraries without their instrumentation" in out
        assert "pip install 'opentelemetry-instrumentation-jinja2==0.66b1'" in out
        exporters_part = out.split("Installed for the OTLP exporters", 1)[1]
        assert "grpcio" in exporters_part.split("\n\n")[0]
        assert "flask" not in out.split("Installed libraries without", 1)[1].split("\n\n")[0]
