"""Every exception type otel-excellence defines.

Telemetry never raises into the application: these surface only from explicit calls
that ask for them (``Settings.strict``) and inside the project's own tests.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "OtelExcellenceError"]


class OtelExcellenceError(Exception):
    """Base class for errors raised by otel-excellence."""


class ConfigurationError(OtelExcellenceError, ValueError):
    """A setting has a value that cannot be used.

    The message names the setting, the bad value and what is expected.
    """

    def __init__(self, name: str, value: object, expected: str) -> None:
        self.name = name
        self.value = value
        self.expected = expected
        super().__init__(f"{name}={value!r} is not {expected}")
