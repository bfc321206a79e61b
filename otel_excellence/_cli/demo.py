"""``otel-excellence demo``: the demo service, started the way users start theirs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

_ENDPOINTS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def demo_environment(environ: dict[str, str]) -> tuple[dict[str, str], str]:
    """The demo's environment, and where its telemetry goes (for the banner)."""
    env = dict(environ)
    env.setdefault("OTEL_SERVICE_NAME", "otel-excellence-demo")
    # Trees print promptly instead of every 5 s.
    env.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")
    endpoint = next((env[k] for k in _ENDPOINTS if env.get(k)), None)
    if endpoint is None and "OTEL_TRACES_EXPORTER" not in env:
        env.update(
            OTEL_TRACES_EXPORTER="devconsole",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        return env, "the dev console (set OTEL_EXPORTER_OTLP_ENDPOINT to send it over OTLP)"
    return env, f"OTLP at {endpoint or 'the default endpoint'}"


def _instrument_command() -> str:
    beside = Path(sys.executable).parent / "opentelemetry-instrument"
    return str(beside) if beside.exists() else (shutil.which("opentelemetry-instrument") or "")


def run_demo() -> int:
    missing = [m for m in ("flask", "fakeredis", "requests") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"otel-excellence demo needs the demo extra ({', '.join(missing)} missing): "
            "pip install 'otel-excellence[demo]'",
            file=sys.stderr,
        )
        return 2
    env, destination = demo_environment(dict(os.environ))
    print(
        "otel-excellence demo: a small shop service (Flask, SQLAlchemy on SQLite, Redis)\n"
        "started with `opentelemetry-instrument`, with no OpenTelemetry code of its own;\n"
        f"its telemetry goes to {destination}.\n",
        flush=True,
    )
    command = [_instrument_command(), sys.executable, "-m", "otel_excellence._cli.demo_app"]
    code = subprocess.call(command, env=env)
    print(
        "\nYour own app, the same way:\n"
        "  OTEL_SERVICE_NAME=my-app OTEL_TRACES_EXPORTER=devconsole "
        "opentelemetry-instrument python app.py\n"
        "(or OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 to send it to a Collector)",
        flush=True,
    )
    return code
