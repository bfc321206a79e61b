"""The dev console: finished traces as trees, and a findings summary at exit.

Select it for any app with ``OTEL_TRACES_EXPORTER=devconsole``. Each trace is printed
when its local root span ends, as an indented tree with durations and the attributes
that matter; slow database calls, N+1 parents and errors are marked (in colour on a
terminal). At shutdown it prints what the distro's processors found, computed from the
exported spans alone: N+1 patterns, slow statements, errors by category, cache hit ratio.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from otel_excellence import _semconv as sc

_MAX_BUFFERED_TRACES = 1000
_MAX_SPANS_PER_TRACE = 2000  # a long-lived root (a worker loop) must not hold everything
_REMOTE_ROOT_GRACE_S = 1.0
_MAX_FINDINGS = 50
_STATEMENT_WIDTH = 90


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


def render_tree(spans: Sequence[ReadableSpan], style: Style) -> list[str]:
    """A trace's spans as indented lines; runs of identical leaf siblings collapse to one."""
    ids = {_span_id(s) for s in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: s.start_time or 0)

    def groups(below: list[ReadableSpan]) -> list[list[ReadableSpan]]:
        # An N+1 shows as one line "×8" instead of eight identical ones.
        out: list[list[ReadableSpan]] = []
        for child in below:
            leaf = _span_id(child) not in children
            previous = out[-1] if out else None
            if (
                leaf
                and previous is not None
                and _span_id(previous[0]) not in children
                and _repeat_key(previous[0]) == _repeat_key(child)
            ):
                previous.append(child)
            else:
                out.append([child])
        return out

    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, branch: str, below_prefix: str) -> None:
        lines.append(prefix + branch + describe(span, style))
        grouped = groups(children.get(_span_id(span), []))
        for index, group in enumerate(grouped):
            last = index == len(grouped) - 1
            twig = "└─ " if last else "├─ "
            indent = below_prefix + ("   " if last else "│  ")
            if len(group) == 1:
                walk(group[0], below_prefix, twig, indent)
            else:
                total = sum(_ms(s) for s in group)
                lines.append(
                    f"{below_prefix}{twig}{describe(group[0], style)}  "
                    f"{style.yellow(f'×{len(group)}')} {style.dim(f'({total:.1f} ms in all)')}"
                )

    for root in children.get(None, []):
        walk(root, "", "", "")
    return lines


@dataclass
class Findings:
    """What the processors flagged, accumulated from exported spans (bounded)."""

    n_plus_one: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    slow: dict[str, list[float]] = field(default_factory=dict)
    error_traces: Counter[str] = field(default_factory=Counter)
    cache: Counter[str] = field(default_factory=Counter)

    def add_trace(self, spans: Sequence[ReadableSpan]) -> None:
        categories = set()
        for span in spans:
            attributes = dict(span.attributes or {})
            if attributes.get(sc.N_PLUS_ONE):
                key = (span.name, str(attributes.get(sc.N_PLUS_ONE_STATEMENT, "")))
                if key in self.n_plus_one or len(self.n_plus_one) < _MAX_FINDINGS:
                    self.n_plus_one.setdefault(key, []).append(
                        int(attributes.get(sc.N_PLUS_ONE_COUNT, 0))  # type: ignore[arg-type]
                    )
            if attributes.get(sc.DB_SLOW):
                statement = str(sc.first(attributes, sc.DB_STATEMENT) or span.name)
                if statement in self.slow or len(self.slow) < _MAX_FINDINGS:
                    self.slow.setdefault(statement, []).append(_ms(span))
            category = attributes.get(sc.ERROR_CATEGORY)
            if isinstance(category, str):
                categories.add(category)
            cache = attributes.get(sc.CACHE_RESULT)
            if cache in {"hit", "miss"}:
                self.cache[str(cache)] += 1
        self.error_traces.update(categories)

    def render(self, style: Style) -> list[str]:
        lines = [style.bold("Findings (computed from the exported telemetry)")]
        n_plus_one = [
            f"    {style.yellow(parent)}: {_short(statement, 70)} ran "
            f"{max(counts)}× per request ({len(counts)} request(s))"
            for (parent, statement), counts in sorted(self.n_plus_one.items())
        ]
        slow = [
            f"    {style.yellow(f'{max(durations):.0f} ms')}  {_short(statement, 70)}"
            f"  ({len(durations)} call(s))"
            for statement, durations in sorted(self.slow.items(), key=lambda kv: -max(kv[1]))
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


class DevConsoleExporter(SpanExporter):
    """``OTEL_TRACES_EXPORTER=devconsole``: trace trees while running, findings at exit."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._style = Style.for_stream(self._stream)
        self._traces: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        # Traces whose local root has a remote parent: printed after a short quiet time,
        # because the caller may be in this process too (its span ends later).
        self._waiting: dict[int, float] = {}
        self._lock = threading.Lock()
        self.findings = Findings()
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
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
                    finished.append(self._traces.pop(trace_id))
                elif span.parent.is_remote:
                    self._waiting[trace_id] = now
            for trace_id, since in list(self._waiting.items()):
                if now - since >= _REMOTE_ROOT_GRACE_S and trace_id in self._traces:
                    del self._waiting[trace_id]
                    finished.append(self._traces.pop(trace_id))
            while len(self._traces) > _MAX_BUFFERED_TRACES:
                trace_id, oldest = self._traces.popitem(last=False)
                self._waiting.pop(trace_id, None)
                finished.append(oldest)
        for trace_spans in finished:
            self._print_trace(trace_spans)
        return SpanExportResult.SUCCESS

    def _print_trace(self, spans: Sequence[ReadableSpan]) -> None:
        self.findings.add_trace(spans)
        trace_id = spans[0].context.trace_id if spans[0].context else 0
        header = self._style.dim(f"trace {trace_id:032x}")
        text = "\n".join([header, *render_tree(spans, self._style)]) + "\n\n"
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed stream at exit must not raise into the SDK

    def shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        with self._lock:
            leftovers = list(self._traces.values())
            self._traces.clear()
        for spans in leftovers:
            self._print_trace(spans)
        try:
            self._stream.write("\n".join(self.findings.render(self._style)) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
