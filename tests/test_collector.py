"""The shipped Collector configs, with the real otelcol-excellence binary.

Tempo and Loki are stood in for by OTLP receivers owned by the test; Prometheus is the
real server (Debian package) receiving remote write.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.launch import instrumented
from tests.support.collector import Collector, validate
from tests.support.otlp_sink import OtlpSink
from tests.support.services import REPO, Prometheus, prometheus_server

pytestmark = pytest.mark.services

SERVICE = "traffic-e2e"
SPANS_PER_ORDINARY = 4  # the request, connect, its SELECT, render


@pytest.fixture(scope="module")
def prometheus() -> Iterator[Prometheus]:
    with prometheus_server() as server:
        yield server


def traffic(
    endpoint: str, plan: str, tmp: Path, service: str = SERVICE, **env: str
) -> dict[str, list[str]]:
    """Run the traffic app under opentelemetry-instrument; its trace ids by kind."""
    result = instrumented(
        "traffic_app.py",
        {
            "OTEL_SERVICE_NAME": service,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS": "200",  # far above an ordinary query under load
            "SQLITE_PATH": str(tmp / f"traffic-{time.monotonic_ns()}.db"),
            "TRAFFIC": plan,
            # Span counts below are SQLAlchemy's; driver twins are covered elsewhere
            # (tests/test_one_count.py, tests/test_e2e_db_*.py).
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "sqlite3",
            **env,
        },
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "not delivered" not in result.stderr, result.stderr
    ids: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return ids


def gateway(tempo: OtlpSink, loki: OtlpSink, prometheus_url: str, **env: str) -> Collector:
    return Collector(
        "gateway.yaml",
        {
            "TEMPO_OTLP_ENDPOINT": f"127.0.0.1:{tempo.grpc_port}",
            "LOKI_OTLP_ENDPOINT": f"http://127.0.0.1:{loki.http_port}/otlp",
            "PROMETHEUS_REMOTE_WRITE_ENDPOINT": prometheus_url,
            "OTELCOL_TAIL_DECISION_WAIT": "1s",
            "OTELCOL_SPAN_METRICS_FLUSH_INTERVAL": "1s",
            "OTELCOL_SELF_METRICS_INTERVAL": "1s",
            "OTELCOL_RETRY_MAX_INTERVAL": "2s",
            **env,
        },
    )


def traces_in(sink: OtlpSink, only: set[str] | None = None) -> dict[str, int]:
    """Trace id -> number of distinct spans received (of the ``only`` traces, if given)."""
    spans: dict[str, set[str]] = {}
    for span in sink.spans():
        if only is None or span.trace_id in only:
            spans.setdefault(span.trace_id, set()).add(span.span_id)
    return {trace_id: len(ids) for trace_id, ids in spans.items()}


def value_of(prometheus: Prometheus, promql: str, expected: float, timeout: float = 60) -> float:
    """The single value of ``promql`` once it equals ``expected`` (or the last seen)."""
    deadline = time.monotonic() + timeout
    last = float("nan")
    while time.monotonic() < deadline:
        result = prometheus.query(promql)
        if result:
            last = float(result[0]["value"][1])
            if last == expected:
                break
        time.sleep(0.5)
    return last


class TestConfigs:
    @pytest.mark.parametrize("config", ["gateway.yaml", "agent.yaml"])
    def test_every_config_passes_validate(self, config: str) -> None:
        result = validate(config)
        assert result.returncode == 0, result.stderr

    def test_validate_rejects_a_broken_config(self, tmp_path: Path) -> None:
        """The check above can fail: a misspelt key is reported."""
        broken = (REPO / "collector-config" / "gateway.yaml").read_text()
        (REPO / "collector-config" / "_broken.yaml").write_text(
            broken.replace("decision_wait:", "decision_wiat:")
        )
        try:
            result = validate("_broken.yaml")
        finally:
            (REPO / "collector-config" / "_broken.yaml").unlink()
        assert result.returncode != 0
        assert "decision_wiat" in result.stderr

    def test_collector_build_is_cached_by_manifest(self) -> None:
        """A second `make collector` reuses the binary: it needs no Go at all."""
        result = subprocess.run(
            ["scripts/build-collector.sh"],
            cwd=REPO,
            env={**os.environ, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith("/otelcol-excellence")
        assert "building" not in result.stderr


@pytest.fixture(scope="module")
def pipeline(
    prometheus: Prometheus, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OtlpSink, OtlpSink, dict[str, list[str]], Collector]]:
    tempo, loki = OtlpSink().start(), OtlpSink().start()
    collector = gateway(
        tempo, loki, prometheus.remote_write_url, OTELCOL_SAMPLING_PERCENTAGE="25"
    ).start()
    try:
        ids = traffic(
            collector.grpc_endpoint,
            "ordinary:240,error:6,slow:4,n_plus_one:3",
            tmp_path_factory.mktemp("traffic"),
        )
        flagged = ids["error"] + ids["slow"] + ids["n_plus_one"]
        tempo.wait_for(lambda: set(flagged) <= set(traces_in(tempo)), timeout=60)
        time.sleep(3)  # sampled ordinary traces arrive with the same decision tick
        yield tempo, loki, ids, collector
    finally:
        collector.stop()
        tempo.stop()
        loki.stop()


class TestGatewayPipeline:
    def test_error_slow_and_n_plus_one_traces_are_all_kept_whole(self, pipeline: Any) -> None:
        tempo, _, ids, _ = pipeline
        received = traces_in(tempo)
        for kind in ("error", "slow", "n_plus_one"):
            missing = [t for t in ids[kind] if t not in received]
            assert not missing, f"{kind} traces dropped: {missing}"
        # Whole traces: root, render, connect, the statement(s) (and the failing child).
        assert all(received[t] == 5 for t in ids["error"])
        assert all(received[t] == 4 for t in ids["slow"])
        assert all(received[t] == 9 for t in ids["n_plus_one"])

    def test_ordinary_traces_are_sampled_at_roughly_the_configured_share(
        self, pipeline: Any
    ) -> None:
        tempo, _, ids, _ = pipeline
        received = traces_in(tempo)
        kept = sum(1 for t in ids["ordinary"] if t in received)
        share = kept / len(ids["ordinary"])
        assert 0.13 <= share <= 0.37, f"kept {kept} of {len(ids['ordinary'])} (configured 25%)"

    def test_span_metrics_see_every_span_before_sampling(
        self, pipeline: Any, prometheus: Prometheus
    ) -> None:
        calls = value_of(
            prometheus,
            f'sum(traces_span_metrics_calls_total{{service_name="{SERVICE}",'
            f'span_name=~"ordinary-.*"}})',
            240,
        )
        assert calls == 240  # all of them, not the sampled 25%
        errors = prometheus.wait_for(
            f'traces_span_metrics_calls_total{{service_name="{SERVICE}",'
            f'otel_excellence_error_category="timeout",status_code="STATUS_CODE_ERROR"}}'
        )
        assert errors
        assert prometheus.wait_for(
            f'traces_span_metrics_duration_seconds_bucket{{service_name="{SERVICE}",db_system="sqlite"}}'
        )

    def test_our_metrics_are_queryable_by_their_prometheus_names(
        self, pipeline: Any, prometheus: Prometheus
    ) -> None:
        job = f'job="{SERVICE}"'
        category = 'otel_excellence_error_category="timeout"'
        # 6 requests x (the request's own timeout + the upstream call's)
        assert (
            value_of(prometheus, f"sum(otel_excellence_errors_total{{{job},{category}}})", 12) == 12
        )
        assert value_of(prometheus, f"sum(otel_excellence_db_n_plus_one_total{{{job}}})", 3) == 3
        assert value_of(prometheus, f"sum(otel_excellence_db_slow_queries_total{{{job}}})", 4) == 4
        assert prometheus.wait_for(
            f'db_client_operation_duration_seconds_bucket{{{job},db_system_name="sqlite"}}'
        )

    def test_the_service_graph_and_the_collectors_own_metrics_reach_prometheus(
        self, pipeline: Any, prometheus: Prometheus
    ) -> None:
        assert prometheus.wait_for(f'traces_service_graph_request_total{{client="{SERVICE}"}}')
        accepted = prometheus.wait_for("sum(otelcol_receiver_accepted_spans_total)")
        assert accepted
        assert float(accepted[0]["value"][1]) > 0

    def test_logs_reach_the_loki_endpoint_with_trace_ids(self, pipeline: Any) -> None:
        _, loki, ids, _ = pipeline
        loki.wait_for(lambda: len(loki.logs()) >= sum(len(v) for v in ids.values()), timeout=30)
        by_trace = {r.trace_id: r for r in loki.logs() if str(r.body).startswith("handling")}
        for kind, trace_ids in ids.items():
            for trace_id in trace_ids:
                assert trace_id in by_trace, f"no log for {kind} trace {trace_id}"
        record = by_trace[ids["error"][0]]
        assert record.resource["service.name"] == SERVICE
        assert record.span_id


def test_outage_and_restart_lose_nothing(prometheus: Prometheus, tmp_path: Path) -> None:
    """Tempo stand-in down mid-run, a Collector restart while it is down: all spans arrive."""
    tempo, loki = OtlpSink().start(), OtlpSink().start()
    collector = gateway(
        tempo,
        loki,
        prometheus.remote_write_url,
        OTELCOL_SAMPLING_PERCENTAGE="100",
        OTELCOL_TAIL_DECISION_WAIT="500ms",
    ).start()
    delivered: dict[str, int] = {}
    try:
        first = traffic(collector.grpc_endpoint, "ordinary:20", tmp_path)
        ids = set(first["ordinary"])
        assert tempo.wait_for(
            lambda: traces_in(tempo, ids) == dict.fromkeys(ids, SPANS_PER_ORDINARY), timeout=30
        )
        delivered.update(traces_in(tempo, ids))
        tempo.stop()  # the backend goes away

        second = traffic(collector.grpc_endpoint, "ordinary:30", tmp_path)
        time.sleep(4)  # past the sampling decision: the spans now sit in the persistent queue
        assert collector.stop() == 0, collector.log()[-3000:]
        collector.start()  # a Collector restart while the backend is still down

        revived = OtlpSink(grpc_port=tempo.grpc_port, http_port=tempo.http_port).start()
        try:
            expected = {t: SPANS_PER_ORDINARY for t in first["ordinary"] + second["ordinary"]}

            def received() -> dict[str, int]:
                return {**delivered, **traces_in(revived, set(expected))}

            revived.wait_for(lambda: received() == expected, timeout=90)
            assert received() == expected  # every span of all 50 traces
        finally:
            revived.stop()
    finally:
        collector.stop()
        loki.stop()


def test_agent_routes_whole_traces_to_one_of_two_gateways(
    prometheus: Prometheus, tmp_path: Path
) -> None:
    tempo_a, tempo_b, loki = OtlpSink().start(), OtlpSink().start(), OtlpSink().start()
    gateways = [
        gateway(t, loki, prometheus.remote_write_url, OTELCOL_SAMPLING_PERCENTAGE="100").start()
        for t in (tempo_a, tempo_b)
    ]
    agent = Collector(
        "agent.yaml",
        {"OTELCOL_GATEWAYS": "[" + ", ".join(g.grpc_address for g in gateways) + "]"},
    ).start()
    try:
        # One span per export: spans of a trace travel separately and must still meet.
        ids = traffic(
            agent.grpc_endpoint, "ordinary:40", tmp_path, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1"
        )
        expected = set(ids["ordinary"])

        def arrived() -> bool:
            a, b = traces_in(tempo_a, expected), traces_in(tempo_b, expected)
            return (
                set(a) | set(b) == expected
                and sum(a.values()) + sum(b.values()) == 40 * SPANS_PER_ORDINARY
            )

        assert tempo_a.wait_for(arrived, timeout=60)
        a, b = traces_in(tempo_a, expected), traces_in(tempo_b, expected)
        assert not set(a) & set(b), "a trace was split across gateways"
        assert a and b, f"all traces went to one gateway ({len(a)} / {len(b)})"
        assert all(count == SPANS_PER_ORDINARY for count in (a | b).values())
    finally:
        agent.stop()
        for g in gateways:
            g.stop()
        for sink in (tempo_a, tempo_b, loki):
            sink.stop()


def test_zero_code_launch_through_the_gateway(
    prometheus: Prometheus, postgres: Any, redis_srv: Any, tmp_path: Path
) -> None:
    """The zero-code end-to-end run of test_e2e_zero_code, with our Collector in between."""
    tempo, loki = OtlpSink().start(), OtlpSink().start()
    collector = gateway(tempo, loki, prometheus.remote_write_url, OTELCOL_SAMPLING_PERCENTAGE="100")
    collector.start()
    try:
        result = instrumented(
            "sample_app.py",
            {
                "OTEL_SERVICE_NAME": "sample-via-gateway",
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint,
                "SQLITE_PATH": str(tmp_path / "sample.db"),
                "PG_URL": postgres.url,
                "REDIS_URL": redis_srv.url,
            },
        )
        assert result.returncode == 0, result.stderr
        assert tempo.wait_for(lambda: any(s.name == "sample.job" for s in tempo.spans()))
        [job] = [s for s in tempo.spans() if s.name == "sample.job"]
        systems = {
            s.attributes.get("db.system") for s in tempo.spans() if s.parent_span_id == job.span_id
        }
        assert {"sqlite", "postgresql", "redis"} <= systems
        assert job.resource["service.name"] == "sample-via-gateway"
        assert loki.wait_for(lambda: len(loki.logs()) >= 3)
        inside = [r for r in loki.logs() if "inside the job" in str(r.body)]
        assert len(inside) == 2
        assert {(r.trace_id, r.span_id) for r in inside} == {(job.trace_id, job.span_id)}
        assert prometheus.wait_for(
            'db_client_operation_duration_seconds_count{job="sample-via-gateway",'
            'db_system_name="postgresql"}'
        )
    finally:
        collector.stop()
        tempo.stop()
        loki.stop()
