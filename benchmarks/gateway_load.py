"""Our gateway under load on this machine: spans/s sustained with nothing refused, memory.

The real otelcol-excellence binary runs ``collector-config/gateway.yaml`` as shipped (span
metrics and the service graph on every span, tail sampling, persistent sending queues)
with ``GOMAXPROCS=2``. Its Tempo, Loki and Prometheus exporters point at sinks that answer
without parsing (``_sink.py``), so the sink is never the bottleneck.

The load generator (``telemetrygen`` is refused by the module proxy here) is this file in
``--generate`` mode, in several processes: each serializes one OTLP batch of
reference-request traces once (8 spans each, the shape of ``request_app.py``'s request:
server span, pool connect, ORM and driver SELECT/INSERT, Redis SET/GET; one trace in 50
failed), then re-sends it over OTLP/gRPC with fresh trace IDs written into the bytes for
every send, paced to its share of the target rate. Agents send to gateways over gRPC.

Accepted and refused spans come from the gateway's own metrics
(``otelcol_receiver_{accepted,refused}_spans``), memory from its RSS (/proc) and
``otelcol_process_memory_rss``. The generators share the machine's 2 cores with the gateway:
their CPU is reported beside the gateway's.

    .venv/bin/python benchmarks/gateway_load.py --rates 20000 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_TRACE = 8


# -- the load generator ---------------------------------------------------------------------
def template(traces: int, service: str) -> tuple[bytes, list[list[int]]]:
    """One serialized ExportTraceServiceRequest and, per trace, the offsets of its trace ID."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

    def attrs(**values: Any) -> list[KeyValue]:
        out = []
        for name, value in values.items():
            key = name.replace("__", ".")
            if isinstance(value, bool):
                any_value = AnyValue(bool_value=value)
            elif isinstance(value, int):
                any_value = AnyValue(int_value=value)
            else:
                any_value = AnyValue(string_value=str(value))
            out.append(KeyValue(key=key, value=any_value))
        return out

    rng = random.Random(service)
    now = time.time_ns()
    request = ExportTraceServiceRequest()
    resource_spans: ResourceSpans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        attrs(service__name=service, service__namespace="bench", service__instance__id=service,
              telemetry__sdk__language="python", telemetry__sdk__version="1.45.1")
    )  # fmt: skip
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "opentelemetry.instrumentation.flask"
    markers: list[bytes] = []
    server, client = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT
    for t in range(traces):
        marker = rng.randbytes(16)
        markers.append(marker)
        root_id = rng.randbytes(8)
        start = now + t * 2_000_000
        failed = t % 50 == 0
        children = [
            ("connect", client, attrs(db__system="sqlite", db__name="bench.db")),
            ("SELECT", client, attrs(db__system="sqlite", db__name="bench.db",
             db__statement="SELECT id, note FROM orders WHERE customer = ? ORDER BY id DESC "
             "LIMIT 5")),
            ("SELECT bench.db", client, attrs(db__system="sqlite", db__name="bench.db",
             db__statement="SELECT id, note FROM orders WHERE customer = ? ORDER BY id DESC "
             "LIMIT 5")),
            ("INSERT", client, attrs(db__system="sqlite", db__name="bench.db",
             db__statement="INSERT INTO orders (customer, note) VALUES (?, ?)")),
            ("INSERT bench.db", client, attrs(db__system="sqlite", db__name="bench.db",
             db__statement="INSERT INTO orders (customer, note) VALUES (?, ?)")),
            ("SET", client, attrs(db__system="redis", db__statement="SET ? ?",
             server__address="127.0.0.1", server__port=6379)),
            ("GET", client, attrs(db__system="redis", db__statement="GET ?",
             server__address="127.0.0.1", server__port=6379,
             otel_excellence__cache__result="hit")),
        ]  # fmt: skip
        root = scope.spans.add(
            trace_id=marker, span_id=root_id, name="GET /orders/<int:customer>", kind=server,
            start_time_unix_nano=start, end_time_unix_nano=start + 1_800_000,
            attributes=attrs(http__request__method="GET", http__route="/orders/<int:customer>",
                             url__path=f"/orders/{t % 50}", url__scheme="http",
                             http__response__status_code=500 if failed else 200),
        )  # fmt: skip
        if failed:
            root.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="boom"))
            root.attributes.extend(attrs(error__type="sqlite3.OperationalError",
                                         otel_excellence__error__category="database"))  # fmt: skip
        for i, (name, kind, attributes) in enumerate(children):
            scope.spans.add(
                trace_id=marker, span_id=rng.randbytes(8), parent_span_id=root_id, name=name,
                kind=kind, start_time_unix_nano=start + 100_000 * (i + 1),
                end_time_unix_nano=start + 100_000 * (i + 1) + 60_000, attributes=attributes,
            )  # fmt: skip
    body = request.SerializeToString()
    offsets = []
    for marker in markers:
        found, at = [], body.find(marker)
        while at != -1:
            found.append(at)
            at = body.find(marker, at + 1)
        if len(found) != SPANS_PER_TRACE:
            raise SystemExit(f"template: trace id found {len(found)} times, not {SPANS_PER_TRACE}")
        offsets.append(found)
    return body, offsets


def fresh_trace_ids(
    buffer: bytearray, offsets: list[list[int]], prefix: bytes, counter: int
) -> int:
    """Write a new trace ID over each trace's 8 occurrences; returns the new counter."""
    for positions in offsets:
        counter += 1
        trace_id = prefix + struct.pack(">Q", counter)
        for at in positions:
            buffer[at : at + 16] = trace_id
    return counter


def generate(args: argparse.Namespace) -> None:
    """One generator process: paced sends of fresh traces until the duration is over."""
    import grpc

    body, offsets = template(args.traces_per_batch, args.service)
    buffer = bytearray(body)
    spans_per_batch = len(offsets) * SPANS_PER_TRACE
    channel = grpc.insecure_channel(
        args.target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    export = channel.unary_unary(TRACE_EXPORT)  # no serializers: bytes in, bytes out
    prefix = struct.pack(">Q", random.getrandbits(64))
    counter = 0
    interval = spans_per_batch / args.rate
    sent = failed = 0
    errors: dict[str, int] = {}
    latencies: list[float] = []
    # Up to --in-flight concurrent requests, as an agent's sending queue has consumers.
    pending: list[tuple[Any, float]] = []

    def settle(block: bool) -> None:
        nonlocal sent, failed
        keep = []
        for future, sent_at in pending:
            if not block and not future.done():
                keep.append((future, sent_at))
                continue
            try:
                future.result()
                sent += spans_per_batch
                latencies.append(time.monotonic() - sent_at)
            except grpc.RpcError as error:
                failed += spans_per_batch
                code = str(error.code())  # type: ignore[attr-defined]
                errors[code] = errors.get(code, 0) + 1
        pending[:] = keep

    # Every generator starts at the same moment, after its imports and template.
    time.sleep(max(0.0, args.start_at - time.time()))
    cpu0 = time.process_time()
    started = time.monotonic()
    deadline = started + args.seconds
    next_send = started
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        settle(block=False)
        if now < next_send or len(pending) >= args.in_flight:
            time.sleep(min(max(next_send - now, 0.001), deadline - now))
            continue
        counter = fresh_trace_ids(buffer, offsets, prefix, counter)
        pending.append((export.future(bytes(buffer), timeout=10), time.monotonic()))
        next_send += interval
    settle(block=True)
    elapsed = time.monotonic() - started
    latencies.sort()
    print(json.dumps({
        "sent": sent, "failed": failed, "errors": errors, "seconds": elapsed,
        "cpu_s": time.process_time() - cpu0,
        "latency_ms_p50": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "latency_ms_p99": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
    }), flush=True)  # fmt: skip


# -- the gateway -------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def collector_binary() -> str:
    binary = os.environ.get("OTELCOL_BIN")
    if binary:
        return binary
    return subprocess.run(
        [str(REPO / "scripts" / "build-collector.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(port: int) -> dict[str, float]:
    """The gateway's own metrics, summed over labels, by name (``_total`` stripped)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or line.startswith("#"):
            continue
        name, labels, value = match.group(1), match.group(2) or "", match.group(3)
        name = name.removesuffix("_total")
        if name.startswith("otelcol_receiver_") and 'receiver="otlp"' not in labels:
            continue  # the prometheus/self receiver's own scrapes are not load
        values[name] = values.get(name, 0.0) + float(value)
    return values


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS KiB) of a process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(x.split()[1]) for x in status if x.startswith("VmRSS:"))
    return cpu, rss


@contextmanager
def gateway(sinks: dict[str, str], workdir: Path) -> Iterator[dict[str, Any]]:
    ports = {name: free_port() for name in ("grpc", "http", "health", "self")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTELCOL_"))}
    env.update(
        {
            "GOMAXPROCS": "2",
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['http']}",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
            "OTELCOL_SELF_METRICS_HOST": "127.0.0.1",
            "OTELCOL_SELF_METRICS_PORT": str(ports["self"]),
            "OTELCOL_STORAGE_DIR": str(workdir / "storage"),
            "OTELCOL_LOG_LEVEL": "warn",
            **sinks,
        }
    )
    log = (workdir / "gateway.log").open("wb")
    process = subprocess.Popen(
        [collector_binary(), "--config", str(REPO / "collector-config" / "gateway.yaml")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports['health']}/", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        "gateway did not start:\n" + (workdir / "gateway.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.2)
        yield {"pid": process.pid, "ports": ports, "log": str(workdir / "gateway.log")}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def run_level(
    gw: dict[str, Any], rate: int, seconds: float, generators: int, traces_per_batch: int
) -> dict[str, Any]:
    pid, port = gw["pid"], gw["ports"]["self"]
    before = scrape(port)
    start_at = time.time() + 3
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--generate",
                "--target",
                f"127.0.0.1:{gw['ports']['grpc']}",
                "--rate",
                str(rate / generators),
                "--seconds",
                str(seconds),
                "--traces-per-batch",
                str(traces_per_batch),
                "--service",
                f"load-{i}",
                "--start-at",
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(generators)
    ]
    time.sleep(max(0.0, start_at - time.time()))
    cpu0, _ = proc_stat(pid)
    rss_peak = 0
    started = time.monotonic()
    while any(p.poll() is None for p in procs):
        rss_peak = max(rss_peak, proc_stat(pid)[1])
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    cpu1, rss_end = proc_stat(pid)
    outputs = [json.loads((p.stdout.read() if p.stdout else "") or "{}") for p in procs]
    time.sleep(2)  # let the last batch through the receiver before counting
    after = scrape(port)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    sent = sum(o.get("sent", 0) for o in outputs)
    # Requests are sent within the window of ``seconds``; the last answers may trail it.
    wall = seconds
    return {
        "target_spans_per_s": rate,
        "seconds": seconds,
        "sent_spans": sent,
        "failed_spans": sum(o.get("failed", 0) for o in outputs),
        "errors": [o.get("errors", {}) for o in outputs],
        "latency_ms_p50": [o.get("latency_ms_p50") for o in outputs],
        "latency_ms_p99": [o.get("latency_ms_p99") for o in outputs],
        "achieved_spans_per_s": sent / wall,
        "accepted_spans": delta("otelcol_receiver_accepted_spans"),
        "refused_spans": delta("otelcol_receiver_refused_spans"),
        "failed_receiver_spans": delta("otelcol_receiver_failed_spans"),
        "exporter_sent_spans": delta("otelcol_exporter_sent_spans"),
        "exporter_send_failed_spans": delta("otelcol_exporter_send_failed_spans"),
        "exporter_enqueue_failed_spans": delta("otelcol_exporter_enqueue_failed_spans"),
        "exporter_sent_metric_points": delta("otelcol_exporter_sent_metric_points"),
        "new_traces": delta("otelcol_processor_tail_sampling_new_trace_id_received"),
        # Traces evicted before their decision (num_traces reached): silently lost.
        "dropped_too_early": delta(
            "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early"
        ),
        "traces_on_memory": after.get("otelcol_processor_tail_sampling_sampling_traces_on_memory"),
        "gateway_cpu_cores": (cpu1 - cpu0) / elapsed,
        "generators_cpu_cores": sum(o.get("cpu_s", 0.0) for o in outputs) / elapsed,
        "gateway_rss_peak_mib": rss_peak / 1024,
        "gateway_rss_end_mib": rss_end / 1024,
        "otelcol_process_memory_rss_mib": after.get("otelcol_process_memory_rss", 0.0) / 2**20,
    }


def sustained(level: dict[str, Any]) -> bool:
    return (
        level["refused_spans"] == 0
        and level["failed_spans"] == 0
        and level["achieved_spans_per_s"] >= 0.97 * level["target_spans_per_s"]
        and level["accepted_spans"] >= 0.99 * level["sent_spans"]
        and level["dropped_too_early"] == 0
    )


def measure(rates: list[int], seconds: float, ramp_seconds: float, generators: int,
            traces_per_batch: int, say: Any = print) -> dict[str, Any]:  # fmt: skip
    """Hold the first rate for ``seconds``, then step through the others until one fails."""
    from _sink import GrpcSink, HttpSink

    tempo = GrpcSink().start()
    http = HttpSink(keep=False).start()
    levels = []
    with tempfile.TemporaryDirectory(prefix="oxbench-gateway-") as work:
        sinks = {
            "TEMPO_OTLP_ENDPOINT": f"127.0.0.1:{tempo.port}",
            "LOKI_OTLP_ENDPOINT": f"{http.endpoint}/otlp",
            "PROMETHEUS_REMOTE_WRITE_ENDPOINT": f"{http.endpoint}/api/v1/write",
            # Span metrics flushed every 5 s, so remote write is part of the measured load.
            "OTELCOL_SPAN_METRICS_FLUSH_INTERVAL": "5s",
        }
        try:
            with gateway(sinks, Path(work)) as gw:
                _, idle_rss = proc_stat(gw["pid"])
                for index, rate in enumerate(rates):
                    duration = seconds if index == 0 else ramp_seconds
                    say(f"gateway: {rate:,} spans/s for {duration:.0f} s")
                    level = run_level(gw, rate, duration, generators, traces_per_batch)
                    level["sustained"] = sustained(level)
                    levels.append(level)
                    say(
                        f"gateway:   achieved {level['achieved_spans_per_s']:,.0f}/s, refused "
                        f"{level['refused_spans']:,.0f}, gateway {level['gateway_cpu_cores']:.2f} "
                        f"cores, RSS peak {level['gateway_rss_peak_mib']:.0f} MiB"
                    )
                    if not level["sustained"]:
                        break
        finally:
            tempo.stop()
            http.stop()
    return {
        "idle_rss_mib": idle_rss / 1024,
        "generators": generators,
        "traces_per_batch": traces_per_batch,
        "spans_per_batch": traces_per_batch * SPANS_PER_TRACE,
        "tempo_calls": sum(tempo.calls.values()),
        "remote_write_requests": sum(
            v for k, v in http.requests.items() if k.endswith("/api/v1/write")
        ),
        "levels": levels,
    }


def report(data: dict[str, Any]) -> str:
    lines = [
        f"Gateway idle RSS {data['idle_rss_mib']:.0f} MiB; load from {data['generators']} "
        f"generator processes, {data['spans_per_batch']} spans per OTLP/gRPC request.",
        "",
        "| target spans/s | seconds | achieved spans/s | accepted | refused | traces dropped "
        "before their sampling decision | gateway CPU cores | generators CPU cores | gateway "
        "RSS peak MiB | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in data["levels"]:
        lines.append(
            f"| {lv['target_spans_per_s']:,} | {lv['seconds']:.0f} | "
            f"{lv['achieved_spans_per_s']:,.0f} | {lv['accepted_spans']:,.0f} | "
            f"{lv['refused_spans']:,.0f} | {lv['dropped_too_early']:,.0f} | "
            f"{lv['gateway_cpu_cores']:.2f} | "
            f"{lv['generators_cpu_cores']:.2f} | {lv['gateway_rss_peak_mib']:.0f} | "
            f"{'yes' if lv['sustained'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--service", default="load-0", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--in-flight", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--rates", type=int, nargs="+", default=[20_000, 30_000, 40_000, 60_000])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--ramp-seconds", type=float, default=20)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--traces-per-batch", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.generate:
        generate(args)
        return
    data = measure(args.rates, args.seconds, args.ramp_seconds, args.generators,
                   args.traces_per_batch)  # fmt: skip
    print(report(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
