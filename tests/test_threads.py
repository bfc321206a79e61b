"""Context follows work into other threads, through the official threading
instrumentation, which the distro installs and turns on by default.

``tests/apps/threads_app.py`` hands work over every common way from inside a span; each
piece of work must be a child of that span, in its trace, as exported.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.launch import instrumented
from tests.support.otlp_sink import OtlpSink, Span

SYNC = ["pool.submit", "pool.map", "thread", "timer"]
ASYNC = ["asyncio.to_thread", "run_in_executor.default", "run_in_executor.own"]
# asyncio copies the context into its executor calls itself; the rest need the
# instrumentation.
WITHOUT_INSTRUMENTATION = ["asyncio.to_thread"]


def _spans(sink: OtlpSink, extra: dict[str, str]) -> dict[str, Span]:
    result = instrumented(
        "threads_app.py",
        {
            "OTEL_SERVICE_NAME": "threads",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            **extra,
        },
    )
    assert result.returncode == 0, result.stderr
    spans = {s.name: s for s in sink.spans()}
    assert len(spans) == len(sink.spans())  # one span per name
    return spans


@pytest.fixture(scope="module")
def spans() -> Iterator[dict[str, Span]]:
    with OtlpSink() as sink:
        yield _spans(sink, {})


@pytest.mark.parametrize(
    ("name", "parent"), [(n, "sync.parent") for n in SYNC] + [(n, "async.parent") for n in ASYNC]
)
def test_work_in_another_thread_is_a_child_of_the_span_that_handed_it_over(
    spans: dict[str, Span], name: str, parent: str
) -> None:
    """concurrent.futures pools (submit, map), threading.Thread and Timer,
    asyncio.to_thread, run_in_executor with the default and an own executor."""
    assert spans[name].parent_span_id == spans[parent].span_id
    assert spans[name].trace_id == spans[parent].trace_id


def test_without_the_threading_instrumentation_pools_and_threads_lose_the_context() -> None:
    """The control: what the instrumentation (on by default) is needed for."""
    with OtlpSink() as sink:
        spans = _spans(sink, {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "threading"})
    orphans = {name for name in SYNC + ASYNC if not spans[name].parent_span_id}
    assert orphans == set(SYNC + ASYNC) - set(WITHOUT_INSTRUMENTATION)
