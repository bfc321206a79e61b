"""A service that keeps working until stdin closes: a span, a log record and a counter
increment every few milliseconds. No OpenTelemetry setup of its own.

Prints "ready" once running and, at the end, how many operations it did.
"""

import logging
import sys
import threading

from opentelemetry import metrics, trace

logging.getLogger("steady").setLevel(logging.INFO)
log = logging.getLogger("steady")
tracer = trace.get_tracer("steady.app")
operations = metrics.get_meter("steady.app").create_counter("steady.operations")


def main() -> int:
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("ready", flush=True)
    count = 0
    while not done.wait(0.01):
        with tracer.start_as_current_span("operation"):
            log.info("operation %d", count)
            operations.add(1)
        count += 1
    print(f"operations {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
