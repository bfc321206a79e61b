"""The distro's own metrics, aggregated in process and handed to every metric reader.

Why not the SDK's instruments: one ``Histogram.record`` or ``Counter.add`` costs about as
much as a whole SDK span (measured 8-10 µs on SDK 1.45: a ``Measurement`` object, the
current context, a frozenset of the attributes hashed per call, view matching, the
exemplar reservoir, two locks). Our metrics are recorded where each span ends, on the
application's thread, so the SDK's path would double the cost of every database call.
Our attribute sets are few and known in advance, so each is resolved once to a ``Cell``
that the hot path updates under its own lock: a bisect and three additions.

The OpenTelemetry specification's answer for metrics aggregated outside the SDK is a
``MetricProducer`` that readers pull from; SDK 1.45 has no such hook, so ``attach()``
wraps each reader's collect callable (the one the ``MeterProvider`` gives it) and appends
our scope to what the SDK collected, honouring each reader's temporality. What readers
receive is the SDK's own data model (``Metric``, ``Histogram``, ``Sum``, exemplars with
the span that recorded them), so every exporter encodes it as it encodes the SDK's.
Views do not apply to these instruments.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics._internal.exemplar import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext
from opentelemetry.util.types import AttributeValue

from otel_excellence._diagnostics import internal_error

SCOPE = InstrumentationScope("otel_excellence")
_MAX_CELLS_PER_INSTRUMENT = 2000  # attribute sets; beyond it, an overflow set


def _exemplars_wanted() -> bool:
    # The SDK's own switch (trace_based by default): our exemplars are always the span
    # that recorded the value, which is sampled, so trace_based and always_on agree.
    return os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "").strip().lower() != "always_off"


class _Cell:
    """One attribute set of one instrument: cumulative state since the process began."""

    __slots__ = ("attributes", "count", "counts", "exemplars", "lock", "max", "min", "sum")

    def __init__(self, attributes: Mapping[str, AttributeValue], buckets: int) -> None:
        self.attributes = dict(attributes)
        self.lock = threading.Lock()
        self.count = 0
        self.sum: float = 0
        self.min = math.inf
        self.max = -math.inf
        self.counts = [0] * buckets
        # Per bucket (histograms) or one (counters): the last value with its span, as
        # (value, time, span context); Exemplar objects, and the ids, are read at
        # collection (SpanContext's ids are properties: two calls per record).
        self.exemplars: list[tuple[float, int, SpanContext] | None] = [None] * max(buckets, 1)


class _Instrument:
    def __init__(self, name: str, unit: str, description: str) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self.cells: dict[Any, _Cell] = {}
        self._lock = threading.Lock()
        self._exemplars = _exemplars_wanted()

    def _buckets(self) -> int:
        return 0

    def cell(self, key: Any, attributes: Mapping[str, AttributeValue]) -> _Cell:
        """The cell for an attribute set, created once; ``key`` is its cheap identity."""
        found = self.cells.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self.cells.get(key)
            if found is None:
                if len(self.cells) >= _MAX_CELLS_PER_INSTRUMENT:
                    # Bounded like the SDK's cardinality limit: the rest share one set.
                    key, attributes = "overflow", {"otel.metric.overflow": True}
                    found = self.cells.get(key)
                if found is None:
                    found = self.cells[key] = _Cell(attributes, self._buckets())
        return found


class FastHistogram(_Instrument):
    """Explicit-bucket histogram; ``record`` is the hot path."""

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        super().__init__(name, unit, description)
        self.bounds = tuple(bounds)

    def _buckets(self) -> int:
        return len(self.bounds) + 1

    def record(self, cell: _Cell, value: float, context: SpanContext | None = None) -> None:
        index = bisect_left(self.bounds, value)  # upper bounds are inclusive, as the SDK's
        # The exemplar and min()/max() written out: a call each, on every database span.
        exemplar = (
            (value, time.time_ns(), context) if context is not None and self._exemplars else None
        )
        # acquire()/release(), not a with block: on CPython 3.11 ``with lock`` costs about
        # 1,950 instructions, the two calls about 900 (docs/reliability.md).
        lock = cell.lock
        lock.acquire()
        try:
            cell.count += 1
            cell.sum += value
            cell.counts[index] += 1
            if value < cell.min:  # noqa: PLR1730 - min() is a call per record
                cell.min = value
            if value > cell.max:  # noqa: PLR1730
                cell.max = value
            if exemplar is not None:
                cell.exemplars[index] = exemplar
        finally:
            lock.release()


class FastCounter(_Instrument):
    """Monotonic sum; ``add`` is the hot path."""

    def add(self, cell: _Cell, amount: int = 1, context: SpanContext | None = None) -> None:
        exemplar = (  # the span that counted it, as in record()
            (amount, time.time_ns(), context) if context is not None and self._exemplars else None
        )
        lock = cell.lock  # as in record()
        lock.acquire()
        try:
            cell.sum += amount
            if exemplar is not None:
                cell.exemplars[0] = exemplar
        finally:
            lock.release()


class FastMetrics:
    """Our instruments, and what each attached reader last received of them (for delta)."""

    def __init__(self) -> None:
        _ALL.add(self)
        self.instruments: list[_Instrument] = []
        self._start = time.time_ns()
        # Per delta reader (by id): what it was last sent per (instrument, cell key), and
        # when; a delta point covers the time since.
        self._sent: dict[int, dict[tuple[str, Any], tuple[int, float, list[int]]]] = {}
        self._sent_at: dict[int, int] = {}
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """In a forked child: new locks (a reader thread may have held one at the fork,
        and no thread will release it here) and no counts of the parent's (which the
        parent reports itself; the child's cumulative series start now)."""
        self._lock = threading.Lock()
        self._start = time.time_ns()
        self._sent.clear()
        self._sent_at.clear()
        for instrument in self.instruments:
            instrument._lock = threading.Lock()
            for cell in instrument.cells.values():
                cell.lock = threading.Lock()
                cell.count = 0
                cell.sum = 0
                cell.min, cell.max = math.inf, -math.inf
                cell.counts = [0] * len(cell.counts)
                cell.exemplars = [None] * len(cell.exemplars)

    def histogram(
        self, name: str, unit: str, description: str, bounds: Sequence[float]
    ) -> FastHistogram:
        instrument = FastHistogram(name, unit, description, bounds)
        self.instruments.append(instrument)
        return instrument

    def counter(self, name: str, unit: str, description: str) -> FastCounter:
        instrument = FastCounter(name, unit, description)
        self.instruments.append(instrument)
        return instrument

    # -- collection -------------------------------------------------------------------
    def collect(self, reader: Any) -> list[Metric]:
        """Every instrument's data, in the reader's temporality."""
        temporality = getattr(reader, "_instrument_class_temporality", {})
        now = time.time_ns()
        metrics: list[Metric] = []
        with self._lock:
            sent = self._sent.setdefault(id(reader), {})
            since = self._sent_at.get(id(reader), self._start)
            self._sent_at[id(reader)] = now
            for instrument in self.instruments:
                kind = SdkHistogram if isinstance(instrument, FastHistogram) else SdkCounter
                delta = temporality.get(kind) is AggregationTemporality.DELTA
                metric = self._metric(instrument, now, sent if delta else None, since)
                if metric is not None:
                    metrics.append(metric)
        return metrics

    def _metric(
        self,
        instrument: _Instrument,
        now: int,
        sent: dict[tuple[str, Any], tuple[int, float, list[int]]] | None,
        since: int,
    ) -> Metric | None:
        temporality = (
            AggregationTemporality.CUMULATIVE if sent is None else AggregationTemporality.DELTA
        )
        points: list[Any] = []
        for key, cell in list(instrument.cells.items()):
            with cell.lock:
                count, total, counts = cell.count, cell.sum, list(cell.counts)
                low, high = cell.min, cell.max
                exemplars = [
                    Exemplar({}, value, at, context.span_id, context.trace_id)
                    for value, at, context in filter(None, cell.exemplars)
                ]
            start = self._start
            if sent is not None:
                start = since
                before = sent.get((instrument.name, key), (0, 0, [0] * len(counts)))
                sent[(instrument.name, key)] = (count, total, counts)
                count, total = count - before[0], total - before[1]
                counts = [a - b for a, b in zip(counts, before[2], strict=True)]
                # min and max of the interval are not kept per reader (delta readers are
                # rare; a per-reader window would cost on every record): the interval's
                # values lie within the cumulative range, which is reported instead.
                exemplars = [e for e in exemplars if e.time_unix_nano >= since]
            if isinstance(instrument, FastHistogram):
                if count == 0 and sent is not None:
                    continue
                points.append(
                    HistogramDataPoint(
                        cell.attributes, start, now, count, total, counts,
                        instrument.bounds, low if count else 0.0, high if count else 0.0,
                        exemplars,
                    )
                )  # fmt: skip
            else:
                if total == 0 and sent is not None:
                    continue
                points.append(NumberDataPoint(cell.attributes, start, now, int(total), exemplars))
        if not points:
            return None
        if isinstance(instrument, FastHistogram):
            data: Any = Histogram(data_points=points, aggregation_temporality=temporality)
        else:
            data = Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=True)
        return Metric(instrument.name, instrument.description, instrument.unit, data)

    def attach(self, readers: Sequence[Any], resource: Resource) -> None:
        """Make each reader's collection include our metrics."""
        for reader in readers:
            collect = getattr(reader, "_collect", None)
            if not callable(collect) or getattr(collect, "__otel_excellence__", False):
                continue
            reader._collect = self._collecting(reader, collect, resource)

    def _collecting(
        self, reader: Any, collect: Callable[..., MetricsData | None], resource: Resource
    ) -> Callable[..., MetricsData | None]:
        def collect_with_ours(*args: Any, **kwargs: Any) -> MetricsData | None:
            collected = collect(*args, **kwargs)
            try:
                ours = self.collect(reader)
            except Exception:  # noqa: BLE001 - the SDK's metrics still go out
                internal_error("collecting otel-excellence metrics")
                return collected
            if not ours:
                return collected
            scope = ScopeMetrics(SCOPE, ours, "")
            if collected is None or not collected.resource_metrics:
                return MetricsData([ResourceMetrics(resource, [scope], resource.schema_url)])
            first = collected.resource_metrics[0]
            scopes = list(first.scope_metrics)
            for index, existing in enumerate(scopes):
                if existing.scope.name == SCOPE.name and not existing.scope.version:
                    # Our SDK-instrument metrics (self-metrics): one scope entry in all.
                    merged_scope = [*existing.metrics, *ours]
                    scopes[index] = ScopeMetrics(existing.scope, merged_scope, existing.schema_url)
                    break
            else:
                scopes.append(scope)
            merged = ResourceMetrics(first.resource, scopes, first.schema_url)
            return MetricsData([merged, *collected.resource_metrics[1:]])

        collect_with_ours.__otel_excellence__ = True  # type: ignore[attr-defined]
        return collect_with_ours


_ALL: weakref.WeakSet[FastMetrics] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for metrics in list(_ALL):
        metrics.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def readers_of(meter_provider: Any) -> tuple[Sequence[Any], Resource]:
    """The SDK meter provider's readers and resource (private in SDK 1.45).

    A provider that is not the SDK's (metrics disabled) has none; an SDK provider whose
    private surface moved is an internal error: our metrics would silently go missing.
    """
    config = getattr(meter_provider, "_sdk_config", None)
    resource = getattr(config, "resource", None) or Resource.create({})
    readers = getattr(meter_provider, "_metric_readers", None)
    if readers is None and config is not None:
        try:
            raise AttributeError("MeterProvider._metric_readers")
        except AttributeError:
            internal_error("finding the SDK's metric readers")
    return tuple(readers or ()), resource
