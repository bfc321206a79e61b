"""`make stack` without Docker: gateway + Prometheus on loopback; the demo exports there."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.launch import BIN, clean_env
from tests.support.ports import free_port
from tests.support.services import REPO, Prometheus, collector_binary, prometheus_tool

pytestmark = pytest.mark.services


def test_the_demo_exports_to_the_stack_and_the_data_can_be_seen(tmp_path: Path) -> None:
    prometheus_bin = Path(prometheus_tool("prometheus")).parent
    ports = {name: free_port() for name in
             ("OTLP_GRPC", "OTLP_HTTP", "PROMETHEUS", "HEALTH", "SINK_GRPC", "SINK_HTTP",
              "SELF_METRICS")}  # fmt: skip
    env = clean_env(
        {f"STACK_{name}_PORT": str(value) for name, value in ports.items()}
        | {
            "STACK_DIR": str(tmp_path),
            "OTELCOL_BIN": collector_binary(),
            "PROMETHEUS_BIN_DIR": str(prometheus_bin),
        }
    )
    stack = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "stack.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert stack.stdout is not None
        banner = [stack.stdout.readline() for _ in range(3)]
        assert "otel-excellence stack is up" in banner[0], [*banner, stack.stderr.read()]
        demo = subprocess.run(
            [str(BIN / "otel-excellence"), "demo"],
            env=clean_env(
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports['OTLP_GRPC']}",
                    "STACK_DIR": str(tmp_path),  # as from the checkout: .stack/
                }
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr
        assert f"OTLP at http://127.0.0.1:{ports['OTLP_GRPC']}" in demo.stdout
        # The demo says where to look: this stack's Prometheus and files.
        assert "Where to look (make stack):" in demo.stdout
        assert f"http://127.0.0.1:{ports['PROMETHEUS']}/graph" in demo.stdout
        assert str(tmp_path / "traces.jsonl") in demo.stdout

        traces = tmp_path / "traces.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "otel_excellence.db.n_plus_one" not in (
            traces.read_text() if traces.exists() else ""
        ):
            time.sleep(0.5)
        assert "otel_excellence.db.n_plus_one" in traces.read_text()
        assert (tmp_path / "logs.jsonl").exists()

        prometheus = Prometheus(ports["PROMETHEUS"], f"http://127.0.0.1:{ports['PROMETHEUS']}")
        assert prometheus.wait_for(
            'otel_excellence_db_n_plus_one_total{job="otel-excellence-demo"}'
        )
        assert prometheus.wait_for(
            'traces_span_metrics_calls_total{service_name="otel-excellence-demo"}'
        )
        [record] = [json.loads(line) for line in traces.read_text().splitlines()][:1]
        span = record["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        # Ids in hex, as every log line and trace UI shows them (not protobuf's base64).
        assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"]), span["traceId"]
        assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"]), span["spanId"]
        logged = [json.loads(line) for line in (tmp_path / "logs.jsonl").read_text().splitlines()]
        with_trace = [
            r["traceId"]
            for batch in logged
            for rl in batch["resourceLogs"]
            for sl in rl["scopeLogs"]
            for r in sl["logRecords"]
            if r.get("traceId")
        ]
        assert with_trace and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in with_trace)
    finally:
        stack.send_signal(signal.SIGTERM)
        out, _ = stack.communicate(timeout=60)
    assert stack.returncode == 0
    assert "otel-excellence stack stopped." in out


def test_a_taken_port_is_named_and_the_stack_exits_at_once(tmp_path: Path) -> None:
    """Something already listens on the OTLP port: one message names the port and the
    variable to change, exit 1, no traceback, no 60 s wait, nothing left running."""
    ports = {name: free_port() for name in
             ("OTLP_GRPC", "OTLP_HTTP", "PROMETHEUS", "HEALTH", "SINK_GRPC", "SINK_HTTP",
              "SELF_METRICS")}  # fmt: skip
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["OTLP_GRPC"]))
        squatter.listen(1)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "stack.py")],
            env=clean_env(
                {f"STACK_{name}_PORT": str(value) for name, value in ports.items()}
                | {
                    "STACK_DIR": str(tmp_path),
                    "OTELCOL_BIN": collector_binary(),
                    "PROMETHEUS_BIN_DIR": str(Path(prometheus_tool("prometheus")).parent),
                }
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        seconds = time.monotonic() - started
    assert result.returncode == 1
    assert f"port {ports['OTLP_GRPC']} (the Collector's OTLP/gRPC receiver)" in result.stderr
    assert "STACK_OTLP_GRPC_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 30, seconds  # generous: it checks ports before starting anything


def test_every_collector_variable_is_documented_in_scaling_md() -> None:
    """Each ${env:OTELCOL_*}/${env:*} a shipped Collector config reads has a row (or a
    mention) in docs/scaling.md, so an operator can find every knob."""
    docs = (REPO / "docs" / "scaling.md").read_text()
    used = set()
    for config in (REPO / "collector-config").glob("*.yaml"):
        used |= set(re.findall(r"\$\{env:([A-Z0-9_]+)", config.read_text()))
    assert used, "no variables found: the pattern is wrong"
    assert sorted(name for name in used if f"`{name}`" not in docs) == []
