"""A process that ends by a signal, for the exit tests. No telemetry setup of its own
except in MODE=before, which starts telemetry from code after installing its handler.

It ends SPANS spans (queued: the tests set a long batch delay), starts THREADS busy
threads that keep ending spans, prints one line (``ready`` and how SIGTERM is disposed,
as the app sees it) and waits for a signal. MODE says what the app does with SIGTERM:

- default: nothing (SIG_DFL: the process dies by the signal)
- before: a handler installed before telemetry starts; it prints and exits with 3
- after: the same handler installed after telemetry started
- reraise: a handler that prints, restores SIG_DFL and re-sends the signal to itself
- reset: a handler installed, then SIG_DFL restored (as servers' workers do)
- sigint-dfl: SIGINT set to SIG_DFL (the process dies by SIGINT)
"""

import os
import signal
import sys
import threading
import time

from opentelemetry import trace

MODE = os.environ.get("MODE", "default")


def exit_with_3(signum: int, frame: object) -> None:
    print(f"app handler: {signal.Signals(signum).name}", flush=True)
    sys.exit(3)


def reraise(signum: int, frame: object) -> None:
    print(f"app handler: {signal.Signals(signum).name}, re-raising", flush=True)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if MODE == "before":
    signal.signal(signal.SIGTERM, exit_with_3)
    import otel_excellence

    otel_excellence.configure()
elif MODE == "after":
    signal.signal(signal.SIGTERM, exit_with_3)
elif MODE == "reraise":
    signal.signal(signal.SIGTERM, reraise)
elif MODE == "reset":
    signal.signal(signal.SIGTERM, exit_with_3)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
elif MODE == "sigint-dfl":
    signal.signal(signal.SIGINT, signal.SIG_DFL)

tracer = trace.get_tracer("exit.app")
for _ in range(int(os.environ.get("SPANS", "10"))):
    with tracer.start_as_current_span("queued"):
        pass


def busy() -> None:
    while True:
        with tracer.start_as_current_span("busy"):
            time.sleep(0.01)


for _ in range(int(os.environ.get("THREADS", "0"))):
    threading.Thread(target=busy, daemon=True).start()


def shown(handler: object) -> str:
    return str(getattr(handler, "__name__", handler))


print(
    "ready",
    shown(signal.getsignal(signal.SIGTERM)),
    shown(signal.getsignal(signal.SIGINT)),
    flush=True,
)
time.sleep(120)
