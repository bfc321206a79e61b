"""Telemetry loss is visible while the service runs, and a failing SDK keeps what works.

- a rate-limited warning (at most one a minute, counts per signal since the last one);
- the semantic-convention SDK self-metrics (``otel.sdk.exporter.*.exported`` with
  ``error.type`` on failures, ``otel.sdk.processor.*.processed`` with
  ``error.type=queue_full`` on drops, queue size and capacity), counted where the SDK
  drops and where exports end;
- end to end: the receiver down, then up on the same port: export resumes, the warning
  was printed while running and the failed counts arrive after recovery;
- an SDK that raises while configuring: the other signals and the bounded exit remain.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from otel_excellence._config.configurator import _watch
from otel_excellence._export.delivery import (
    CountingSpanExporter,
    CountingSpanProcessor,
    DeliveryCounter,
    LossReporter,
    Pipeline,
    SelfMetrics,
)
from tests.launch import APPS, BIN, clean_env
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port


@pytest.fixture(autouse=True)
def _info_seen(warnings_seen: pytest.LogCaptureFixture) -> None:
    """This module's lines include INFO ones."""
    warnings_seen.set_level(logging.INFO)


def loss_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "being lost" in r.getMessage()]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestLossReporter:
    def test_first_loss_at_once_then_at_most_one_line_a_minute_with_counts_since(
        self, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """The first loss is reported when it happens; later ones wait for the minute
        and are reported as counts since the previous line, per signal."""
        clock = Clock()
        reporter = LossReporter("http://collector:4317 (grpc)", clock=clock)
        spans = reporter.add(DeliveryCounter("spans"))
        logs = reporter.add(DeliveryCounter("log records"))
        spans.fail(512, "_OTHER")
        reporter.check()
        assert loss_lines(warnings_seen) == [
            "telemetry is being lost since start (spans: 512 failed to export) exporting to "
            "http://collector:4317 (grpc); this line repeats at most once a minute, the "
            "otel.sdk.* self-metrics count every item"
        ]
        for _ in range(10):
            clock.now += 5
            spans.fail(100, "_OTHER")
            spans.drop(7)
            logs.fail(3, "ConnectionError")
            reporter.check()
        assert len(loss_lines(warnings_seen)) == 1
        clock.now += 11
        reporter.check()
        lines = loss_lines(warnings_seen)
        assert len(lines) == 2
        assert (
            "in the last 61 s (spans: 1000 failed to export, 70 dropped (queue full); "
            in (lines[1])
        )
        assert "log records: 30 failed to export)" in lines[1]

    def test_nothing_new_nothing_said_and_nothing_after_stop(
        self, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """Successful exports after a loss say nothing; at exit the summary takes over."""
        clock = Clock()
        reporter = LossReporter("x", clock=clock)
        spans = reporter.add(DeliveryCounter("spans"))
        spans.deliver(10)
        reporter.check()
        assert loss_lines(warnings_seen) == []
        spans.fail(1, "_OTHER")
        reporter.check()
        clock.now += 120
        reporter.check()
        assert len(loss_lines(warnings_seen)) == 1
        reporter.stop()
        spans.fail(1, "_OTHER")
        clock.now += 120
        reporter.check()
        assert len(loss_lines(warnings_seen)) == 1


def test_a_forked_child_counts_afresh_and_never_inherits_a_held_lock() -> None:
    """A counter's lock held by another thread at fork time (an export finishing) must
    not block the child's request threads; the parent's counts are not the child's."""
    counter = DeliveryCounter("spans")
    counter.accept(5)
    counter._lock.acquire()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        counter.accept()
        os._exit(0 if (counter.accepted, counter.undelivered) == (1, 1) else 1)
    counter._lock.release()
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child blocked on the counter's lock")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert counter.accepted == 5


class StuckExporter(SpanExporter):
    """A dead collector behind a long timeout: export does not return until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(30)
        return SpanExportResult.FAILURE


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionResetError("peer went away")


def observed(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], int]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, Any], int]]] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = [
                    (dict(p.attributes or {}), int(p.value)) for p in metric.data.data_points
                ]
    return out


class TestCountsAndSelfMetrics:
    def pipeline(
        self, exporter: SpanExporter, queue: int = 2048
    ) -> tuple[Any, DeliveryCounter, InMemoryMetricReader, BatchSpanProcessor]:
        counter = DeliveryCounter("spans")
        reporter = LossReporter("test")
        reporter.add(counter)
        batch = BatchSpanProcessor(
            CountingSpanExporter(exporter, counter, reporter),
            max_queue_size=queue,
            max_export_batch_size=min(queue, 512),
            schedule_delay_millis=50,
        )
        _watch(batch, counter)
        reader = InMemoryMetricReader()
        SelfMetrics(
            [Pipeline("traces", counter, "otlp_grpc_span_exporter", 0)],
            MeterProvider(metric_readers=[reader]),
        )
        provider = TracerProvider()
        provider.add_span_processor(CountingSpanProcessor(batch, counter))
        return provider.get_tracer("test"), counter, reader, batch

    def test_drops_are_counted_where_the_sdk_drops_and_not_logged_per_span(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A full queue: every dropped span counts as queue_full; the SDK's per-span
        "Queue full" log line (built on the request thread) is not produced."""
        caplog.set_level(logging.DEBUG, logger="opentelemetry")
        exporter = StuckExporter()
        tracer, counter, reader, batch = self.pipeline(exporter, queue=8)
        with tracer.start_as_current_span("first"):
            pass
        assert exporter.entered.wait(10)  # the worker holds one batch, stuck
        for _ in range(100):
            with tracer.start_as_current_span("op"):
                pass
        metrics = observed(reader)
        assert metrics["otel.sdk.processor.span.processed"] == [
            ({"otel.component.type": "batching_span_processor",
              "otel.component.name": "batching_span_processor/0"}, 1),
            ({"otel.component.type": "batching_span_processor",
              "otel.component.name": "batching_span_processor/0",
              "error.type": "queue_full"}, 92),
        ]  # fmt: skip
        assert metrics["otel.sdk.processor.span.queue.size"][0][1] == 8
        assert metrics["otel.sdk.processor.span.queue.capacity"][0][1] == 8
        assert "Queue full" not in caplog.text
        exporter.release.set()
        batch.shutdown()
        assert counter.undelivered == 101

    def test_only_sampled_spans_count_as_entering_the_pipeline(self) -> None:
        """Record-only spans reach every processor but are never exported: counted as
        entering, the exit summary would report them lost."""

        class RecordSome(Sampler):
            def should_sample(
                self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any
            ) -> SamplingResult:
                kept = name == "kept"
                return SamplingResult(Decision.RECORD_AND_SAMPLE if kept else Decision.RECORD_ONLY)

            def get_description(self) -> str:
                return "record-some"

        exporter = InMemorySpanExporter()
        counter = DeliveryCounter("spans")
        reporter = LossReporter("test")
        batch = BatchSpanProcessor(
            CountingSpanExporter(exporter, counter, reporter),
            max_queue_size=2048,
            max_export_batch_size=512,
            schedule_delay_millis=50,
        )
        provider = TracerProvider(sampler=RecordSome())
        provider.add_span_processor(CountingSpanProcessor(batch, counter))
        tracer = provider.get_tracer("test")
        for name in ("kept", "recorded", "kept", "recorded", "recorded"):
            with tracer.start_as_current_span(name):
                pass
        assert provider.force_flush()
        assert [s.name for s in exporter.get_finished_spans()] == ["kept", "kept"]
        assert (counter.accepted, counter.undelivered) == (2, 0)
        provider.shutdown()

    def test_failed_exports_count_with_error_type_and_successes_without(self) -> None:
        """exported{} counts successes; exported{error.type=...} failures: the exception
        class when the exporter raised, _OTHER when it returned failure."""
        tracer, counter, reader, batch = self.pipeline(RaisingExporter())
        for _ in range(3):
            with tracer.start_as_current_span("op"):
                pass
        batch.force_flush()
        counter.fail(2, "_OTHER")
        counter.deliver(5)
        exported = observed(reader)["otel.sdk.exporter.span.exported"]
        component = {
            "otel.component.type": "otlp_grpc_span_exporter",
            "otel.component.name": "otlp_grpc_span_exporter/0",
        }
        assert exported == [
            (component, 5),
            ({**component, "error.type": "ConnectionResetError"}, 3),
            ({**component, "error.type": "_OTHER"}, 2),
        ]
        batch.shutdown()


def _exported_failures(sink: OtlpSink, name: str) -> int:
    total = 0
    for metric in sink.metrics():
        if metric.name != name:
            continue
        for point in metric.points:
            attributes = {kv.key: kv.value.string_value for kv in point.attributes}
            if "error.type" in attributes:
                total = max(total, point.as_int)
    return total


@pytest.mark.timeout(240)
def test_collector_down_then_up_export_resumes_and_the_loss_was_reported_while_running() -> None:
    """A service starts while its receiver is down: within seconds one warning says
    telemetry is being lost (while the service runs, not at exit); the receiver comes
    up on the same port; spans, logs and metrics flow again, and the self-metrics that
    arrive carry the failed counts per signal."""
    port = free_port()
    env = clean_env(
        {
            "OTEL_SERVICE_NAME": "steady",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            # Below the exporters' first backoff (0.8-1.2 s): an export to the closed port
            # fails at once, it is never retried into the time the receiver is up.
            "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5",
        }
    )
    app = subprocess.Popen(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(APPS / "steady_app.py")],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(app.stderr or ()), daemon=True).start()
    sink = OtlpSink(grpc_port=port)
    try:
        # The app runs (instrumentors loaded, spans and logs flowing) and the loss has
        # been reported while it runs.
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready", "".join(stderr)
        started = time.monotonic()
        while not any("being lost" in line for line in stderr):
            assert app.poll() is None, "".join(stderr)
            assert time.monotonic() - started < 60, "".join(stderr)
            time.sleep(0.1)
        # Exports run every 200-500 ms and fail at once: a few seconds more and every
        # signal has failed exports behind it when the receiver comes up.
        time.sleep(3)
        assert app.poll() is None
        sink.start()
        assert sink.wait_for(lambda: len(sink.spans()) > 50, timeout=60), "".join(stderr)
        assert sink.wait_for(lambda: len(sink.logs()) > 50, timeout=60)
        for name in (
            "otel.sdk.exporter.span.exported",
            "otel.sdk.exporter.log.exported",
            "otel.sdk.exporter.metric_data_point.exported",
        ):
            assert sink.wait_for(lambda n=name: _exported_failures(sink, n) > 0, timeout=60), name
        assert app.stdin is not None
        app.stdin.close()
        assert app.wait(60) == 0
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        sink.stop()
    lost = [line for line in stderr if "being lost" in line]
    assert len(lost) == 1, lost  # at most one a minute
    assert "since start" in lost[0]
    assert f"127.0.0.1:{port}" in lost[0]


def test_an_sdk_that_raises_keeps_the_other_signals_and_the_bounded_exit() -> None:
    """The span exporter cannot be built (a bad exporter argument): the SDK's configurator
    raises after traces and never reaches metrics and logs. One warning line, no
    traceback; metrics and logs are set up on their own and exported; exit stays
    bounded and says what was not delivered."""
    with OtlpSink() as sink:
        code = textwrap.dedent(
            """
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from otel_excellence._config.configurator import configure_sdk
            from opentelemetry import _logs, metrics

            configure_sdk(sdk_kwargs={"exporter_args_map": {OTLPSpanExporter: {"nope": 1}}})
            metrics.get_meter("app").create_counter("app.requests").add(1)
            _logs.get_logger("app").emit(body="still logging")
            print("app ran")
            """
        )
        dead = free_port()
        process = subprocess.run(
            [sys.executable, "-c", code],
            env=clean_env(
                {
                    "OTEL_SERVICE_NAME": "half-configured",
                    "OTEL_TRACES_EXPORTER": "otlp",
                    "OTEL_METRICS_EXPORTER": "otlp",
                    "OTEL_LOGS_EXPORTER": "otlp",
                    "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "true",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
                    # Logs go nowhere: only the bounded exit can end their retries.
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"http://127.0.0.1:{dead}",
                    "OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS": "1000",
                }
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert process.returncode == 0, process.stderr
        assert "app ran" in process.stdout
        failed = [line for line in process.stderr.splitlines() if "configuration failed" in line]
        assert len(failed) == 1, process.stderr
        assert "TypeError" in failed[0]
        assert "Traceback" not in process.stderr
        assert sink.wait_for(lambda: any(m.name == "app.requests" for m in sink.metrics()))
        summary = [line for line in process.stderr.splitlines() if "not delivered" in line]
        assert len(summary) == 1, process.stderr
        assert "log records" in summary[0]
