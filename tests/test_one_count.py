"""One logical database operation counts once, and N+1 is reported on the local root.

In process, through the real instrumentations as ``opentelemetry-bootstrap`` installs
them: SQLAlchemy's beside the driver's (sqlite3, psycopg 3, psycopg2), on real SQLite
and PostgreSQL. tests/test_e2e_db_*.py prove the same through the zero-code launch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from otel_excellence._findings.hooks import hook_dbapi, hook_sqlite3_shortcuts, parameters_hash
from tests.support.services import Postgres
from tests.support.telemetry import Telemetry, attrs, make_telemetry


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    books: Mapped[list[Book]] = relationship(lazy="select")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("authors.id"))


DRIVERS = {
    "sqlite3": SQLite3Instrumentor,
    "psycopg": PsycopgInstrumentor,
    "psycopg2": Psycopg2Instrumentor,
}


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    tel = make_telemetry()
    tel.hooks.listen_sqlalchemy()
    hook_dbapi()
    yield tel
    SQLAlchemyInstrumentor().uninstrument()
    event.remove(Engine, "after_cursor_execute", tel.hooks.sqlalchemy_after_execute)


@pytest.fixture(params=["sqlite3", "psycopg", "psycopg2"])
def stack(
    request: pytest.FixtureRequest, telemetry: Telemetry, tmp_path: Any
) -> Iterator[tuple[str, Engine]]:
    """SQLAlchemy on a real database with that driver's instrumentation installed too."""
    driver = request.param
    if driver == "sqlite3":
        url = f"sqlite:///{tmp_path}/app.db"
    else:
        postgres: Postgres = request.getfixturevalue("postgres")
        url = postgres.url.replace("+psycopg", f"+{driver}")
    instrumentor = DRIVERS[driver]()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider)
    engine = sa.create_engine(url)
    SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=telemetry.tracer_provider)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for n in range(12):
            session.add(Author(name=f"author {n}", books=[Book()]))
        session.commit()
    yield driver, engine
    instrumentor.uninstrument()
    engine.dispose()


def counted_statements(engine: Engine) -> list[str]:
    """What the application really executed, from SQLAlchemy's own event."""
    executed: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a, **k: executed.append(a[2]))
    return executed


def duration_points(tel: Telemetry) -> int:
    return sum(p.count for p in tel.points("db.client.operation.duration"))


def lazy_loads(tel: Telemetry, engine: Engine, authors: int, *, inside: str | None = None) -> None:
    tracer = tel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("GET /authors", kind=SpanKind.SERVER):
        if inside is None:
            _load(engine, authors)
        else:
            with tracer.start_as_current_span(inside):
                _load(engine, authors)


def _load(engine: Engine, authors: int) -> None:
    with Session(engine) as session:
        for author in session.scalars(sa.select(Author).limit(authors)).all():
            assert len(author.books) == 1


def twins(tel: Telemetry) -> list[ReadableSpan]:
    return [
        s
        for s in tel.spans()
        if s.kind is SpanKind.CLIENT and "sqlalchemy" not in s.instrumentation_scope.name
    ]


class TestOrmAndDriverSpans:
    def test_nine_lazy_loads_count_nine_on_the_server_span(
        self, telemetry: Telemetry, stack: tuple[str, Engine]
    ) -> None:
        """Both spans exist for each statement, but the count is the statements'."""
        _, engine = stack
        telemetry.reset()
        lazy_loads(telemetry, engine, 9)
        root = telemetry.span("GET /authors")
        assert attrs(root)["otel_excellence.db.n_plus_one.count"] == 9
        assert attrs(root)["otel_excellence.db.n_plus_one.parent"] == "GET /authors"
        assert "FROM books" in attrs(root)["otel_excellence.db.n_plus_one.statement"]
        assert len(twins(telemetry)) >= 10  # the driver spans are there, counted nowhere

    def test_three_lazy_loads_are_not_an_n_plus_one(
        self, telemetry: Telemetry, stack: tuple[str, Engine]
    ) -> None:
        """3 loads with both spans would have counted 6 (above the threshold 5)."""
        _, engine = stack
        lazy_loads(telemetry, engine, 3)
        assert not any("otel_excellence.db.n_plus_one" in attrs(s) for s in telemetry.spans())
        assert telemetry.counter_total("otel_excellence.db.n_plus_one") == 0

    def test_one_duration_point_per_executed_statement_and_none_for_connect(
        self, telemetry: Telemetry, stack: tuple[str, Engine]
    ) -> None:
        _, engine = stack
        engine.dispose()  # the request below opens a fresh pool connection
        executed = counted_statements(engine)
        before = duration_points(telemetry)
        lazy_loads(telemetry, engine, 9)
        assert len(executed) == 10
        assert duration_points(telemetry) - before == 10
        operations = {
            p.attributes["db.operation.name"]
            for p in telemetry.points("db.client.operation.duration")
        }
        assert "CONNECT" not in operations
        assert any(s.name == "connect" for s in telemetry.spans())

    def test_the_slow_flag_is_on_one_span_per_execution(
        self, telemetry: Telemetry, stack: tuple[str, Engine]
    ) -> None:
        """Every statement is slow at threshold 0: one flagged span each, the ORM's."""
        _, engine = stack
        telemetry.insights.slow_threshold_s = 0.0
        executed = counted_statements(engine)
        telemetry.reset()
        lazy_loads(telemetry, engine, 2)
        slow = [s for s in telemetry.spans() if attrs(s).get("otel_excellence.db.slow")]
        assert len(slow) == len(executed) == 3
        assert all("sqlalchemy" in s.instrumentation_scope.name for s in slow)

    def test_the_flag_names_the_span_the_loads_ran_under(
        self, telemetry: Telemetry, stack: tuple[str, Engine]
    ) -> None:
        """A template render (here a span of its own) is named; the request is flagged."""
        _, engine = stack
        telemetry.reset()
        lazy_loads(telemetry, engine, 7, inside="render authors.html")
        root = telemetry.span("GET /authors")
        assert attrs(root)["otel_excellence.db.n_plus_one.count"] == 7
        assert attrs(root)["otel_excellence.db.n_plus_one.parent"] == "render authors.html"
        assert "otel_excellence.db.n_plus_one" not in attrs(telemetry.span("render authors.html"))


class TestSqliteShortcuts:
    def test_connection_execute_is_traced_and_counted(
        self, telemetry: Telemetry, tmp_path: Any
    ) -> None:
        """sqlite3's Connection.execute shortcut (most scripts' way) gets its span, its
        metric point and its N+1 count, as cursor.execute does."""
        hook_sqlite3_shortcuts()
        SQLite3Instrumentor().instrument(tracer_provider=telemetry.tracer_provider)
        try:
            tracer = telemetry.tracer_provider.get_tracer("test")
            with sqlite3.connect(tmp_path / "s.db") as connection:
                connection.execute("CREATE TABLE items (id INTEGER)")
                connection.executemany("INSERT INTO items VALUES (?)", [(1,), (2,)])
                before = duration_points(telemetry)
                with tracer.start_as_current_span("job", kind=SpanKind.SERVER):
                    for n in range(6):
                        rows = connection.execute("SELECT id FROM items WHERE id = ?", (n,))
                        assert rows.fetchall() == ([(n,)] if n in (1, 2) else [])
        finally:
            SQLite3Instrumentor().uninstrument()
        assert attrs(telemetry.span("job"))["otel_excellence.db.n_plus_one.count"] == 6
        assert duration_points(telemetry) - before == 6


class TestSeveralPatterns:
    def test_each_pattern_keeps_its_own_count(self, telemetry: Telemetry, tmp_path: Any) -> None:
        SQLite3Instrumentor().instrument(tracer_provider=telemetry.tracer_provider)
        try:
            tracer = telemetry.tracer_provider.get_tracer("test")
            with (
                tracer.start_as_current_span("GET /report", kind=SpanKind.SERVER),
                sqlite3.connect(tmp_path / "r.db") as connection,
            ):
                # The instrumentation traces cursors, not Connection.execute's shortcut.
                db = connection.cursor()
                db.execute("CREATE TABLE t (id INTEGER, v TEXT)")
                for n in range(6):
                    db.execute("SELECT v FROM t WHERE id = ?", (n,))
                for n in range(8):
                    db.execute("INSERT INTO t (id, v) VALUES (?, ?)", (n, "x"))
        finally:
            SQLite3Instrumentor().uninstrument()
        root = telemetry.span("GET /report")
        assert attrs(root)["otel_excellence.db.n_plus_one.count"] == 8
        found = {
            e.attributes["otel_excellence.db.n_plus_one.statement"]: e.attributes[
                "otel_excellence.db.n_plus_one.count"
            ]
            for e in root.events
            if e.name == "otel_excellence.db.n_plus_one"
        }
        assert found == {
            "INSERT INTO t (id, v) VALUES (?, ?)": 8,
            "SELECT v FROM t WHERE id = ?": 6,
        }
        assert (
            telemetry.counter_total(
                "otel_excellence.db.n_plus_one", **{"otel_excellence.route": "GET /report"}
            )
            == 2
        )


class TestDriverOnly:
    """No ORM: the driver's span is the operation, with parameters where its hook sees them."""

    def test_psycopg_directly(self, telemetry: Telemetry, postgres: Postgres) -> None:
        PsycopgInstrumentor().instrument(tracer_provider=telemetry.tracer_provider)
        try:
            tracer = telemetry.tracer_provider.get_tracer("test")
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                conn.execute("CREATE TEMP TABLE items (id int)")
                before = duration_points(telemetry)
                with tracer.start_as_current_span("different", kind=SpanKind.SERVER):
                    for n in range(6):
                        conn.execute("SELECT id FROM items WHERE id = %s", (n,))
                with tracer.start_as_current_span("same", kind=SpanKind.SERVER):
                    for _ in range(6):
                        conn.execute("SELECT id FROM items WHERE id = %s", (1,))
                with tracer.start_as_current_span("slow", kind=SpanKind.SERVER):
                    telemetry.insights.slow_threshold_s = 0.2
                    conn.execute("SELECT pg_sleep(0.25)")
        finally:
            PsycopgInstrumentor().uninstrument()
        assert attrs(telemetry.span("different"))["otel_excellence.db.n_plus_one.count"] == 6
        assert "otel_excellence.db.n_plus_one" not in attrs(telemetry.span("same"))
        assert duration_points(telemetry) - before == 13
        [slow] = [s for s in telemetry.spans() if attrs(s).get("otel_excellence.db.slow")]
        assert "pg_sleep" in attrs(slow)["db.statement"]

    def test_sqlite3_directly(self, telemetry: Telemetry, tmp_path: Any) -> None:
        SQLite3Instrumentor().instrument(tracer_provider=telemetry.tracer_provider)
        try:
            tracer = telemetry.tracer_provider.get_tracer("test")
            with sqlite3.connect(tmp_path / "d.db") as connection:
                db = connection.cursor()
                db.execute("CREATE TABLE items (id INTEGER)")
                with tracer.start_as_current_span("different", kind=SpanKind.SERVER):
                    for n in range(5):
                        db.execute("SELECT id FROM items WHERE id = ?", (n,))
                with tracer.start_as_current_span("same", kind=SpanKind.SERVER):
                    for _ in range(7):
                        db.execute("SELECT id FROM items WHERE id = ?", (3,))
        finally:
            SQLite3Instrumentor().uninstrument()
        assert attrs(telemetry.span("different"))["otel_excellence.db.n_plus_one.count"] == 5
        assert "otel_excellence.db.n_plus_one" not in attrs(telemetry.span("same"))


def test_stable_conventions_keep_one_duration_point_per_operation(tmp_path: Any) -> None:
    """With OTEL_SEMCONV_STABILITY_OPT_IN=database the DB-API instrumentations record
    db.client.operation.duration too: summed over every scope that sends it, each
    SELECT still has exactly one point, and the N+1 is still counted once."""
    from tests.launch import instrumented
    from tests.support.otlp_sink import OtlpSink

    with OtlpSink() as sink:
        run = instrumented(
            "stable_semconv_app.py",
            {
                "OTEL_SERVICE_NAME": "stable-semconv",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
                "OTEL_SEMCONV_STABILITY_OPT_IN": "database",
                "SQLITE_PATH": str(tmp_path / "s.db"),
            },
        )
        assert run.returncode == 0, run.stderr
        assert "selects 7" in run.stdout
        assert sink.wait_for(lambda: any(s.name == "job" for s in sink.spans()))
        assert sink.wait_for(
            lambda: any(m.name == "db.client.operation.duration" for m in sink.metrics())
        )
    # Summed over every scope that sends the metric (ours and the DB-API's).
    assert sink.metric_total("db.client.operation.duration", **{"db.operation.name": "SELECT"}) == 7
    [job] = [s for s in sink.spans() if s.name == "job"]
    assert job.attributes["otel_excellence.db.n_plus_one.count"] == 7


class TestReviewRegressions:
    def test_a_new_root_started_inside_a_request_counts_on_its_own(
        self, telemetry: Telemetry
    ) -> None:
        """start_span(context=Context()) - a new trace, e.g. a consumed message without
        trace headers - is a local root: its statements are not the request's."""
        from opentelemetry.context import Context

        tracer = telemetry.tracer_provider.get_tracer("test")
        attributes = {"db.system": "sqlite", "db.statement": "SELECT v FROM t WHERE id = 1"}
        with tracer.start_as_current_span("GET /outer", kind=SpanKind.SERVER):
            job = tracer.start_span("job", context=Context(), kind=SpanKind.CONSUMER)
            with trace.use_span(job, end_on_exit=True):
                for n in range(6):
                    attributes["db.statement"] = f"SELECT v FROM t WHERE id = {n}"  # noqa: S608
                    with tracer.start_as_current_span(
                        "SELECT", kind=SpanKind.CLIENT, attributes=attributes
                    ):
                        pass
        assert attrs(telemetry.span("job"))["otel_excellence.db.n_plus_one.count"] == 6
        assert "otel_excellence.db.n_plus_one" not in attrs(telemetry.span("GET /outer"))

    def test_parameters_are_told_apart_without_repr(self) -> None:
        """Dict parameters (psycopg's form) with unhashable or huge values hash by value
        or by type and size: a user object's __repr__ is never called."""

        class Loud:
            def __repr__(self) -> str:
                raise AssertionError("repr called")

            __hash__ = None  # type: ignore[assignment]

        blob = b"x" * 10_000_000
        first = parameters_hash({"id": 1, "data": bytearray(blob), "who": Loud()})
        second = parameters_hash({"id": 2, "data": bytearray(blob), "who": Loud()})
        assert first != second
        assert parameters_hash([{"id": 1}, {"id": 2}]) == parameters_hash([{"id": 1}, {"id": 2}])

    def test_spacing_alone_does_not_make_calls_look_different(self, telemetry: Telemetry) -> None:
        """A multi-line statement repeated with no parameter hook (a Redis pipeline's
        "GET ?\\nSET ? ?") counts by repetition: spacing is not a literal."""
        tracer = telemetry.tracer_provider.get_tracer("test")
        attributes = {"db.system": "redis", "db.statement": "GET ?\nSET ? ?"}
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER):
            for _ in range(6):
                with tracer.start_as_current_span(
                    "GET SET", kind=SpanKind.CLIENT, attributes=attributes
                ):
                    pass
        assert attrs(telemetry.span("GET /cart"))["otel_excellence.db.n_plus_one.count"] == 6

    def test_statements_sent_as_a_messages_transport_are_not_an_n_plus_one(
        self, telemetry: Telemetry
    ) -> None:
        """Enqueuing tasks in a loop (a Redis LPUSH under each publish span, as Celery
        sends them) is not a database N+1; the same calls made directly still are."""
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("batch", kind=SpanKind.SERVER):
            for n in range(8):
                with (
                    tracer.start_as_current_span("send", kind=SpanKind.PRODUCER),
                    tracer.start_as_current_span(
                        "LPUSH",
                        kind=SpanKind.CLIENT,
                        attributes={"db.system": "redis", "db.statement": f"LPUSH q{n} ?"},
                    ),
                ):
                    pass
        assert "otel_excellence.db.n_plus_one" not in attrs(telemetry.span("batch"))
