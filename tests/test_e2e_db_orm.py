"""Database findings on real ORM apps, end to end (issue 9).

Each stack is a real web app under ``opentelemetry-instrument`` with the driver
instrumentation installed beside SQLAlchemy's, as ``opentelemetry-bootstrap -a
install`` leaves them: every statement makes an ORM span and a driver span.

- Flask + SQLAlchemy on SQLite (sqlite3), PostgreSQL with psycopg2, with psycopg (3);
- FastAPI under uvicorn + SQLAlchemy's async engine on PostgreSQL (asyncpg) and SQLite
  (aiosqlite), with ``redis.asyncio``.

One app process per stack serves every page once (see ``PAGES``); the tests read what
the OTLP receiver got. Requests carry a ``traceparent`` as from an upstream service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.apps.db_models import DASHBOARD, MANY, RENDER_SPAN, RENDERED
from tests.support.db_e2e import (
    CACHE_REQUESTS,
    CACHE_RESULT,
    COUNT,
    DURATION,
    N_PLUS_ONE,
    N_PLUS_ONE_METRIC,
    PARENT,
    ROUTE,
    SLOW,
    SLOW_QUERIES,
    SQLALCHEMY_SCOPE,
    STATEMENT,
    Reply,
    ServedApp,
    Snapshot,
    all_spans,
    findings,
    flagged,
    flask_app,
    n_plus_one_events,
    operations,
    otlp_env,
    overlap,
    pg_database,
    point_attributes,
    server_span,
    snapshot_now,
    statement_points,
    trace_spans,
    uvicorn_app,
    wait_for_servers,
)
from tests.support.otlp_sink import OtlpSink, Span
from tests.support.services import Postgres, Redis

pytestmark = pytest.mark.services

PAGES = (
    "/authors/few",
    "/authors/many",
    "/authors/same",
    "/authors/rendered",
    "/dashboard",
    "/reports/slow",
    "/cache/present",
    "/cache/absent",
)
PAIRED = {f"/authors/paired/{n}": n for n in (7, 11)}  # sent at once: 7 and 11 lazy loads


@dataclass(frozen=True)
class Stack:
    system: str  # db.system.name
    launch: Callable[[dict[str, str]], AbstractContextManager[ServedApp]]
    url: Callable[[Postgres, Path], str]


def _flask(env: dict[str, str]) -> AbstractContextManager[ServedApp]:
    return flask_app("db_sync_app.py", env)


def _uvicorn(env: dict[str, str]) -> AbstractContextManager[ServedApp]:
    return uvicorn_app("db_async_app", env)


STACKS = {
    "sqlite": Stack("sqlite", _flask, lambda pg, tmp: f"sqlite:///{tmp}/app.db"),
    "psycopg2": Stack(
        "postgresql", _flask, lambda pg, tmp: "postgresql+psycopg2://" + pg_database(pg, "orm_pg2")
    ),
    "psycopg": Stack(
        "postgresql", _flask, lambda pg, tmp: "postgresql+psycopg://" + pg_database(pg, "orm_pg3")
    ),
    "asyncpg": Stack(
        "postgresql",
        _uvicorn,
        lambda pg, tmp: "postgresql+asyncpg://" + pg_database(pg, "orm_asyncpg"),
    ),
    "aiosqlite": Stack("sqlite", _uvicorn, lambda pg, tmp: f"sqlite+aiosqlite:///{tmp}/app.db"),
}


@dataclass(repr=False)
class Run:
    """What one app process was asked, what it said it executed, what it exported."""

    sink: OtlpSink
    system: str
    replies: dict[str, Reply]  # by path
    executed: int  # statements the app counted itself, between the two snapshots
    before: Snapshot  # idle, after start-up (schema, data, pool warmed)
    after: Snapshot  # idle, after every page

    def spans(self, path: str) -> list[Span]:
        return trace_spans(self.sink, self.replies[path].trace_id)

    def server(self, path: str) -> Span:
        return server_span(self.spans(path))


@pytest.fixture(scope="module", params=list(STACKS))
def run(
    request: pytest.FixtureRequest,
    postgres: Postgres,
    redis_srv: Redis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    stack = STACKS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    with OtlpSink() as sink:
        env = {
            **otlp_env(sink, f"db-e2e-{request.param}"),
            "DB_URL": stack.url(postgres, tmp),
            "REDIS_URL": redis_srv.url,
        }
        with stack.launch(env) as app:
            try:
                started = app.statements(stack.system)
                before = snapshot_now(sink)
                replies = app.get_all(PAGES) | app.get_at_once(list(PAIRED))
                executed = app.statements(stack.system) - started
                wait_for_servers(sink, replies.values())
                after = snapshot_now(sink)
            except Exception:
                print(app.log())
                raise
        yield Run(sink, stack.system, replies, executed, before, after)


def test_three_lazy_loads_are_not_an_n_plus_one(run: Run) -> None:
    """3 lazy loads, each an ORM and a driver span: below the threshold, nothing flagged."""
    assert findings(run.spans("/authors/few")) == []


def test_nine_lazy_loads_are_flagged_on_the_server_span_with_count_9(run: Run) -> None:
    """The N+1 lands on the request's server span with the real count, naming the span the
    statements ran under (the server span itself here); no other span is flagged."""
    server = run.server("/authors/many")
    assert findings(run.spans("/authors/many")) == [(server.name, MANY, [MANY])]
    assert server.attributes[N_PLUS_ONE] is True
    assert "FROM books" in server.attributes[STATEMENT]
    assert server.attributes[PARENT] == server.name


def test_the_same_parameters_six_times_are_not_an_n_plus_one(run: Run) -> None:
    """One query repeated with identical parameters is a repeated query, not an N+1."""
    assert findings(run.spans("/authors/same")) == []


def test_lazy_loads_in_a_render_span_flag_the_request_and_name_the_render(run: Run) -> None:
    """Lazy loads while a template renders: the finding is on the request, not on the
    render span, and the render span is named as the immediate parent."""
    spans = run.spans("/authors/rendered")
    server = server_span(spans)
    [render] = [s for s in spans if s.name == RENDER_SPAN]
    assert findings(spans) == [(server.name, RENDERED, [RENDERED])]
    assert server.attributes[PARENT] == RENDER_SPAN
    assert render.parent_span_id == server.span_id


def test_each_pattern_in_one_request_keeps_its_own_count(run: Run) -> None:
    """Books lazy-loaded for 8 authors and reviews for 6, in one request: the attributes
    describe the most repeated pattern, and one span event per pattern has its count."""
    server = run.server("/dashboard")
    assert findings(run.spans("/dashboard")) == [(server.name, DASHBOARD[0], sorted(DASHBOARD))]
    assert "FROM books" in server.attributes[STATEMENT]
    events = {
        ("books" if "FROM books" in e[STATEMENT] else "reviews"): e
        for e in n_plus_one_events(server)
    }
    assert events["books"][COUNT] == DASHBOARD[0]
    assert "FROM reviews" in events["reviews"][STATEMENT]
    assert events["reviews"][COUNT] == DASHBOARD[1]
    assert {e[PARENT] for e in events.values()} == {server.name}


def test_concurrent_requests_each_keep_their_own_count(run: Run) -> None:
    """Two requests at once (two threads in Flask; one event loop under uvicorn), with 7
    and 11 lazy loads: each server span has its own exact count."""
    servers = {path: run.server(path) for path in PAIRED}
    assert overlap(*servers.values()), "the two requests did not run at the same time"
    for path, server in servers.items():
        n = PAIRED[path]
        assert findings(run.spans(path)) == [(server.name, n, [n])]
        assert server.attributes[PARENT] == server.name


def test_findings_are_only_on_the_flagged_requests(run: Run) -> None:
    """Across all the app exported (start-up included, and driver spans wherever their
    instrumentation parented them), the N+1 findings are exactly the expected ones."""
    expected = [
        (run.server("/authors/many").name, MANY),
        (run.server("/authors/rendered").name, RENDERED),
        (run.server("/dashboard").name, DASHBOARD[0]),
        *((run.server(path).name, n) for path, n in PAIRED.items()),
    ]
    found = [(s.name, s.attributes.get(COUNT)) for s in flagged(all_spans(run.sink))]
    assert sorted(found, key=str) == sorted(expected, key=str)


def test_a_slow_query_is_flagged_on_one_span_and_counted_once(run: Run) -> None:
    """A 1.2 s statement (threshold 1 s) is one slow query: one flagged span in all the
    app exported (the SQLAlchemy span, not its driver twin) and a count of 1."""
    slow = [s for s in all_spans(run.sink) if s.attributes.get(SLOW)]
    assert len(slow) == 1, [(s.name, s.scope) for s in slow]
    assert slow[0].trace_id == run.replies["/reports/slow"].trace_id
    assert slow[0].scope == SQLALCHEMY_SCOPE
    assert run.after.total(SLOW_QUERIES) == 1


def test_one_duration_point_per_statement_the_app_executed(run: Run) -> None:
    """``db.client.operation.duration`` gets one point per statement the app executed
    (its own count, from a SQLAlchemy listener), over every attribute set: the ORM span
    and the driver span of one execution count once."""
    recorded = statement_points(run.after, run.system) - statement_points(run.before, run.system)
    before, after = operations(run.before, run.system), operations(run.after, run.system)
    per_operation = {op: count - before.get(op, 0) for op, count in after.items()}
    assert recorded == run.executed, (recorded, run.executed, per_operation)


def test_pool_checkouts_are_not_database_operations(run: Run) -> None:
    """SQLAlchemy's ``connect`` spans (pool checkouts) record no duration point."""
    names = {str(point_attributes(p).get("db.operation.name")) for p in run.after.of(DURATION)}
    assert "connect" not in {name.lower() for name in names}, names


def test_n_plus_one_counted_once_per_flagged_pattern_by_route(run: Run) -> None:
    """``otel_excellence.db.n_plus_one`` counts each pattern of each flagged request once,
    labelled with the request's route and the statement."""
    by_route: dict[str, float] = {}
    for point in run.after.of(N_PLUS_ONE_METRIC):
        label = str(point_attributes(point).get(ROUTE))
        by_route[label] = by_route.get(label, 0) + point.as_int
    route = {path: str(run.server(path).attributes["http.route"]) for path in run.replies}
    assert by_route == {
        route["/authors/many"]: 1,
        route["/authors/rendered"]: 1,
        route["/dashboard"]: 2,
        route[next(iter(PAIRED))]: 2,  # one route, two requests
    }
    [many] = [
        p
        for p in run.after.of(N_PLUS_ONE_METRIC)
        if point_attributes(p).get(ROUTE) == route["/authors/many"]
    ]
    statement = point_attributes(many)[STATEMENT]
    assert len(statement) <= 256
    assert run.server("/authors/many").attributes[STATEMENT].startswith(statement)


def test_cache_hit_and_miss_on_the_span_and_in_the_counter(run: Run) -> None:
    """A GET that finds its key is a hit, one that does not a miss (``redis.asyncio`` on
    the async stack): on the Redis span and in ``otel_excellence.cache.requests``."""
    for path, result in (("/cache/present", "hit"), ("/cache/absent", "miss")):
        [get] = [s for s in run.spans(path) if s.attributes.get("db.system") == "redis"]
        assert get.attributes.get(CACHE_RESULT) == result, (path, get.attributes)
    hits = run.after.total(CACHE_REQUESTS, **{CACHE_RESULT: "hit"})
    misses = run.after.total(CACHE_REQUESTS, **{CACHE_RESULT: "miss"})
    assert (hits, misses) == (1, 1)
