"""Per-span and per-request cost of otel-excellence's chain vs the SDK alone, side by side.

Setups, each in the same process with the same no-op exporter behind a batch processor:
  none     - no SDK: the API's no-op tracer (the uninstrumented baseline)
  sdk      - vanilla OpenTelemetry: TracerProvider + BatchSpanProcessor
  distro   - the same plus otel-excellence's chain (SpanInsights around the batch processor)

Workloads:
  plain    - one internal span with 3 attributes
  db       - one CLIENT span with db.system and a statement carrying literals
  error    - one span failing with an exception
  request  - a parent span with SQLite SELECT + INSERT and Redis SET + GET through the
             official instrumentations (fakeredis unless REDIS_URL is set)

Rounds alternate setups so drift hits all alike; the median of rounds is reported, in
CPU microseconds of the application's thread (time.thread_time).

    .venv/bin/python benchmarks/span_chain.py --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider, SpanKind

from otel_excellence._config.settings import Settings
from otel_excellence._export.metrics import FastMetrics, readers_of
from otel_excellence._export.pipeline import EnrichingSpanProcessor
from otel_excellence._findings.error_rules import RULES
from otel_excellence._findings.errors import Classifier
from otel_excellence._findings.hooks import LibraryHooks
from otel_excellence._findings.insights import SpanInsights


class NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider(setup: str) -> tuple[Any, LibraryHooks | None]:
    if setup == "none":
        return NoOpTracerProvider(), None
    tracer_provider = TracerProvider()
    batch = BatchSpanProcessor(NoOpExporter(), max_queue_size=1_000_000)
    if setup == "sdk":
        tracer_provider.add_span_processor(batch)
        return tracer_provider, None
    instruments = FastMetrics()
    instruments.attach(*readers_of(MeterProvider()))
    insights = SpanInsights(Settings(), Classifier(RULES), instruments)
    tracer_provider.add_span_processor(EnrichingSpanProcessor(batch, [insights]))
    return tracer_provider, LibraryHooks(instruments)


def plain(tracer: Any) -> None:
    with tracer.start_as_current_span("work") as span:
        span.set_attribute("a", 1)
        span.set_attribute("b", "two")
        span.set_attribute("c", True)


def db(tracer: Any) -> None:
    with tracer.start_as_current_span(
        "SELECT app",
        kind=SpanKind.CLIENT,
        attributes={
            "db.system": "postgresql",
            "db.statement": "SELECT * FROM users WHERE email = 'a@b.c' AND id IN (1, 2, 3)",
            "db.name": "app",
        },
    ):
        pass


def error(tracer: Any) -> None:
    try:
        with tracer.start_as_current_span("fails"):
            raise TimeoutError("upstream")
    except TimeoutError:
        pass


def measure(fn: Callable[[Any], None], tracer: Any, iterations: int) -> float:
    # CPU time of this thread: the cost the application's thread pays per span; the
    # batch processor's export thread runs beside it and is not the app's latency.
    started = time.thread_time()
    for _ in range(iterations):
        fn(tracer)
    return (time.thread_time() - started) / iterations * 1e6


def request_workload(setup: str) -> Callable[[], None]:
    import fakeredis
    import redis
    import sqlalchemy as sa
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    tracer_provider, hooks = provider(setup)
    engine = sa.create_engine(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    url = os.environ.get("REDIS_URL")
    client = redis.Redis.from_url(url) if url else fakeredis.FakeRedis()
    if setup != "none":
        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=tracer_provider)
        kwargs = hooks.redis_kwargs() if hooks else {}
        RedisInstrumentor().instrument(tracer_provider=tracer_provider, **kwargs)
        if hooks:
            hooks.listen_sqlalchemy()
    tracer = tracer_provider.get_tracer("bench")
    counter = iter(range(10**9))

    def one_request() -> None:
        n = next(counter)
        with tracer.start_as_current_span("request"), engine.begin() as connection:
            connection.execute(sa.text("SELECT v FROM t WHERE id = :id"), {"id": n})
            connection.execute(sa.text("INSERT INTO t (v) VALUES (:v)"), {"v": str(n)})
            client.set(f"k{n % 100}", "v")
            client.get(f"k{n % 100}")

    def cleanup() -> None:
        if setup != "none":
            SQLAlchemyInstrumentor().uninstrument()
            RedisInstrumentor().uninstrument()
        if hooks:
            from sqlalchemy import event
            from sqlalchemy.engine import Engine

            event.remove(Engine, "after_cursor_execute", hooks.sqlalchemy_after_execute)

    one_request.cleanup = cleanup  # type: ignore[attr-defined]
    return one_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    setups = ("none", "sdk", "distro")
    results: dict[tuple[str, str], list[float]] = {}
    providers = {setup: provider(setup)[0] for setup in setups}
    for _ in range(args.rounds):
        for name, fn in (("plain", plain), ("db", db), ("error", error)):
            for setup in setups:
                tracer = providers[setup].get_tracer("bench")
                results.setdefault((name, setup), []).append(measure(fn, tracer, args.iterations))
        for setup in setups:
            workload = request_workload(setup)
            for _ in range(50):
                workload()
            started = time.thread_time()
            for _ in range(args.requests):
                workload()
            elapsed = (time.thread_time() - started) / args.requests * 1e6
            workload.cleanup()  # type: ignore[attr-defined]
            results.setdefault(("request", setup), []).append(elapsed)

    print("| workload | none µs | sdk µs | distro µs | distro / sdk | distro / none |")
    print("|---|---|---|---|---|---|")
    for name in ("plain", "db", "error", "request"):
        none, sdk, distro = (statistics.median(results[(name, s)]) for s in setups)
        print(
            f"| {name} | {none:.2f} | {sdk:.2f} | {distro:.2f} | {distro / sdk:.2f} | "
            f"{distro / none:.2f} |"
        )


if __name__ == "__main__":
    main()
