"""Process exit never hangs on a dead collector.

The SDK registers an ``atexit`` shutdown per provider; with the endpoint down the batch
processor waits up to 30 s for its worker while the exporter retries. We replace those
handlers with one that shuts the three providers down in parallel, waits at most the
configured bound, aborts exporters still retrying, and says in one line what was not
delivered. The application's exit code is untouched: atexit handlers cannot change it.
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
_ABORT_GRACE_S = 0.25


@dataclass
class ShutdownPlan:
    """What to shut down at exit, and what to report."""

    timeout_ms: int
    endpoint: str
    providers: list[tuple[str, Any]] = field(default_factory=list)
    counters: list[DeliveryCounter] = field(default_factory=list)
    # Called when the bound is reached: each aborts one exporter's retries.
    aborts: list[Callable[[], None]] = field(default_factory=list)
    _done: bool = False

    def add_provider(self, signal: str, provider: Any) -> None:
        # Providers keep their atexit handle under one of two private names.
        for attribute in ("_atexit_handler", "_at_exit_handler"):
            handle = getattr(provider, attribute, None)
            if handle is not None:
                atexit.unregister(handle)
                setattr(provider, attribute, None)
        self.providers.append((signal, provider))

    def install(self) -> None:
        atexit.register(self.run)

    def run(self) -> bool:
        """Shut everything down within the bound; True if it finished in time."""
        if self._done:
            return True
        self._done = True
        deadline = time.monotonic() + self.timeout_ms / 1000
        threads = [_start(signal, provider.shutdown) for signal, provider in self.providers]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        pending = [thread.name for thread in threads if thread.is_alive()]
        if pending:
            _quieten(_NOISY_LOGGERS)
            for abort in self.aborts:
                _call_quietly(abort)
            for thread in threads:
                thread.join(_ABORT_GRACE_S)
        self._report(pending)
        return not pending

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
