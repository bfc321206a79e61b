"""Span findings through the real SQLAlchemy and Redis instrumentations, on real servers.

Every test drives a real library (SQLite, PostgreSQL, redis-server) through the
official instrumentation and asserts on the spans and metrics the distro's chain
produces. tests/test_e2e_findings.py proves the same through the zero-code launch.
"""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, set_span_in_context
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from otel_excellence import _diagnostics as _log
from otel_excellence._config.settings import Settings
from otel_excellence._findings.fingerprint import (
    fingerprint_exception,
    fingerprint_stacktrace,
)
from otel_excellence._findings.insights import DURATION_BUCKETS
from tests.support.ports import free_port
from tests.support.services import Postgres, Redis
from tests.support.telemetry import Telemetry, attrs, iter_strings, make_telemetry

HEX16 = re.compile(r"^[0-9a-f]{16}$")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    orders: Mapped[list[Order]] = relationship(back_populates="user", lazy="select")


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    user: Mapped[User] = relationship(back_populates="orders")


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    tel = make_telemetry(Settings(slow_db_threshold_ms=200))
    tel.hooks.listen_sqlalchemy()
    RedisInstrumentor().instrument(tracer_provider=tel.tracer_provider, **tel.hooks.redis_kwargs())
    yield tel
    RedisInstrumentor().uninstrument()
    SQLAlchemyInstrumentor().uninstrument()
    event.remove(Engine, "after_cursor_execute", tel.hooks.sqlalchemy_after_execute)


def instrumented_engine(tel: Telemetry, url: str, **kwargs: Any) -> Engine:
    engine = sa.create_engine(url, **kwargs)
    SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=tel.tracer_provider)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    return engine


@pytest.fixture
def sqlite(telemetry: Telemetry, tmp_path: Any) -> Engine:
    return instrumented_engine(telemetry, f"sqlite:///{tmp_path}/app.db")


@pytest.fixture
def pg(telemetry: Telemetry, postgres: Postgres) -> Engine:
    return instrumented_engine(telemetry, postgres.url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> tuple[str, Engine]:
    """Each of the two real databases, by its db.system name."""
    fixture = "sqlite" if request.param == "sqlite" else "pg"
    return request.param, request.getfixturevalue(fixture)


def db_spans(tel: Telemetry, system: str) -> list[ReadableSpan]:
    return [
        s
        for s in tel.spans()
        if s.kind is SpanKind.CLIENT
        and (attrs(s).get("db.system") or attrs(s).get("db.system.name")) == system
    ]


def queries(tel: Telemetry, system: str) -> list[ReadableSpan]:
    """Statement spans (the instrumentation also traces opening connections)."""
    return [s for s in db_spans(tel, system) if s.name != "connect"]


def failed(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if "otel_excellence.error.category" in attrs(s)]


def duplicate_email(tel: Telemetry, engine: Engine, email: str) -> None:
    tracer = tel.tracer_provider.get_tracer("test")
    with Session(engine) as session:
        session.add(User(email=email))
        session.commit()
    with (
        pytest.raises(sa.exc.IntegrityError),
        tracer.start_as_current_span("create-user"),
        Session(engine) as session,
    ):
        session.add(User(email=email))
        session.commit()


class TestErrorClassification:
    def test_unique_violation_is_conflict_and_not_retryable(
        self, telemetry: Telemetry, database: tuple[str, Engine]
    ) -> None:
        """The failed INSERT span and the app span it escaped through both say conflict."""
        system, engine = database
        duplicate_email(telemetry, engine, "dup@example.com")

        [insert] = failed(db_spans(telemetry, system))
        expected_type = {
            "sqlite": "sqlite3.IntegrityError",
            "postgresql": "psycopg.errors.UniqueViolation",
        }[system]
        assert attrs(insert)["error.type"] == expected_type
        assert attrs(insert)["otel_excellence.error.category"] == "conflict"
        assert attrs(insert)["otel_excellence.error.retryable"] is False
        assert HEX16.match(attrs(insert)["otel_excellence.error.fingerprint"])

        parent = telemetry.span("create-user")
        assert attrs(parent)["error.type"] == "sqlalchemy.exc.IntegrityError"
        assert attrs(parent)["otel_excellence.error.category"] == "conflict"
        assert attrs(parent)["otel_excellence.error.retryable"] is False
        # One exception escaping through two spans is one error.
        assert (
            telemetry.counter_total(
                "otel_excellence.errors",
                **{"otel_excellence.error.category": "conflict", "error.type": expected_type},
            )
            == 1
        )
        assert telemetry.counter_total("otel_excellence.errors") == 1

    def test_postgres_statement_timeout_is_timeout_and_retryable(
        self, telemetry: Telemetry, pg: Engine
    ) -> None:
        with pytest.raises(sa.exc.OperationalError), pg.connect() as connection:
            connection.execute(sa.text("SET statement_timeout = 50"))
            connection.execute(sa.text("SELECT pg_sleep(2)"))
        [sleep] = failed(db_spans(telemetry, "postgresql"))
        assert attrs(sleep)["error.type"] == "psycopg.errors.QueryCanceled"
        assert attrs(sleep)["otel_excellence.error.category"] == "timeout"
        assert attrs(sleep)["otel_excellence.error.retryable"] is True

    def test_builtin_timeout_error_is_timeout_and_retryable(self, telemetry: Telemetry) -> None:
        tracer = telemetry.tracer_provider.get_tracer("test")
        with pytest.raises(TimeoutError), tracer.start_as_current_span("call-upstream"):
            raise TimeoutError("upstream took too long")
        span = telemetry.span("call-upstream")
        assert attrs(span)["error.type"] == "TimeoutError"
        assert attrs(span)["otel_excellence.error.category"] == "timeout"
        assert attrs(span)["otel_excellence.error.retryable"] is True

    def test_redis_connection_refused_is_connection_and_retryable(
        self, telemetry: Telemetry
    ) -> None:
        client = redis.Redis(port=free_port(), socket_connect_timeout=1)
        with pytest.raises(redis.exceptions.ConnectionError):
            client.get("anything")
        [get] = failed(db_spans(telemetry, "redis"))
        assert attrs(get)["error.type"] == "redis.exceptions.ConnectionError"
        assert attrs(get)["otel_excellence.error.category"] == "connection"
        assert attrs(get)["otel_excellence.error.retryable"] is True
        assert telemetry.counter_total(
            "otel_excellence.errors",
            **{"otel_excellence.error.category": "connection",
               "otel_excellence.error.retryable": True},
        ) == 1  # fmt: skip

    def test_successful_spans_carry_no_error_attributes(
        self, telemetry: Telemetry, sqlite: Engine
    ) -> None:
        with sqlite.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        assert not failed(telemetry.spans())
        assert all("error.type" not in attrs(s) for s in telemetry.spans())


def _fail_here(tel: Telemetry) -> str:
    tracer = tel.tracer_provider.get_tracer("test")
    with pytest.raises(KeyError), tracer.start_as_current_span("lookup"):
        {}["missing"]
    return str(attrs(tel.spans()[-1])["otel_excellence.error.fingerprint"])


def _fail_elsewhere(tel: Telemetry) -> str:
    tracer = tel.tracer_provider.get_tracer("test")
    with pytest.raises(KeyError), tracer.start_as_current_span("lookup"):
        {}["missing"]
    return str(attrs(tel.spans()[-1])["otel_excellence.error.fingerprint"])


def _unraised_here() -> str:
    return fingerprint_exception("KeyError", KeyError("k"))


def _unraised_elsewhere() -> str:
    return fingerprint_exception("KeyError", KeyError("k"))


class TestFingerprint:
    def test_an_error_without_application_frames_is_placed_by_its_callers(self) -> None:
        """No application frame in its traceback (here: no traceback at all): the call
        stack's application frames place it. Two call sites, two groups, however often
        each repeats (fingerprints are remembered per traceback, never these)."""
        here = {_unraised_here() for _ in range(3)}
        elsewhere = {_unraised_elsewhere() for _ in range(3)}
        assert len(here) == len(elsewhere) == 1
        assert here != elsewhere

    def test_same_error_same_place_groups_and_another_place_does_not(
        self, telemetry: Telemetry
    ) -> None:
        assert _fail_here(telemetry) == _fail_here(telemetry)
        assert _fail_here(telemetry) != _fail_elsewhere(telemetry)

    def test_line_numbers_and_paths_do_not_matter(self) -> None:
        """An unrelated edit moves lines; a deploy moves the checkout: same group."""
        before = (
            'Traceback (most recent call last):\n  File "/srv/a/app/views.py", line 10, in '
            "create\n    x()\nKeyError: 'k'\n"
        )
        after = before.replace("line 10", "line 42").replace("/srv/a/", "/opt/b/")
        renamed = before.replace("in create", "in create_user")
        assert fingerprint_stacktrace("KeyError", before) == fingerprint_stacktrace(
            "KeyError", after
        )
        assert fingerprint_stacktrace("KeyError", before) != fingerprint_stacktrace(
            "KeyError", renamed
        )

    def test_stable_across_runs(self) -> None:
        code = (
            "from tests.support.telemetry import make_telemetry\n"
            "from tests.test_insights import _fail_here\n"
            "import pytest\n"
            "print(_fail_here(make_telemetry()))\n"
        )
        runs = {
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout.strip()
            for _ in range(2)
        }
        assert len(runs) == 1
        assert HEX16.match(runs.pop())


class TestSlowQueries:
    def test_slow_postgres_query_is_flagged_and_fast_ones_are_not(
        self, telemetry: Telemetry, pg: Engine
    ) -> None:
        with pg.connect() as connection:
            connection.execute(sa.text("SELECT pg_sleep(0.3)"))
            connection.execute(sa.text("SELECT 1"))
        spans = {
            attrs(s)["db.statement"]: s
            for s in db_spans(telemetry, "postgresql")
            if "db.statement" in attrs(s)
        }
        assert attrs(spans["SELECT pg_sleep(?)"])["otel_excellence.db.slow"] is True
        assert "otel_excellence.db.slow" not in attrs(spans["SELECT ?"])
        assert (
            telemetry.counter_total(
                "otel_excellence.db.slow_queries",
                **{"db.system.name": "postgresql", "db.operation.name": "SELECT"},
            )
            == 1
        )

    def test_threshold_is_inclusive_and_configurable(self, tmp_path: Any) -> None:
        tel = make_telemetry(Settings(slow_db_threshold_ms=0))
        engine = sa.create_engine(f"sqlite:///{tmp_path}/t.db")
        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=tel.tracer_provider)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        finally:
            SQLAlchemyInstrumentor().uninstrument()
        statements = queries(tel, "sqlite")
        assert statements
        assert all(attrs(s)["otel_excellence.db.slow"] is True for s in statements)
        # Opening a pool connection is not a database operation: never flagged.
        connects = [s for s in db_spans(tel, "sqlite") if s.name == "connect"]
        assert connects
        assert not any("otel_excellence.db.slow" in attrs(s) for s in connects)


def _seed(engine: Engine, users: int, orders_each: int = 2) -> None:
    with Session(engine) as session:
        for n in range(users):
            user = User(email=f"user{n}@example.com")
            user.orders = [Order() for _ in range(orders_each)]
            session.add(user)
        session.commit()


class TestNPlusOne:
    def test_lazy_loading_in_a_loop_is_flagged_with_the_exact_count(
        self, telemetry: Telemetry, database: tuple[str, Engine]
    ) -> None:
        system, engine = database
        _seed(engine, users=7)
        telemetry.reset()
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("list-users"), Session(engine) as session:
            for user in session.scalars(sa.select(User)).all():
                assert len(user.orders) == 2
        parent = telemetry.span("list-users")
        assert attrs(parent)["otel_excellence.db.n_plus_one"] is True
        assert attrs(parent)["otel_excellence.db.n_plus_one.count"] == 7
        statement = attrs(parent)["otel_excellence.db.n_plus_one.statement"]
        assert statement.startswith("SELECT orders.id")
        assert "orders.user_id" in statement
        assert (
            telemetry.counter_total(
                "otel_excellence.db.n_plus_one",
                **{"db.system.name": system, "db.operation.name": "SELECT"},
            )
            == 1
        )

    def test_below_the_threshold_is_not_flagged(self, telemetry: Telemetry, sqlite: Engine) -> None:
        _seed(sqlite, users=4)
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("few-users"), Session(sqlite) as session:
            for user in session.scalars(sa.select(User)).all():
                _ = user.orders
        assert "otel_excellence.db.n_plus_one" not in attrs(telemetry.span("few-users"))

    def test_the_same_query_with_the_same_parameters_is_not_an_n_plus_one(
        self, telemetry: Telemetry, sqlite: Engine
    ) -> None:
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("poll"), sqlite.connect() as connection:
            for _ in range(8):
                connection.execute(sa.text("SELECT count(*) FROM users WHERE id = :id"), {"id": 1})
        assert "otel_excellence.db.n_plus_one" not in attrs(telemetry.span("poll"))

    def test_redis_gets_in_a_loop_are_flagged(self, telemetry: Telemetry, redis_srv: Redis) -> None:
        client = redis.Redis.from_url(redis_srv.url)
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("render-cart"):
            for n in range(6):
                client.get(f"product:{n}")
        parent = telemetry.span("render-cart")
        assert attrs(parent)["otel_excellence.db.n_plus_one.count"] == 6
        assert attrs(parent)["otel_excellence.db.n_plus_one.statement"] == "GET ?"

    def test_counts_and_verdicts_hold_across_batches_of_calls(
        self, telemetry: Telemetry, sqlite: Engine
    ) -> None:
        """Calls are counted in batches (at 64 waiting, and when the root ends): a
        request of 150 calls, interleaved, the repeated ones split across batches, and
        one statement whose parameters never change, has exactly the counts seen."""
        tracer = telemetry.tracer_provider.get_tracer("test")
        by_id = sa.text("SELECT count(*) FROM users WHERE id = :id")
        orders = sa.text("SELECT count(*) FROM orders WHERE id = :id")
        by_email = sa.text("SELECT count(*) FROM users WHERE email = :e")
        with tracer.start_as_current_span("report"), sqlite.connect() as connection:
            for n in range(50):
                connection.execute(by_id, {"id": n})
                connection.execute(orders, {"id": n % 3})
                connection.execute(by_email, {"e": "x"})
        parent = attrs(telemetry.span("report"))
        assert parent["otel_excellence.db.n_plus_one.count"] == 50
        events = {
            e.attributes["otel_excellence.db.n_plus_one.statement"]: e.attributes[
                "otel_excellence.db.n_plus_one.count"
            ]
            for e in telemetry.span("report").events
            if e.name == "otel_excellence.db.n_plus_one"
        }
        assert events == {
            "SELECT count(*) FROM users WHERE id = ?": 50,
            "SELECT count(*) FROM orders WHERE id = ?": 50,
        }

    def test_state_for_a_root_that_never_ends_goes_with_the_span(self) -> None:
        """N+1 state lives on the root span object: a root the application abandons
        without ending takes its state with it (nothing global grows)."""
        tel = make_telemetry()
        tracer = tel.tracer_provider.get_tracer("test")
        refs = []
        for _ in range(50):
            root = tracer.start_span("never-ends")  # deliberately never ended
            with tracer.start_as_current_span(
                "SELECT",
                kind=SpanKind.CLIENT,
                context=set_span_in_context(root),
                attributes={"db.system": "sqlite", "db.statement": "SELECT 1"},
            ):
                pass
            refs.append(weakref.ref(root.__dict__["_oe_findings"]))
            del root
        gc.collect()
        assert all(ref() is None for ref in refs)

    def test_patterns_per_root_are_capped(self, telemetry: Telemetry) -> None:
        """A request running thousands of distinct statements keeps at most 64 patterns."""
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("bulk") as root:
            for n in range(500):
                for _ in range(5):
                    with tracer.start_as_current_span(
                        "SELECT",
                        kind=SpanKind.CLIENT,
                        attributes={"db.system": "sqlite", "db.statement": f"SELECT c{n} FROM t"},  # noqa: S608
                    ):
                        pass
            assert len(root.__dict__["_oe_findings"].patterns) == 64
        events = [
            e for e in telemetry.span("bulk").events if e.name == "otel_excellence.db.n_plus_one"
        ]
        assert len(events) == 64


class TestStatements:
    SECRET = "sk_live_4f9a8b7c6d5e"

    def test_a_secret_literal_never_leaves_the_process(
        self, telemetry: Telemetry, pg: Engine
    ) -> None:
        """Not in the statement, and not in the error text of a failing statement."""
        tracer = telemetry.tracer_provider.get_tracer("test")
        with pg.connect() as connection:
            connection.execute(sa.text(f"SELECT '{self.SECRET}' AS token WHERE 1 IN (1, 2, 3)"))
        with (
            pytest.raises(sa.exc.IntegrityError),
            tracer.start_as_current_span("signup"),
            Session(pg) as session,
        ):
            session.add_all([User(email=self.SECRET), User(email=self.SECRET)])
            session.commit()
        exported = [text for span in telemetry.spans() for text in iter_strings(span)]
        assert exported
        assert not [text for text in exported if self.SECRET in text]
        statements = [attrs(s).get("db.statement") for s in db_spans(telemetry, "postgresql")]
        assert "SELECT ? AS token WHERE ? IN (?)" in statements

    def test_raw_mode_keeps_statements_as_executed(self, tmp_path: Any) -> None:
        tel = make_telemetry(Settings(db_statement="raw"))
        engine = sa.create_engine(f"sqlite:///{tmp_path}/raw.db")
        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=tel.tracer_provider)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 'kept' AS v"))
        finally:
            SQLAlchemyInstrumentor().uninstrument()
        assert [attrs(s).get("db.statement") for s in queries(tel, "sqlite")] == [
            "SELECT 'kept' AS v"
        ]

    def test_omit_mode_drops_statements(self, tmp_path: Any) -> None:
        tel = make_telemetry(Settings(db_statement="omit"))
        engine = sa.create_engine(f"sqlite:///{tmp_path}/omit.db")
        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=tel.tracer_provider)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        finally:
            SQLAlchemyInstrumentor().uninstrument()
        [span] = queries(tel, "sqlite")
        assert "db.statement" not in attrs(span)
        assert attrs(span)["db.system"] == "sqlite"


class TestCacheMetrics:
    def test_hits_and_misses_are_counted(self, telemetry: Telemetry, redis_srv: Redis) -> None:
        client = redis.Redis.from_url(redis_srv.url)
        client.set("session:1", "alice")
        assert client.get("session:1") == b"alice"
        assert client.get("session:2") is None
        assert client.mget("session:1", "session:3") == [b"alice", None]
        hit = {"otel_excellence.cache.result": "hit"}
        miss = {"otel_excellence.cache.result": "miss"}
        assert telemetry.counter_total("otel_excellence.cache.requests", **hit) == 2
        assert telemetry.counter_total("otel_excellence.cache.requests", **miss) == 2
        gets = [s for s in db_spans(telemetry, "redis") if s.name == "GET"]
        assert [attrs(s)["otel_excellence.cache.result"] for s in gets] == ["hit", "miss"]


class TestDurationMetric:
    def test_every_database_call_is_measured_in_seconds_with_semconv_buckets(
        self, telemetry: Telemetry, sqlite: Engine, redis_srv: Redis
    ) -> None:
        with sqlite.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        redis.Redis.from_url(redis_srv.url).set("k", "v")
        points = telemetry.points("db.client.operation.duration")
        by_system = {p.attributes["db.system.name"]: p for p in points}
        assert {"sqlite", "redis"} <= set(by_system)
        assert by_system["redis"].attributes["db.operation.name"] == "SET"
        assert tuple(by_system["sqlite"].explicit_bounds) == DURATION_BUCKETS
        assert all(0 < p.sum < 5 for p in points)


class TestNeverBreaksTheApplication:
    def test_a_failing_insight_leaves_the_span_unenriched_and_warns_once(
        self, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: Any
    ) -> None:
        import logging

        _log.raise_internal_errors = False
        logging.getLogger("otel_excellence").addHandler(caplog.handler)

        def broken(*args: Any) -> None:
            raise RuntimeError("bug in a rule")

        monkeypatch.setattr(telemetry.classifier, "classify_exception", broken)
        tracer = telemetry.tracer_provider.get_tracer("test")
        for _ in range(2):
            with pytest.raises(ValueError), tracer.start_as_current_span("work"):
                raise ValueError("bad input")
        logging.getLogger("otel_excellence").removeHandler(caplog.handler)
        spans = telemetry.spans()
        assert len(spans) == 2
        assert all("otel_excellence.error.category" not in attrs(s) for s in spans)
        assert caplog.text.count("internal error in SpanInsights") == 1


def test_slow_flag_uses_the_span_duration() -> None:
    """A span's own start/end decide slowness, not when it is processed."""
    tel = make_telemetry(Settings(slow_db_threshold_ms=50))
    tracer = tel.tracer_provider.get_tracer("test")
    for pause in (0.0, 0.06):
        with tracer.start_as_current_span(
            "SELECT", kind=SpanKind.CLIENT, attributes={"db.system": "sqlite"}
        ):
            time.sleep(pause)
    fast, slow = tel.spans()
    assert "otel_excellence.db.slow" not in attrs(fast)
    assert attrs(slow)["otel_excellence.db.slow"] is True


class TestCallSites:
    """Spans of one call site are read and sanitized once; each still gets its own
    findings."""

    def test_a_finding_on_one_span_never_reaches_the_next_of_its_call_site(self) -> None:
        tel = make_telemetry(Settings(slow_db_threshold_ms=50))
        tracer = tel.tracer_provider.get_tracer("test")
        site = {"db.system": "sqlite", "db.statement": "SELECT note FROM orders WHERE id = 7"}
        for pause in (0.06, 0.0, 0.06, 0.0):
            with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes=site):
                time.sleep(pause)
        spans = tel.spans()
        assert [attrs(s).get("otel_excellence.db.slow", False) for s in spans] == [
            True, False, True, False
        ]  # fmt: skip
        assert {attrs(s)["db.statement"] for s in spans} == {"SELECT note FROM orders WHERE id = ?"}

    def test_more_call_sites_than_are_remembered_are_all_sanitized(self) -> None:
        tel = make_telemetry(Settings())
        tracer = tel.tracer_provider.get_tracer("test")
        for n in [*range(1200), 3, 1100]:
            with tracer.start_as_current_span(
                "SELECT",
                kind=SpanKind.CLIENT,
                attributes={"db.system": "sqlite", "db.statement": f"SELECT {n} FROM t{n % 7}"},  # noqa: S608 - a span, not a query
            ):
                pass
        statements = [attrs(s)["db.statement"] for s in tel.spans()]
        assert len(statements) == 1202
        assert {s.split(" FROM ")[0] for s in statements} == {"SELECT ?"}
        assert [s.split(" FROM ")[1] for s in statements[-2:]] == ["t3", "t1"]
