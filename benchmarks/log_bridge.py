"""Cost of one log event with the bridge vs without, side by side.

Setups (an active span in all of them; output rendered to an in-memory stream):
  plain    - structlog/stdlib alone: the application's own cost
  vanilla  - plus the official OpenTelemetry bridge (structlog processor / logging
             handler) into an SDK LoggerProvider with a batch processor, no-op exporter
  distro   - otel-excellence's bridge instead: typed attributes, trace ids in the line,
             de-duplication; and the same for an event carrying an exception

CPU microseconds of the calling thread per event, median of alternating rounds.

    .venv/bin/python benchmarks/log_bridge.py --rounds 7
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.instrumentation.structlog import StructlogProcessor
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.trace import TracerProvider

from otel_excellence._logs.bridge import BridgeProcessor, _typed_stdlib_attributes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import measure, paired


class NoOpExporter(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def provider() -> LoggerProvider:
    logs = LoggerProvider()
    logs.add_log_record_processor(BatchLogRecordProcessor(NoOpExporter(), max_queue_size=10**6))
    return logs


def structlog_logger(setup: str) -> Any:
    chain: list[Any] = [structlog.processors.add_log_level]
    if setup == "vanilla":
        chain.append(StructlogProcessor(logger_provider=provider()))
    elif setup == "distro":
        chain.append(BridgeProcessor(logger_provider=provider()))
    chain.append(structlog.processors.JSONRenderer())
    return structlog.wrap_logger(structlog.PrintLogger(io.StringIO()), processors=chain)


def stdlib_logger(setup: str) -> logging.Logger:
    logger = logging.getLogger(f"bench.{setup}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [logging.StreamHandler(io.StringIO())]
    if setup != "plain":
        handler = LoggingHandler(logger_provider=provider())
        if setup == "distro":
            handler._get_attributes = _typed_stdlib_attributes(handler._get_attributes)  # type: ignore[method-assign]
        logger.handlers.append(handler)
    return logger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    tracer = TracerProvider().get_tracer("bench")
    setups = ("plain", "vanilla", "distro")
    structlogs = {s: structlog_logger(s) for s in setups}
    stdlibs = {s: stdlib_logger(s) for s in setups}
    try:
        raise TimeoutError("upstream")
    except TimeoutError as error:
        failure = error

    workloads: dict[str, Callable[[str], Callable[[], None]]] = {
        "structlog event": lambda s: lambda: structlogs[s].info("order placed", order_id=42),
        "structlog exception": lambda s: lambda: structlogs[s].error("failed", exc_info=failure),
        "stdlib record": lambda s: lambda: stdlibs[s].info("order %s placed", 42),
        "stdlib exception": lambda s: lambda: stdlibs[s].error("failed", exc_info=failure),
    }
    results: dict[tuple[str, str], list[float]] = {}
    with tracer.start_as_current_span("request"):
        for round_index in range(args.rounds):
            shift = round_index % len(setups)
            for name, make in workloads.items():
                for setup in setups[shift:] + setups[:shift]:
                    results.setdefault((name, setup), []).append(
                        measure(make(setup), args.iterations)
                    )
    print(
        "| event | plain µs | vanilla µs | distro µs | distro - plain µs | "
        "distro / vanilla (paired, IQR) |"
    )
    print("|---|---|---|---|---|---|")
    for name in workloads:
        plain, vanilla, distro = (statistics.median(results[(name, s)]) for s in setups)
        ratio = paired(results[(name, "distro")], results[(name, "vanilla")])
        print(
            f"| {name} | {plain:.1f} | {vanilla:.1f} | {distro:.1f} | {distro - plain:.1f} | "
            f"{ratio.fmt()} |"
        )
    if args.json:
        args.json.write_text(json.dumps({f"{n}/{s}": v for (n, s), v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
