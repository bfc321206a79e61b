"""Process exit never hangs on a dead collector, however the process ends.

The SDK registers an ``atexit`` shutdown per provider; with the endpoint down the batch
processor waits up to 30 s for its worker while the exporter retries. We replace those
handlers with one plan that shuts the three providers down in parallel within ONE
deadline (the configured bound), aborts exporters still retrying shortly before it, and
says in one line what was not delivered.

The plan runs at whichever end of the process comes first: ``atexit`` (a normal exit,
``sys.exit``, an uncaught ``KeyboardInterrupt``), a terminating signal whose
disposition is the default, or ``os._exit`` (see ``signals.py``). The application's exit
code and signal death are untouched: the plan only ever runs before them.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_excellence._diagnostics import logger
from otel_excellence._export.delivery import DeliveryCounter

# During a bounded shutdown the exporters' per-retry warnings say nothing our one
# summary line does not, and arrive after the process has decided to exit.
_NOISY_LOGGERS = ("opentelemetry.exporter", "opentelemetry.sdk")
# Aborted exporters need a moment to return and let their batch processors finish (so
# the summary counts what really was delivered). That moment is taken from inside the
# bound, never added after it.
_ABORT_MARGIN_S = 0.25
# How long past the deadline a caller waits for the summary line to be written.
_REPORT_GRACE_S = 0.05
_POLL_S = 0.005


@dataclass
class ShutdownPlan:
    """What to shut down at exit, and what to report."""

    timeout_ms: int
    endpoint: str
    providers: list[tuple[str, Any]] = field(default_factory=list)
    counters: list[DeliveryCounter] = field(default_factory=list)
    # Called when the bound is near: each aborts one exporter's retries.
    aborts: list[Callable[[], None]] = field(default_factory=list)
    # Called first, whichever way the process ends (e.g. stopping the running reports).
    on_start: list[Callable[[], None]] = field(default_factory=list)
    _claim: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Released once to start the shutdown (see _start_watcher).
    _go: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)
    _deadline: float | None = None
    _finished: bool = False
    _in_time: bool = True

    def add_provider(self, signal: str, provider: Any) -> None:
        # Providers keep their atexit handle under one of two private names.
        for attribute in ("_atexit_handler", "_at_exit_handler"):
            handle = getattr(provider, attribute, None)
            if handle is not None:
                atexit.unregister(handle)
                setattr(provider, attribute, None)
        self.providers.append((signal, provider))

    def install(self) -> None:
        """Run at whichever end comes first: atexit, a default-action signal, os._exit;
        and start afresh in forked children."""
        from otel_excellence._export import fork, signals

        self._start_watcher()
        atexit.register(self.run)
        signals.install(self.run)
        fork.install(self)

    def run(self) -> bool:
        """Shut everything down within the bound; True if it finished in time.

        Callable from any thread, any number of times, and from a signal handler: the
        work runs on a thread started in advance, and every caller only sleeps until the
        one shared deadline or the end of the work, whichever comes first. A lock held
        by whatever code a signal interrupted can therefore delay the summary, never the
        exit; a second signal or a second exit path neither restarts the shutdown nor
        extends the bound.
        """
        if self._claim.acquire(blocking=False):  # never blocks: safe in a signal handler
            self._deadline = time.monotonic() + self.timeout_ms / 1000
            watcher = self._watcher
            if watcher is not None and watcher.is_alive():
                self._go.release()
            else:  # not installed in this process: do the work here
                self._shut_down()
        deadline = self._deadline or time.monotonic() + self.timeout_ms / 1000
        # Sleeping holds no lock (waiting on an Event would take its lock, which a
        # caller interrupted by a signal in this very wait could hold).
        while not self._finished and time.monotonic() < deadline + _REPORT_GRACE_S:
            time.sleep(_POLL_S)
        return self._finished and self._in_time

    def reset_after_fork(self) -> None:
        """In a forked child: nothing has been shut down here, no lock is held, and the
        watcher thread is the parent's."""
        self._claim = threading.Lock()
        self._deadline = None
        self._finished = False
        self._in_time = True
        self._start_watcher()

    def _start_watcher(self) -> None:
        # Started ahead of time so that a signal handler never starts a thread: starting
        # one takes threading's own lock, which the interrupted code may hold, for good.
        # It waits on a held lock that run() releases: a release takes no other lock,
        # unlike Event.set(), which holds the Event's lock while it wakes the waiter (a
        # signal arriving in there, whose handler then waits for the watcher, deadlocked
        # the two until the deadline: seen with multiprocessing's os._exit and SIGTERM).
        self._go = threading.Lock()
        self._go.acquire()
        self._watcher = threading.Thread(
            target=self._watch, name="otel-excellence-exit", daemon=True
        )
        self._watcher.start()

    def _watch(self) -> None:
        self._go.acquire()
        self._shut_down()

    def _shut_down(self) -> None:
        deadline = self._deadline or time.monotonic()
        try:
            for first in self.on_start:
                _call_quietly(first)
            threads = [_start(signal, provider.shutdown) for signal, provider in self.providers]
            margin = min(_ABORT_MARGIN_S, self.timeout_ms / 4000)
            _join_all(threads, deadline - margin)
            pending = [thread.name for thread in threads if thread.is_alive()]
            if pending:
                _quieten(_NOISY_LOGGERS)
                # Each on its own thread: an abort that blocks (a gRPC channel closing
                # in a bad state) must not hold back the others or the summary.
                for abort in self.aborts:
                    _start("abort", abort)
                _join_all(threads, deadline)
            self._in_time = not pending
            self._report(pending)
            logger.debug(
                "telemetry shutdown took %.0f ms (bound %d ms)",
                (time.monotonic() - deadline) * 1000 + self.timeout_ms,
                self.timeout_ms,
            )
        except Exception:  # noqa: BLE001 - exit must proceed whatever happens here
            logger.debug("error during telemetry shutdown", exc_info=True)
        finally:
            self._finished = True

    def _report(self, pending: Sequence[str]) -> None:
        lost = [(c.signal, c.undelivered, c.accepted) for c in self.counters if c.undelivered]
        if not lost and not pending:
            return
        parts = [f"{undelivered} of {accepted} {signal}" for signal, undelivered, accepted in lost]
        if "metrics" in pending:
            parts.append("the final metrics export")
        what = ", ".join(parts) if parts else "some telemetry"
        reason = (
            f"shutdown stopped at its {self.timeout_ms} ms bound "
            "(OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS)"
            if pending
            else "the exporter reported failures"
        )
        logger.warning("%s not delivered to %s: %s", what, self.endpoint, reason)


def _join_all(threads: Sequence[threading.Thread], deadline: float) -> None:
    # One deadline for all: however many threads are left, the wait is not multiplied.
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _start(name: str, fn: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=_call_quietly, args=(fn,), name=name, daemon=True)
    thread.start()
    return thread


def _call_quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - exit must proceed whatever a provider does
        logger.debug("error during telemetry shutdown", exc_info=True)


def _quieten(names: Sequence[str]) -> None:
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
