"""`make stack` without Docker: gateway + Prometheus on loopback; the demo exports there."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.launch import BIN, clean_env
from tests.support.ports import free_port
from tests.support.services import REPO, Prometheus, collector_binary, find_tool, missing

pytestmark = pytest.mark.services


def test_the_demo_exports_to_the_stack_and_the_data_can_be_seen(tmp_path: Path) -> None:
    if find_tool("prometheus") is None:
        missing("prometheus", "`make test` installs the prometheus package")
    ports = {name: free_port() for name in
             ("OTLP_GRPC", "OTLP_HTTP", "PROMETHEUS", "HEALTH", "SINK_GRPC", "SINK_HTTP",
              "SELF_METRICS")}  # fmt: skip
    env = clean_env(
        {f"STACK_{name}_PORT": str(value) for name, value in ports.items()}
        | {"STACK_DIR": str(tmp_path), "OTELCOL_BIN": collector_binary()}
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
                {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports['OTLP_GRPC']}"}
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr
        assert f"OTLP at http://127.0.0.1:{ports['OTLP_GRPC']}" in demo.stdout

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
        assert record["resourceSpans"]
    finally:
        stack.send_signal(signal.SIGTERM)
        out, _ = stack.communicate(timeout=60)
    assert stack.returncode == 0
    assert "otel-excellence stack stopped." in out
