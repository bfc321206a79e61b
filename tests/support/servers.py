"""Run a real server (gunicorn, uvicorn, a Celery worker) the way a user does, once plainly
and once under ``opentelemetry-instrument``, and record what a user would see: its console
output, how and when it ended after SIGTERM, and which process served each request.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.launch import BIN, clean_env
from tests.support.ports import wait_for_port

SERVER_APPS = Path(__file__).resolve().parents[1] / "apps" / "servers"
WRAPPER = str(BIN / "opentelemetry-instrument")
# Requests are sent in waves of this many at once, each holding its worker briefly, so
# that every worker of a pre-fork server gets some.
WAVE = 4


@dataclass
class Served:
    """One request: the index sent and the pid of the process that answered it."""

    i: int
    pid: int


@dataclass
class ServerRun:
    returncode: int
    stdout: str
    stderr: str
    pid: int
    served: list[Served] = field(default_factory=list)
    # From SIGTERM to the server's main process being gone.
    shutdown_seconds: float = 0.0

    @property
    def worker_pids(self) -> set[int]:
        return {s.pid for s in self.served}


def get_json(url: str, timeout: float = 30.0) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
        return dict(json.load(response))


def _serve_wave(port: int, indexes: Sequence[int], sleep: float) -> list[Served]:
    def one(i: int) -> Served:
        body = get_json(f"http://127.0.0.1:{port}/work?i={i}&sleep={sleep}")
        return Served(i=i, pid=int(str(body["pid"])))

    with ThreadPoolExecutor(len(indexes)) as pool:
        return list(pool.map(one, indexes))


def send_requests(
    port: int, *, workers: int, count: int | None = None, max_waves: int = 25
) -> list[Served]:
    """Requests in waves until ``workers`` distinct processes answered (or ``count``
    requests were sent, when given: a second run repeats the first one's requests)."""
    served: list[Served] = []
    waves = 0
    while True:
        start = len(served)
        if count is not None:
            if start >= count:
                return served
            size = min(WAVE, count - start)
        else:
            if len({s.pid for s in served}) >= workers or waves >= max_waves:
                return served
            size = WAVE
        served += _serve_wave(port, range(start, start + size), sleep=0.2)
        waves += 1


def run_server(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    port: int,
    workers: int,
    count: int | None = None,
    wrapper: bool,
    cwd: Path = SERVER_APPS,
    ready: Callable[[], bool] | None = None,
    work: Callable[[], list[Served]] | None = None,
) -> ServerRun:
    """Start ``command``, serve requests, send SIGTERM, and wait for the end."""
    resolved = [str(BIN / command[0]), *command[1:]]  # the venv's gunicorn, uvicorn, celery
    argv = [WRAPPER, *resolved] if wrapper else resolved
    process = subprocess.Popen(
        argv,
        env=clean_env(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a SIGTERM for the test run never reaches the server
    )
    served: list[Served] = []
    try:
        up = ready() if ready is not None else wait_for_port(port, timeout=60)
        if not up:
            raise RuntimeError(f"{command[0]} did not start")
        served = work() if work is not None else send_requests(port, workers=workers, count=count)
        time.sleep(0.3)  # let the access log lines out before the shutdown ones
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=90)
        ended = time.monotonic()
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=30)
        sys.stderr.write(f"--- {command[0]} stdout\n{stdout}\n--- stderr\n{stderr}\n")
        raise
    return ServerRun(process.returncode, stdout, stderr, process.pid, served, ended - sent)


# -- how long each process's flush took ------------------------------------------------
# Printed by every process at OTEL_EXCELLENCE_LOG_LEVEL=DEBUG, which the instrumented
# runs set for this; not part of the server's own output.
FLUSH_TIMING = re.compile(r"^otel-excellence: DEBUG: telemetry shutdown took (\d+) ms .*$")


def flush_times(stderr: str) -> list[int]:
    """Milliseconds each process of a run spent flushing at its end."""
    return [int(m.group(1)) for m in map(FLUSH_TIMING.match, stderr.splitlines()) if m]


# -- console output, comparable between two runs ---------------------------------------
_NORMALISE = [
    # Timestamps: gunicorn's [2026-11-25 13:33:32 +0000], Celery's [... 13:33:32,123: ...]
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?: ?[+-]\d{4})?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"0x[0-9a-f]+"), "<address>"),
    # Pids, ports, durations, worker numbers: every other number.
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
]


def normalised(text: str) -> list[str]:
    """The lines of ``text`` with timestamps, ids, pids, ports and durations replaced,
    sorted: processes of one server interleave their lines differently on every run."""
    lines = []
    for raw in text.splitlines():
        if FLUSH_TIMING.match(raw):
            continue
        line = raw
        for pattern, replacement in _NORMALISE:
            line = pattern.sub(replacement, line)
        lines.append(line.rstrip())
    return sorted(line for line in lines if line)


def console_diff(plain: str, instrumented: str) -> str:
    """The normalised lines that differ, for an assertion message."""
    return "\n".join(
        difflib.unified_diff(
            normalised(plain), normalised(instrumented), "plain", "instrumented", lineterm=""
        )
    )
