"""The dev console exporter: trees, marks, colour, and findings from the spans alone."""

from __future__ import annotations

import io
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_excellence._export.console import DevConsoleExporter, Style


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_trace(exporter: DevConsoleExporter) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER) as root:
        root.set_attributes(
            {
                "otel_excellence.db.n_plus_one": True,
                "otel_excellence.db.n_plus_one.count": 3,
                "otel_excellence.db.n_plus_one.statement": "SELECT * FROM items WHERE id = ?",
            }
        )
        for _ in range(3):
            with tracer.start_as_current_span(
                "SELECT /tmp/x/app.db",
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system": "sqlite",
                    "db.statement": "SELECT * FROM items WHERE id = ?",
                },
            ):
                pass
        with tracer.start_as_current_span(
            "SELECT /tmp/x/app.db",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": "sqlite",
                "db.statement": "SELECT sum(x) FROM big",
                "otel_excellence.db.slow": True,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "GET", kind=SpanKind.CLIENT, attributes={"otel_excellence.cache.result": "hit"}
        ):
            pass
        with tracer.start_as_current_span("call-upstream") as failing:
            failing.set_status(Status(StatusCode.ERROR))
            failing.set_attributes(
                {
                    "otel_excellence.error.category": "timeout",
                    "otel_excellence.error.retryable": True,
                    "error.type": "TimeoutError",
                }
            )


def test_a_trace_prints_as_a_tree_with_marks_and_collapsed_repeats() -> None:
    out = io.StringIO()
    exporter = DevConsoleExporter(stream=out)
    run_trace(exporter)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("trace ")
    assert lines[1].startswith("GET /orders") and "⚠ N+1: same statement 3×" in lines[1]
    assert any(ln.startswith("├─ SELECT app.db") and "×3" in ln for ln in lines)
    assert any("⚠ slow query" in ln for ln in lines)
    assert any("cache hit" in ln for ln in lines)
    assert any(ln.startswith("└─ call-upstream") and "✗ timeout (retryable) TimeoutError" in ln
               for ln in lines)  # fmt: skip
    assert "\033[" not in out.getvalue()  # not a terminal: plain text


def test_colour_on_a_terminal_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = Tty()
    run_trace(DevConsoleExporter(stream=tty))
    assert "\033[31m" in tty.getvalue()  # errors in red
    monkeypatch.setenv("NO_COLOR", "1")
    assert Style.for_stream(Tty()).enabled is False


def test_findings_summary_is_computed_from_the_spans_at_shutdown() -> None:
    out = io.StringIO()
    exporter = DevConsoleExporter(stream=out)
    run_trace(exporter)
    run_trace(exporter)
    exporter.shutdown()
    summary = out.getvalue().split("Findings (computed from the exported telemetry)")[1]
    assert (
        "GET /orders: SELECT * FROM items WHERE id = ? ran 3× per request (2 request(s))" in summary
    )
    assert "SELECT sum(x) FROM big  (2 call(s) in GET /orders)" in summary
    assert "timeout: 2" in summary
    assert "Cache hit ratio: 100% (2 hits, 0 misses)" in summary


def test_a_server_span_waits_for_its_in_process_caller() -> None:
    """A root with a remote parent is held briefly: the caller may end in this process."""
    from opentelemetry.propagate import extract, inject

    out = io.StringIO()
    exporter = DevConsoleExporter(stream=out)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("client", kind=SpanKind.CLIENT):
        headers: dict[str, Any] = {}
        inject(headers)
        with tracer.start_as_current_span("server", context=extract(headers), kind=SpanKind.SERVER):
            pass
    text = out.getvalue()
    assert text.count("trace ") == 1
    assert text.splitlines()[1].startswith("client")
    assert text.splitlines()[2].startswith("└─ server")
