"""Delivery accounting: what entered each exporting pipeline and what the backend accepted.

Counting exporters record what was confirmed delivered, so that a bounded shutdown can
say what was not.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class DeliveryCounter:
    """How many items of one signal entered the pipeline and how many were delivered."""

    def __init__(self, signal: str) -> None:
        self.signal = signal
        self._lock = threading.Lock()
        self.accepted = 0
        self.delivered = 0

    def accept(self, count: int = 1) -> None:
        with self._lock:
            self.accepted += count

    def deliver(self, count: int) -> None:
        with self._lock:
            self.delivered += count

    @property
    def undelivered(self) -> int:
        with self._lock:
            return max(0, self.accepted - self.delivered)


class CountingSpanExporter(SpanExporter):
    """Forwards to ``inner`` and counts spans the backend accepted."""

    def __init__(self, inner: SpanExporter, counter: DeliveryCounter) -> None:
        self.inner = inner
        self._counter = counter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self._counter.deliver(len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    """Forwards to ``inner`` and counts log records the backend accepted."""

    def __init__(self, inner: LogRecordExporter, counter: DeliveryCounter) -> None:
        self.inner = inner
        self._counter = counter

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = self.inner.export(batch)
        if result is LogRecordExportResult.SUCCESS:
            self._counter.deliver(len(batch))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


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


class CountingSpanProcessor(SpanProcessor):
    """Counts spans entering ``inner`` (one exporting processor)."""

    def __init__(self, inner: SpanProcessor, counter: DeliveryCounter) -> None:
        self.inner = inner
        self._counter = counter

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._counter.accept()
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
