"""A parent that forks workers after telemetry started, for the fork tests. No telemetry
setup of its own.

MODE=fork (uWSGI-style): before forking, the parent counts 5 on ``app.jobs`` and ends a
span ``parent.before-fork`` (still queued: the tests set a long batch delay). Each of
CHILDREN children ends a span ``child.work``, counts 1, prints its pid and leaves with
``os._exit(0)`` (as pre-fork servers' workers do) or, with EXIT=sys, ``sys.exit(0)``.
MODE=multiprocessing: a ``multiprocessing`` pool (fork context) runs 6 tasks, each ending
a span ``pool.task`` and returning its pid.
"""

import multiprocessing
import os
import sys

from opentelemetry import metrics, trace

MODE = os.environ.get("MODE", "fork")
tracer = trace.get_tracer("fork.app")
jobs = metrics.get_meter("fork.app").create_counter("app.jobs")


def task(n: int) -> int:
    with tracer.start_as_current_span("pool.task") as span:
        span.set_attribute("app.task", n)
    return os.getpid()


def forked() -> None:
    jobs.add(5)
    with tracer.start_as_current_span("parent.before-fork"):
        pass
    children = []
    for _ in range(int(os.environ.get("CHILDREN", "2"))):
        pid = os.fork()
        if pid == 0:
            with tracer.start_as_current_span("child.work"):
                jobs.add(1)
            # One write per line: the tests run apps unbuffered, where print() writes the
            # text and its newline apart and sibling children's lines can interleave.
            os.write(1, f"child {os.getpid()}\n".encode())
            if os.environ.get("EXIT") == "sys":
                sys.exit(0)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    print(f"parent {os.getpid()}", flush=True)


def pool() -> None:
    with multiprocessing.get_context("fork").Pool(2) as workers:
        for pid in workers.map(task, range(6)):
            print(f"task {pid}", flush=True)
    print(f"parent {os.getpid()}", flush=True)


if __name__ == "__main__":
    {"fork": forked, "multiprocessing": pool}[MODE]()
