"""Per-span cost by span kind: vanilla SDK vs otel-excellence's chain, with and without enrichers.

Setups, side by side in one process (a batch processor and a no-op exporter behind each;
the global meter provider is a real SDK one, so our histograms cost what they cost):
  sdk      vanilla OpenTelemetry: TracerProvider + BatchSpanProcessor
  bare     otel-excellence's chain as the configurator builds it, with no enrichers
  distro   the same with its enrichers (findings, DB metrics, hooks' state)

Span kinds; every child is measured under a fresh root (its local root), and its cost is
the iteration's cost minus a root alone's:
  root      a SERVER span with the Flask instrumentation's HTTP attributes, no parent
  internal  an INTERNAL child with three attributes
  db        a CLIENT child as the SQLAlchemy instrumentation ends it (SQLite SELECT)
  failed    an INTERNAL child that fails with an exception (recorded, status ERROR)

Setups alternate within each round; medians and IQR over rounds; the enrichment is
``distro - bare`` paired per round. CPU microseconds of the application's thread
(``time.thread_time``): the span's on_start/on_end path, which the application waits for.

Run in otel-excellence's bench venv (``bench.py`` does), or from the project venv:

    .venv/bin/python benchmarks/span_chain.py --rounds 9
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# The batch queue must never fill: the drop path is measured elsewhere (bench.py rss).
os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "200000")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import measure, paired, summarize

SETUPS = ("sdk", "bare", "distro")
KINDS = ("root", "internal", "db", "failed")


class NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider(setup: str) -> TracerProvider:
    """A tracer provider with the chain ``setup`` names, wired as the configurator wires it."""
    tracer_provider = TracerProvider()
    if setup == "sdk":
        tracer_provider.add_span_processor(BatchSpanProcessor(NoOpExporter()))
        return tracer_provider
    from otel_excellence._config import configurator
    from otel_excellence._config.settings import Settings
    from otel_excellence._export.metrics import FastMetrics, readers_of
    from otel_excellence._export.shutdown import ShutdownPlan

    original = configurator._enrichers
    if setup == "bare":
        configurator._enrichers = lambda *args: []  # type: ignore[assignment]
    try:
        settings = Settings.load()
        instruments = FastMetrics()
        # The configurator's private seam changes as the hot path is reworked: build what
        # its parameters name, as configure_sdk does, and say so when one is unknown.
        makers: dict[str, Callable[[], Any]] = {
            "settings": lambda: settings,
            "plan": lambda: ShutdownPlan(3000, "bench"),
            "instruments": lambda: instruments,
            "loss": lambda: configurator._Loss(configurator.LossReporter("bench")),  # type: ignore[attr-defined]
        }
        names = list(inspect.signature(configurator._sdk_kwargs).parameters)
        unknown = [name for name in names if name not in makers]
        if unknown:
            raise SystemExit(f"span_chain.py: teach provider() to build {unknown} for _sdk_kwargs")
        kwargs = configurator._sdk_kwargs(*(makers[name]() for name in names))
        # As configure_sdk does: our metrics aggregate in process, read by the SDK's readers.
        instruments.attach(*readers_of(metrics.get_meter_provider()))
    finally:
        configurator._enrichers = original  # type: ignore[assignment]
    for processor in kwargs["span_processors"]:
        tracer_provider.add_span_processor(processor)
    kwargs["export_span_processor"](NoOpExporter())
    return tracer_provider


HTTP_ATTRIBUTES = {
    "http.request.method": "GET",
    "url.scheme": "http",
    "url.path": "/orders/7",
    "http.route": "/orders/<int:customer>",
    "server.address": "127.0.0.1",
    "server.port": 8000,
    "user_agent.original": "oxbench/1",
    "network.protocol.version": "1.1",
}
DB_ATTRIBUTES = {
    "db.system": "sqlite",
    "db.name": "bench.db",
    "db.statement": "SELECT id, note FROM orders WHERE customer = ? ORDER BY id DESC LIMIT 5",
    "db.operation": "SELECT",
}


def workloads(tracer: Any) -> dict[str, Callable[[], None]]:
    def root() -> None:
        with tracer.start_as_current_span(
            "GET /orders/<int:customer>", kind=SpanKind.SERVER, attributes=HTTP_ATTRIBUTES
        ) as span:
            span.set_attribute("http.response.status_code", 200)

    def internal() -> None:
        with tracer.start_as_current_span(
            "GET /orders/<int:customer>", kind=SpanKind.SERVER, attributes=HTTP_ATTRIBUTES
        ) as span:
            with tracer.start_as_current_span("render") as child:
                child.set_attribute("template", "orders.html")
                child.set_attribute("rows", 5)
                child.set_attribute("cached", True)
            span.set_attribute("http.response.status_code", 200)

    def db() -> None:
        with tracer.start_as_current_span(
            "GET /orders/<int:customer>", kind=SpanKind.SERVER, attributes=HTTP_ATTRIBUTES
        ) as span:
            with tracer.start_as_current_span(
                "SELECT bench.db", kind=SpanKind.CLIENT, attributes=DB_ATTRIBUTES
            ):
                pass
            span.set_attribute("http.response.status_code", 200)

    def failed() -> None:
        with tracer.start_as_current_span(
            "GET /orders/<int:customer>", kind=SpanKind.SERVER, attributes=HTTP_ATTRIBUTES
        ) as span:
            try:
                with tracer.start_as_current_span("charge"):
                    raise TimeoutError("payment provider timed out")
            except TimeoutError:
                pass
            span.set_attribute("http.response.status_code", 200)

    return {"root": root, "internal": internal, "db": db, "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    # Our histograms record into a real SDK meter provider, as in production.
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    trace.set_tracer_provider(TracerProvider())  # the global one is unused: no accidents
    loads = {setup: workloads(provider(setup).get_tracer("bench")) for setup in SETUPS}
    for setup in SETUPS:  # warm caches (sanitized statements, metric attribute sets)
        for fn in loads[setup].values():
            measure(fn, 200)
    raw: dict[str, dict[str, list[float]]] = {s: {k: [] for k in KINDS} for s in SETUPS}
    for round_index in range(args.rounds):
        order = SETUPS[round_index % 3 :] + SETUPS[: round_index % 3]
        for kind in KINDS:
            for setup in order:
                raw[setup][kind].append(measure(loads[setup][kind], args.iterations))
    # Per span: a root alone; a child = its iteration minus the same round's root alone.
    per_span: dict[str, dict[str, list[float]]] = {s: {} for s in SETUPS}
    for setup in SETUPS:
        roots = raw[setup]["root"]
        per_span[setup]["root"] = roots
        for kind in KINDS[1:]:
            per_span[setup][kind] = [a - b for a, b in zip(raw[setup][kind], roots, strict=True)]

    print(
        "| span kind | vanilla SDK µs | ours, enrichers removed µs | ours µs | "
        "enrichment µs (ours - removed) | ours ÷ vanilla |"
    )
    print("|---|---|---|---|---|---|")
    for kind in KINDS:
        sdk, bare, distro = (per_span[s][kind] for s in SETUPS)
        enrichment = [a - b for a, b in zip(distro, bare, strict=True)]
        print(
            f"| {kind} | {summarize(sdk).fmt(1)} | {summarize(bare).fmt(1)} | "
            f"{summarize(distro).fmt(1)} | {summarize(enrichment).fmt(1)} | "
            f"{paired(distro, sdk).fmt()} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "iterations": args.iterations,
                                         "per_span_us": per_span}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
