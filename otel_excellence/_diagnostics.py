"""The distro's own diagnostics: one logger, one line per problem, never an exception.

Our logger writes to stderr and does not propagate: propagated, its warnings would
follow the application's logging setup (or vanish with it) and go into the very
pipeline that is failing, through the logging bridge.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

logger = logging.getLogger("otel_excellence")

_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("otel-excellence: %(levelname)s: %(message)s"))
logger.addHandler(_handler)
logger.propagate = False
logger.setLevel(logging.WARNING)

_once_lock = threading.Lock()


def _renew_lock_in_child() -> None:
    # A thread of the parent may have held it at fork(); none will release it here.
    global _once_lock  # noqa: PLW0603 - the module's one lock, replaced after fork
    _once_lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_lock_in_child)
_once_keys: set[object] = set()

# Set by the project's own tests: internal errors re-raise there instead of being
# swallowed, so bugs surface in CI and never in a user's process.
raise_internal_errors = False


def warn_once(key: object, message: str, *args: Any) -> None:
    """Log ``message`` at WARNING the first time ``key`` is seen in this process."""
    with _once_lock:
        if key in _once_keys:
            return
        _once_keys.add(key)
    logger.warning(message, *args)


def internal_error(where: str) -> None:
    """Report an unexpected exception inside the distro, once per place.

    Call from an ``except Exception`` block. The application keeps running; in the
    project's tests the exception is re-raised.
    """
    if raise_internal_errors:
        raise  # noqa: PLE0704 - re-raises the exception being handled by the caller
    with _once_lock:
        if where in _once_keys:
            return
        _once_keys.add(where)
    logger.warning(
        "internal error in %s; telemetry continues without it (further errors "
        "there are not reported)",
        where,
        exc_info=True,
    )


def reset_once_keys() -> None:
    """Forget which warnings were given (tests)."""
    with _once_lock:
        _once_keys.clear()
