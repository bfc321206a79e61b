"""The bounded shutdown also runs when a process ends without ``atexit``.

``atexit`` covers a normal exit, ``sys.exit`` and an uncaught ``KeyboardInterrupt``. Two
other ends skip it, and real servers take both:

- **Death by a terminating signal's default action.** A plain script has SIG_DFL for
  SIGTERM; uvicorn, after its graceful shutdown, restores the previous disposition and
  re-raises SIGTERM; gunicorn's uvicorn worker and Celery's pool processes reset SIGTERM
  to SIG_DFL. Where SIGTERM or SIGINT is at SIG_DFL we install a handler that runs the
  bounded shutdown, then restores the real SIG_DFL and re-raises the signal: the process
  still dies by that signal, as its parent expects (a supervisor sees "killed by
  SIGTERM", not an exit code).
- **``os._exit``**, which multiprocessing and billiard (Celery prefork) call to end
  every forked worker. It is wrapped to run the bounded shutdown first.

Why wrap ``signal.signal`` rather than install a handler once: a server that sets
SIG_DFL after we started (gunicorn's uvicorn worker, Celery's pool, asyncio's
``remove_signal_handler``) would silently remove ours, and its process would die with
everything still queued. So a request for SIG_DFL installs our handler instead, and
``signal.signal``/``signal.getsignal`` still report SIG_DFL: code that inspects the
disposition sees what it set. Any other handler is installed exactly as given: the
application's handler decides how the process ends (``sys.exit`` reaches ``atexit``,
re-raising with SIG_DFL reaches our handler, ``os._exit`` reaches the wrapper), so it
is never replaced and never wrapped. Flushing when such a handler runs would be wrong
anyway: uvicorn's only starts a graceful shutdown, and requests still finishing would
end their spans after the flush.

The cost of our handler: Python runs it between bytecodes, so a main thread stuck in a
long C call delays the signal's effect until the call returns (then by the bound at
most); SIGKILL, crashes and ``abort()`` still lose what is queued.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from otel_excellence._diagnostics import internal_error

# The terminating signals a service is stopped with. SIGQUIT/SIGHUP keep their
# behaviour: servers use them for their own purposes (gunicorn: reload, quick exit).
HANDLED = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_real_signal = signal.signal
_real_getsignal = signal.getsignal
_real_exit = os._exit
_flush: Callable[[], object] | None = None
_installed = False


def _is_default(handler: object) -> bool:
    return handler is signal.SIG_DFL or (type(handler) is int and handler == signal.SIG_DFL)


def _run_flush() -> None:
    flush = _flush
    if flush is None:
        return
    try:
        flush()
    except Exception:  # noqa: BLE001 - the process must end as it was going to
        internal_error("exit flush")


def _on_default_signal(signum: int, frame: FrameType | None) -> None:
    """Stands in for SIG_DFL: flush within the bound, then die by the same signal."""
    _run_flush()
    _real_signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    # Only reached if the signal is blocked in this thread: it stays pending and its
    # default action ends the process once unblocked, exactly as it would have.


def _visible(handler: Any) -> Any:
    return signal.Handlers.SIG_DFL if handler is _on_default_signal else handler


def _signal(signalnum: int, handler: _Handler) -> Any:
    if signalnum in HANDLED and _is_default(handler):
        return _visible(_real_signal(signalnum, _on_default_signal))
    return _visible(_real_signal(signalnum, handler))


def _getsignal(signalnum: int) -> Any:
    return _visible(_real_getsignal(signalnum))


def _exit(status: int) -> NoReturn:
    _run_flush()
    _real_exit(status)


_WRAPPERS: tuple[tuple[Any, Any], ...] = (
    (_signal, _real_signal),
    (_getsignal, _real_getsignal),
    (_exit, _real_exit),
)
for _wrapper, _original in _WRAPPERS:
    _wrapper.__doc__ = _original.__doc__
    _wrapper.__wrapped__ = _original


def install(flush: Callable[[], object]) -> None:
    """Run ``flush`` (bounded) before a signal's default action or ``os._exit``.

    Idempotent. From a thread other than the main one the wrappers are installed but no
    handler can be yet; the next SIG_DFL request from the main thread installs it.
    """
    global _flush, _installed  # noqa: PLW0603 - one process, one exit
    _flush = flush
    if _installed:
        return
    _installed = True
    signal.signal = _signal
    signal.getsignal = _getsignal
    os._exit = _exit
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        if _is_default(_real_getsignal(signum)):
            _real_signal(signum, _on_default_signal)


def _uninstall_for_tests() -> None:
    global _flush, _installed  # noqa: PLW0603
    _flush = None
    if not _installed:
        return
    _installed = False
    signal.signal = _real_signal
    signal.getsignal = _real_getsignal
    os._exit = _real_exit
    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED:
            if _real_getsignal(signum) is _on_default_signal:
                _real_signal(signum, signal.SIG_DFL)
