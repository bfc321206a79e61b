"""The application prints the same with the distro as without it.

Each case runs plainly and under ``opentelemetry-instrument`` (exporting to a real OTLP
receiver, or with ``OTEL_LOGS_EXPORTER=none``); stdout and stderr must be equal, and the
records must still be exported. The servers' console lines (gunicorn, uvicorn, Celery)
are compared in ``test_servers.py`` and ``test_celery.py``, structlog and configured
stdlib logging in ``test_logs.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.instrumentation.logging import LoggingInstrumentor

from otel_excellence._logs import tap
from tests.launch import Run, instrumented
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port
from tests.support.servers import normalised


def _both(mode: str, extra: dict[str, str], sink: OtlpSink) -> tuple[Run, Run]:
    port = str(free_port())
    plain = instrumented("output_app.py", {"MODE": mode, "PORT": port}, wrapper=False)
    run = instrumented(
        "output_app.py",
        {
            "MODE": mode,
            "PORT": port,
            "OTEL_SERVICE_NAME": f"output-{mode}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            **extra,
        },
    )
    assert plain.returncode == run.returncode == 0, run.stderr
    return plain, run


class TestUnconfiguredLogging:
    @pytest.mark.parametrize(
        "setting",
        ["OTEL_LOGS_EXPORTER=otlp", "OTEL_LOGS_EXPORTER=none", "OTEL_SDK_DISABLED=true"],
    )
    def test_last_resort_output_is_unchanged(self, setting: str) -> None:
        """Warnings, errors and the exception's traceback print exactly as without us."""
        variable, value = setting.split("=")
        with OtlpSink() as sink:
            plain, run = _both("unconfigured", {variable: value}, sink)
        assert "disk almost full: 97%" in plain.stderr
        assert "Traceback" in plain.stderr
        assert (run.stdout, run.stderr) == (plain.stdout, plain.stderr)

    def test_the_records_are_still_exported(self) -> None:
        """The same records reach the backend as OTel log records, once each."""
        with OtlpSink() as sink:
            _both("unconfigured", {}, sink)
            bodies = sorted(str(r.body) for r in sink.logs())
        assert bodies == ["disk almost full: 97%", "lookup failed", "replica lagging"]


class TestFlaskDevelopmentServer:
    def test_werkzeug_and_flask_console_lines_are_unchanged(self) -> None:
        """'Running on http://…', the request lines and app.logger's warnings."""
        with OtlpSink() as sink:
            plain, run = _both("flask", {}, sink)
            exported = [str(r.body) for r in sink.logs()]
        assert "Running on http://127.0.0.1:" in plain.stderr
        assert plain.stderr.count('"GET /hello HTTP/1.1" 200') == 2
        assert normalised(run.stderr) == normalised(plain.stderr)
        assert run.stdout == plain.stdout
        assert exported.count("hello served") == 2
        assert sum('"GET /hello HTTP/1.1" 200' in body for body in exported) == 2


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class TestTheHandlerIsATapAtTheRoot:
    """In-process: the instrumentation's handler receives what a root handler would,
    without being one."""

    @pytest.fixture
    def tapped(self) -> Iterator[_Capture]:
        handler = _Capture()
        root = logging.getLogger()
        root.addHandler(handler)
        LoggingInstrumentor._logging_handler = handler
        try:
            tap.install()
            yield handler
        finally:
            LoggingInstrumentor._logging_handler = None
            root.removeHandler(handler)

    def test_it_is_off_the_root_and_gets_every_record_that_reaches_the_root(
        self, tapped: _Capture
    ) -> None:
        assert tapped not in logging.getLogger().handlers
        logging.getLogger("tap.test.child").warning("propagated")
        assert [r.getMessage() for r in tapped.records] == ["propagated"]

    def test_a_non_propagating_logger_and_the_handlers_level_are_respected(
        self, tapped: _Capture
    ) -> None:
        quiet = logging.getLogger("tap.test.own")
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())
        tapped.setLevel(logging.ERROR)
        try:
            quiet.error("stays with its own handler")
            logging.getLogger("tap.test.other").warning("below the handler's level")
            logging.getLogger("tap.test.other").error("reaches the tap")
        finally:
            quiet.propagate = True
        assert [r.getMessage() for r in tapped.records] == ["reaches the tap"]
