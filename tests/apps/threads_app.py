"""Work handed to other threads from inside a span, every common way; no telemetry setup.

Each piece of work starts a span named after the way it was handed over; the tests check
that its parent is the span that was current when the work was handed over.
"""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from opentelemetry import trace

tracer = trace.get_tracer("threads.app")


def work(name: str) -> None:
    with tracer.start_as_current_span(name):
        pass


def main() -> None:
    with tracer.start_as_current_span("sync.parent"):
        with ThreadPoolExecutor(2) as pool:
            pool.submit(work, "pool.submit").result()
            list(pool.map(work, ["pool.map"]))
        thread = threading.Thread(target=work, args=("thread",))
        thread.start()
        thread.join()
        timer = threading.Timer(0.01, work, args=("timer",))
        timer.start()
        timer.join()

    async def handler() -> None:
        with tracer.start_as_current_span("async.parent"):
            loop = asyncio.get_running_loop()
            await asyncio.to_thread(work, "asyncio.to_thread")
            await loop.run_in_executor(None, work, "run_in_executor.default")
            with ThreadPoolExecutor(1) as own:
                await loop.run_in_executor(own, work, "run_in_executor.own")

    asyncio.run(handler())


if __name__ == "__main__":
    main()
