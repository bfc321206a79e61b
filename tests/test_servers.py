"""Real servers under ``opentelemetry-instrument``: pre-fork workers, SIGTERM, console output.

Each configuration runs twice with the same requests: plainly (the reference: what the
server prints and how it ends on SIGTERM) and under ``opentelemetry-instrument``,
exporting to a real OTLP receiver with batch and metric intervals of a minute, so that
every span and metric point is still queued in the workers when SIGTERM arrives.
Requests go in concurrent waves until every worker has served some. The commands are
the ones ``docs/production.md`` gives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.otlp_sink import Metric, OtlpSink, Span
from tests.support.ports import free_port
from tests.support.servers import ServerRun, console_diff, flush_times, normalised, run_server

pytestmark = pytest.mark.services

SPAN_KIND_SERVER = 2
BOUND_S = 2.0  # OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS, the default
# Generous: two runs of a server on a loaded 2-core machine differ by seconds.
BOUND_MS = 2000
# A supervisor flushes after its workers (two bounds), and interpreters that imported
# every instrumented library take seconds to tear down on a loaded 2-core machine.
SLACK_S = 10.0
# The Flask and ASGI instrumentations' request histogram (semantic conventions before
# OTEL_SEMCONV_STABILITY_OPT_IN=http).
HTTP_DURATION = "http.server.duration"


@dataclass(frozen=True)
class Server:
    name: str
    command: tuple[str, ...]
    workers: int
    protocol: str
    # False: the server starts telemetry itself (configure() in gunicorn's post_fork).
    wrapper: bool = True

    def argv(self, port: int) -> list[str]:
        return [part.format(port=port) for part in self.command]


GUNICORN = ("gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "2", "--access-logfile", "-")
UVICORN = ("uvicorn", "--host", "127.0.0.1", "--port", "{port}")
SERVERS = [
    Server("gunicorn-sync", (*GUNICORN, "wsgi_app:app"), 2, "grpc"),
    Server("gunicorn-sync-preload", (*GUNICORN, "--preload", "wsgi_app:app"), 2, "grpc"),
    Server(
        "gunicorn-gthread",
        (*GUNICORN, "--worker-class", "gthread", "--threads", "4", "wsgi_app:app"),
        2,
        "grpc",
    ),
    Server(
        "gunicorn-gthread-preload",
        (*GUNICORN, "--worker-class", "gthread", "--threads", "4", "--preload", "wsgi_app:app"),
        2,
        "http/protobuf",
    ),
    Server("uvicorn", (*UVICORN, "asgi_app:app"), 1, "http/protobuf"),
    # uvicorn kills a worker that has not answered its health check within 5 s of its
    # start; the wrapper's start-up (every installed instrumentation) can take longer on
    # a loaded machine. docs/production.md says so.
    Server(
        "uvicorn-workers",
        (*UVICORN, "--workers", "2", "--timeout-worker-healthcheck", "30", "asgi_app:app"),
        2,
        "grpc",
    ),
    Server(
        "gunicorn-uvicorn-worker",
        (*GUNICORN, "--worker-class", "uvicorn.workers.UvicornWorker", "asgi_app:app"),
        2,
        "grpc",
    ),
    Server(
        "gunicorn-post-fork-configure",
        (*GUNICORN, "--config", "post_fork.py", "wsgi_app:app"),
        2,
        "http/protobuf",
        wrapper=False,
    ),
]


@dataclass
class Outcome:
    server: Server
    plain: ServerRun
    run: ServerRun
    spans: list[Span]
    metrics: list[Metric]

    def spans_named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]

    @property
    def requests(self) -> int:
        return len(self.run.served)


@pytest.fixture(scope="module", params=SERVERS, ids=lambda s: s.name)
def outcome(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    server: Server = request.param
    # gunicorn's control socket goes there (else ~/.gunicorn/, shared with any other
    # gunicorn on the machine); the same for both runs, so their output matches.
    runtime = {"XDG_RUNTIME_DIR": str(tmp_path_factory.mktemp("runtime"))}
    with OtlpSink() as sink:
        port = free_port()
        run = run_server(
            server.argv(port),
            {
                **runtime,
                "OTEL_SERVICE_NAME": f"servers-{server.name}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": (
                    sink.grpc_endpoint if server.protocol == "grpc" else sink.http_endpoint
                ),
                "OTEL_EXPORTER_OTLP_PROTOCOL": server.protocol,
                # Nothing leaves before SIGTERM: what arrives is what the shutdown sent.
                "OTEL_BSP_SCHEDULE_DELAY": "60000",
                "OTEL_BLRP_SCHEDULE_DELAY": "60000",
                "OTEL_METRIC_EXPORT_INTERVAL": "60000",
                "OTEL_EXCELLENCE_LOG_LEVEL": "DEBUG",  # each process says how long it flushed
            },
            port=port,
            workers=server.workers,
            wrapper=server.wrapper,
        )
        plain_port = free_port()
        plain = run_server(
            server.argv(plain_port),
            runtime if server.wrapper else {**runtime, "OTEL_SDK_DISABLED": "true"},
            port=plain_port,
            workers=server.workers,
            count=len(run.served),
            wrapper=False,
        )
        yield Outcome(server, plain, run, sink.spans(), sink.metrics())


class TestWorkersReportThemselves:
    def test_every_request_span_carries_the_pid_of_the_process_that_served_it(
        self, outcome: Outcome
    ) -> None:
        """Not the master's pid (the resource is detected before the fork)."""
        by_id = {s.span_id: s for s in outcome.spans}
        for served in outcome.run.served:
            [work] = [
                s
                for s in outcome.spans_named("app.work")
                if s.attributes["app.request"] == str(served.i)
            ]
            server_span = by_id[work.parent_span_id]  # also proves context reached the thread
            assert server_span.kind == SPAN_KIND_SERVER
            assert work.resource["process.pid"] == served.pid
            assert server_span.resource["process.pid"] == served.pid

    def test_each_worker_has_its_own_service_instance_id(self, outcome: Outcome) -> None:
        """Every worker that served requests reports one instance id, unlike its siblings'."""
        assert len(outcome.run.worker_pids) >= outcome.server.workers, outcome.run.served
        instances = {
            (s.resource["process.pid"], s.resource["service.instance.id"]) for s in outcome.spans
        }
        pids = {pid for pid, _ in instances}
        assert pids >= outcome.run.worker_pids
        assert len({instance for _, instance in instances}) == len(instances) == len(pids)


class TestSigtermLosesNothing:
    def test_every_queued_span_arrives(self, outcome: Outcome) -> None:
        """One server span and one app span per request, none missing, none twice."""
        server_spans = [s for s in outcome.spans if s.kind == SPAN_KIND_SERVER]
        assert len(server_spans) == outcome.requests
        requests = Counter(s.attributes["app.request"] for s in outcome.spans_named("app.work"))
        assert requests == Counter(str(served.i) for served in outcome.run.served)
        assert "not delivered" not in outcome.run.stderr

    def test_every_workers_final_metric_points_arrive_without_colliding(
        self, outcome: Outcome
    ) -> None:
        """Each worker's request-duration histogram arrives under its own identity; their
        counts add up to the requests served (no worker's points lost, none counted twice)."""
        points = [
            (m.resource["process.pid"], m.resource["service.instance.id"], p.count)
            for m in outcome.metrics
            if m.name == HTTP_DURATION
            for p in m.points
        ]
        assert sum(count for _, _, count in points) == outcome.requests
        identities = {(pid, instance) for pid, instance, _ in points}
        assert {pid for pid, _ in identities} == outcome.run.worker_pids
        assert len({instance for _, instance in identities}) == len(identities)


class TestTheServerBehavesAsWithoutTelemetry:
    def test_exit_status_is_the_plain_runs(self, outcome: Outcome) -> None:
        """gunicorn exits 0; uvicorn re-raises SIGTERM and dies by it, flush or not."""
        assert outcome.run.returncode == outcome.plain.returncode, outcome.run.stderr

    def test_each_process_flushes_within_the_bound(self, outcome: Outcome) -> None:
        """Every worker (and the supervisor) flushed in at most the bound; the whole
        server ended within the plain run's time plus two bounds and slack."""
        flushes = flush_times(outcome.run.stderr)
        assert len(flushes) >= len(outcome.run.worker_pids), outcome.run.stderr
        assert max(flushes) <= BOUND_MS + 500
        assert outcome.run.shutdown_seconds <= (
            outcome.plain.shutdown_seconds + 2 * BOUND_S + SLACK_S
        )

    def test_console_output_is_the_plain_runs(self, outcome: Outcome) -> None:
        """Every line the server and the app print, timestamps and pids aside."""
        for plain, run in (
            (outcome.plain.stdout, outcome.run.stdout),
            (outcome.plain.stderr, outcome.run.stderr),
        ):
            assert normalised(run) == normalised(plain), console_diff(plain, run)

    def test_the_apps_unconfigured_warnings_still_print(self, outcome: Outcome) -> None:
        """``logging.getLogger("app").warning(...)`` reaches stderr via Python's last
        resort in both runs (the comparison above is not of two empty outputs)."""
        for run in (outcome.plain, outcome.run):
            served_lines = [line for line in run.stderr.splitlines() if line.startswith("request ")]
            assert len(served_lines) == outcome.requests, run.stderr
