"""``otel_excellence.configure()``: the zero-code launch, for apps that cannot use it."""

from __future__ import annotations

from typing import Any

from otel_excellence._diagnostics import internal_error


def configure(**settings: Any) -> bool:
    """Start traces, metrics and logs from code, exactly as ``opentelemetry-instrument`` does.

    For processes that cannot be started through the wrapper: gunicorn's ``post_fork``
    hook, notebooks, embedded interpreters. Keyword arguments override settings by
    their field name (``configure(shutdown_timeout_ms=1000)``); everything else comes
    from the environment, as documented in ``docs/configuration.md``.

    Safe to call more than once: later calls (or a call inside a process already
    started with ``opentelemetry-instrument``) warn once and do nothing. Never raises.

    Returns True if this call configured telemetry.
    """
    try:
        from otel_excellence._config.distro import OtelExcellenceDistro

        # The distro repairs the environment before anything imports the SDK's trace
        # module, which reads OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT at import (and raises).
        distro = OtelExcellenceDistro()
        distro.configure(overrides=settings)

        from opentelemetry.instrumentation.auto_instrumentation._load import _load_instrumentors

        from otel_excellence._config.configurator import configure_sdk

        if not configure_sdk(overrides=settings):
            return False
        _load_instrumentors(distro)  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - telemetry never raises into the application
        internal_error("configure()")
        return False
    return True
