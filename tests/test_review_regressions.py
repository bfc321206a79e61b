"""Defects found in review, each pinned by the behaviour a user would see."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

from otel_excellence import _diagnostics as _log
from otel_excellence._findings import insights as _insights
from otel_excellence._findings.sql import sanitize_statement
from tests.launch import instrumented
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port
from tests.support.services import Redis
from tests.support.telemetry import attrs, make_telemetry


def run_edge_app(mode: str, sink: OtlpSink) -> Any:
    run = instrumented(
        "log_edge_app.py",
        {"MODE": mode, "OTEL_SERVICE_NAME": "edge",
         "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run


class TestStructlogNeverBreaksTheApp:
    def test_odd_values_are_logged_and_the_app_goes_on(self) -> None:
        with OtlpSink() as sink:
            run = run_edge_app("robust", sink)
            assert "app kept running" in run.stdout
            assert sink.wait_for(lambda: len(sink.logs()) == 2)
        records = {r.body: r for r in sink.logs()}
        assert "self" in str(records["self-referencing value"].attributes["data"])
        assert records["value with a broken __str__"].attributes["thing"] == "<Unprintable>"


def test_a_filtered_structlog_event_does_not_swallow_the_next_stdlib_record() -> None:
    with OtlpSink() as sink:
        run = run_edge_app("filtered", sink)
        assert sink.wait_for(lambda: any("payment failed" in str(r.body) for r in sink.logs()))
    bodies = [str(r.body) for r in sink.logs()]
    assert bodies.count("payment failed for order 7") == 1
    assert run.stdout.splitlines() == ["payment failed for order 7"]


class TestDeliveryAccounting:
    def test_no_exporter_means_nothing_undelivered(self) -> None:
        run = instrumented(
            "sample_app.py",
            {"OTEL_SERVICE_NAME": "none", "OTEL_TRACES_EXPORTER": "none",
             "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "not delivered" not in run.stderr

    def test_a_dead_otlp_exporter_is_reported_even_beside_a_working_one(self) -> None:
        closed = free_port()
        run = instrumented(
            "sample_app.py",
            {
                "OTEL_SERVICE_NAME": "two-exporters",
                "OTEL_TRACES_EXPORTER": "otlp,console",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:s3cret@127.0.0.1:{closed}",
                "OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS": "1000",
            },
        )
        [summary] = [line for line in run.stderr.splitlines() if "not delivered" in line]
        assert "1 of 1 spans" in summary
        assert "s3cret" not in run.stderr  # the endpoint is shown without its password
        assert "user:***@" in summary


@pytest.mark.services
def test_pipelined_reads_count_each_hit_and_miss(redis_srv: Redis) -> None:
    """A pipeline's reply is the list of its commands' replies: each read in it counts
    as the hit or miss it was, writes count nothing, and the span says hit or miss only
    when all its reads agree."""
    tel = make_telemetry()
    RedisInstrumentor().instrument(tracer_provider=tel.tracer_provider, **tel.hooks.redis_kwargs())
    try:
        client = redis.Redis.from_url(redis_srv.url)
        client.set("present", "1")
        pipe = client.pipeline()
        pipe.get("never-set").set("other", "2").get("present").mget("present", "absent")
        assert pipe.execute() == [None, True, b"1", [b"1", None]]
        only_misses = client.pipeline(transaction=False)
        only_misses.get("absent-1").get("absent-2")
        assert only_misses.execute() == [None, None]
    finally:
        RedisInstrumentor().uninstrument()
    assert (
        tel.counter_total(
            "otel_excellence.cache.requests", **{"otel_excellence.cache.result": "hit"}
        )
        == 2
    )
    assert (
        tel.counter_total(
            "otel_excellence.cache.requests", **{"otel_excellence.cache.result": "miss"}
        )
        == 4
    )
    assert tel.counter_total("otel_excellence.cache.requests", **{"db.operation.name": "MGET"}) == 2
    pipelines = [s for s in tel.spans() if "db.redis.pipeline_length" in attrs(s)]
    results = [attrs(s).get("otel_excellence.cache.result") for s in pipelines]
    assert sorted(map(str, results)) == ["None", "miss"]


class TestSanitizerFailsClosed:
    SECRET = "hunter2"

    @pytest.mark.parametrize(
        ("statement", "system"),
        [
            ("SELECT * FROM u WHERE name = 'O\\'Brien' AND password = 'hunter2'", "mysql"),
            ('SELECT * FROM u WHERE password = "hunter2"', "sqlite"),
            ('SELECT * FROM u WHERE password = "hunter2"', "mysql"),
            ("INSERT INTO t VALUES ('" + "x" * 20000 + "', 'hunter2')", "postgresql"),
            ("SELECT 'hunter2 never closed", "postgresql"),
            ("SELECT $$ hunter2 never closed", "postgresql"),
        ],
    )
    def test_the_secret_is_gone(self, statement: str, system: str) -> None:
        assert self.SECRET not in sanitize_statement(statement, system)

    def test_postgres_quoted_identifiers_are_kept(self) -> None:
        assert sanitize_statement('SELECT "Name" FROM "Users"', "postgresql") == (
            'SELECT "Name" FROM "Users"'
        )

    def test_if_sanitizing_fails_the_statement_is_dropped_not_exported(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        _log.raise_internal_errors = False

        def broken(statement: str, system: str | None = None) -> str:
            raise RuntimeError("sanitizer bug")

        monkeypatch.setattr(_insights, "sanitize_statement", broken)
        tel = make_telemetry()
        engine = sa.create_engine(f"sqlite:///{tmp_path}/x.db")
        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=tel.tracer_provider)
        logging.getLogger("otel_excellence").disabled = True
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 'hunter2'"))
        finally:
            SQLAlchemyInstrumentor().uninstrument()
            logging.getLogger("otel_excellence").disabled = False
        [query] = [s for s in tel.spans() if s.name != "connect"]
        assert "db.statement" not in attrs(query)
        assert attrs(query)["db.system"] == "sqlite"
