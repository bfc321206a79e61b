"""A Celery prefork worker and its producer, both under ``opentelemetry-instrument``,
with the official Celery instrumentation and a real Redis broker.

The worker runs twice with the same tasks: plainly (the reference: its console output
and how it ends on SIGTERM, a warm shutdown) and instrumented, exporting to a real OTLP
receiver with a batch interval of a minute, so every task span is still queued in the
pool processes when SIGTERM arrives. The commands are the ones ``docs/production.md``
gives.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from otel_excellence import _semconv as sc
from otel_excellence import classify_exception
from tests.launch import BIN, clean_env
from tests.support.otlp_sink import Log, OtlpSink, Span
from tests.support.servers import (
    SERVER_APPS,
    WRAPPER,
    Served,
    ServerRun,
    console_diff,
    flush_times,
    normalised,
    run_server,
)
from tests.support.services import Redis

pytestmark = pytest.mark.services

WORKER = (
    "celery", "-A", "celery_app", "worker", "--pool", "prefork", "--concurrency", "2",
    "--loglevel", "INFO", "--without-mingle", "--without-gossip", "--without-heartbeat",
)  # fmt: skip
ADDS = 8
ITEMS = 6  # celery_app.ITEMS: list_items runs its SELECT once per item
BOUND_S = 2.0
BOUND_MS = 2000
# A supervisor flushes after its workers (two bounds), and interpreters that imported
# every instrumented library take seconds to tear down on a loaded 2-core machine.
SLACK_S = 10.0
SPAN_KIND_CONSUMER = 5
STATUS_ERROR = 2


@dataclass
class Outcome:
    plain: ServerRun
    run: ServerRun
    producer_stderr: str
    spans: list[Span]
    logs: list[Log]

    def task_spans(self, task: str) -> list[Span]:
        return [s for s in self.spans if s.name == f"run/celery_app.{task}"]

    def one(self, name: str) -> Span:
        [span] = [s for s in self.spans if s.name == name]
        return span


def _produce(env: dict[str, str], wrapper: bool, stderr: list[str]) -> list[Served]:
    command = [str(BIN / "python"), "celery_producer.py", str(ADDS)]
    result = subprocess.run(
        [WRAPPER, *command] if wrapper else command,
        env=clean_env(env),
        cwd=SERVER_APPS,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    stderr.append(result.stderr)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    # Served.i: the line's position; pid None for the failing task.
    return [Served(i=n, pid=line["pid"] or 0) for n, line in enumerate(lines)]


@pytest.fixture(scope="module")
def outcome(redis_srv: Redis) -> Iterator[Outcome]:
    with OtlpSink() as sink:
        producer_stderr: list[str] = []
        env = {
            "REDIS_URL": f"redis://127.0.0.1:{redis_srv.port}/1",
            "OTEL_SERVICE_NAME": "celery-worker",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
            "OTEL_BLRP_SCHEDULE_DELAY": "60000",
            "OTEL_METRIC_EXPORT_INTERVAL": "60000",
            "OTEL_EXCELLENCE_LOG_LEVEL": "DEBUG",  # each process says how long it flushed
            "OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS": "200",
        }
        producer_env = {**env, "OTEL_SERVICE_NAME": "celery-producer"}
        run = run_server(
            WORKER,
            env,
            port=0,
            workers=2,
            wrapper=True,
            ready=lambda: True,  # tasks wait in Redis until the worker is up
            work=lambda: _produce(producer_env, True, producer_stderr),
        )
        plain_env = {"REDIS_URL": f"redis://127.0.0.1:{redis_srv.port}/2"}
        plain = run_server(
            WORKER,
            plain_env,
            port=0,
            workers=2,
            wrapper=False,
            ready=lambda: True,
            work=lambda: _produce(plain_env, False, []),
        )
        yield Outcome(plain, run, producer_stderr[0], sink.spans(), sink.logs())


class TestTasksInTheProducersTrace:
    def test_every_task_span_is_a_child_of_its_publish_span(self, outcome: Outcome) -> None:
        """``run/<task>`` (worker) under ``apply_async/<task>`` (producer), one trace."""
        batch = outcome.one("producer.batch")
        by_id = {s.span_id: s for s in outcome.spans}
        runs = [s for s in outcome.spans if s.name.startswith("run/")]
        assert len(runs) == ADDS + 3
        for span in runs:
            publish = by_id[span.parent_span_id]
            assert publish.name == span.name.replace("run/", "apply_async/")
            assert publish.parent_span_id == batch.span_id
            assert span.trace_id == batch.trace_id
            assert span.kind == SPAN_KIND_CONSUMER
            assert publish.resource["service.name"] == "celery-producer"
            assert span.resource["service.name"] == "celery-worker"


class TestFindingsOnTaskSpans:
    def test_n_plus_one_is_flagged_on_the_task_span_with_its_count(self, outcome: Outcome) -> None:
        """The task span is the worker's local root: the N+1 lands there, nowhere else in
        the worker, naming the span the statements ran under."""
        [task] = outcome.task_spans("list_items")
        assert task.attributes[sc.N_PLUS_ONE] is True
        assert task.attributes[sc.N_PLUS_ONE_COUNT] == ITEMS
        assert "SELECT name FROM item WHERE id = ?" in task.attributes[sc.N_PLUS_ONE_STATEMENT]
        assert task.attributes[sc.N_PLUS_ONE_PARENT] == task.name
        worker = [s for s in outcome.spans if s.resource["service.name"] == "celery-worker"]
        assert [s.name for s in worker if s.attributes.get(sc.N_PLUS_ONE)] == [task.name]

    def test_the_slow_query_is_flagged_and_no_other(self, outcome: Outcome) -> None:
        """The 300 ms statement under the task, at a 200 ms threshold."""
        [task] = outcome.task_spans("slow_report")
        slow = [s for s in outcome.spans if s.attributes.get(sc.DB_SLOW)]
        assert len(slow) == 1
        assert slow[0].parent_span_id == task.span_id
        assert "pause_ms" in str(slow[0].attributes.get("db.statement"))

    def test_a_failed_task_carries_its_error_classification(self, outcome: Outcome) -> None:
        """Classified like any failed span: type, category, retryability."""
        [task] = outcome.task_spans("charge")
        verdict = classify_exception(TimeoutError("payment provider timed out"))
        assert task.status_code == STATUS_ERROR
        assert task.attributes[sc.ERROR_TYPE] == "TimeoutError"
        assert task.attributes[sc.ERROR_CATEGORY] == verdict.category
        assert task.attributes[sc.ERROR_RETRYABLE] == verdict.retryable


class TestPoolProcesses:
    def test_task_spans_carry_the_pid_of_the_pool_process_that_ran_them(
        self, outcome: Outcome
    ) -> None:
        """Not the worker's main process (the resource is detected before the fork)."""
        ran_by = [s.pid for s in outcome.run.served if s.pid]
        spans = [s for s in outcome.spans if s.name.startswith("run/") and "charge" not in s.name]
        assert sorted(s.resource["process.pid"] for s in spans) == sorted(ran_by)
        assert outcome.run.pid not in ran_by

    def test_each_pool_process_has_its_own_service_instance_id(self, outcome: Outcome) -> None:
        worker_spans = [s for s in outcome.spans if s.resource["service.name"] == "celery-worker"]
        identities = {
            (s.resource["process.pid"], s.resource["service.instance.id"]) for s in worker_spans
        }
        assert (
            len({pid for pid, _ in identities})
            == len({i for _, i in identities})
            == len(identities)
        )


class TestWarmShutdownOnSigterm:
    def test_every_queued_task_span_arrives(self, outcome: Outcome) -> None:
        """Every task ran in a pool process that ends with os._exit: all spans flushed."""
        assert len([s for s in outcome.spans if s.name.startswith("run/")]) == ADDS + 3
        assert "not delivered" not in outcome.run.stderr
        assert "not delivered" not in outcome.producer_stderr

    def test_exit_status_is_the_plain_runs_and_each_flush_within_the_bound(
        self, outcome: Outcome
    ) -> None:
        """Exit 0 after the warm shutdown; each pool process and the main process
        flushed in at most the bound; the worker ended within the plain run's time plus
        two bounds and slack."""
        assert outcome.run.returncode == outcome.plain.returncode == 0
        flushes = flush_times(outcome.run.stderr)
        assert len(flushes) >= 3, outcome.run.stderr  # two pool processes and the main one
        assert max(flushes) <= BOUND_MS + 500
        assert outcome.run.shutdown_seconds <= (
            outcome.plain.shutdown_seconds + 2 * BOUND_S + SLACK_S
        )

    def test_the_workers_log_records_are_exported_despite_celerys_root_hijack(
        self, outcome: Outcome
    ) -> None:
        """Celery clears the root logger's handlers; the distro's bridge is not one of
        them: each task's "received" line arrives as a log record."""
        received = [r for r in outcome.logs if str(r.body).startswith("Task celery_app.")
                    and "received" in str(r.body)]  # fmt: skip
        assert len(received) == ADDS + 3

    def test_console_output_is_the_plain_runs(self, outcome: Outcome) -> None:
        """Banner, task lines, the failed task's traceback, the warm shutdown line."""
        for plain, run in (
            (outcome.plain.stdout, outcome.run.stdout),
            (outcome.plain.stderr, outcome.run.stderr),
        ):
            assert normalised(run) == normalised(plain), console_diff(plain, run)
        assert "Warm shutdown" in outcome.plain.stdout + outcome.plain.stderr
