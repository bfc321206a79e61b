"""Exit time with a dead collector: vanilla OpenTelemetry vs otel-excellence, side by side.

Each run is a fresh interpreter that configures the SDK with OTLP exporters pointed at a
closed port, ends N spans (and one log record per span), and exits. Wall time from
spawn to exit is recorded; the baseline is the same program with telemetry off.

    .venv/bin/python benchmarks/shutdown.py --runs 3 --spans 10 5000
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROGRAM = """
import logging, os, sys
setup = sys.argv[1]
if setup == "vanilla":
    from opentelemetry.sdk._configuration import _initialize_components
    _initialize_components()
    from opentelemetry.instrumentation.logging import LoggingInstrumentor
    LoggingInstrumentor().instrument()
elif setup == "otel-excellence":
    import otel_excellence
    otel_excellence.configure()
from opentelemetry import trace
tracer = trace.get_tracer("bench")
log = logging.getLogger("bench")
log.setLevel(logging.INFO)
for i in range(int(sys.argv[2])):
    with tracer.start_as_current_span("work"):
        log.info("step %d", i)
sys.exit(7)
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(setup: str, spans: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "OTEL_SERVICE_NAME": "bench",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
        }
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, setup, str(spans)],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 7:
        raise SystemExit(f"{setup}: exit code {result.returncode}\n{result.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spans", type=int, nargs="+", default=[10, 5000])
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    print(f"| spans | setup | exit time, median (min-max) of {args.runs} runs |")
    print("|---|---|---|")
    for spans in args.spans:
        for setup in ("none", "vanilla", "otel-excellence"):
            times = [run(setup, spans) for _ in range(args.runs)]
            results[f"{spans}/{setup}"] = times
            print(
                f"| {spans} | {setup} | {statistics.median(times):.2f} s "
                f"({min(times):.2f}-{max(times):.2f}) |",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
