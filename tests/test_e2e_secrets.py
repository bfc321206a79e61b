"""The secrets corpus, end to end: a real app under opentelemetry-instrument runs every
case of tests/data/secrets_corpus.tsv with its real driver (sqlite3, psycopg2, psycopg 3,
asyncpg, directly and through SQLAlchemy, redis-py) against real servers, and no secret
appears in any exported byte: spans, metrics or logs, as the OTLP receiver got them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launch import instrumented
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port
from tests.support.services import Postgres, Redis

pytestmark = pytest.mark.services
CORPUS = Path(__file__).parent / "data" / "secrets_corpus.tsv"
SQL = frozenset(
    {
        "sqlite3",
        "sa-sqlite",
        "psycopg2",
        "psycopg",
        "asyncpg",
        "sa-psycopg2",
        "sa-psycopg",
        "sa-asyncpg",
    }
)


def corpus() -> list[dict[str, str]]:
    rows = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.startswith(("#", "id\t")) or not line.strip():
            continue
        case_id, kind, driver, _trigger, secret = line.split("\t")
        rows.append({"id": case_id, "class": kind, "driver": driver, "secret": secret})
    return rows


@pytest.fixture(scope="module")
def received(
    postgres: Postgres, redis_srv: Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OtlpSink, str]]:
    with OtlpSink() as sink:
        result = instrumented(
            "secrets_app.py",
            {
                "OTEL_SERVICE_NAME": "secrets-e2e",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "CORPUS": str(CORPUS),
                "SQLITE_PATH": str(tmp_path_factory.mktemp("secrets") / "app.db"),
                "PG_PORT": str(postgres.port),
                "REDIS_URL": redis_srv.url,
                "CLOSED_PORT": str(free_port()),
            },
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert "cases done" in result.stdout, result.stdout
        yield sink, result.stdout


def payload(sink: OtlpSink) -> bytes:
    requests = sink.trace_requests + sink.metric_requests + sink.log_requests
    return b"".join(r.SerializeToString() for r in requests)


def test_the_corpus_is_large_and_covers_every_driver() -> None:
    """At least 60 cases; every driver and class the issue names is in the table."""
    rows = corpus()
    assert len(rows) >= 60
    assert len({r["secret"] for r in rows}) == len(rows)
    drivers = {r["driver"] for r in rows}
    assert {"sqlite3", "sa-sqlite", "psycopg2", "psycopg", "asyncpg", "sa-psycopg2"} <= drivers
    assert {"sa-psycopg", "sa-asyncpg", "redis"} <= drivers


def test_every_case_ran_and_its_telemetry_arrived(received: tuple[OtlpSink, str]) -> None:
    """Each case left its span (so a missing secret is not a missing case), the failing
    ones with their exception, and the failures reached the log pipeline."""
    sink, _ = received
    assert sink.wait_for(lambda: len({s.name for s in sink.spans()}) > len(corpus()))
    spans = {s.name: s for s in sink.spans()}
    missing = [r["id"] for r in corpus() if f"case {r['id']}" not in spans]
    assert not missing
    failed = [s for s in spans.values() if s.name.startswith("case ") and s.status_code == 2]
    assert len(failed) >= 40, len(failed)
    assert all(any(name == "exception" for name, _ in s.events) for s in failed)
    assert sink.wait_for(lambda: len(sink.logs()) >= len(failed))
    # The statements themselves arrived, sanitized: every SQL case left a database span
    # with its statement (a case whose statement was not traced would prove nothing).
    names = {s.span_id: s.name for s in sink.spans()}
    traced = {
        names.get(s.parent_span_id)
        for s in sink.spans()
        if "db.statement" in s.attributes or "db.query.text" in s.attributes
    }
    untraced = [r["id"] for r in corpus() if r["driver"] in SQL and f"case {r['id']}" not in traced]
    assert not untraced, untraced
    assert b"INSERT INTO corpus_accounts (id, email) VALUES (?, ?), (?, ?)" in payload(sink)


@pytest.mark.parametrize("case", corpus(), ids=lambda r: f"{r['id']}-{r['class']}-{r['driver']}")
def test_no_secret_in_any_exported_byte(
    received: tuple[OtlpSink, str], case: dict[str, str]
) -> None:
    """The case's secret is absent from every span, metric and log payload, byte for byte."""
    sink, _ = received
    data = payload(sink)
    secret = case["secret"].encode()
    where = data.find(secret)
    assert where < 0, data[max(0, where - 300) : where + 100]
    assert secret.lower() not in data.lower()
