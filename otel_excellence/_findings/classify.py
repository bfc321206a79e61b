"""The public face of error classification: extend the rules, classify an exception."""

from __future__ import annotations

from otel_excellence._findings.error_rules import CLASSIFIER
from otel_excellence._findings.errors import ErrorClass, ErrorRule


def add_error_rules(*rules: ErrorRule) -> int:
    """Add classification rules, consulted before the built-in table (later calls first).

    A rule with an unknown category is ignored with one warning. Returns how many
    rules were added. Safe to call at any time, also while telemetry is running.

    >>> add_error_rules(ErrorRule("rate_limited", True, exception="billing.QuotaExceeded"))
    1
    """
    return CLASSIFIER.add(rules)


def classify_exception(exc: BaseException) -> ErrorClass:
    """How otel-excellence classifies ``exc``: its category and whether to retry.

    Useful in tests of your own rules, and to decide retries with the same verdict
    your dashboards show.
    """
    return CLASSIFIER.classify_exception(exc)
