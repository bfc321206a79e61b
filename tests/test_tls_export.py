"""OTLP over TLS and mutual TLS, for real (issue 10): an app under
`opentelemetry-instrument` delivers spans, logs and metrics to a TLS receiver — the
package's own, and the real Collector with collector-config/receiver-tls.yaml — over
gRPC and HTTP, with generated certificates and the standard exporter variables only."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest

from otel_excellence._export.receiver import ServerTls
from tests.launch import instrumented
from tests.support.certs import Certificates, make_certificates
from tests.support.collector import Collector
from tests.support.otlp_sink import OtlpSink

PROTOCOLS = ["grpc", "http/protobuf"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def app_env(port: int, protocol: str, certs: Certificates, *, mutual: bool) -> dict[str, str]:
    env = {
        "OTEL_SERVICE_NAME": "tls-app",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs.ca),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        # Set on many machines (this one, CI runners): requests would let it override
        # the CA file for OTLP/HTTP; the distro's session keeps the CA file in charge.
        "REQUESTS_CA_BUNDLE": certifi.where(),
    }
    if mutual:
        env["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"] = str(certs.client_cert)
        env["OTEL_EXPORTER_OTLP_CLIENT_KEY"] = str(certs.client_key)
    return env


def assert_all_three_signals_arrived(sink: OtlpSink, stderr: str) -> None:
    assert sink.wait_for(lambda: any(s.name == "sample.job" for s in sink.spans())), stderr
    job = next(s for s in sink.spans() if s.name == "sample.job")
    assert job.resource["service.name"] == "tls-app"
    assert sink.wait_for(
        lambda: any(log.body == "stdlib record inside the job" for log in sink.logs())
    ), stderr
    record = next(log for log in sink.logs() if log.body == "stdlib record inside the job")
    assert record.trace_id == job.trace_id
    assert sink.wait_for(
        lambda: any(m.name == "db.client.operation.duration" for m in sink.metrics())
    ), stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_an_app_delivers_every_signal_to_a_tls_receiver(
    certs: Certificates, tmp_path: Path, protocol: str, mutual: bool
) -> None:
    """With a CA file (and, for mTLS, a client certificate the receiver requires)."""
    tls = ServerTls(
        str(certs.server_cert), str(certs.server_key), str(certs.ca) if mutual else None
    )
    with OtlpSink(tls=tls) as sink:
        port = sink.grpc_port if protocol == "grpc" else sink.http_port
        run = instrumented(
            "sample_app.py",
            {
                **app_env(port, protocol, certs, mutual=mutual),
                "SQLITE_PATH": str(tmp_path / "a.db"),
            },
        )
        assert run.returncode == 0, run.stderr
        assert "not delivered" not in run.stderr
        assert_all_three_signals_arrived(sink, run.stderr)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_mtls_receiver_gets_nothing_from_an_app_without_a_client_certificate(
    certs: Certificates, tmp_path: Path, protocol: str
) -> None:
    """The negative control: mutual TLS really is enforced, and the loss is reported."""
    tls = ServerTls(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    with OtlpSink(tls=tls) as sink:
        port = sink.grpc_port if protocol == "grpc" else sink.http_port
        run = instrumented(
            "sample_app.py",
            {
                **app_env(port, protocol, certs, mutual=False),
                "SQLITE_PATH": str(tmp_path / "a.db"),
                "OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS": "1500",
            },
        )
        assert run.returncode == 0, run.stderr
        assert sink.spans() == []
        assert "not delivered" in run.stderr


@pytest.fixture(scope="module")
def tls_gateway(certs: Certificates) -> Iterator[tuple[Collector, OtlpSink, OtlpSink]]:
    """The real gateway, receiving with mutual TLS through receiver-tls.yaml, exporting
    to plain receivers standing in for Tempo and Loki."""
    with OtlpSink() as tempo, OtlpSink() as loki:
        collector = Collector(
            "gateway.yaml",
            {
                "TEMPO_OTLP_ENDPOINT": f"127.0.0.1:{tempo.grpc_port}",
                "LOKI_OTLP_ENDPOINT": f"http://127.0.0.1:{loki.http_port}/otlp",
                "PROMETHEUS_REMOTE_WRITE_ENDPOINT": f"http://127.0.0.1:{loki.http_port}/none",
                "OTELCOL_SAMPLING_PERCENTAGE": "100",
                "OTELCOL_TAIL_DECISION_WAIT": "1s",
                "OTELCOL_SELF_METRICS_INTERVAL": "1s",
                "OTELCOL_TLS_CERT_FILE": str(certs.server_cert),
                "OTELCOL_TLS_KEY_FILE": str(certs.server_key),
                "OTELCOL_TLS_CLIENT_CA_FILE": str(certs.ca),
            },
            overlays=["receiver-tls.yaml"],
        )
        with collector:
            yield collector, tempo, loki


def _accepted_metric_points(collector: Collector) -> float:
    url = f"http://127.0.0.1:{collector.self_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("otelcol_receiver_accepted_metric_points")
    )


@pytest.mark.services
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_app_delivers_every_signal_to_the_collector_over_mutual_tls(
    tls_gateway: tuple[Collector, OtlpSink, OtlpSink],
    certs: Certificates,
    tmp_path: Path,
    protocol: str,
) -> None:
    """Spans reach Tempo's stand-in and logs Loki's through the gateway; the gateway's
    own counters show the metric points it accepted over TLS."""
    collector, tempo, loki = tls_gateway
    before = _accepted_metric_points(collector)
    port = collector.grpc_port if protocol == "grpc" else collector.http_port
    env = {**app_env(port, protocol, certs, mutual=True), "SQLITE_PATH": str(tmp_path / "a.db")}
    env["OTEL_SERVICE_NAME"] = f"tls-app-{protocol.replace('/', '-')}"
    run = instrumented("sample_app.py", env)
    assert run.returncode == 0, run.stderr
    assert "not delivered" not in run.stderr
    service = env["OTEL_SERVICE_NAME"]
    assert tempo.wait_for(
        lambda: any(s.resource.get("service.name") == service for s in tempo.spans()), 60
    ), collector.log()
    assert loki.wait_for(
        lambda: any(log.resource.get("service.name") == service for log in loki.logs()), 60
    ), collector.log()
    assert tempo.wait_for(lambda: _accepted_metric_points(collector) > before, 30)
