"""One verdict per failure: the exception a framework's error handler answered.

When an application's error handler turns an exception into a 5xx response (Flask
``@app.errorhandler``, Django's 500 handling, a Starlette/FastAPI exception handler), the
request's server span fails by its status code alone: classified as an HTTP 500 it would
say ``internal`` while the log record of the same exception, classified from the object,
says ``rate_limited``. Each hook below notes the exception on the request's local root
(``lineage.HANDLED``) at the moment the framework hands it to a handler; when that span
ends failed, it is classified from that exception object - with the same rules, user
rules included, as the log record and ``otel_excellence.errors``.

Each hook wraps one framework function, looked up at call time by the framework itself,
and does nothing but note the exception; it never changes what the framework does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import Span

from otel_excellence._config.distro import register_instrumentor_hooks
from otel_excellence._diagnostics import internal_error
from otel_excellence._findings import lineage

_MARK = "__otel_excellence_handled__"


def note_handled(exc: BaseException) -> None:
    """Remember ``exc`` as what the current request's handler answered."""
    try:
        span = trace.get_current_span()
        if isinstance(span, Span) and span.is_recording():
            root = lineage.local_root(span) or span
            setattr(root, lineage.HANDLED, exc)
    except Exception:  # noqa: BLE001 - the framework goes on handling its exception
        internal_error("noting a handled exception")


def _noting(function: Callable[..., Any], position: int) -> Callable[..., Any]:
    """``function`` that first notes its ``position``-th argument as handled."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if len(args) > position and isinstance(args[position], BaseException):
            note_handled(args[position])
        return function(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper


def _patch(owner: Any, name: str, position: int) -> None:
    current = getattr(owner, name, None)
    if callable(current) and not getattr(current, _MARK, False):
        setattr(owner, name, _noting(current, position))


def _flask() -> None:
    import flask

    # handle_user_exception(self, e): finds the app's error handler for e, or re-raises.
    _patch(flask.Flask, "handle_user_exception", 1)


def _django() -> None:
    from django.core.handlers import exception  # type: ignore[import-untyped]

    # response_for_exception(request, exc): Django's answer to a view's exception,
    # looked up as a module global by convert_exception_to_response at each call.
    _patch(exception, "response_for_exception", 1)


def _starlette() -> None:
    from starlette import _exception_handler

    # _lookup_exception_handler(handlers, exc): the handler an ExceptionMiddleware or a
    # route is about to call (module global, looked up at each call).
    _patch(_exception_handler, "_lookup_exception_handler", 1)


def install_framework_hooks() -> None:
    """Hook each framework when (and only if) its instrumentation loads."""
    register_instrumentor_hooks("flask", after=_flask)
    register_instrumentor_hooks("django", after=_django)
    register_instrumentor_hooks("fastapi", after=_starlette)
    register_instrumentor_hooks("starlette", after=_starlette)
