"""Delivery accounting: what entered each exporting pipeline, what the backend accepted,
what failed and what was dropped, and how that loss is made visible while running.

Counting wrappers record what was confirmed delivered (so that a bounded shutdown can
say what was not), failed exports by ``error.type``, and the batch processor's drops at
the point where the SDK drops. From those counts come:

- :class:`LossReporter`: one warning at most once a minute while telemetry is lost,
  with counts per signal since the previous one. It runs after each export, on the
  exporter's thread, never on the application's;
- :class:`SelfMetrics`: the OpenTelemetry semantic-convention SDK self-metrics
  (``otel.sdk.exporter.span.exported``, ``otel.sdk.processor.span.processed``, ...) as
  observable instruments over the same counts. The SDK has its own behind
  ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``, but that switch also records two
  metrics on every span started (measured: about twice the SDK's per-span cost, see
  ``docs/reliability.md``); these cost nothing per span.
"""

from __future__ import annotations

import dis
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import TraceFlags

from otel_excellence._diagnostics import logger

# error.type for an export that returned failure without an exception: the semantic
# conventions' fallback value (the exporters log the cause themselves).
EXPORT_FAILED = "_OTHER"
QUEUE_FULL = "queue_full"
REPORT_INTERVAL_S = 60.0
_SAMPLED = TraceFlags.SAMPLED


# Every counter and reporter, to start afresh in a forked child: a lock held by another
# thread at fork time would stay locked there forever (and block the request thread),
# and the parent's counts are not the child's (the batch queues are emptied too).
_FORK_SAFE: weakref.WeakSet[DeliveryCounter | LossReporter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for item in list(_FORK_SAFE):
        item._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class DeliveryCounter:
    """Counts for one exporting pipeline of one signal (all updates under one lock).

    ``accepted`` entered the pipeline; ``submitted`` were handed to the exporter;
    ``delivered`` the backend accepted; ``failed`` / ``dropped`` by ``error.type``.
    """

    def __init__(self, signal: str) -> None:
        self.signal = signal
        # (current length, capacity) of the batch queue, when it can be watched.
        self.queue: Callable[[], tuple[int, int]] | None = None
        self._reset()
        _FORK_SAFE.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self.accepted = 0
        self.submitted = 0
        self.delivered = 0
        self.failed: dict[str, int] = {}
        self.dropped: dict[str, int] = {}

    def accept(self, count: int = 1) -> None:
        with self._lock:
            self.accepted += count

    def submit(self, count: int) -> None:
        with self._lock:
            self.submitted += count

    def deliver(self, count: int) -> None:
        with self._lock:
            self.delivered += count

    def fail(self, count: int, error_type: str) -> None:
        with self._lock:
            self.failed[error_type] = self.failed.get(error_type, 0) + count

    def drop(self, count: int, error_type: str = QUEUE_FULL) -> None:
        with self._lock:
            self.dropped[error_type] = self.dropped.get(error_type, 0) + count

    @property
    def undelivered(self) -> int:
        with self._lock:
            return max(0, self.accepted - self.delivered)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self.submitted, self.delivered, dict(self.failed), dict(self.dropped))


@dataclass(frozen=True)
class Snapshot:
    submitted: int
    delivered: int
    failed: dict[str, int]
    dropped: dict[str, int]

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class LossReporter:
    """At most one warning per ``interval`` while telemetry is lost, with counts.

    The first loss is reported at once; later ones accumulate until the interval has
    passed and the next export comes by. :meth:`check` is called by the counting
    exporters after each export, on the exporter's thread.
    """

    def __init__(
        self,
        endpoint: str,
        interval: float = REPORT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.counters: list[DeliveryCounter] = []
        self._interval = interval
        self._clock = clock
        self._stopped = False
        self._reset()
        _FORK_SAFE.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0
        self._last: float | None = None
        self._reported: dict[int, tuple[int, int]] = {}

    def add(self, counter: DeliveryCounter) -> DeliveryCounter:
        self.counters.append(counter)
        return counter

    def stop(self) -> None:
        """Exit reports what is left (``ShutdownPlan``): no running report after this."""
        self._stopped = True

    def check(self) -> None:
        now = self._clock()
        if self._stopped or now < self._next:
            return
        with self._lock:
            parts = []
            for counter in self.counters:
                snap = counter.snapshot()
                failed, dropped = snap.failed_total, snap.dropped_total
                before_failed, before_dropped = self._reported.get(id(counter), (0, 0))
                self._reported[id(counter)] = (failed, dropped)
                lost = []
                if failed > before_failed:
                    lost.append(f"{failed - before_failed} failed to export")
                if dropped > before_dropped:
                    lost.append(f"{dropped - before_dropped} dropped (queue full)")
                if lost:
                    parts.append(f"{counter.signal}: {', '.join(lost)}")
            if not parts:
                return
            since = "since start" if self._last is None else f"in the last {now - self._last:.0f} s"
            self._last = now
            self._next = now + self._interval
        logger.warning(
            "telemetry is being lost %s (%s) exporting to %s; this line repeats at most "
            "once a minute, the otel.sdk.* self-metrics count every item",
            since,
            "; ".join(parts),
            self.endpoint,
        )


class _ProcessorMetricsHook:
    """Stands in for the SDK batch processor's metrics object (``ProcessorMetricsT``):
    the SDK calls ``drop_items`` exactly where it drops. Forwards to the SDK's own."""

    def __init__(self, counter: DeliveryCounter, inner: Any) -> None:
        self._counter = counter
        self._inner = inner

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        self._inner.register_queue_size(get_queue_size)

    def drop_items(self, count: int, error_type: str = QUEUE_FULL) -> None:
        self._counter.drop(count, error_type)
        self._inner.drop_items(count, error_type)

    def finish_items(self, count: int) -> None:
        self._inner.finish_items(count)


def watch_batch_processor(processor: object, counter: DeliveryCounter) -> bool:
    """Count a ``BatchSpanProcessor``/``BatchLogRecordProcessor``'s drops and queue.

    Uses the SDK's private ``_batch_processor`` (the SDK is pinned to one minor);
    returns False, counting nothing, if that is not there.
    """
    batch = getattr(processor, "_batch_processor", None)
    if batch is None or not hasattr(batch, "_metrics") or not hasattr(batch, "_queue"):
        return False
    batch._metrics = _ProcessorMetricsHook(counter, batch._metrics)
    queue, capacity = batch._queue, int(getattr(batch, "_max_queue_size", 0))
    counter.queue = lambda: (len(queue), capacity)
    return True


class CountingSpanExporter(SpanExporter):
    """Forwards to ``inner``; counts spans submitted, delivered and failed."""

    def __init__(
        self, inner: SpanExporter, counter: DeliveryCounter, reporter: LossReporter | None = None
    ) -> None:
        self.inner = inner
        self._counter = counter
        self._reporter = reporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with _Counted(self._counter, len(spans), self._reporter) as outcome:
            outcome.success = self.inner.export(spans) is SpanExportResult.SUCCESS
        return SpanExportResult.SUCCESS if outcome.success else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    """Forwards to ``inner``; counts log records submitted, delivered and failed."""

    def __init__(
        self,
        inner: LogRecordExporter,
        counter: DeliveryCounter,
        reporter: LossReporter | None = None,
    ) -> None:
        self.inner = inner
        self._counter = counter
        self._reporter = reporter

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        with _Counted(self._counter, len(batch), self._reporter) as outcome:
            outcome.success = self.inner.export(batch) is LogRecordExportResult.SUCCESS
        return LogRecordExportResult.SUCCESS if outcome.success else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingMetricExporter(MetricExporter):
    """Forwards to ``inner`` (a periodic reader's exporter); counts data points."""

    def __init__(
        self, inner: MetricExporter, counter: DeliveryCounter, reporter: LossReporter | None = None
    ) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self.inner = inner
        self._counter = counter
        self._reporter = reporter

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        points = data_points(metrics_data)
        with _Counted(self._counter, points, self._reporter) as outcome:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            outcome.success = result is MetricExportResult.SUCCESS
        return MetricExportResult.SUCCESS if outcome.success else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def data_points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in metrics_data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


class _Outcome:
    success = False


class _Counted:
    """Counts one export: submitted before, delivered or failed after (by error.type)."""

    def __init__(self, counter: DeliveryCounter, count: int, reporter: LossReporter | None):
        self._counter = counter
        self._count = count
        self._reporter = reporter
        self._outcome = _Outcome()

    def __enter__(self) -> _Outcome:
        self._counter.submit(self._count)
        return self._outcome

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None and self._outcome.success:
            self._counter.deliver(self._count)
        else:
            self._counter.fail(self._count, kind.__qualname__ if kind else EXPORT_FAILED)
        if self._reporter is not None:
            self._reporter.check()


class CountingLogRecordProcessor(LogRecordProcessor):
    """Counts log records entering ``inner`` (the exporting processor)."""

    def __init__(self, inner: LogRecordProcessor, counter: DeliveryCounter) -> None:
        self.inner = inner
        self._counter = counter

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self._counter.accept()
        self.inner.on_emit(log_record)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def does_nothing(function: object) -> bool:
    """Whether a function's body is empty (``pass`` or a docstring): it returns None and
    touches nothing, so not calling it changes nothing. Read from its bytecode, so an SDK
    release that gives such a method a body is called again."""
    code = getattr(function, "__code__", None)
    if code is None:
        return False
    try:
        for instruction in dis.get_instructions(code):
            if instruction.opname in {"RESUME", "NOP", "CACHE", "RETURN_VALUE"}:
                continue
            if instruction.opname in {"LOAD_CONST", "RETURN_CONST"} and instruction.argval is None:
                continue
            return False
    except Exception:  # noqa: BLE001 - unreadable code is assumed to do something
        return False
    return True


def works_on_start(processor: SpanProcessor) -> bool:
    """Whether a processor does anything when a span starts (the SDK's batch and simple
    processors do not: a call per span saved for each)."""
    if isinstance(processor, CountingSpanProcessor):
        return works_on_start(processor.inner)
    return not does_nothing(type(processor).on_start)


class CountingSpanProcessor(SpanProcessor):
    """Counts sampled spans entering ``inner`` (one exporting processor)."""

    def __init__(self, inner: SpanProcessor, counter: DeliveryCounter) -> None:
        self.inner = inner
        self._counter = counter

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        # The batch processor ignores unsampled (record-only) spans: so does the count.
        # Its fields and the lock inline, not through properties and accept(): this
        # runs for every span, on the application's thread.
        context = span._context
        if context is not None and context.trace_flags & _SAMPLED:
            counter = self._counter
            with counter._lock:
                counter.accepted += 1
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


# -- self-metrics -----------------------------------------------------------------------------

# signal -> (metric name token, unit, processor component type)
_SIGNALS = {
    "traces": ("span", "{span}", "batching_span_processor"),
    "logs": ("log", "{log_record}", "batching_log_processor"),
    "metrics": ("metric_data_point", "{data_point}", ""),
}


@dataclass(frozen=True)
class Pipeline:
    """One exporting pipeline: its signal, counts, and how to name its components."""

    signal: str  # traces | logs | metrics
    counter: DeliveryCounter
    exporter_type: str
    index: int


def exporter_component_type(exporter: object, signal: str) -> str:
    """The semantic conventions' ``otel.component.type`` for an exporter."""
    token = {"traces": "span", "logs": "log", "metrics": "metric"}[signal]
    module = type(exporter).__module__
    for transport in ("grpc", "http"):
        if module.startswith(f"opentelemetry.exporter.otlp.proto.{transport}"):
            return f"otlp_{transport}_{token}_exporter"
    return f"{module}.{type(exporter).__qualname__}"


class SelfMetrics:
    """The semantic-convention SDK self-metrics, observed from the delivery counts.

    Cumulative counters, so a count made while the backend was down arrives with the
    first export that succeeds.
    """

    def __init__(self, pipelines: Sequence[Pipeline], meter_provider: MeterProvider) -> None:
        self._pipelines = tuple(pipelines)
        meter = meter_provider.get_meter("otel_excellence")
        for signal, (token, unit, _) in _SIGNALS.items():
            if not any(p.signal == signal for p in self._pipelines):
                continue
            meter.create_observable_counter(
                f"otel.sdk.exporter.{token}.exported",
                callbacks=[self._exported(signal)],
                unit=unit,
                description=f"The number of {unit.strip('{}')}s for which the export has "
                "finished, either successful or failed.",
            )
            if signal == "metrics":
                continue
            meter.create_observable_counter(
                f"otel.sdk.processor.{token}.processed",
                callbacks=[self._processed(signal)],
                unit=unit,
                description=f"The number of {unit.strip('{}')}s for which the processing has "
                "finished, either successful or failed.",
            )
            meter.create_observable_up_down_counter(
                f"otel.sdk.processor.{token}.queue.size",
                callbacks=[self._queue(signal, 0)],
                unit=unit,
                description="The number of items in the queue of the batching processor.",
            )
            meter.create_observable_up_down_counter(
                f"otel.sdk.processor.{token}.queue.capacity",
                callbacks=[self._queue(signal, 1)],
                unit=unit,
                description="The maximum number of items the batching processor's queue holds.",
            )

    def _of(self, signal: str) -> Iterator[Pipeline]:
        return (p for p in self._pipelines if p.signal == signal)

    @staticmethod
    def _component(kind: str, index: int) -> dict[str, str]:
        return {"otel.component.type": kind, "otel.component.name": f"{kind}/{index}"}

    def _exported(self, signal: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(_options: CallbackOptions) -> list[Observation]:
            out = []
            for pipeline in self._of(signal):
                snap = pipeline.counter.snapshot()
                attributes = self._component(pipeline.exporter_type, pipeline.index)
                out.append(Observation(snap.delivered, attributes))
                for error_type, count in sorted(snap.failed.items()):
                    out.append(Observation(count, {**attributes, "error.type": error_type}))
            return out

        return observe

    def _processed(self, signal: str) -> Callable[[CallbackOptions], list[Observation]]:
        kind = _SIGNALS[signal][2]

        def observe(_options: CallbackOptions) -> list[Observation]:
            out = []
            for pipeline in self._of(signal):
                snap = pipeline.counter.snapshot()
                attributes = self._component(kind, pipeline.index)
                out.append(Observation(snap.submitted, attributes))
                for error_type, count in sorted(snap.dropped.items()):
                    out.append(Observation(count, {**attributes, "error.type": error_type}))
            return out

        return observe

    def _queue(self, signal: str, which: int) -> Callable[[CallbackOptions], list[Observation]]:
        kind = _SIGNALS[signal][2]

        def observe(_options: CallbackOptions) -> list[Observation]:
            return [
                Observation(pipeline.counter.queue()[which], self._component(kind, pipeline.index))
                for pipeline in self._of(signal)
                if pipeline.counter.queue is not None
            ]

        return observe
