"""Exit time with a dead collector: vanilla OpenTelemetry vs otel-excellence, side by side.

Each run is a fresh interpreter that configures the SDK with OTLP exporters pointed at a
closed port, ends N spans (and one log record per span), and then ends: by returning
from main with ``sys.exit(7)`` (``--end exit``), or by SIGTERM from this harness while
it sleeps (``--end sigterm``). Two times are recorded: from the end of the program's
work (the ``sys.exit`` call, or the moment SIGTERM is sent) until the process is gone,
which is the shutdown cost; and from spawn to gone. Baselines: ``none`` is the program
without telemetry; ``exporters-off`` is otel-excellence with every exporter set to
``none`` (the same imports, hence the same interpreter finalization, and nothing to
flush), so ``otel-excellence`` minus ``exporters-off`` is what the bounded flush costs.
Setups alternate within each round, so that the rows share the machine's load.

    .venv/bin/python benchmarks/shutdown.py --runs 3 --spans 10 5000
    .venv/bin/python benchmarks/shutdown.py --runs 3 --spans 10 --end sigterm
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROGRAM = """
import logging, os, sys, time
setup, spans, end = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if setup == "vanilla":
    from opentelemetry.sdk._configuration import _initialize_components
    _initialize_components()
    from opentelemetry.instrumentation.logging import LoggingInstrumentor
    LoggingInstrumentor().instrument()
elif setup in ("otel-excellence", "exporters-off"):
    import otel_excellence
    otel_excellence.configure()
from opentelemetry import trace
tracer = trace.get_tracer("bench")
log = logging.getLogger("bench")
log.setLevel(logging.INFO)
for i in range(spans):
    with tracer.start_as_current_span("work"):
        log.info("step %d", i)
print(time.time(), flush=True)
if end == "sigterm":
    time.sleep(300)
sys.exit(7)
"""

SETUPS = ("none", "exporters-off", "vanilla", "otel-excellence")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(setup: str, spans: int, end: str) -> tuple[float, float, bool]:
    """(work end → gone, spawn → gone, whether the not-delivered line was printed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    exporter = "none" if setup == "exporters-off" else "otlp"
    env.update(
        {
            "OTEL_SERVICE_NAME": "bench",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
            "OTEL_TRACES_EXPORTER": exporter,
            "OTEL_METRICS_EXPORTER": exporter,
            "OTEL_LOGS_EXPORTER": exporter,
        }
    )
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, setup, str(spans), end],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    work_end = float(process.stdout.readline())
    if end == "sigterm":
        work_end = time.time()
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    gone = time.time()
    expected = -signal.SIGTERM if end == "sigterm" else 7
    # Vanilla dies by SIGTERM at once (nothing flushed); anything else is a failure.
    if process.returncode != expected:
        raise SystemExit(f"{setup}: exit status {process.returncode}\n{stderr}")
    return gone - work_end, gone - started, "not delivered" in stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spans", type=int, nargs="+", default=[10, 5000])
    parser.add_argument("--end", choices=("exit", "sigterm"), default="exit")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    # Work end → gone, per "spans/setup" ("spans/sigterm/setup" with --end sigterm).
    timings: dict[str, list[float]] = {}
    print(
        f"| spans | end | setup | work end → gone, median (min-max) of {args.runs} | "
        "spawn → gone, median | loss reported |"
    )
    print("|---|---|---|---|---|---|")
    for spans in args.spans:
        # Setups alternate within each round: the machine's load drifts, the rows share it.
        rounds = [
            {setup: run(setup, spans, args.end) for setup in SETUPS} for _ in range(args.runs)
        ]
        for setup in SETUPS:
            results = [r[setup] for r in rounds]
            shutdown = [r[0] for r in results]
            total = [r[1] for r in results]
            reported = sum(r[2] for r in results)
            key = f"{spans}/{setup}" if args.end == "exit" else f"{spans}/sigterm/{setup}"
            timings[key] = shutdown
            print(
                f"| {spans} | {args.end} | {setup} | {statistics.median(shutdown):.2f} s "
                f"({min(shutdown):.2f}-{max(shutdown):.2f}) | {statistics.median(total):.2f} s "
                f"| {reported}/{args.runs} |",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(timings, indent=1))


if __name__ == "__main__":
    main()
