"""N+1 findings through the real gateway (issue 9): with the baseline sampling share at
0 %, tail sampling keeps a trace only for a finding. Findings now sit on the request's
server span (the local root), with the driver instrumentation installed beside
SQLAlchemy's; the gateway's N+1 policy must keep working, and must not be fed false
positives. Tempo's stand-in is an OTLP receiver; Prometheus is the real server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.apps.db_models import MANY
from tests.support.db_e2e import (
    N_PLUS_ONE,
    SERVER,
    SQLALCHEMY_SCOPE,
    Reply,
    flask_app,
    server_span,
    trace_spans,
)
from tests.support.otlp_sink import OtlpSink
from tests.support.services import Prometheus, Redis, prometheus_server
from tests.test_collector import gateway, value_of

pytestmark = pytest.mark.services

SERVICE = "db-e2e-sampling"
WITHOUT_FINDINGS = ("/authors/few", "/authors/same", "/cache/absent")
WITH_N_PLUS_ONE = ("/authors/many", "/authors/rendered")


@dataclass(repr=False)
class Sampled:
    tempo: OtlpSink
    prometheus: Prometheus
    replies: dict[str, Reply]


@pytest.fixture(scope="module")
def sampled(redis_srv: Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sampled]:
    database = Path(tmp_path_factory.mktemp("sampling")) / "app.db"
    with prometheus_server() as prometheus, OtlpSink() as tempo, OtlpSink() as loki:
        collector = gateway(
            tempo, loki, prometheus.remote_write_url, OTELCOL_SAMPLING_PERCENTAGE="0"
        ).start()
        try:
            env = {
                "OTEL_SERVICE_NAME": SERVICE,
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "DB_URL": f"sqlite:///{database}",
                "REDIS_URL": redis_srv.url,
            }
            with flask_app("db_sync_app.py", env) as app:
                # Traces without findings first: their decisions come before the others'.
                replies = app.get_all(WITHOUT_FINDINGS + WITH_N_PLUS_ONE)
                kept = {replies[path].trace_id for path in WITH_N_PLUS_ONE}
                arrived = tempo.wait_for(
                    lambda: kept <= {s.trace_id for s in tempo.spans() if s.kind == SERVER},
                    timeout=90,
                )
                assert arrived, f"N+1 traces not kept:\n{collector.log()[-3000:]}"
                time.sleep(3)  # any other decision of the same tick arrives meanwhile
                yield Sampled(tempo, prometheus, replies)
        finally:
            collector.stop()


def test_a_trace_with_an_n_plus_one_is_kept_whole(sampled: Sampled) -> None:
    """The N+1 request's trace is kept, with its flagged server span and every
    statement's span (the select and the 9 lazy loads)."""
    spans = trace_spans(sampled.tempo, sampled.replies["/authors/many"].trace_id)
    assert server_span(spans).attributes.get(N_PLUS_ONE) is True
    statements = [s for s in spans if s.scope == SQLALCHEMY_SCOPE and s.name != "connect"]
    assert len(statements) == 1 + MANY
    rendered = trace_spans(sampled.tempo, sampled.replies["/authors/rendered"].trace_id)
    assert server_span(rendered).attributes.get(N_PLUS_ONE) is True


def test_traces_without_findings_are_dropped(sampled: Sampled) -> None:
    """3 lazy loads (an ORM and a driver span each), a query repeated with the same
    parameters, a cache miss: nothing to keep at a 0 % baseline."""
    received = {s.trace_id for s in sampled.tempo.spans()}
    kept = [path for path in WITHOUT_FINDINGS if sampled.replies[path].trace_id in received]
    assert kept == []


def test_the_n_plus_one_counter_reaches_prometheus_by_route(sampled: Sampled) -> None:
    """``otel_excellence_db_n_plus_one_total`` is labelled with the request's route,
    once per flagged request, whatever the sampling decided."""

    def series(*labels: str) -> str:
        return (
            "otel_excellence_db_n_plus_one_total{" + ",".join((f'job="{SERVICE}"', *labels)) + "}"
        )

    assert sampled.prometheus.wait_for(series()), "no N+1 counter reached Prometheus"
    many = series('otel_excellence_route="/authors/many"')
    assert value_of(sampled.prometheus, f"sum({many})", 1, 30) == 1
    assert sampled.prometheus.query(series('otel_excellence_route="/authors/few"')) == []
