"""Zero-code launch, end to end: a plain app under ``opentelemetry-instrument`` → real OTLP.

Only OTEL_SERVICE_NAME and OTEL_EXPORTER_OTLP_ENDPOINT (and the protocol under test) are
set; everything else is the distro's doing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.launch import instrumented
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port
from tests.support.services import Postgres, Redis

pytestmark = pytest.mark.services


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as receiver:
        yield receiver


def _endpoint(sink: OtlpSink, protocol: str) -> str:
    return sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint


@pytest.mark.parametrize(
    ("protocol", "structlog_mode"),
    [("grpc", "default"), ("http/protobuf", "stdlib")],
    ids=["grpc-structlog-default", "http-structlog-via-stdlib"],
)
class TestZeroCodeLaunch:
    @pytest.fixture
    def run(
        self,
        sink: OtlpSink,
        postgres: Postgres,
        redis_srv: Redis,
        tmp_path: object,
        protocol: str,
        structlog_mode: str,
    ) -> OtlpSink:
        result = instrumented(
            "sample_app.py",
            {
                "OTEL_SERVICE_NAME": "sample-e2e",
                "OTEL_EXPORTER_OTLP_ENDPOINT": _endpoint(sink, protocol),
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "SQLITE_PATH": f"{tmp_path}/sample.db",
                "PG_URL": postgres.url,
                "REDIS_URL": redis_srv.url,
                "APP_STRUCTLOG": structlog_mode,
            },
        )
        assert result.returncode == 0, result.stderr
        assert "not delivered" not in result.stderr, result.stderr
        return sink

    def test_database_and_redis_spans_arrive_under_the_job_span(self, run: OtlpSink) -> None:
        """SQLAlchemy (SQLite, PostgreSQL) and Redis client spans are children of the job."""
        spans = run.spans()
        job = next(s for s in spans if s.name == "sample.job")
        systems = {
            s.attributes.get("db.system") or s.attributes.get("db.system.name")
            for s in spans
            if s.parent_span_id == job.span_id
        }
        assert {"sqlite", "postgresql", "redis"} <= systems

    def test_resource_carries_the_service_name(self, run: OtlpSink) -> None:
        """Every exported signal names the service from OTEL_SERVICE_NAME."""
        assert {s.resource["service.name"] for s in run.spans()} == {"sample-e2e"}
        assert {m.resource["service.name"] for m in run.metrics()} == {"sample-e2e"}
        assert {r.resource["service.name"] for r in run.logs()} == {"sample-e2e"}

    def test_metrics_arrive(self, run: OtlpSink) -> None:
        """The instrumentations' metrics leave the process without any metrics setting."""
        assert any(m.points for m in run.metrics())

    def test_logs_arrive_once_with_the_span_they_were_emitted_in(self, run: OtlpSink) -> None:
        """stdlib and structlog records carry the job span's ids and are exported once."""
        job = next(s for s in run.spans() if s.name == "sample.job")
        logs = run.logs()
        for text in ("stdlib record inside the job", "structlog event inside the job"):
            matching = [r for r in logs if text in str(r.body)]
            assert len(matching) == 1, [r.body for r in matching]
            assert (matching[0].trace_id, matching[0].span_id) == (job.trace_id, job.span_id)
        outside = [r for r in logs if r.body == "stdlib record outside any span"]
        assert len(outside) == 1
        assert outside[0].trace_id == ""


def test_exit_is_bounded_when_the_collector_is_down(tmp_path: object) -> None:
    """A dead endpoint costs at most the configured bound at exit; the exit code survives.

    Vanilla OpenTelemetry blocks about 30 s here (see benchmarks/shutdown.py).
    """
    closed = free_port()
    result = instrumented(
        "sample_app.py",
        {
            "OTEL_SERVICE_NAME": "sample-dead-endpoint",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed}",
            "OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS": "1500",
            "OTEL_EXCELLENCE_LOG_LEVEL": "DEBUG",  # the flush says how long it took
            "SQLITE_PATH": f"{tmp_path}/sample.db",
            "APP_EXIT_CODE": "3",
        },
    )
    assert result.returncode == 3
    [took] = re.findall(r"telemetry shutdown took (\d+) ms", result.stderr)
    assert int(took) <= 1500 + 100 + 400  # the bound + 100 ms, with a generous margin
    # Start-up, the bound and teardown of every imported library, loaded machine included:
    # far below vanilla's ~30 s.
    assert result.seconds < 1.5 + 15, result.seconds
    summary = [line for line in result.stderr.splitlines() if "not delivered" in line]
    assert len(summary) == 1, result.stderr
    assert "spans" in summary[0]
    assert f"127.0.0.1:{closed}" in summary[0]
