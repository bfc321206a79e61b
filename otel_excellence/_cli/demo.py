"""``otel-excellence demo``: the demo service, started the way users start theirs."""

from __future__ import annotations

import importlib.util
import json
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


def where_to_look(environ: dict[str, str], endpoint: str | None) -> list[str]:
    """Where the demo's telemetry can be seen, for the banner at the end.

    ``make stack`` writes its addresses to ``.stack/stack.json`` (``STACK_DIR``); when
    the demo exported to that stack, the lines name its Prometheus and files.
    """
    if endpoint is None:
        return []
    state = Path(environ.get("STACK_DIR") or ".stack") / "stack.json"
    try:
        stack = json.loads(state.read_text())
    except (OSError, ValueError):
        stack = None
    if isinstance(stack, dict) and endpoint.rstrip("/") in {
        stack.get("otlp_grpc"),
        stack.get("otlp_http"),
    }:
        prometheus = stack.get("prometheus")
        return [
            "Where to look (make stack):",
            f"  metrics  {prometheus}/graph?g0.expr=otel_excellence_db_n_plus_one_total"
            "  (also otel_excellence_errors_total, traces_span_metrics_calls_total)",
            f"  traces   {stack.get('traces')}  (kept by the gateway's tail sampling)",
            f"  logs     {stack.get('logs')}",
        ]
    return [
        f"Where to look: the backend behind {endpoint}. With `docker compose up`, Grafana "
        "at http://localhost:3000; with `make stack`, Prometheus at http://127.0.0.1:9090 "
        "and traces and logs in .stack/traces.jsonl and .stack/logs.jsonl.",
    ]


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
    endpoint = next((env[k] for k in _ENDPOINTS if env.get(k)), None)
    looking = where_to_look(env, endpoint)
    if looking:
        print("\n" + "\n".join(looking), flush=True)
    print(
        "\nYour own app, the same way (see the README for frameworks):\n"
        "  OTEL_EXCELLENCE_DEV=true opentelemetry-instrument python app.py\n"
        "(or OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 to send it to a Collector)",
        flush=True,
    )
    return code
