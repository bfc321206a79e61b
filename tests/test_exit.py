"""How a process ends, with the distro: the same way, with its telemetry flushed first,
within the bound (``OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS``).

``tests/apps/exit_app.py`` queues spans (the batch delay is a minute, so nothing leaves
before the end) and waits for a signal; each mode disposes of SIGTERM or SIGINT the way
real programs do. Every instrumented run is compared with a plain run of the same app:
exit status (a death by signal stays a death by that signal), what it prints, and what
``signal.getsignal`` tells the app.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pytest

from otel_excellence._export import signals
from tests.launch import APPS, BIN, clean_env
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port

SPANS = 10
DEBUG_TIMING = re.compile(r"telemetry shutdown took (\d+) ms \(bound (\d+) ms\)")


@dataclass
class Ended:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # from the first signal to the process being gone

    @property
    def summary(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "not delivered" in line]

    @property
    def shutdown_ms(self) -> int:
        [match] = DEBUG_TIMING.findall(self.stderr)
        return int(match[0])


def end(
    mode: str,
    env: Mapping[str, str],
    *,
    signals: Sequence[signal.Signals] = (signal.SIGTERM,),
    wrapper: bool = True,
    interval: float = 0.2,
) -> Ended:
    command = [sys.executable, str(APPS / "exit_app.py")]
    if wrapper and mode != "before":
        command.insert(0, str(BIN / "opentelemetry-instrument"))
    process = subprocess.Popen(
        command,
        env=clean_env({"MODE": mode, "SPANS": str(SPANS), **env}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("ready"), ready + process.communicate(timeout=30)[1]
        started = time.monotonic()
        for n, signum in enumerate(signals):
            if n:
                time.sleep(interval)
            if process.poll() is None:
                process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return Ended(process.returncode, ready + stdout, stderr, time.monotonic() - started)


def telemetry(sink: OtlpSink, **extra: str) -> dict[str, str]:
    return {
        "OTEL_SERVICE_NAME": "exit-app",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **extra,
    }


CASES = [
    # mode, signal, what ends the process
    ("default", signal.SIGTERM),  # SIG_DFL: death by SIGTERM
    ("before", signal.SIGTERM),  # the app's handler, installed before us: exit 3
    ("after", signal.SIGTERM),  # the app's handler, installed after us: exit 3
    ("reraise", signal.SIGTERM),  # the app's handler re-raises with SIG_DFL
    ("reset", signal.SIGTERM),  # a handler, then SIG_DFL again (servers' workers)
    ("default", signal.SIGINT),  # KeyboardInterrupt: Python re-kills itself with SIGINT
    ("sigint-dfl", signal.SIGINT),  # SIG_DFL for SIGINT: death by SIGINT
]


@pytest.mark.parametrize(("mode", "signum"), CASES, ids=[f"{m}-{s.name}" for m, s in CASES])
class TestEndedBySignal:
    def test_ends_as_without_telemetry_with_every_queued_span_delivered(
        self, mode: str, signum: signal.Signals
    ) -> None:
        """Same exit status (or death by the same signal), same output, same disposition
        seen by the app; every queued span arrives, nothing is reported lost."""
        plain = end(mode, {"OTEL_SDK_DISABLED": "true"}, signals=[signum], wrapper=False)
        with OtlpSink() as sink:
            run = end(mode, telemetry(sink), signals=[signum])
            queued = [s for s in sink.spans() if s.name == "queued"]
        assert run.returncode == plain.returncode, run.stderr
        assert run.stdout == plain.stdout
        assert run.summary == []
        assert len(queued) == SPANS


class TestDeadCollector:
    """Nothing can be delivered: the process still ends within the bound, and says so."""

    BOUND_MS = 1000

    def _dead(self, **extra: str) -> dict[str, str]:
        closed = free_port()
        return {
            "OTEL_SERVICE_NAME": "exit-app",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed}",
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
            "OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS": str(self.BOUND_MS),
            "OTEL_EXCELLENCE_LOG_LEVEL": "DEBUG",
            **extra,
        }

    def test_sigterm_ends_the_process_within_the_bound(self) -> None:
        """Death by SIGTERM after at most the bound, and one line naming what was lost."""
        run = end("default", self._dead())
        assert run.returncode == -signal.SIGTERM
        [summary] = run.summary
        assert f"{SPANS} of {SPANS} spans" in summary
        assert run.shutdown_ms <= self.BOUND_MS + 100 + 400  # + generous margin
        assert run.seconds <= self.BOUND_MS / 1000 + 2.5

    def test_repeated_signals_and_busy_threads_do_not_extend_the_bound(self) -> None:
        """Three SIGTERMs while 20 threads keep ending spans: one shutdown, one line."""
        run = end(
            "default",
            self._dead(THREADS="20"),
            signals=[signal.SIGTERM, signal.SIGTERM, signal.SIGTERM],
            interval=0.3,
        )
        assert run.returncode == -signal.SIGTERM
        assert len(run.summary) == 1
        assert run.shutdown_ms <= self.BOUND_MS + 100 + 400
        assert run.seconds <= self.BOUND_MS / 1000 + 2.5

    def test_a_handler_that_exits_is_bounded_too(self) -> None:
        """The app's handler calls sys.exit(3): atexit, same bound, exit status kept."""
        run = end("after", self._dead(THREADS="20"))
        assert run.returncode == 3
        assert len(run.summary) == 1
        assert run.shutdown_ms <= self.BOUND_MS + 100 + 400
        # Interpreter finalization follows atexit (every instrumented library imported).
        assert run.seconds <= self.BOUND_MS / 1000 + 4


class TestTheSignalApiStaysTransparent:
    """In-process: with the exit hooks installed, the app sees the dispositions it set."""

    @pytest.fixture(autouse=True)
    def hooks(self) -> Iterator[list[int]]:
        flushed: list[int] = []
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signals.install(lambda: flushed.append(1))
        try:
            yield flushed
        finally:
            signals._uninstall_for_tests()
            signal.signal(signal.SIGTERM, previous)

    def test_sig_dfl_is_reported_while_the_flush_stands_in_for_it(self) -> None:
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signals._real_getsignal(signal.SIGTERM) is signals._on_default_signal

    def test_signal_returns_what_the_app_had_set(self) -> None:
        def handler(signum: int, frame: object) -> None:
            return None

        assert signal.signal(signal.SIGTERM, handler) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is handler
        assert signal.signal(signal.SIGTERM, signal.SIG_DFL) is handler
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signals._real_getsignal(signal.SIGTERM) is signals._on_default_signal

    def test_other_signals_and_other_threads_behave_as_without_us(self) -> None:
        previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        try:
            assert signals._real_getsignal(signal.SIGUSR1) is signal.SIG_DFL
        finally:
            signal.signal(signal.SIGUSR1, previous)
        errors: list[BaseException] = []

        def from_a_thread() -> None:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            except ValueError as error:
                errors.append(error)

        thread = threading.Thread(target=from_a_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1  # "signal only works in main thread", as without us
