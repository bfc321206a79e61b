"""The distro's in-process metrics as a reader receives them: histogram and counter
points in the SDK's data model, exemplars from the recording span, and fork safety."""

from __future__ import annotations

import os

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import SpanContext, TraceFlags

from otel_excellence._export.metrics import FastMetrics, readers_of


def _setup() -> tuple[FastMetrics, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    metrics = FastMetrics()
    metrics.attach(*readers_of(MeterProvider(metric_readers=[reader])))
    return metrics, reader


def _points(reader: InMemoryMetricReader, name: str) -> list[object]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


class TestFastMetrics:
    def test_histogram_points_buckets_and_exemplar(self) -> None:
        """Values fall in the semconv-style buckets (upper bounds inclusive), with the
        recording span as the exemplar."""
        metrics, reader = _setup()
        histogram = metrics.histogram("h", "s", "d", (0.1, 1.0))
        cell = histogram.cell("k", {"a": "b"})
        span = SpanContext(1, 2, False, TraceFlags(1))
        for value in (0.05, 0.1, 0.5, 3.0):
            histogram.record(cell, value, span)
        [point] = _points(reader, "h")
        assert point.count == 4  # type: ignore[attr-defined]
        assert point.bucket_counts == [2, 1, 1]  # type: ignore[attr-defined]
        assert point.min == 0.05 and point.max == 3.0  # type: ignore[attr-defined]
        assert {e.span_id for e in point.exemplars} == {2}  # type: ignore[attr-defined]

    def test_counter_points_carry_the_last_counting_span_as_exemplar(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A count with a span carries it as the exemplar (trace and span ids, value);
        without a span, or with exemplars switched off, there is none."""
        metrics, reader = _setup()
        counter = metrics.counter("c", "{x}", "d")
        cell = counter.cell("k", {"a": "b"})
        counter.add(cell, 1, SpanContext(7, 8, False, TraceFlags(1)))
        counter.add(cell, 2, SpanContext(7, 9, False, TraceFlags(1)))
        [point] = _points(reader, "c")
        assert point.value == 3  # type: ignore[attr-defined]
        [(trace_id, span_id, value)] = [
            (e.trace_id, e.span_id, e.value)
            for e in point.exemplars  # type: ignore[attr-defined]
        ]
        assert (trace_id, span_id, value) == (7, 9, 2)
        bare = metrics.counter("bare", "{x}", "d")
        bare.add(bare.cell("k", {}), 1)
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "always_off")
        off = metrics.counter("off", "{x}", "d")
        off.add(off.cell("k", {}), 1, SpanContext(7, 8, False, TraceFlags(1)))
        assert [p.exemplars for p in _points(reader, "bare") + _points(reader, "off")] == [[], []]  # type: ignore[attr-defined]

    def test_a_forked_child_records_with_fresh_locks_and_its_own_counts(self) -> None:
        """A fork while the parent's reader holds a cell's lock must not block the
        child, and the child does not report the parent's counts again."""
        metrics, reader = _setup()
        counter = metrics.counter("c", "{x}", "d")
        cell = counter.cell("k", {"a": "b"})
        counter.add(cell, 5)
        read, write = os.pipe()
        with cell.lock:  # as if collection were in progress at the fork
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through the pipe
                counter.add(cell, 1)
                [point] = _points(reader, "c")
                os.write(write, str(point.value).encode())  # type: ignore[attr-defined]
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert os.read(read, 64) == b"1"
        [point] = _points(reader, "c")
        assert point.value == 5  # type: ignore[attr-defined]
