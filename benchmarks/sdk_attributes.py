"""What the SDK's own metric measurements and span attributes cost, with and without
otel-excellence's fast paths for its attribute checks and series keys
(``otel_excellence/_export/sdk_attributes.py``), side by side.

Workloads are what the official instrumentations do on every request: the Flask
instrumentation's ``http.server.duration`` record (its seven old-convention attributes),
the SQLAlchemy pool's ``db.client.connections.usage`` add, a span started with six
attributes, and one ``set_attribute``. A real MeterProvider with one reader and a
trace-based exemplar filter, inside a sampled span (so exemplars are offered). CPU
microseconds of the calling thread per call, setups alternating within each round,
ratios paired per round.

    .venv/bin/python benchmarks/sdk_attributes.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from otel_excellence._export import sdk_attributes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import measure, paired

HTTP = {
    "http.method": "GET",
    "http.scheme": "http",
    "http.status_code": 200,
    "net.host.port": 80,
    "http.server_name": "localhost",
    "http.flavor": "1.1",
    "http.route": "/orders/<int:customer>",
}
POOL = {"pool.name": "sqlite:///bench.db", "state": "used"}
SPAN = {
    "db.system": "sqlite",
    "db.name": "bench.db",
    "db.statement": "SELECT orders.id FROM orders WHERE orders.customer = ?",
    "net.peer.name": "localhost",
    "net.peer.port": 0,
    "db.user": "app",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    duration = meter.create_histogram("http.server.duration")
    usage = meter.create_up_down_counter("db.client.connections.usage")
    tracer = TracerProvider().get_tracer("bench")

    def start_span() -> None:
        tracer.start_span("SELECT bench.db", attributes=SPAN).end()

    with tracer.start_as_current_span("request") as parent:
        workloads: dict[str, Callable[[], None]] = {
            "Histogram.record": lambda: duration.record(0.01, HTTP),
            "UpDownCounter.add": lambda: usage.add(1, POOL),
            "start_span with 6 attributes": start_span,
            "set_attribute": lambda: parent.set_attribute("http.status_code", 200),
        }
        setups = ("sdk", "fast paths")
        results: dict[tuple[str, str], list[float]] = {}
        for round_index in range(args.rounds):
            order = setups if round_index % 2 == 0 else setups[::-1]
            for name, fn in workloads.items():
                for setup in order:
                    sdk_attributes.uninstall()
                    if setup == "fast paths" and not sdk_attributes.install():
                        sys.exit("the fast paths did not install (another SDK release?)")
                    fn()  # the first call of a new series creates it
                    results.setdefault((name, setup), []).append(measure(fn, args.iterations))
        sdk_attributes.uninstall()
    print("| call | SDK µs | with the fast paths µs | fast ÷ SDK (paired, IQR) |")
    print("|---|---|---|---|")
    for name in workloads:
        sdk, fast = (statistics.median(results[(name, s)]) for s in setups)
        ratio = paired(results[(name, "fast paths")], results[(name, "sdk")])
        print(f"| {name} | {sdk:.1f} | {fast:.1f} | {ratio.fmt()} |")


if __name__ == "__main__":
    main()
