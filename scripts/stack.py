"""`make stack`: the gateway and Prometheus on loopback, for users without Docker.

Runs collector-config/gateway.yaml with the otelcol-excellence binary (OTELCOL_BIN),
Debian's Prometheus with deploy/prometheus.yml, and - standing in for Tempo and Loki,
which have no Debian packages - an OTLP receiver that appends what the gateway sends
to .stack/traces.jsonl and .stack/logs.jsonl. Stops cleanly on Ctrl-C or SIGTERM.

Ports (override with STACK_* variables): OTLP 4317/4318, Prometheus 9090, Collector
health 13133, the receiver 14317/14318.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from otel_excellence._export.receiver import OtlpReceiver

REPO = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("STACK_DIR", REPO / ".stack"))


def port(name: str, default: int) -> int:
    return int(os.environ.get(f"STACK_{name}_PORT", default))


def wait_http(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


class JsonLines:
    """Appends each received request as one JSON line per signal."""

    def __init__(self, directory: Path) -> None:
        self._lock = threading.Lock()
        self.paths = {kind: directory / f"{kind}.jsonl" for kind in ("traces", "logs", "metrics")}

    def __call__(self, kind: str, request: Any, headers: dict[str, str], grpc: bool) -> None:
        line = json.dumps(MessageToDict(request)) + "\n"
        with self._lock, self.paths[kind].open("a") as handle:
            handle.write(line)


def main() -> int:
    binary = os.environ.get("OTELCOL_BIN", "")
    prometheus = shutil.which("prometheus")
    if not binary or not os.access(binary, os.X_OK):
        print("make stack: OTELCOL_BIN is not set; run it through `make stack`.", file=sys.stderr)
        return 2
    if prometheus is None:
        print(
            "make stack: prometheus is not installed (apt-get install prometheus).", file=sys.stderr
        )
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    otlp_grpc, otlp_http = port("OTLP_GRPC", 4317), port("OTLP_HTTP", 4318)
    prom_port, health = port("PROMETHEUS", 9090), port("HEALTH", 13133)
    sink_grpc, sink_http = port("SINK_GRPC", 14317), port("SINK_HTTP", 14318)

    sink = OtlpReceiver(JsonLines(STATE), sink_grpc, sink_http)
    sink.start()
    processes: list[subprocess.Popen[bytes]] = []
    log = (STATE / "stack.log").open("ab")
    processes.append(
        subprocess.Popen(
            [
                prometheus,
                f"--config.file={REPO / 'deploy' / 'prometheus.yml'}",
                f"--storage.tsdb.path={STATE / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--web.enable-remote-write-receiver",
            ],
            stdout=log,
            stderr=log,
        )
    )
    env = {
        **os.environ,
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{otlp_grpc}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{otlp_http}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
        "OTELCOL_SELF_METRICS_HOST": "127.0.0.1",
        "OTELCOL_SELF_METRICS_PORT": str(port("SELF_METRICS", 8888)),
        "OTELCOL_STORAGE_DIR": str(STATE / "queue"),
        "TEMPO_OTLP_ENDPOINT": f"127.0.0.1:{sink_grpc}",
        "LOKI_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_http}/otlp",
        "PROMETHEUS_REMOTE_WRITE_ENDPOINT": f"http://127.0.0.1:{prom_port}/api/v1/write",
    }
    # A local stack keeps every trace unless told otherwise.
    env.setdefault("OTELCOL_SAMPLING_PERCENTAGE", "100")
    env.setdefault("OTELCOL_TAIL_DECISION_WAIT", "2s")
    env.setdefault("OTELCOL_SPAN_METRICS_FLUSH_INTERVAL", "5s")
    processes.append(
        subprocess.Popen(
            [binary, "--config", str(REPO / "collector-config" / "gateway.yaml")],
            env=env,
            stdout=log,
            stderr=log,
        )
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        ready = wait_http(f"http://127.0.0.1:{prom_port}/-/ready") and wait_http(
            f"http://127.0.0.1:{health}/"
        )
        if not ready:
            print(f"make stack: did not start; see {STATE / 'stack.log'}", file=sys.stderr)
            return 1
        print(
            f"""otel-excellence stack is up (Ctrl-C to stop):

  send telemetry   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{otlp_grpc} make demo
                   (OTLP/gRPC :{otlp_grpc}, OTLP/HTTP :{otlp_http}; the Collector: gateway.yaml)
  metrics          http://127.0.0.1:{prom_port}  Prometheus: try
                     sum by (span_name) (rate(traces_span_metrics_calls_total[5m]))
                     otel_excellence_errors_total, otel_excellence_db_n_plus_one_total
  traces (sampled) {STATE / "traces.jsonl"}   (Tempo's place in docker-compose.yml)
  logs             {STATE / "logs.jsonl"}     (Loki's place)
  Collector        http://127.0.0.1:{health}/ health; logs in {STATE / "stack.log"}""",
            flush=True,
        )
        while not stop.wait(0.5):
            if any(p.poll() is not None for p in processes):
                print(f"make stack: a process exited; see {STATE / 'stack.log'}", file=sys.stderr)
                return 1
        return 0
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        sink.stop()
        print("otel-excellence stack stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
