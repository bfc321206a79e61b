"""Database findings for an app on a driver alone, no ORM (issue 9): sqlite3 and
psycopg (3) used directly inside Flask requests, under ``opentelemetry-instrument``.

The requests come without a ``traceparent``: each server span is a trace's true root.
Each page is requested once, so a server span is found by its route.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.db_e2e import (
    COUNT,
    DURATION,
    PARENT,
    SLOW,
    SLOW_QUERIES,
    STATEMENT,
    Snapshot,
    all_spans,
    findings,
    flagged,
    flask_app,
    operations,
    otlp_env,
    pg_database,
    point_attributes,
    server_span_of_route,
    snapshot_now,
    statement_points,
    trace_spans,
    wait_for_servers,
)
from tests.support.otlp_sink import OtlpSink, Span
from tests.support.services import Postgres

pytestmark = pytest.mark.services

PAGES = (
    "/titles/few",  # 3 lookups, different parameters
    "/titles/many",  # 9 lookups, different parameters
    "/titles/same",  # 6 lookups, the same parameters
    "/titles/literals",  # 9 lookups, values written into the text
    "/titles/rendered",  # 9 lookups inside the app's "render titles.html" span
    "/reports/slow",
)
RENDER_SPAN = "render titles.html"


@dataclass(repr=False)
class Run:
    sink: OtlpSink
    system: str
    executed: int  # the app's own count, between the two snapshots
    before: Snapshot
    after: Snapshot

    def spans(self, route: str) -> list[Span]:
        return trace_spans(self.sink, self.server(route).trace_id)

    def server(self, route: str) -> Span:
        return server_span_of_route(self.sink, route)


@pytest.fixture(scope="module", params=["sqlite3", "psycopg"])
def run(
    request: pytest.FixtureRequest, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    driver = request.param
    if driver == "sqlite3":
        system, database = "sqlite", str(tmp_path_factory.mktemp("driver") / "app.db")
    else:
        system, database = "postgresql", "postgresql://" + pg_database(postgres, "driver_pg3")
    with OtlpSink() as sink:
        env = {**otlp_env(sink, f"db-e2e-{driver}"), "DRIVER": driver, "DATABASE": database}
        with flask_app("db_driver_app.py", env) as app:
            try:
                started = app.statements(system)
                before = snapshot_now(sink)
                replies = app.get_all(PAGES, traced=False)
                executed = app.statements(system) - started
                wait_for_servers(sink, replies.values())
                after = snapshot_now(sink)
            except Exception:
                print(app.log())
                raise
        yield Run(sink, system, executed, before, after)


def test_three_lookups_are_not_an_n_plus_one(run: Run) -> None:
    """3 executions of one statement: below the threshold, nothing flagged."""
    assert findings(run.spans("/titles/few")) == []


def test_nine_lookups_are_flagged_on_the_server_span(run: Run) -> None:
    """9 executions with different parameters: an N+1 of count 9 on the request."""
    server = run.server("/titles/many")
    assert findings(run.spans("/titles/many")) == [(server.name, 9, [9])]
    assert "FROM books" in server.attributes[STATEMENT]
    assert server.attributes[PARENT] == server.name


def test_the_same_parameters_six_times_are_not_an_n_plus_one(run: Run) -> None:
    """The driver hook sees the parameters: one lookup repeated with the same ones is a
    repeated query, not an N+1."""
    assert findings(run.spans("/titles/same")) == []


def test_values_in_the_text_are_an_n_plus_one_by_repetition(run: Run) -> None:
    """Statements that differ only by literal values are one normalised statement:
    9 of them are an N+1, found by repetition."""
    server = run.server("/titles/literals")
    assert findings(run.spans("/titles/literals")) == [(server.name, 9, [9])]


def test_lookups_in_a_render_span_flag_the_request_and_name_the_render(run: Run) -> None:
    """Executions under a span of the app's own: the request is flagged, naming it."""
    server = run.server("/titles/rendered")
    assert findings(run.spans("/titles/rendered")) == [(server.name, 9, [9])]
    assert server.attributes[PARENT] == RENDER_SPAN


def test_findings_are_only_on_the_flagged_requests(run: Run) -> None:
    """Across all the app exported, the N+1 findings are exactly the expected ones."""
    found = sorted(
        ((s.name, s.attributes.get(COUNT)) for s in flagged(all_spans(run.sink))), key=str
    )
    expected = sorted(
        (run.server(route).name, 9)
        for route in ("/titles/many", "/titles/literals", "/titles/rendered")
    )
    assert found == expected


def test_a_slow_query_is_flagged_and_counted_once(run: Run) -> None:
    """A 1.2 s statement (threshold 1 s): one flagged span, counted once."""
    slow = [s for s in all_spans(run.sink) if s.attributes.get(SLOW)]
    assert [s.trace_id for s in slow] == [run.server("/reports/slow").trace_id]
    assert run.after.total(SLOW_QUERIES) == 1


def test_one_duration_point_per_statement_the_app_executed(run: Run) -> None:
    """``db.client.operation.duration`` gets one point per statement the app executed
    (its own count), and records the driver's system."""
    recorded = statement_points(run.after, run.system) - statement_points(run.before, run.system)
    assert recorded == run.executed, (recorded, run.executed, operations(run.after, run.system))
    systems = {point_attributes(p).get("db.system.name") for p in run.after.of(DURATION)}
    assert systems == {run.system}
