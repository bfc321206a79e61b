"""service.name when OTEL_SERVICE_NAME is not set: the app, not the launcher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from otel_excellence._config.resource import fallback_service_name
from tests.launch import BIN, clean_env
from tests.support.otlp_sink import OtlpSink


@pytest.mark.parametrize(
    ("argv", "orig_argv", "name"),
    [
        (["-m"], ["python", "-m", "billing"], "billing"),
        (["-m"], ["python", "-X", "dev", "-um", "billing.worker"], "billing.worker"),
        (["-m"], ["python", "-W", "ignore", "-mbilling"], "billing"),
        (["-m", "billing.wsgi:app"], ["python", "-m", "gunicorn", "billing.wsgi:app"], "billing"),
        (["/venv/bin/gunicorn", "-w", "4", "-b", "localhost:8000", "app:wsgi"], None, "app"),
        (["/venv/bin/gunicorn", "billing.wsgi:application", "-k", "gevent"], None, "billing"),
        (["/venv/bin/uvicorn", "shop.main:app", "--port", "8000"], None, "shop"),
        (["/venv/bin/uvicorn", "main:app"], None, "main"),
        (["/venv/bin/gunicorn", "-c", "conf.py"], None, "gunicorn"),
        (["/venv/bin/celery", "-A", "billing", "worker"], None, "billing"),
        (["/venv/bin/celery", "--app=billing.tasks:app", "worker"], None, "billing.tasks"),
        (["/venv/bin/flask", "--app", "hello", "run"], None, "hello"),
        (["/srv/mysite/manage.py", "runserver"], None, "mysite"),
        (["/venv/bin/billing-api"], None, "billing-api"),
        (["app.py"], ["python", "app.py"], "app"),
        (["-c"], ["python", "-c", "pass"], "unknown_service:python"),
    ],
)
def test_the_name_comes_from_what_is_run(
    argv: list[str], orig_argv: list[str] | None, name: str
) -> None:
    assert fallback_service_name(argv, orig_argv) == name


def test_python_dash_m_names_the_module_end_to_end(tmp_path: Path) -> None:
    """`opentelemetry-instrument python -m billing`: the resource says billing, not -m
    (at start-up sys.argv[0] is "-m"; the interpreter's own argv has the module)."""
    package = tmp_path / "billing"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "from opentelemetry import trace\n"
        "with trace.get_tracer('billing').start_as_current_span('charge'):\n"
        "    pass\n"
    )
    with OtlpSink() as sink:
        result = subprocess.run(
            [str(BIN / "opentelemetry-instrument"), sys.executable, "-m", "billing"],
            env=clean_env({"OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint}),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert sink.wait_for(lambda: any(s.name == "charge" for s in sink.spans()))
        [span] = [s for s in sink.spans() if s.name == "charge"]
    assert span.resource["service.name"] == "billing"
    assert "service.name='billing'" in result.stderr  # the one warning says what it chose
