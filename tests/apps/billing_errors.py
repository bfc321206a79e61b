"""The exception types of the one-verdict apps, and the user's rule for them.

The rule names the base class: it must match through the MRO wherever classification
happens (the server span, the log record, ``otel_excellence.errors``).
"""

from otel_excellence import ErrorRule


class BillingError(Exception):
    pass


class QuotaExceeded(BillingError):
    pass


RULES = [ErrorRule("rate_limited", True, exception="billing_errors.BillingError")]
