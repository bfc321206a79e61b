"""Shared by the database end-to-end tests (tests/test_e2e_db_*.py): the db_* apps
served under ``opentelemetry-instrument`` (Flask's own server, or the uvicorn CLI),
requests sent as from an upstream service in a trace the test chose, and readers for
what the OTLP receiver got.

Metrics are read as the app's periodic exports (cumulative): one export is a whole
snapshot, so "what the pages cost" is the difference of two snapshots taken while
the app was idle, compared with the app's own count of the statements it executed.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.launch import APPS, BIN, clean_env
from tests.support.otlp_sink import OtlpSink, Span, attributes
from tests.support.ports import free_port, wait_for_port
from tests.support.services import Postgres

SERVER = 2  # SpanKind.SERVER in OTLP
N_PLUS_ONE = "otel_excellence.db.n_plus_one"
COUNT = "otel_excellence.db.n_plus_one.count"
STATEMENT = "otel_excellence.db.n_plus_one.statement"
PARENT = "otel_excellence.db.n_plus_one.parent"
SLOW = "otel_excellence.db.slow"
CACHE_RESULT = "otel_excellence.cache.result"
ROUTE = "otel_excellence.route"
DURATION = "db.client.operation.duration"
SLOW_QUERIES = "otel_excellence.db.slow_queries"
N_PLUS_ONE_METRIC = "otel_excellence.db.n_plus_one"
CACHE_REQUESTS = "otel_excellence.cache.requests"
SQLALCHEMY_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
# BEGIN/COMMIT/ROLLBACK: some drivers send them through their traced API (asyncpg),
# others inside the protocol (psycopg, sqlite3); the apps never execute them
# themselves. The statement counts leave them out (see the tests that use this).
TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})

# Fast export for every app; the slow threshold far from both the apps' slow report
# (1.2 s) and an ordinary query on a loaded machine (milliseconds).
TELEMETRY_ENV = {
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_BLRP_SCHEDULE_DELAY": "200",
    "OTEL_METRIC_EXPORT_INTERVAL": "500",
    "OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS": "1000",
}


def pg_database(server: Postgres, name: str) -> str:
    """A fresh database on the test's PostgreSQL server: ``user@host:port/name``."""
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgres@127.0.0.1:{server.port}/{name}"


@dataclass
class Reply:
    path: str
    trace_id: str | None  # the trace the test put the request in, if any
    body: Any


@dataclass
class ServedApp:
    """One app process serving HTTP on a loopback port."""

    command: list[str]
    env: dict[str, str]
    port: int
    log_path: str = field(default_factory=lambda: tempfile.mkstemp(suffix=".log")[1])
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServedApp:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                env=clean_env({**TELEMETRY_ENV, **self.env, "PORT": str(self.port)}),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_for_port(self.port, 120) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.command} did not start:\n{self.log()}")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def get(self, path: str, *, traced: bool = True) -> Reply:
        """GET ``path``; if ``traced``, as a call from an upstream service in a new trace."""
        headers = {}
        trace_id = None
        if traced:
            trace_id = secrets.token_hex(16)
            headers["traceparent"] = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        request = urllib.request.Request(self.url + path, headers=headers)  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            body = json.load(response)
        return Reply(path, trace_id, body)

    def get_all(self, paths: Iterable[str], *, traced: bool = True) -> dict[str, Reply]:
        return {path: self.get(path, traced=traced) for path in paths}

    def get_at_once(self, paths: Sequence[str]) -> dict[str, Reply]:
        """All of ``paths`` at the same moment, one client thread each."""
        with ThreadPoolExecutor(len(paths)) as pool:
            return {reply.path: reply for reply in pool.map(self.get, paths)}

    def statements(self, system: str) -> int:
        """The app's own count of the statements it has executed on ``system``."""
        counts: dict[str, int] = self.get("/statements", traced=False).body
        return counts.get(system, 0)


def otlp_env(sink: OtlpSink, service: str) -> dict[str, str]:
    return {
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }


@contextmanager
def flask_app(app: str, env: Mapping[str, str]) -> Iterator[ServedApp]:
    """``opentelemetry-instrument python tests/apps/<app>`` (Flask's threaded server)."""
    command = [str(BIN / "opentelemetry-instrument"), sys.executable, str(APPS / app)]
    served = ServedApp(command, dict(env), free_port()).start()
    try:
        yield served
    finally:
        served.stop()


@contextmanager
def uvicorn_app(module: str, env: Mapping[str, str]) -> Iterator[ServedApp]:
    """``opentelemetry-instrument uvicorn <module>:app``, the way ASGI services start."""
    port = free_port()
    command = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "uvicorn"),
        f"{module}:app",
        f"--app-dir={APPS}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--no-access-log",
    ]
    served = ServedApp(command, dict(env), port).start()
    try:
        yield served
    finally:
        served.stop()


# -- traces -----------------------------------------------------------------------------
def all_spans(sink: OtlpSink) -> list[Span]:
    """Every span received, once (an export retried after a timeout arrives twice)."""
    return list({(s.trace_id, s.span_id): s for s in sink.spans()}.values())


def trace_spans(sink: OtlpSink, trace_id: str | None) -> list[Span]:
    return [s for s in all_spans(sink) if s.trace_id == trace_id]


def server_span(spans: Sequence[Span]) -> Span:
    """The request's server span: the local root of the process's part of the trace."""
    servers = [s for s in spans if s.kind == SERVER]
    assert len(servers) == 1, [(s.name, s.kind) for s in spans]
    return servers[0]


def server_span_of_route(sink: OtlpSink, route: str) -> Span:
    """The one server span of ``route`` (for requests sent without a trace)."""
    return server_span([s for s in all_spans(sink) if s.attributes.get("http.route") == route])


def wait_for_servers(sink: OtlpSink, replies: Iterable[Reply], timeout: float = 60) -> None:
    """Until the server span (which ends after its statements) of each reply has arrived:
    by trace id for traced requests, else by route."""
    wanted = {(r.trace_id, None) if r.trace_id else (None, r.path) for r in replies}

    def arrived() -> bool:
        servers = [s for s in sink.spans() if s.kind == SERVER]
        have = {(s.trace_id, None) for s in servers}
        have |= {(None, s.attributes.get("http.route")) for s in servers}
        return wanted <= have

    assert sink.wait_for(arrived, timeout=timeout), "server spans missing"


def n_plus_one_events(span: Span) -> list[dict[str, Any]]:
    return [attrs for name, attrs in span.events if name == N_PLUS_ONE]


def flagged(spans: Sequence[Span]) -> list[Span]:
    """Spans carrying any N+1 finding, as attributes or as events."""
    return [
        s
        for s in spans
        if any(key.startswith(N_PLUS_ONE) for key in s.attributes) or n_plus_one_events(s)
    ]


def findings(spans: Sequence[Span]) -> list[tuple[str, Any, list[Any]]]:
    """Each flagged span as (name, count attribute, counts of its N+1 events)."""
    return [
        (s.name, s.attributes.get(COUNT), sorted(e.get(COUNT) for e in n_plus_one_events(s)))
        for s in flagged(spans)
    ]


def overlap(a: Span, b: Span) -> bool:
    return a.start_ns < b.end_ns and b.start_ns < a.end_ns


# -- metrics ----------------------------------------------------------------------------
@dataclass
class Snapshot:
    """One periodic metric export of the app: every instrument's cumulative points."""

    points: dict[str, list[Any]]

    def of(self, name: str) -> list[Any]:
        return self.points.get(name, [])

    def total(self, name: str, **match: Any) -> float:
        """Summed counts (histogram) or values (counter) over matching attribute sets."""
        out = 0.0
        for point in self.of(name):
            if all(point_attributes(point).get(k) == v for k, v in match.items()):
                out += point.count if hasattr(point, "bucket_counts") else point.as_int
        return out


def point_attributes(point: Any) -> dict[str, Any]:
    return attributes(point.attributes)


def _latest_export(sink: OtlpSink, since_ns: int) -> Snapshot | None:
    for request in reversed(list(sink.metric_requests)):
        points: dict[str, list[Any]] = {}
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind:
                        points.setdefault(metric.name, []).extend(getattr(metric, kind).data_points)
        times = [p.time_unix_nano for found in points.values() for p in found]
        if times:
            return Snapshot(points) if min(times) >= since_ns else None
    return None


def snapshot_now(sink: OtlpSink, timeout: float = 30) -> Snapshot:
    """The first export collected after this call (the app must be idle meanwhile)."""
    since = time.time_ns()
    found: Snapshot | None = None

    def exported() -> bool:
        nonlocal found
        found = _latest_export(sink, since)
        return found is not None

    assert sink.wait_for(exported, timeout=timeout), "no metric export arrived"
    assert found is not None
    return found


def operations(snapshot: Snapshot, system: str) -> dict[str, float]:
    """``db.client.operation.duration`` point counts by operation, for one system."""
    out: dict[str, float] = {}
    for point in snapshot.of(DURATION):
        values = point_attributes(point)
        if values.get("db.system.name") == system:
            operation = str(values.get("db.operation.name"))
            out[operation] = out.get(operation, 0) + point.count
    return out


def statement_points(snapshot: Snapshot, system: str) -> float:
    """Duration points of ``system``, transaction control left out."""
    return sum(
        count
        for operation, count in operations(snapshot, system).items()
        if operation.rstrip(";").upper() not in TRANSACTION_CONTROL
    )
