"""A web app whose error handler turns an exception into a 500 (the pattern of
docs/logging.md), in Flask, FastAPI or Django (FRAMEWORK). No OpenTelemetry code: run it
under ``opentelemetry-instrument`` with OTEL_EXCELLENCE_ERROR_RULES=billing_errors:RULES.

It serves GET /charge once through the framework's own test client and prints the
status, then whether ``classify_exception`` in this process applies the user rule.
"""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from billing_errors import QuotaExceeded

import otel_excellence

log = logging.getLogger("billing")


def flask_app() -> int:
    from flask import Flask

    app = Flask("billing")

    @app.get("/charge")
    def charge() -> str:
        raise QuotaExceeded("monthly quota used up")

    @app.errorhandler(Exception)
    def failed(exc: Exception) -> tuple[dict[str, str], int]:
        log.exception("charge failed")
        return {"error": "internal"}, 500

    return app.test_client().get("/charge").status_code


def fastapi_app() -> int:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/charge")
    def charge() -> None:
        raise QuotaExceeded("monthly quota used up")

    @app.exception_handler(QuotaExceeded)
    async def failed(request: Request, exc: QuotaExceeded) -> JSONResponse:
        log.error("charge failed", exc_info=exc)
        return JSONResponse({"error": "internal"}, status_code=500)

    return TestClient(app).get("/charge").status_code


def django_app() -> int:
    import django

    django.setup()  # DJANGO_SETTINGS_MODULE=verdict_django_settings, as a real deploy sets
    from django.test import Client

    return Client(raise_request_exception=False).get("/charge").status_code


def _django_view(request: object) -> None:
    raise QuotaExceeded("monthly quota used up")


def _log_it(sender: object, request: object, **kwargs: object) -> None:
    log.exception("charge failed")


if os.environ.get("FRAMEWORK") == "django":
    from django.core.signals import got_request_exception
    from django.urls import path

    urlpatterns = [path("charge", _django_view)]
    got_request_exception.connect(_log_it)


def main() -> int:
    status = {"flask": flask_app, "fastapi": fastapi_app, "django": django_app}[
        os.environ["FRAMEWORK"]
    ]()
    print("status", status)
    verdict = otel_excellence.classify_exception(QuotaExceeded("x"))
    print("classify_exception", verdict.category, verdict.retryable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
