"""What telemetry-loss accounting costs per span: the SDK's own self-metrics vs ours.

Setups, each a TracerProvider with a batch processor in this process:
  sdk           - vanilla: BatchSpanProcessor, no-op exporter
  sdk+internal  - the same with OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true (the SDK's
                  self-metrics, which include per-span otel.sdk.span.started/live)
  distro        - otel-excellence's counting wrappers, drop hook and observable
                  self-metrics (what the configurator installs)
and the same three on the drop path: an exporter that never returns (a dead collector
behind a long timeout), so the 2,048-span queue is full and every new span is dropped.

CPU microseconds of the application's thread per span (time.thread_time), median of
alternating rounds; the export thread's work is not the application's latency.

    .venv/bin/python benchmarks/self_metrics.py --rounds 7
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_excellence._config.configurator import _watch
from otel_excellence._export.delivery import (
    CountingSpanExporter,
    CountingSpanProcessor,
    DeliveryCounter,
    LossReporter,
    Pipeline,
    SelfMetrics,
)

INTERNAL = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"


class NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class StuckExporter(SpanExporter):
    """Never returns until released: the queue fills and stays full."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait()
        return SpanExportResult.FAILURE


def build(setup: str, exporter: SpanExporter) -> tuple[Any, Callable[[], None]]:
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    if setup == "sdk+internal":
        os.environ[INTERNAL] = "true"
    try:
        tracer_provider = TracerProvider()
        tracer_provider._meter_provider = meter_provider  # tracers' per-span metrics
        if setup == "distro":
            counter = DeliveryCounter("spans")
            reporter = LossReporter("bench")
            reporter.add(counter)
            batch = BatchSpanProcessor(CountingSpanExporter(exporter, counter, reporter))
            _watch(batch, counter)
            SelfMetrics([Pipeline("traces", counter, "bench", 0)], meter_provider)
            tracer_provider.add_span_processor(CountingSpanProcessor(batch, counter))
        else:
            batch = BatchSpanProcessor(exporter, meter_provider=meter_provider)
            tracer_provider.add_span_processor(batch)
        tracer = tracer_provider.get_tracer("bench")
    finally:
        os.environ.pop(INTERNAL, None)

    def close() -> None:
        if isinstance(exporter, StuckExporter):
            exporter.release.set()
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return tracer, close


def span(tracer: Any) -> None:
    with tracer.start_as_current_span("work") as current:
        current.set_attribute("a", 1)
        current.set_attribute("b", "two")
        current.set_attribute("c", True)


def measure(tracer: Any, iterations: int) -> float:
    started = time.thread_time()
    for _ in range(iterations):
        span(tracer)
    return (time.thread_time() - started) / iterations * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=20000)
    args = parser.parse_args()
    setups = ("sdk", "sdk+internal", "distro")
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for path in ("export", "drop"):
            for setup in setups:
                # The distro quietens the SDK's per-drop "Queue full" logger; reset it so
                # each setup pays what it would pay alone.
                logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.NOTSET)
                exporter = NoOpExporter() if path == "export" else StuckExporter()
                tracer, close = build(setup, exporter)
                if path == "drop":
                    for _ in range(3000):  # fill the 2,048-span queue
                        span(tracer)
                results.setdefault((path, setup), []).append(measure(tracer, args.iterations))
                close()
    print(
        "| path | " + " | ".join(f"{s} µs" for s in setups) + " | internal / sdk | distro / sdk |"
    )
    print("|---|" + "---|" * (len(setups) + 2))
    for path in ("export", "drop"):
        sdk, internal, distro = (statistics.median(results[(path, s)]) for s in setups)
        print(
            f"| {path} | {sdk:.2f} | {internal:.2f} | {distro:.2f} | "
            f"{internal / sdk:.2f} | {distro / sdk:.2f} |"
        )


if __name__ == "__main__":
    main()
