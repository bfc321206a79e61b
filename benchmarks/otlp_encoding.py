"""OTLP encoding cost per span and per log record: the SDK's encoder vs ours, side by side.

The spans are real: the official Flask, SQLAlchemy (SQLite) and Redis instrumentations
(a real redis-server when REDIS_URL is set, else fakeredis) with otel-excellence's
enrichment, one request = a Flask server span, SQLAlchemy SELECT + INSERT and Redis
GET + SET client spans; every fifth request fails (a 500 with its exception event).
The log records are real too: structlog events through the official structlog
processor and stdlib records through the logging handler, inside the request span.

Each batch holds the telemetry of --requests distinct requests (ids in URLs differ).
Encoders, per batch, alternating, median over --rounds rounds, CPU time of the thread:
  sdk          encode_spans(batch).SerializeToString() - what the HTTP exporter does,
               and what the gRPC exporter + stub do
  ours         encode_spans_bytes(batch) - what our HTTP exporter path sends
  ours+grpc    FromString(encode_spans_bytes(batch)).SerializeToString() - our gRPC path
               (the stub serializes a message, so the bytes are parsed back first)
Our caches are emptied before every batch (cold: the hit rate is only what repeats
inside one batch), and also reported warm (a steady state with the same batches).

    .venv/bin/python benchmarks/otlp_encoding.py --rounds 7

Measured 2026-11-25 on the shared 2-core VM (Python 3.11.7, SDK 1.45.1, protobuf 7.36.2
upb), 50 requests per batch (302 spans, 100 log records), CPU µs per item, cold caches:

| telemetry | sdk | ours (HTTP) | ours + parse (gRPC) |
|---|---|---|---|
| all spans | 33.98 | 5.00 (0.15x) | 5.42 (0.16x) |
| Flask server spans | 46.16 | 7.64 (0.17x) | - |
| SQLAlchemy spans | 23.39 | 3.95 (0.17x) | - |
| Redis spans | 35.42 | 4.61 (0.13x) | - |
| failed spans (exception event) | 73.90 | 17.38 (0.24x) | - |
| log records | 13.43 | 3.84 (0.29x) | 4.05 (0.30x) |

Warm caches (the steady state of a service): spans 4.24 (0.12x), log records 3.09 (0.23x).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from flask import Flask
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.structlog import StructlogProcessor
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import create_engine, text

from otel_excellence._config.settings import Settings
from otel_excellence._export import otlp_encoding
from otel_excellence._export.metrics import FastMetrics, readers_of
from otel_excellence._export.pipeline import EnrichingSpanProcessor
from otel_excellence._findings.error_rules import RULES
from otel_excellence._findings.errors import Classifier
from otel_excellence._findings.insights import SpanInsights


def redis_client() -> Any:
    url = os.environ.get("REDIS_URL")
    if url:
        import redis

        return redis.Redis.from_url(url)
    import fakeredis

    return fakeredis.FakeRedis()


def telemetry(requests: int) -> tuple[list[Any], list[Any]]:
    """The spans and log records of ``requests`` requests, as the exporters get them."""
    resource = Resource.create(
        {"service.name": "shop", "service.version": "1.4.2", "deployment.environment": "prod"}
    )
    spans_out = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    instruments = FastMetrics()
    instruments.attach(*readers_of(MeterProvider()))
    insights = SpanInsights(Settings(), Classifier(RULES), instruments)
    tracer_provider.add_span_processor(
        EnrichingSpanProcessor(SimpleSpanProcessor(spans_out), [insights])
    )
    logs_out = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs_out))

    stdlib = logging.getLogger("shop.orders")
    stdlib.propagate = False
    stdlib.setLevel(logging.INFO)
    stdlib.addHandler(LoggingHandler(logger_provider=logger_provider))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            StructlogProcessor(logger_provider=logger_provider),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    events = structlog.get_logger("shop")

    directory = tempfile.mkdtemp()
    engine = create_engine(f"sqlite:///{directory}/shop.db")
    SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=tracer_provider)
    RedisInstrumentor().instrument(tracer_provider=tracer_provider)
    cache = redis_client()
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INT)"))

    app = Flask("shop")
    app.logger.disabled = True  # the failing requests' tracebacks are not the output
    FlaskInstrumentor().instrument_app(app, tracer_provider=tracer_provider)

    @app.route("/users/<int:user_id>/orders")
    def orders(user_id: int) -> dict[str, Any]:
        cached = cache.get(f"orders:{user_id}")
        with engine.begin() as connection:
            rows = connection.execute(
                text("SELECT id FROM orders WHERE user_id = :u"), {"u": user_id}
            ).fetchall()
            connection.execute(text("INSERT INTO orders (user_id) VALUES (:u)"), {"u": user_id})
        cache.set(f"orders:{user_id}", len(rows))
        events.info("orders listed", user_id=user_id, count=len(rows), cached=cached is not None)
        stdlib.info("served orders for user %s", user_id)
        if user_id % 5 == 0:
            raise LookupError(f"user {user_id} has no account")
        return {"orders": len(rows)}

    client = app.test_client()
    for n in range(requests):
        client.get(f"/users/{n}/orders")
    FlaskInstrumentor().uninstrument_app(app)
    SQLAlchemyInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    return list(spans_out.get_finished_spans()), list(logs_out.get_finished_logs())


def empty_caches() -> None:
    for cache in (
        otlp_encoding._SPAN_ATTRIBUTES,
        otlp_encoding._EVENT_ATTRIBUTES,
        otlp_encoding._LINK_ATTRIBUTES,
        otlp_encoding._LOG_ATTRIBUTES,
    ):
        cache.entries.clear()
    otlp_encoding._RESOURCES.entries.clear()
    otlp_encoding._SCOPES.entries.clear()


def cpu_us(fn: Callable[[], object], repeat: int, cold: bool) -> float:
    total = 0
    for _ in range(repeat):
        if cold:
            empty_caches()
        start = time.thread_time_ns()
        fn()
        total += time.thread_time_ns() - start
    return total / repeat / 1000


def measure(
    name: str, batch: Sequence[Any], encoders: dict[str, Callable[[], object]], rounds: int
) -> None:
    results: dict[str, list[float]] = {key: [] for key in encoders}
    for _ in range(rounds):
        for key, fn in encoders.items():
            results[key].append(cpu_us(fn, 20, cold=key.endswith("cold")) / len(batch))
    sdk = statistics.median(results["sdk"])
    print(f"\n{name}: {len(batch)} per batch, CPU µs per item (median of {rounds} rounds)")
    print("| encoder | µs per item | vs sdk |")
    print("|---|---|---|")
    for key, values in results.items():
        median = statistics.median(values)
        print(f"| {key} | {median:.2f} | {median / sdk:.2f} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args(argv)

    spans, logs = telemetry(args.requests)
    assert ExportTraceServiceRequest.FromString(
        otlp_encoding.encode_spans_bytes(spans)
    ) == encode_spans(spans), "span encodings differ"
    assert ExportLogsServiceRequest.FromString(
        otlp_encoding.encode_logs_bytes(logs)
    ) == encode_logs(logs), "log encodings differ"

    def span_encoders() -> dict[str, Callable[[], object]]:
        def ours() -> bytes:
            return otlp_encoding.encode_spans_bytes(spans)

        def ours_grpc() -> bytes:
            return ExportTraceServiceRequest.FromString(ours()).SerializeToString()

        return {
            "sdk": lambda: encode_spans(spans).SerializeToString(),
            "ours cold": ours,
            "ours warm": ours,
            "ours+grpc cold": ours_grpc,
            "ours+grpc warm": ours_grpc,
        }

    def log_encoders() -> dict[str, Callable[[], object]]:
        def ours() -> bytes:
            return otlp_encoding.encode_logs_bytes(logs)

        def ours_grpc() -> bytes:
            return ExportLogsServiceRequest.FromString(ours()).SerializeToString()

        return {
            "sdk": lambda: encode_logs(logs).SerializeToString(),
            "ours cold": ours,
            "ours warm": ours,
            "ours+grpc cold": ours_grpc,
            "ours+grpc warm": ours_grpc,
        }

    kinds: dict[str, int] = {}
    for span in spans:
        kinds[span.instrumentation_scope.name] = kinds.get(span.instrumentation_scope.name, 0) + 1
    print(f"spans of {args.requests} requests: {kinds}")
    measure("spans", spans, span_encoders(), args.rounds)
    measure("log records", logs, log_encoders(), args.rounds)
    for label, subset in (
        ("server spans (Flask)", [s for s in spans if s.kind.name == "SERVER"]),
        ("SQLAlchemy spans", [s for s in spans if "sqlalchemy" in s.instrumentation_scope.name]),
        ("Redis spans", [s for s in spans if "redis" in s.instrumentation_scope.name]),
        ("failed spans (exception event)", [s for s in spans if s.events]),
    ):
        measure(
            label,
            subset,
            {
                "sdk": lambda subset=subset: encode_spans(subset).SerializeToString(),
                "ours cold": lambda subset=subset: otlp_encoding.encode_spans_bytes(subset),
            },
            args.rounds,
        )


if __name__ == "__main__":
    main()
