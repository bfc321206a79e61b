"""One verdict per failure: a framework's error handler turns an exception into a 500,
and the server span, the log record and ``otel_excellence.errors`` classify it alike.

Zero-code launch of tests/apps/verdict_app.py (Flask, FastAPI, Django) with a user rule
that names the exception's base class, read back from a real OTLP receiver.
"""

from __future__ import annotations

import pytest

from tests.launch import APPS, instrumented
from tests.support.otlp_sink import OtlpSink
from tests.test_e2e_findings import counter

QUOTA = "billing_errors.QuotaExceeded"


@pytest.mark.parametrize("framework", ["flask", "fastapi", "django"])
def test_span_log_and_metric_agree_on_the_handled_exception(framework: str) -> None:
    """The handled exception is classified by the user rule everywhere: rate_limited,
    retryable, with its own type; never a bare `500`/`internal` on the span."""
    with OtlpSink() as sink:
        run = instrumented(
            "verdict_app.py",
            {
                "FRAMEWORK": framework,
                "OTEL_SERVICE_NAME": f"verdict-{framework}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
                "OTEL_EXCELLENCE_ERROR_RULES": "billing_errors:RULES",
                "PYTHONPATH": str(APPS),
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
                "DJANGO_SETTINGS_MODULE": "verdict_django_settings",
                # The test clients' own request spans would see the 500 from the
                # caller's side: a second, separate error. Not what is tested here.
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "httpx,requests",
            },
        )
        assert run.returncode == 0, run.stderr
        assert "status 500" in run.stdout
        assert sink.wait_for(lambda: counter(sink, "otel_excellence.errors") > 0)
        [server] = [s for s in sink.spans() if s.kind == 2]  # SERVER
        assert server.attributes["error.type"] == QUOTA
        assert server.attributes["otel_excellence.error.category"] == "rate_limited"
        assert server.attributes["otel_excellence.error.retryable"] is True
        records = [r for r in sink.logs() if "exception.type" in r.attributes]
        assert records, [r.body for r in sink.logs()]
        for record in records:
            assert record.attributes["exception.type"] == QUOTA
            assert record.attributes["otel_excellence.error.category"] == "rate_limited"
            assert (
                record.attributes["otel_excellence.error.fingerprint"]
                == server.attributes["otel_excellence.error.fingerprint"]
            )
        assert counter(sink, "otel_excellence.errors") == 1
        assert (
            counter(
                sink,
                "otel_excellence.errors",
                **{"otel_excellence.error.category": "rate_limited", "error.type": QUOTA},
            )
            == 1
        )
    assert "classify_exception rate_limited True" in run.stdout


def test_classify_exception_applies_configured_rules_without_telemetry() -> None:
    """In a plain interpreter (no opentelemetry-instrument, no configure()), the rules
    named by OTEL_EXCELLENCE_ERROR_RULES apply to classify_exception() too."""
    run = instrumented(
        "verdict_app.py",
        {
            "FRAMEWORK": "flask",
            "OTEL_EXCELLENCE_ERROR_RULES": "billing_errors:RULES",
            "PYTHONPATH": str(APPS),
        },
        wrapper=False,
    )
    assert run.returncode == 0, run.stderr
    assert "classify_exception rate_limited True" in run.stdout
