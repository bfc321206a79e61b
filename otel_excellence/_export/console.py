"""The dev console: all three signals on the terminal, nothing on the network.

``OTEL_EXCELLENCE_DEV=true`` selects it for traces, metrics and logs (or name
``devconsole`` in any ``OTEL_*_EXPORTER``). Each trace is printed when its local root
span ends, as an indented tree with durations and the attributes that matter, and each
log record emitted inside a span under that span; slow database calls, N+1 roots and
errors are marked (in colour on a terminal). At exit it prints a summary of the metrics
and what the distro's processors found, computed from the exported spans alone: N+1
patterns and slow statements by route, errors by category, cache hit ratio.

The three exporters are separate SDK objects; they share one ``DevConsole`` per process
so that log records can be printed inside their trace and the summaries once, in order.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    Histogram,
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from otel_excellence import _semconv as sc

_MAX_BUFFERED_TRACES = 1000
_MAX_SPANS_PER_TRACE = 2000  # a long-lived root (a worker loop) must not hold everything
_REMOTE_ROOT_GRACE_S = 1.0
_MAX_FINDINGS = 50
_STATEMENT_WIDTH = 90
_MAX_LOGS_PER_TRACE = 200
_LOG_WIDTH = 160
_MAX_SERIES_SHOWN = 8  # per metric in the exit summary
_LOG_FLUSH_TIMEOUT_MS = 1000


@dataclass(frozen=True)
class Style:
    """ANSI colours on a terminal (unless NO_COLOR), plain text otherwise."""

    enabled: bool

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    @classmethod
    def for_stream(cls, stream: TextIO) -> Style:
        isatty = getattr(stream, "isatty", None)
        tty = bool(isatty and isatty())
        return cls(enabled=tty and "NO_COLOR" not in os.environ)


def _ms(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return (span.end_time - span.start_time) / 1e6


def _short(text: str, width: int = _STATEMENT_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _display_name(name: str, attributes: dict[str, Any]) -> str:
    # SQLAlchemy names spans "<verb> <database>"; for SQLite the database is a file path.
    verb, _, rest = name.partition(" ")
    if rest.startswith("/") and sc.first(attributes, sc.DB_SYSTEM) is not None:
        return f"{verb} {os.path.basename(rest)}"
    return name


def describe(span: ReadableSpan, style: Style) -> str:
    """One line for a span: name, duration, the attributes that matter, the marks."""
    attributes = dict(span.attributes or {})
    parts = [style.bold(_display_name(span.name, attributes)), style.dim(f"{_ms(span):.1f} ms")]
    if span.kind is SpanKind.SERVER:
        parts.append(style.dim("server"))
    statement = sc.first(attributes, sc.DB_STATEMENT)
    if isinstance(statement, str) and statement:
        parts.append(style.dim(_short(statement)))
    status = sc.first(attributes, sc.HTTP_STATUS)
    if status is not None:
        parts.append(f"→ {status}")
    cache = attributes.get(sc.CACHE_RESULT)
    if cache == "hit":
        parts.append(style.green("cache hit"))
    elif cache == "miss":
        parts.append(style.yellow("cache miss"))
    if attributes.get(sc.DB_SLOW):
        parts.append(style.yellow("⚠ slow query"))
    if attributes.get(sc.N_PLUS_ONE):
        count = attributes.get(sc.N_PLUS_ONE_COUNT)
        parts.append(style.yellow(f"⚠ N+1: same statement {count}×"))
    category = attributes.get(sc.ERROR_CATEGORY)
    if category:
        retry = "retryable" if attributes.get(sc.ERROR_RETRYABLE) else "not retryable"
        parts.append(style.red(f"✗ {category} ({retry}) {attributes.get(sc.ERROR_TYPE, '')}"))
    elif span.status.status_code is StatusCode.ERROR:
        parts.append(style.red("✗ error"))
    return "  ".join(parts)


def _repeat_key(span: ReadableSpan) -> tuple[str, Any]:
    return span.name, sc.first(dict(span.attributes or {}), sc.DB_STATEMENT)


def _span_id(span: ReadableSpan) -> int | None:
    return span.context.span_id if span.context is not None else None


def _log_time(record: ReadableLogRecord) -> int:
    log = record.log_record
    return int(log.timestamp or log.observed_timestamp or 0)


def describe_log(record: ReadableLogRecord, style: Style) -> str:
    """One line for a log record: severity, logger, the message (shortened)."""
    log = record.log_record
    severity = (log.severity_text or "LOG").upper()
    number = log.severity_number.value if log.severity_number is not None else 0
    paint = style.red if number >= 17 else style.yellow if number >= 13 else style.dim
    scope = record.instrumentation_scope.name if record.instrumentation_scope else ""
    body = _short(str(log.body), _LOG_WIDTH)
    exception = (log.attributes or {}).get(sc.EXCEPTION_TYPE)
    suffix = f"  {style.red(str(exception))}" if exception else ""
    origin = f"{style.dim(scope)}: " if scope and scope != "root" else ""
    return f"{paint('log ' + severity)}  {origin}{body}{suffix}"


def render_tree(
    spans: Sequence[ReadableSpan],
    style: Style,
    logs: Sequence[ReadableLogRecord] = (),
) -> list[str]:
    """A trace's spans as indented lines; runs of identical leaf siblings collapse to one.

    Log records are drawn under the span they were emitted in, in time order among its
    children; records of spans not in the trace go under the root.
    """
    ids = {_span_id(s) for s in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: s.start_time or 0)
    roots = children.get(None, [])
    logs_under: dict[int | None, list[ReadableLogRecord]] = {}
    for record in logs:
        span_id = record.log_record.span_id
        owner = span_id if span_id in ids else (_span_id(roots[0]) if roots else None)
        logs_under.setdefault(owner, []).append(record)

    def groups(below: list[ReadableSpan]) -> list[list[ReadableSpan]]:
        # An N+1 shows as one line "×8" instead of eight identical ones.
        out: list[list[ReadableSpan]] = []
        for child in below:
            leaf = _span_id(child) not in children and _span_id(child) not in logs_under
            previous = out[-1] if out else None
            if (
                leaf
                and previous is not None
                and _span_id(previous[0]) not in children
                and _span_id(previous[0]) not in logs_under
                and _repeat_key(previous[0]) == _repeat_key(child)
            ):
                previous.append(child)
            else:
                out.append([child])
        return out

    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, branch: str, below_prefix: str) -> None:
        lines.append(prefix + branch + describe(span, style))
        items: list[tuple[int, list[ReadableSpan] | ReadableLogRecord]] = [
            (group[0].start_time or 0, group) for group in groups(children.get(_span_id(span), []))
        ]
        items += [(_log_time(r), r) for r in logs_under.get(_span_id(span), [])]
        items.sort(key=lambda item: item[0])
        for index, (_, item) in enumerate(items):
            last = index == len(items) - 1
            twig = "└─ " if last else "├─ "
            indent = below_prefix + ("   " if last else "│  ")
            if isinstance(item, ReadableLogRecord):
                lines.append(f"{below_prefix}{twig}{describe_log(item, style)}")
            elif len(item) == 1:
                walk(item[0], below_prefix, twig, indent)
            else:
                total = sum(_ms(s) for s in item)
                lines.append(
                    f"{below_prefix}{twig}{describe(item[0], style)}  "
                    f"{style.yellow(f'×{len(item)}')} {style.dim(f'({total:.1f} ms in all)')}"
                )

    for root in roots:
        walk(root, "", "", "")
    return lines


def _local_root(span: ReadableSpan, by_id: dict[int | None, ReadableSpan]) -> ReadableSpan:
    """The span where this process's part of the trace starts (a server or task span)."""
    seen = 0
    while span.parent is not None and not span.parent.is_remote and seen < _MAX_SPANS_PER_TRACE:
        parent = by_id.get(span.parent.span_id)
        if parent is None:
            break
        span, seen = parent, seen + 1
    return span


def _n_plus_one_patterns(span: ReadableSpan) -> list[tuple[str, int, str]]:
    """(statement, count, parent) for each N+1 pattern flagged on ``span``.

    One event per pattern where the span has them (several patterns under one root),
    else the span's own attributes (the most repeated pattern).
    """
    patterns = []
    for event in span.events:
        if event.name == sc.N_PLUS_ONE:
            attributes = dict(event.attributes or {})
            patterns.append(
                (
                    str(attributes.get(sc.N_PLUS_ONE_STATEMENT, "")),
                    int(attributes.get(sc.N_PLUS_ONE_COUNT, 0)),  # type: ignore[arg-type]
                    str(attributes.get(sc.N_PLUS_ONE_PARENT, "")),
                )
            )
    attributes = dict(span.attributes or {})
    if not patterns and attributes.get(sc.N_PLUS_ONE):
        patterns.append(
            (
                str(attributes.get(sc.N_PLUS_ONE_STATEMENT, "")),
                int(attributes.get(sc.N_PLUS_ONE_COUNT, 0)),  # type: ignore[arg-type]
                str(attributes.get(sc.N_PLUS_ONE_PARENT, "") or span.name),
            )
        )
    return patterns


@dataclass
class Findings:
    """What the processors flagged, accumulated from exported spans (bounded).

    N+1 patterns and slow statements are grouped by route: the name of the local root
    span they belong to (the request's server span, a task's span), with the count seen
    in each request.
    """

    # (route, statement, parent) -> the count in each request that had the pattern
    n_plus_one: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    # (route, statement) -> durations in ms
    slow: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    error_traces: Counter[str] = field(default_factory=Counter)
    cache: Counter[str] = field(default_factory=Counter)

    def add_trace(self, spans: Sequence[ReadableSpan]) -> None:
        categories = set()
        by_id = {_span_id(s): s for s in spans}
        for span in spans:
            attributes = dict(span.attributes or {})
            patterns = _n_plus_one_patterns(span)
            if patterns:
                route = _local_root(span, by_id).name
                for statement, count, parent in patterns:
                    key = (route, statement, "" if parent in {route, span.name} else parent)
                    if key in self.n_plus_one or len(self.n_plus_one) < _MAX_FINDINGS:
                        self.n_plus_one.setdefault(key, []).append(count)
            if attributes.get(sc.DB_SLOW):
                statement = str(sc.first(attributes, sc.DB_STATEMENT) or span.name)
                slow_key = (_local_root(span, by_id).name, statement)
                if slow_key in self.slow or len(self.slow) < _MAX_FINDINGS:
                    self.slow.setdefault(slow_key, []).append(_ms(span))
            category = attributes.get(sc.ERROR_CATEGORY)
            if isinstance(category, str):
                categories.add(category)
            cache = attributes.get(sc.CACHE_RESULT)
            if cache in {"hit", "miss"}:
                self.cache[str(cache)] += 1
        self.error_traces.update(categories)

    def render(self, style: Style) -> list[str]:
        lines = [style.bold("Findings (computed from the exported telemetry)")]
        n_plus_one = []
        for (route, statement, parent), counts in sorted(self.n_plus_one.items()):
            low, high = min(counts), max(counts)
            times = f"{high}×" if low == high else f"{low}–{high}×"
            under = f" under {parent}" if parent else ""
            n_plus_one.append(
                f"    {style.yellow(route)}: {_short(statement, 70)} ran {times} per request"
                f"{under} ({len(counts)} request(s))"
            )
        slow = [
            f"    {style.yellow(f'{max(durations):.0f} ms')}  {_short(statement, 70)}"
            f"  ({len(durations)} call(s) in {route})"
            for (route, statement), durations in sorted(
                self.slow.items(), key=lambda kv: -max(kv[1])
            )
        ]
        errors = [
            f"    {style.red(category)}: {count}"
            for category, count in self.error_traces.most_common()
        ]
        for heading, entries in (
            ("N+1 queries", n_plus_one),
            ("Slow database calls", slow),
            ("Errors by category (traces)", errors),
        ):
            lines.append(f"  {heading}:")
            lines.extend(entries or [style.dim("    none")])
        hits, misses = self.cache["hit"], self.cache["miss"]
        total = hits + misses
        ratio = f"{100 * hits / total:.0f}%" if total else "n/a"
        lines.append(f"  Cache hit ratio: {ratio} ({hits} hits, {misses} misses)")
        return lines


def _series_label(attributes: Any) -> str:
    items = sorted((str(k), str(v)) for k, v in dict(attributes or {}).items())
    return " ".join(f"{k}={_short(v, 40)}" for k, v in items) or "(no attributes)"


def _amount(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:g}{' ' + unit if unit and unit != '1' else ''}"


def render_metrics(data: MetricsData | None, style: Style) -> list[str]:
    """The last metrics export as a short table: per series, count/avg/max or the value."""
    lines = [style.bold("Metrics (at exit)")]
    found = False
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points: list[Any] = list(metric.data.data_points)
                if not points:
                    continue
                found = True
                unit = metric.unit or ""
                lines.append(f"  {metric.name}" + style.dim(f" ({unit})" if unit else ""))
                ranked: list[tuple[float, str]] = []
                for point in points:
                    label = _series_label(point.attributes)
                    if isinstance(metric.data, Histogram) and isinstance(point, HistogramDataPoint):
                        average = point.sum / point.count if point.count else 0.0
                        text = (
                            f"{point.count} × avg {_amount(average, unit)}, "
                            f"max {_amount(point.max, unit)}"
                        )
                        ranked.append((point.count, f"    {label}: {text}"))
                    elif isinstance(point, NumberDataPoint):
                        ranked.append((point.value, f"    {label}: {_amount(point.value, unit)}"))
                ranked.sort(key=lambda item: -item[0])
                lines.extend(text for _, text in ranked[:_MAX_SERIES_SHOWN])
                if len(ranked) > _MAX_SERIES_SHOWN:
                    lines.append(style.dim(f"    … {len(ranked) - _MAX_SERIES_SHOWN} more series"))
    if not found:
        lines.append(style.dim("  none recorded"))
    return lines


class DevConsole:
    """What the devconsole exporters of one process share: the stream, traces being
    assembled with their log records, the metrics, and the summaries printed at exit."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self.style = Style.for_stream(self._stream)
        self._lock = threading.Lock()
        self._traces: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        # Traces whose local root has a remote parent: printed after a short quiet time,
        # because the caller may be in this process too (its span ends later).
        self._waiting: dict[int, float] = {}
        self._logs: OrderedDict[int, list[ReadableLogRecord]] = OrderedDict()
        self._printed: OrderedDict[int, None] = OrderedDict()
        self.findings = Findings()
        self._metrics: MetricsData | None = None
        self._signals: set[str] = set()
        self._finished: set[str] = set()
        self._reported = False
        self.flush_logs: Callable[[], object] | None = None

    def register(self, signal: str) -> None:
        with self._lock:
            self._signals.add(signal)

    # -- traces ------------------------------------------------------------------------
    def add_spans(self, spans: Sequence[ReadableSpan]) -> None:
        if self.flush_logs is not None and any(
            s.parent is None or s.parent.is_remote for s in spans
        ):
            # Log records of these traces may still sit in the log batch queue: bring
            # them in first so that they print inside their spans.
            self.flush_logs()
        finished = []
        now = time.monotonic()
        with self._lock:
            for span in spans:
                if span.context is None:
                    continue
                trace_id = span.context.trace_id
                held = self._traces.setdefault(trace_id, [])
                if len(held) < _MAX_SPANS_PER_TRACE or span.parent is None:
                    held.append(span)
                if span.parent is None:
                    self._waiting.pop(trace_id, None)
                    finished.append(self._take(trace_id))
                elif span.parent.is_remote:
                    self._waiting[trace_id] = now
            for trace_id, since in list(self._waiting.items()):
                if now - since >= _REMOTE_ROOT_GRACE_S and trace_id in self._traces:
                    del self._waiting[trace_id]
                    finished.append(self._take(trace_id))
            while len(self._traces) > _MAX_BUFFERED_TRACES:
                trace_id = next(iter(self._traces))
                self._waiting.pop(trace_id, None)
                finished.append(self._take(trace_id))
        for trace_spans, trace_logs in finished:
            self._print_trace(trace_spans, trace_logs)

    def _take(self, trace_id: int) -> tuple[list[ReadableSpan], list[ReadableLogRecord]]:
        # Under the lock: the trace leaves the buffer with its log records.
        self._printed[trace_id] = None
        while len(self._printed) > _MAX_BUFFERED_TRACES:
            self._printed.popitem(last=False)
        return self._traces.pop(trace_id, []), self._logs.pop(trace_id, [])

    def _print_trace(
        self, spans: Sequence[ReadableSpan], logs: Sequence[ReadableLogRecord]
    ) -> None:
        if not spans:
            self._write([describe_log(r, self.style) for r in logs])
            return
        self.findings.add_trace(spans)
        trace_id = spans[0].context.trace_id if spans[0].context else 0
        header = self.style.dim(f"trace {trace_id:032x}")
        self._write([header, *render_tree(spans, self.style, logs), ""])

    # -- logs --------------------------------------------------------------------------
    def add_logs(self, records: Iterable[ReadableLogRecord]) -> None:
        loose: list[ReadableLogRecord] = []
        with self._lock:
            for record in records:
                trace_id = record.log_record.trace_id or 0
                if not trace_id or trace_id in self._printed:
                    loose.append(record)  # outside any span, or its trace already shown
                    continue
                held = self._logs.setdefault(trace_id, [])
                if len(held) < _MAX_LOGS_PER_TRACE:
                    held.append(record)
            while len(self._logs) > _MAX_BUFFERED_TRACES:
                _, evicted = self._logs.popitem(last=False)
                loose.extend(evicted)
        if loose:
            loose.sort(key=_log_time)
            self._write([describe_log(r, self.style) for r in loose])

    # -- metrics -----------------------------------------------------------------------
    def set_metrics(self, data: MetricsData) -> None:
        with self._lock:
            self._metrics = data

    # -- exit --------------------------------------------------------------------------
    def finish(self, signal: str) -> None:
        """One exporter shut down; once all have, print what is left and the summaries."""
        with self._lock:
            self._finished.add(signal)
            if self._reported or not self._signals <= self._finished:
                return
            self._reported = True
            leftovers = [self._take(trace_id) for trace_id in list(self._traces)]
            loose = [r for records in self._logs.values() for r in records]
            self._logs.clear()
            metrics = self._metrics
        for trace_spans, trace_logs in leftovers:
            self._print_trace(trace_spans, trace_logs)
        if loose:
            self._write([describe_log(r, self.style) for r in sorted(loose, key=_log_time)])
        summary: list[str] = []
        if "metrics" in self._signals:
            summary += [*render_metrics(metrics, self.style), ""]
        if "traces" in self._signals:
            summary += self.findings.render(self.style)
        if summary:
            self._write(summary)

    def _write(self, lines: Sequence[str]) -> None:
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed stream at exit must not raise into the SDK


_shared_lock = threading.Lock()
_shared: DevConsole | None = None


def shared_console() -> DevConsole:
    """The process's dev console (one per process, whichever exporter comes first)."""
    global _shared  # noqa: PLW0603 - one terminal per process
    with _shared_lock:
        if _shared is None:
            _shared = DevConsole()
        return _shared


def _flush_sdk_logs() -> None:
    flush = getattr(get_logger_provider(), "force_flush", None)
    if flush is not None:
        flush(_LOG_FLUSH_TIMEOUT_MS)


class DevConsoleExporter(SpanExporter):
    """``devconsole`` traces: trace trees while running, findings at exit."""

    def __init__(self, stream: TextIO | None = None, console: DevConsole | None = None) -> None:
        self.console = console or (DevConsole(stream) if stream is not None else shared_console())
        self.console.register("traces")
        self._shut_down = False

    @property
    def findings(self) -> Findings:
        return self.console.findings

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.console.add_spans(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if not self._shut_down:
            self._shut_down = True
            self.console.finish("traces")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class DevConsoleLogExporter(LogRecordExporter):
    """``devconsole`` logs: each record printed inside its span's trace tree."""

    def __init__(self, stream: TextIO | None = None, console: DevConsole | None = None) -> None:
        self.console = console or (DevConsole(stream) if stream is not None else shared_console())
        self.console.register("logs")
        self.console.flush_logs = _flush_sdk_logs
        self._shut_down = False

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.console.add_logs(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        if not self._shut_down:
            self._shut_down = True
            self.console.finish("logs")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class DevConsoleMetricExporter(MetricExporter):
    """``devconsole`` metrics: kept in memory, summarised once at exit."""

    def __init__(self, stream: TextIO | None = None, console: DevConsole | None = None) -> None:
        super().__init__()
        self.console = console or (DevConsole(stream) if stream is not None else shared_console())
        self.console.register("metrics")
        self._shut_down = False

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.console.set_metrics(metrics_data)
        return MetricExportResult.SUCCESS

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if not self._shut_down:
            self._shut_down = True
            self.console.finish("metrics")

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True
