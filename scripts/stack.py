"""`make stack`: the gateway and Prometheus on loopback, for users without Docker.

Runs collector-config/gateway.yaml with the otelcol-excellence binary (OTELCOL_BIN),
Prometheus 3 (PROMETHEUS_BIN_DIR, from `make prometheus`) with deploy/prometheus.yml and
its rule files, and - standing in for Tempo and Loki, which have no Debian packages - an
OTLP receiver that appends what the gateway sends
to .stack/traces.jsonl and .stack/logs.jsonl. Stops cleanly on Ctrl-C or SIGTERM.

Ports (override with STACK_* variables): OTLP 4317/4318, Prometheus 9090, Collector
health 13133, the receiver 14317/14318.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
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


PORTS = {  # STACK_<name>_PORT -> (default, what listens there)
    "OTLP_GRPC": (4317, "the Collector's OTLP/gRPC receiver"),
    "OTLP_HTTP": (4318, "the Collector's OTLP/HTTP receiver"),
    "PROMETHEUS": (9090, "Prometheus"),
    "HEALTH": (13133, "the Collector's health check"),
    "SELF_METRICS": (8888, "the Collector's own metrics"),
    "SINK_GRPC": (14317, "the receiver standing in for Tempo"),
    "SINK_HTTP": (14318, "the receiver standing in for Loki"),
}


def taken_ports(ports: dict[str, int]) -> list[str]:
    """A line for each port something else already listens on."""
    taken = []
    for name, number in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", number))
            except OSError as error:
                taken.append(
                    f"  port {number} ({PORTS[name][1]}): {error.strerror}; "
                    f"free it or set STACK_{name}_PORT"
                )
    return taken


def wait_http(url: str, processes: list[subprocess.Popen[bytes]], timeout: float = 60) -> bool:
    """True once ``url`` answers 200; False at the timeout or as soon as a process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


def hex_ids(value: Any) -> Any:
    """protobuf's JSON mapping writes ids in base64; every log line and UI shows hex."""
    if isinstance(value, dict):
        return {
            key: (
                base64.b64decode(item).hex()
                if key in _ID_FIELDS and isinstance(item, str)
                else hex_ids(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [hex_ids(item) for item in value]
    return value


class JsonLines:
    """Appends each received request as one JSON line per signal."""

    def __init__(self, directory: Path) -> None:
        self._lock = threading.Lock()
        self.paths = {kind: directory / f"{kind}.jsonl" for kind in ("traces", "logs", "metrics")}

    def __call__(self, kind: str, request: Any, headers: dict[str, str], grpc: bool) -> None:
        line = json.dumps(hex_ids(MessageToDict(request))) + "\n"
        with self._lock, self.paths[kind].open("a") as handle:
            handle.write(line)


def prometheus_binary() -> str | None:
    """Prometheus 3 from `make prometheus` (the directory PROMETHEUS_BIN_DIR names)."""
    directory = os.environ.get("PROMETHEUS_BIN_DIR")
    path = Path(directory or ".") / "prometheus"
    return str(path) if directory and os.access(path, os.X_OK) else None


def missing_tools(binary: str, prometheus: str | None) -> str | None:
    if not binary or not os.access(binary, os.X_OK):
        return "make stack: OTELCOL_BIN is not set; run it through `make stack`."
    if prometheus is None:
        return "make stack: PROMETHEUS_BIN_DIR is not set; run it through `make stack`."
    return None


def main() -> int:
    binary = os.environ.get("OTELCOL_BIN", "")
    prometheus = prometheus_binary()
    problem = missing_tools(binary, prometheus)
    if problem is not None or prometheus is None:
        print(problem, file=sys.stderr)
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    ports = {name: port(name, default) for name, (default, _) in PORTS.items()}
    taken = taken_ports(ports)
    if taken:
        print("make stack: ports already in use:\n" + "\n".join(taken), file=sys.stderr)
        return 1
    otlp_grpc, otlp_http = ports["OTLP_GRPC"], ports["OTLP_HTTP"]
    prom_port, health = ports["PROMETHEUS"], ports["HEALTH"]
    sink_grpc, sink_http = ports["SINK_GRPC"], ports["SINK_HTTP"]

    sink = OtlpReceiver(JsonLines(STATE), sink_grpc, sink_http)
    try:
        sink.start()
    except (OSError, RuntimeError) as error:  # taken between the check and now
        print(f"make stack: the receiver could not listen on {sink_grpc}/{sink_http}: {error}",
              file=sys.stderr)  # fmt: skip
        return 1
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
                "--enable-feature=exemplar-storage",
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
        "OTELCOL_SELF_METRICS_PORT": str(ports["SELF_METRICS"]),
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
        ready = wait_http(f"http://127.0.0.1:{prom_port}/-/ready", processes) and wait_http(
            f"http://127.0.0.1:{health}/", processes
        )
        if not ready:
            log.flush()
            tail = (STATE / "stack.log").read_text(errors="replace").splitlines()[-15:]
            print(
                f"make stack: did not start; the last lines of {STATE / 'stack.log'}:\n  "
                + "\n  ".join(tail),
                file=sys.stderr,
            )
            return 1
        # Where things are, for `otel-excellence demo` to tell its user.
        (STATE / "stack.json").write_text(
            json.dumps(
                {
                    "otlp_grpc": f"http://127.0.0.1:{otlp_grpc}",
                    "otlp_http": f"http://127.0.0.1:{otlp_http}",
                    "prometheus": f"http://127.0.0.1:{prom_port}",
                    "traces": str(STATE / "traces.jsonl"),
                    "logs": str(STATE / "logs.jsonl"),
                }
            )
        )
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
        (STATE / "stack.json").unlink(missing_ok=True)
        print("otel-excellence stack stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
