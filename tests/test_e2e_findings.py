"""The findings, end to end: zero-code launch → real OTLP receiver, read back as bytes.

The unit-level proof is tests/test_insights.py; this is what a user's backend receives.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.launch import instrumented
from tests.support.otlp_sink import OtlpSink, Span
from tests.support.ports import free_port
from tests.support.services import Postgres, Redis

pytestmark = pytest.mark.services
SECRET = "sk_live_e2e_0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def received(
    postgres: Postgres, redis_srv: Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OtlpSink]:
    with OtlpSink() as sink:
        result = instrumented(
            "findings_app.py",
            {
                "OTEL_SERVICE_NAME": "findings-e2e",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "SQLITE_PATH": str(tmp_path_factory.mktemp("findings") / "app.db"),
                "PG_URL": postgres.url,
                "REDIS_URL": redis_srv.url,
                "CLOSED_REDIS_PORT": str(free_port()),
                "SECRET": SECRET,
            },
        )
        assert result.returncode == 0, result.stderr
        assert "not delivered" not in result.stderr
        yield sink


def by_name(sink: OtlpSink, name: str) -> Span:
    [span] = [s for s in sink.spans() if s.name == name]
    return span


def counter(sink: OtlpSink, name: str, **attributes: Any) -> float:
    return sink.metric_total(name, **attributes)


def test_unique_violation_is_a_non_retryable_conflict(received: OtlpSink) -> None:
    span = by_name(received, "register")
    assert span.attributes["error.type"] == "sqlalchemy.exc.IntegrityError"
    assert span.attributes["otel_excellence.error.category"] == "conflict"
    assert span.attributes["otel_excellence.error.retryable"] is False
    assert len(span.attributes["otel_excellence.error.fingerprint"]) == 16


def test_statement_timeout_and_timeout_error_are_retryable_timeouts(received: OtlpSink) -> None:
    for name in ("report", "upstream"):
        span = by_name(received, name)
        assert span.attributes["otel_excellence.error.category"] == "timeout", name
        assert span.attributes["otel_excellence.error.retryable"] is True


def test_refused_redis_is_a_retryable_connection_error(received: OtlpSink) -> None:
    [get] = [
        s
        for s in received.spans()
        if s.name == "GET" and "otel_excellence.error.category" in s.attributes
    ]
    assert get.attributes["error.type"] == "redis.exceptions.ConnectionError"
    assert get.attributes["otel_excellence.error.category"] == "connection"
    assert get.attributes["otel_excellence.error.retryable"] is True


def test_slow_query_flagged_and_fast_ones_not(received: OtlpSink) -> None:
    parent = by_name(received, "slow-report")
    children = [s for s in received.spans() if s.parent_span_id == parent.span_id]
    slow = [s for s in children if s.attributes.get("otel_excellence.db.slow")]
    assert [s.attributes["db.statement"] for s in slow] == ["SELECT pg_sleep(?)"]
    assert all("otel_excellence.db.slow" not in s.attributes for s in children if s not in slow)
    assert counter(received, "otel_excellence.db.slow_queries") >= 1


def test_n_plus_one_flagged_with_the_exact_count(received: OtlpSink) -> None:
    span = by_name(received, "list-authors")
    assert span.attributes["otel_excellence.db.n_plus_one"] is True
    assert span.attributes["otel_excellence.db.n_plus_one.count"] == 6
    assert "FROM books" in span.attributes["otel_excellence.db.n_plus_one.statement"]
    assert counter(received, "otel_excellence.db.n_plus_one", **{"db.system.name": "sqlite"}) == 1


def test_cache_hits_and_misses_counted(received: OtlpSink) -> None:
    result = "otel_excellence.cache.result"
    hits = counter(received, "otel_excellence.cache.requests", **{result: "hit"})
    misses = counter(received, "otel_excellence.cache.requests", **{result: "miss"})
    assert (hits, misses) == (1, 1)  # the refused GET got no reply: neither


def test_errors_counted_by_category(received: OtlpSink) -> None:
    category = "otel_excellence.error.category"
    assert counter(received, "otel_excellence.errors", **{category: "conflict"}) == 1
    assert counter(received, "otel_excellence.errors", **{category: "timeout"}) == 2
    assert counter(received, "otel_excellence.errors", **{category: "connection"}) == 1


def test_database_durations_for_sql_and_redis(received: OtlpSink) -> None:
    [metric] = {
        m.name: m for m in received.metrics() if m.name == "db.client.operation.duration"
    }.values()
    assert metric.unit == "s"
    systems = set()
    for point in metric.points:
        values = {kv.key: kv.value.string_value for kv in point.attributes}
        systems.add(values["db.system.name"])
    assert {"sqlite", "postgresql", "redis"} <= systems


def test_the_secret_literal_is_absent_from_every_exported_byte(received: OtlpSink) -> None:
    requests = received.trace_requests + received.metric_requests + received.log_requests
    payload = b"".join(r.SerializeToString() for r in requests)
    assert b"pg_sleep" in payload  # the statements themselves did arrive
    assert SECRET.encode() not in payload
