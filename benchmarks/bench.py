"""`make bench`: otel-excellence side by side with vanilla OpenTelemetry and pydantic logfire.

Stages (all by default; ``--stages`` picks some):
  request    CPU per reference request, every configuration, live and dead endpoint:
             fresh processes, configurations round-robin (rotated each round), ratios
             paired per round; medians and IQR
  callgrind  instructions per reference request (valgrind's callgrind, live endpoint)
  rss        RSS growth over 200,000 spans at a dead endpoint
  spans      per-span cost by span kind (span_chain.py)
  logs       one bridged log event (log_bridge.py)
  shutdown   exit time with a dead collector (shutdown.py)
  gateway    our gateway's throughput on this machine (gateway_load.py)

Peers run from their own venvs (``_venvs.py``) in a folder outside the checkout. Results
are printed as Markdown and written as JSON (``--json``); ``--plot`` draws the PNG.

    make bench                    # everything, ~20 min on 2 idle cores
    make bench BENCH_ARGS=--quick # a few minutes: fewer rounds and requests
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _venvs
from _sink import HttpSink, decode
from _stats import paired, summarize

HERE = Path(__file__).resolve().parent
STAGES = ("request", "callgrind", "rss", "spans", "logs", "shutdown", "gateway")
ENDPOINTS = ("live", "dead")
# stage -> (script, title, {quick: arguments})
SCRIPTS = {
    "spans": (
        "span_chain.py",
        "Per-span cost by span kind (CPU µs of the application's thread, span_chain.py)",
        {False: ["--rounds", "11", "--iterations", "4000"],
         True: ["--rounds", "3", "--iterations", "1500"]},
    ),
    "logs": (
        "log_bridge.py",
        "One bridged log event (CPU µs of the calling thread, log_bridge.py)",
        {False: ["--rounds", "9"], True: ["--rounds", "3", "--iterations", "2000"]},
    ),
    "shutdown": (
        "shutdown.py",
        "Exit time with a dead collector (shutdown.py)",
        {False: ["--runs", "2", "--spans", "10", "5000"], True: ["--runs", "1", "--spans", "10"]},
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Config:
    name: str
    venv: str
    instrumented: bool  # started the way `opentelemetry-instrument` starts a program
    label: str
    env: tuple[tuple[str, str], ...] = ()


CONFIGS = {
    c.name: c
    for c in (
        Config("none", "vanilla", False, "uninstrumented"),
        Config("vanilla", "vanilla", True, "vanilla OpenTelemetry (opentelemetry-distro)"),
        Config("ours", "ours", True, "otel-excellence, everything on"),
        Config(
            "ours-bare",
            "ours",
            True,
            "otel-excellence, enrichers removed",
            env=(("OXBENCH_NO_ENRICHERS", "1"),),
        ),
        Config("logfire", "logfire", False, "pydantic logfire 5.4 (send_to_logfire=False)"),
    )
}


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- services -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is not installed (make system-deps installs it)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(workdir), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- one measured process -------------------------------------------------------------
@dataclass
class Peers:
    venvs: dict[str, _venvs.Venv] = field(default_factory=dict)
    autodirs: dict[str, str] = field(default_factory=dict)
    ours_content: str = ""

    def autodir(self, venv: _venvs.Venv) -> str:
        if venv.name not in self.autodirs:
            self.autodirs[venv.name] = subprocess.run(
                [venv.python, "-c", "import os, opentelemetry.instrumentation.auto_instrumentation "
                 "as m; print(os.path.dirname(m.__file__))"],
                capture_output=True, text=True, check=True, cwd=_venvs.CACHE,
            ).stdout.strip()  # fmt: skip
        return self.autodirs[venv.name]


def prepare(names: set[str]) -> Peers:
    peers = Peers()
    for name in sorted(names):
        peers.venvs[name] = _venvs.ensure(name, say)
    if "ours" in peers.venvs:
        peers.ours_content = _venvs.install_ours(peers.venvs["ours"], say)
    return peers


def child_env(config: Config, endpoint: str, workdir: Path, peers: Peers) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        {
            "OTEL_SERVICE_NAME": f"bench-{config.name}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            # otel-excellence's default interval; vanilla's is 60 s. The same for all.
            "OTEL_METRIC_EXPORT_INTERVAL": "15000",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.update(dict(config.env))
    if config.instrumented:
        # Exactly what `opentelemetry-instrument python app.py` sets before it execs the
        # program: its sitecustomize first, then the working directory. Done here without
        # the exec hop so that valgrind sees one program.
        venv = peers.venvs[config.venv]
        env["PYTHONPATH"] = os.pathsep.join([peers.autodir(venv), str(workdir)])
    return env


def run_driver(
    config: Config,
    endpoint: str,
    peers: Peers,
    workdir: Path,
    redis_port: int,
    *,
    warmup: int,
    requests: int,
    flush: bool = False,
    prefix: list[str] | None = None,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    venv = peers.venvs[config.venv]
    run_dir = Path(tempfile.mkdtemp(prefix=f"{config.name}-", dir=workdir))
    # tmpfs where there is one: the INSERT's commit must not wait for a disk.
    shm = Path("/dev/shm")  # noqa: S108 - a folder of ours (0700), removed after each run
    # One path for every process (the bench holds its lock): the sqlite3 instrumentation
    # names spans after it, and the configurations' span names must compare.
    db_dir = (shm if shm.is_dir() else _venvs.CACHE) / "oxbench-db"
    shutil.rmtree(db_dir, ignore_errors=True)
    db_dir.mkdir(mode=0o700)
    db_path = db_dir / "bench.db"
    args = [
        *(prefix or []), venv.python, str(workdir / "request_app.py"), "--config", config.name,
        "--redis-port", str(redis_port), "--db", str(db_path), "--warmup", str(warmup),
        "--requests", str(requests), *(["--flush"] if flush else []), *(extra or []),
    ]  # fmt: skip
    log = run_dir / "stderr.log"
    environ = {**child_env(config, endpoint, run_dir, peers), **(env or {})}
    try:
        with log.open("wb") as stderr:
            result = subprocess.run(
                args, cwd=run_dir, env=environ,
                stdout=subprocess.PIPE, stderr=stderr, timeout=1800, check=False,
            )  # fmt: skip
    finally:
        shutil.rmtree(db_path.parent, ignore_errors=True)
    line = next(
        (x for x in result.stdout.decode().splitlines() if x.startswith("BENCH-RESULT ")), None
    )
    if result.returncode != 0 or line is None:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"bench: {config.name} failed (exit {result.returncode}):\n{tail}")
    measured: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    measured["stderr_log"] = str(log)
    check_loaded(config, measured["loaded"], peers)
    return measured


def check_loaded(config: Config, loaded: dict[str, Any], peers: Peers) -> None:
    """Refuse to report a process that did not run what its configuration names."""
    ours_file = loaded["otel_excellence"]
    problems = []
    if config.venv == "ours":
        venv_path = str(peers.venvs["ours"].path)
        if not ours_file or not ours_file.startswith(venv_path):
            problems.append(f"otel_excellence loaded from {ours_file}, not from {venv_path}")
        if config.name == "ours-bare" and not loaded["switch_applied"]:
            problems.append(
                "the enrichers switch did not apply "
                f"({loaded.get('switch_error') or 'configurator._enrichers is gone'}); "
                "update SWITCH_MODULE in benchmarks/_venvs.py"
            )
        if config.name == "ours" and loaded["switch_applied"]:
            problems.append("the enrichers switch applied without being asked")
    elif ours_file:
        problems.append(f"otel_excellence was loaded ({ours_file}): the egg-info trap")
    if config.instrumented and loaded["tracer_provider"] != "TracerProvider":
        problems.append(f"no SDK tracer provider ({loaded['tracer_provider']})")
    if config.name == "logfire" and not loaded["logfire"]:
        problems.append("logfire not loaded")
    if problems:
        raise SystemExit(f"bench: {config.name}: " + "; ".join(problems))


# -- stage: request ---------------------------------------------------------------------
def dead_endpoint() -> str:
    # A loopback port nobody listens on: every export is refused at once.
    return f"http://127.0.0.1:{free_port()}"


def stage_request(args: argparse.Namespace, peers: Peers, workdir: Path) -> dict[str, Any]:
    runs = [("none", "live")] + [
        (name, endpoint) for name in args.config_list if name != "none" for endpoint in ENDPOINTS
    ]
    cpu: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    wall: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    thread: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    exported: dict[str, Any] = {}
    sink = HttpSink().start()
    try:
        with redis_server(workdir) as redis_port:
            for round_index in range(args.rounds):
                shift = round_index % len(runs)
                order = runs[shift:] + runs[:shift]
                say(f"bench: request round {round_index + 1}/{args.rounds}")
                for name, kind in order:
                    config = CONFIGS[name]
                    verify = round_index == 0 and kind == "live" and name != "none"
                    sink.keep = verify
                    sink.take()
                    result = run_driver(
                        config,
                        sink.endpoint if kind == "live" else dead_endpoint(),
                        peers, workdir, redis_port,
                        warmup=args.warmup, requests=args.requests, flush=kind == "live",
                    )  # fmt: skip
                    cpu[(name, kind)].append(result["cpu_us"])
                    wall[(name, kind)].append(result["wall_us"])
                    thread[(name, kind)].append(result["thread_cpu_us"])
                    if verify:
                        received = decode(sink.take()).as_dict()
                        received["per_request"] = {
                            key: received[key] / result["total_requests"]
                            for key in ("spans", "logs", "metric_points")
                        }
                        exported[name] = received
    finally:
        sink.stop()
    check_exports(exported)
    return {
        "rounds": args.rounds,
        "requests": args.requests,
        "warmup": args.warmup,
        "cpu_us": {f"{n}/{k}": v for (n, k), v in cpu.items()},
        "wall_us": {f"{n}/{k}": v for (n, k), v in wall.items()},
        "thread_cpu_us": {f"{n}/{k}": v for (n, k), v in thread.items()},
        "exported": exported,
    }


def check_exports(exported: dict[str, Any]) -> None:
    """What each configuration exported in its first live run: proof it ran as named."""
    problems = []
    for name, received in exported.items():
        if received["spans"] == 0:
            problems.append(f"{name} exported no spans")
        if name in ("vanilla", "ours-bare") and received["ours_attributes"]:
            problems.append(f"{name} exported otel-excellence attributes")
        if name == "ours" and not received["ours_attributes"]:
            problems.append("ours exported no otel-excellence attribute")
        if name != "logfire" and received["logs"] == 0:
            problems.append(f"{name} exported no log record")
    if problems:
        raise SystemExit("bench: " + "; ".join(problems))
    counts = {n: r["per_request"]["spans"] for n, r in exported.items() if n != "logfire"}
    if counts and max(counts.values()) - min(counts.values()) > 0.05:
        say(f"bench: WARNING spans per request differ between OTel configurations: {counts}")


def ratio(cpu: dict[str, list[float]], key: str, base: str) -> str:
    return paired(cpu[key], cpu[base]).fmt() if base in cpu else "n/a"


def report_request(data: dict[str, Any]) -> list[str]:
    cpu = data["cpu_us"]
    lines = [
        f"### CPU per request ({data['rounds']} rounds x {data['requests']} requests per "
        f"process, after {data['warmup']} warm-up requests)",
        "",
        "CPU = user + system time of the whole process (every thread, the batch "
        "processors' export threads included) over the measured requests.",
        "",
        "| configuration | endpoint | CPU µs/request | × uninstrumented | × vanilla "
        "(paired) | × logfire (paired) | dead ÷ live (paired) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, values in cpu.items():
        name, kind = key.split("/")
        row = [CONFIGS[name].label, kind if name != "none" else "-", summarize(values).fmt(0)]
        row.append(ratio(cpu, key, "none/live"))
        row.append(ratio(cpu, key, f"vanilla/{kind}") if name != "none" else "")
        row.append(ratio(cpu, key, f"logfire/{kind}") if name != "none" else "")
        row.append(ratio(cpu, key, f"{name}/live") if kind == "dead" else "")
        lines.append("| " + " | ".join(row) + " |")
    spans = data["exported"].get("ours", {}).get("per_request", {}).get("spans")
    if spans and "ours-bare/live" in cpu:
        extra = [a - b for a, b in zip(cpu["ours/live"], cpu["ours-bare/live"], strict=True)]
        lines += [
            "",
            f"Enrichment on the reference request ({spans:.2f} spans/request): "
            f"{summarize([e / spans for e in extra]).fmt(1, ' µs')} per span "
            "(everything on minus enrichers removed, paired per round).",
        ]
    lines += [
        "",
        "| configuration | spans/request | log records/request | metric points exported |",
        "|---|---|---|---|",
    ]
    for name, received in data["exported"].items():
        per = received["per_request"]
        lines.append(
            f"| {CONFIGS[name].label} | {per['spans']:.2f} | {per['logs']:.2f} | "
            f"{received['metric_points']} |"
        )
    return lines


# -- stage: callgrind ---------------------------------------------------------------------
def callgrind_lib(say_: Any = say) -> Path | None:
    """A tiny shared library that switches callgrind's instrumentation on and off."""
    source = HERE / "callgrind_toggle.c"
    if not shutil.which("valgrind") or not shutil.which("gcc"):
        say_("bench: valgrind or gcc missing; no instruction counts")
        return None
    import hashlib

    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    lib = _venvs.CACHE / f"callgrind_toggle-{digest}.so"
    if not lib.exists():
        built = subprocess.run(
            ["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(source)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if built.returncode != 0:
            say_(f"bench: cannot build the callgrind toggle: {built.stderr.strip()}")
            return None
    return lib


def stage_callgrind(args: argparse.Namespace, peers: Peers, workdir: Path) -> dict[str, Any]:
    lib = callgrind_lib()
    if lib is None:
        return {}
    results: dict[str, float] = {}
    application: dict[str, float] = {}
    requests_only: dict[str, float] = {}
    sink = HttpSink(keep=False).start()
    try:
        with redis_server(workdir) as redis_port:
            for name in args.config_list:
                config = CONFIGS[name]
                out = workdir / f"callgrind-{name}"
                out.mkdir()
                say(f"bench: callgrind {name} ({args.callgrind_requests} requests)")
                started = time.monotonic()
                run_driver(
                    config, sink.endpoint, peers, workdir, redis_port,
                    warmup=args.callgrind_warmup, requests=args.callgrind_requests,
                    prefix=["valgrind", "--tool=callgrind", "--instr-atstart=no",
                            "--separate-threads=yes",
                            f"--callgrind-out-file={out}/callgrind.out.%p"],
                    extra=["--callgrind-lib", str(lib)], flush=True,
                    # Under valgrind 150 requests take seconds of wall time, so a periodic
                    # metric collection (every 15 s) fell inside the window in some runs
                    # and not in others. Without it, the window holds the requests and the
                    # final flush (the batches still queued, one collection and export of
                    # every metric), the same for every configuration; the application
                    # thread's requests are also read apart from its flush.
                    env={"OTEL_METRIC_EXPORT_INTERVAL": str(3_600_000)},
                )  # fmt: skip
                per_thread = thread_instructions(out)
                results[name] = sum(per_thread.values()) / args.callgrind_requests
                application[name] = per_thread.get(1, 0) / args.callgrind_requests
                alone = request_instructions(out)
                if alone is not None:
                    requests_only[name] = alone / args.callgrind_requests
                took = time.monotonic() - started
                say(f"bench:   {results[name]:,.0f} instructions/request, application thread "
                    f"{application[name]:,.0f}, its requests without the flush "
                    f"{requests_only.get(name, 0):,.0f} ({took:.0f} s)")  # fmt: skip
    finally:
        sink.stop()
    return {
        "requests": args.callgrind_requests,
        "instructions": results,
        "application_thread": application,
        "application_requests": requests_only,
    }


REQUESTS_TRIGGER = "Client Request: requests"  # callgrind_toggle.c's oxbench_mark()


def callgrind_parts(out: Path) -> list[tuple[int, str, int]]:
    """(thread, trigger, instructions) of each of callgrind's ``--separate-threads``
    files: ``callgrind.out.<pid>-<thread>`` at exit, ``callgrind.out.<pid>.<part>-<thread>``
    for a dump made by oxbench_mark() (of the calling thread only)."""
    parts: list[tuple[int, str, int]] = []
    for path in out.iterdir():
        thread = int(path.name.rsplit("-", 1)[1]) if "-" in path.name else 1
        trigger, total = "", 0
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("desc: Trigger: "):
                trigger = line.removeprefix("desc: Trigger: ")
            elif line.startswith("totals:"):
                # The part's own count. After a dump, the last part's "summary:" is the
                # count since the zeroing minus the dumped part, wrapped below zero.
                total = int(line.split()[1])
            elif line.startswith("summary:") and not total:
                total = int(line.split()[1])
        parts.append((thread, trigger, total))
    return parts


def thread_instructions(out: Path) -> dict[int, int]:
    """Instructions per thread (1 is the main thread, which runs the requests), every
    part of the window."""
    totals: dict[int, int] = {}
    for thread, _, total in callgrind_parts(out):
        totals[thread] = totals.get(thread, 0) + total
    return totals


def request_instructions(out: Path) -> int | None:
    """The main thread's instructions over the requests alone (its part before the
    window's final flush), or None without that part."""
    found = [total for thread, trigger, total in callgrind_parts(out)
             if thread == 1 and trigger == REQUESTS_TRIGGER]  # fmt: skip
    return sum(found) if found else None


def report_callgrind(data: dict[str, Any], spans: float | None = None) -> list[str]:
    if not data:
        return ["### Instructions per request", "", "valgrind not available: not measured."]
    ins = data["instructions"]
    app = data.get("application_thread", {})
    alone = data.get("application_requests", {})
    lines = [
        f"### Instructions per request (callgrind, {data['requests']} requests, live endpoint)",
        "",
        "All threads over the window: the requests, then a flush of every signal. The "
        "application's thread: its requests alone, before that flush (the batch processors "
        "export on the thread that flushes, so its flush depends on how much was still queued).",
        "",
    ]
    split = bool(alone)
    if split:
        lines += [
            "| configuration | all threads | × vanilla | × logfire "
            "| application thread, requests | × vanilla | × logfire |",
            "|---|---|---|---|---|---|---|",
        ]
    else:
        lines += [
            "| configuration | all threads | × vanilla | × logfire |",
            "|---|---|---|---|",
        ]

    def ratios(values: dict[str, float], name: str) -> list[str]:
        value = values.get(name)
        if value is None:
            return ["n/a"] * 3
        return [f"{value:,.0f}"] + [
            f"{value / values[base]:.2f}" if base in values else "n/a"
            for base in ("vanilla", "logfire")
        ]

    for name in ins:
        cells = ratios(ins, name) + (ratios(alone, name) if split else [])
        lines.append(f"| {CONFIGS[name].label} | {' | '.join(cells)} |")
    if spans and "ours" in ins and "ours-bare" in ins:
        lines += [
            "",
            f"Enrichment: {(ins['ours'] - ins['ours-bare']) / spans:,.0f} instructions per span "
            f"({spans:.2f} spans/request; everything on minus enrichers removed).",
        ]
        # The enrichers run where spans end, on the application's thread; its requests
        # alone leave out the export threads and the flush (our own metrics export there).
        if "ours" in alone and "ours-bare" in alone:
            lines.append(
                f"On the application's thread, its requests alone: "
                f"{(alone['ours'] - alone['ours-bare']) / spans:,.0f} instructions per span "
                f"(everything on {alone['ours']:,.0f}, enrichers removed "
                f"{alone['ours-bare']:,.0f} per request)."
            )
        elif "ours" in app and "ours-bare" in app:  # figures from before the split
            lines.append(
                f"On the application's thread alone: "
                f"{(app['ours'] - app['ours-bare']) / spans:,.0f} instructions per span "
                f"(everything on {app['ours']:,.0f}, enrichers removed "
                f"{app['ours-bare']:,.0f} per request)."
            )
    return lines


# -- stage: rss --------------------------------------------------------------------------
def stage_rss(
    args: argparse.Namespace, peers: Peers, workdir: Path, spans: float
) -> dict[str, Any]:
    """RSS after a warm-up (queue full, drop path running) and after ``--rss-spans`` more."""
    requests = int(args.rss_spans / spans + 0.5)
    results: dict[str, Any] = {"spans": args.rss_spans, "requests": requests}
    with redis_server(workdir) as redis_port:
        # The uninstrumented app's own growth (SQLite's table, allocator) is the baseline.
        for name in ("none", "vanilla", "ours"):
            say(f"bench: rss {name}: {requests} requests ({args.rss_spans} spans), dead endpoint")
            measured = run_driver(
                CONFIGS[name], dead_endpoint(), peers, workdir, redis_port,
                warmup=1000, requests=requests,
            )  # fmt: skip
            results[name] = {
                "rss_before_kib": measured["rss_before_kib"],
                "rss_mid_kib": measured.get("rss_mid_kib", 0),
                "rss_after_kib": measured["rss_after_kib"],
                "growth_mib": (measured["rss_after_kib"] - measured["rss_before_kib"]) / 1024,
                "cpu_us": measured["cpu_us"],
            }
    return results


def report_rss(data: dict[str, Any]) -> list[str]:
    lines = [
        f"### Memory at a dead endpoint ({data['spans']:,} spans = {data['requests']:,} "
        "requests after 1,000 warm-up requests)",
        "",
        "| configuration | RSS after warm-up MiB | half-way MiB | RSS after MiB | growth MiB | "
        "growth over uninstrumented MiB | CPU µs/request |",
        "|---|---|---|---|---|---|---|",
    ]
    base = data.get("none", {}).get("growth_mib")
    for name in ("none", "vanilla", "ours"):
        if name not in data:
            continue
        r = data[name]
        over = f"{r['growth_mib'] - base:.1f}" if base is not None and name != "none" else ""
        lines.append(
            f"| {CONFIGS[name].label} | {r['rss_before_kib'] / 1024:.1f} | "
            f"{r.get('rss_mid_kib', 0) / 1024:.1f} | {r['rss_after_kib'] / 1024:.1f} | "
            f"{r['growth_mib']:.1f} | {over} | "
            f"{r['cpu_us']:.0f} |"
        )
    return lines


# -- stages run as scripts in otel-excellence's venv -------------------------------------------
def run_script(
    peers: Peers, workdir: Path, script: str, script_args: list[str]
) -> tuple[str, dict[str, Any]]:
    """A benchmark script in the ours venv, from outside the checkout; (table, json)."""
    out = workdir / f"{script}.json"
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["OTEL_SERVICE_NAME"] = "bench"
    result = subprocess.run(
        [peers.venvs["ours"].python, str(HERE / script), *script_args, "--json", str(out)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"bench: {script} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip(), json.loads(out.read_text())


# -- main ---------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((x.split(":", 1)[1].strip() for x in info if x.startswith("model name")), cpu)
    load = os.getloadavg()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_at_start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated")
    parser.add_argument("--rounds", type=int, help="request rounds (7; quick 3)")
    parser.add_argument("--requests", type=int, help="measured requests per process (1200)")
    parser.add_argument("--warmup", type=int, help="warm-up requests per process (300)")
    parser.add_argument("--callgrind-requests", type=int, help="requests under callgrind (150)")
    parser.add_argument("--callgrind-warmup", type=int, default=30)
    parser.add_argument("--rss-spans", type=int, help="spans at the dead endpoint (200000)")
    parser.add_argument("--gateway-seconds", type=float, help="hold 20,000 spans/s (60 s)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--plot", type=Path, help="draw the PNG here (default: beside the JSON)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--reprint", type=Path, help="print the tables of a saved results JSON")
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.requests = args.requests or (400 if args.quick else 1200)
    args.warmup = args.warmup or (100 if args.quick else 300)
    args.callgrind_requests = args.callgrind_requests or (60 if args.quick else 150)
    args.rss_spans = args.rss_spans or (50_000 if args.quick else 200_000)
    args.gateway_seconds = args.gateway_seconds or (15 if args.quick else 60)
    args.stage_list = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(args.stage_list) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; known: {', '.join(STAGES)}")
    chosen = {c.strip() for c in args.configs.split(",") if c.strip()}
    if chosen - set(CONFIGS):
        parser.error(f"unknown configuration(s) {sorted(chosen - set(CONFIGS))}")
    args.config_list = [name for name in CONFIGS if name in chosen or name == "none"]
    return args


def spans_per_request(results: dict[str, Any]) -> float | None:
    """What the request stage counted at the receiver for otel-excellence, if it ran."""
    exported = results.get("request", {}).get("exported", {})
    spans = exported.get("ours", {}).get("per_request", {}).get("spans")
    return float(spans) if spans else None


def run_stage(
    stage: str, args: argparse.Namespace, peers: Peers, workdir: Path, results: dict[str, Any]
) -> list[str]:
    """Run one stage, store its data in ``results``, return its Markdown."""
    if stage == "request":
        results["request"] = stage_request(args, peers, workdir)
        return report_request(results["request"])
    if stage == "callgrind":
        results["callgrind"] = stage_callgrind(args, peers, workdir)
        return report_callgrind(results["callgrind"], spans_per_request(results))
    if stage == "rss":
        results["rss"] = stage_rss(args, peers, workdir, spans_per_request(results) or 8.0)
        return report_rss(results["rss"])
    if stage == "gateway":
        import gateway_load

        rates = [20_000] if args.quick else [20_000, 40_000, 80_000]
        results["gateway"] = gateway_load.measure(
            rates, args.gateway_seconds, 20, generators=2, traces_per_batch=128, say=say
        )
        return [
            "### Our gateway (collector-config/gateway.yaml, GOMAXPROCS=2, gateway_load.py)",
            "",
            gateway_load.report(results["gateway"]),
        ]
    script, title, script_args = SCRIPTS[stage]
    say(f"bench: {stage} ({script})")
    table, results[stage] = run_script(peers, workdir, script, script_args[args.quick])
    return [f"### {title}", "", table]


def report_targets(results: dict[str, Any]) -> list[str]:
    """Issue 13's targets beside this run's figures (reported, never asserted)."""
    rows: list[tuple[str, str, str]] = []

    def median_ratio(data: dict[str, list[float]], a: str, b: str) -> float | None:
        return paired(data[a], data[b]).median if a in data and b in data else None

    def verdict(value: float | None, limit: float) -> str:
        if value is None:
            return "not measured"
        return "met" if value <= limit else "missed"

    cpu = results.get("request", {}).get("cpu_us", {})
    ins = results.get("callgrind", {}).get("instructions", {})
    spans = spans_per_request(results)
    value = median_ratio(cpu, "ours/live", "vanilla/live")
    extra = (
        f"; instructions {ins['ours'] / ins['vanilla']:.2f}"
        if {"ours", "vanilla"} <= set(ins)
        else ""
    )
    rows.append(
        (
            "everything on ≤ 1.05× vanilla CPU/request (stretch ≤ 1.00)",
            f"{value:.2f}{extra}" if value else "n/a",
            verdict(value, 1.05),
        )
    )
    value = median_ratio(cpu, "ours/live", "logfire/live")
    rows.append(
        ("everything on ≤ 0.55× logfire", f"{value:.2f}" if value else "n/a", verdict(value, 0.55))
    )
    if spans and "ours/live" in cpu and "ours-bare/live" in cpu:
        extra_cpu = [
            (a - b) / spans for a, b in zip(cpu["ours/live"], cpu["ours-bare/live"], strict=True)
        ]
        value = summarize(extra_cpu).median
        text = f"{value:.1f} µs"
        if {"ours", "ours-bare"} <= set(ins):
            text += f" ({(ins['ours'] - ins['ours-bare']) / spans:,.0f} instructions)"
        rows.append(("enrichment ≤ 3 µs/span on the reference request", text, verdict(value, 3.0)))
    per_span = results.get("spans", {}).get("per_span_us", {})
    if per_span:
        for kind in per_span.get("distro", {}):
            diff = [
                a - b for a, b in zip(per_span["distro"][kind], per_span["bare"][kind], strict=True)
            ]
            value = summarize(diff).median
            rows.append(
                (
                    f"enrichment ≤ 3 µs/span: {kind} span (span_chain.py)",
                    f"{value:.1f} µs",
                    verdict(value, 3.0),
                )
            )
    value = median_ratio(cpu, "ours/dead", "ours/live")
    rows.append(
        (
            "dead endpoint ≤ 1.02× live, per request",
            f"{value:.2f}" if value else "n/a",
            verdict(value, 1.02),
        )
    )
    rss = results.get("rss", {})
    if "ours" in rss:
        value = rss["ours"]["growth_mib"] - rss.get("none", {}).get("growth_mib", 0.0)
        rows.append(
            (
                f"RSS growth ≤ 10 MiB over {rss['spans']:,} spans at a dead endpoint",
                f"{value:.1f} MiB",
                verdict(value, 10.0)
                if rss["spans"] >= 200_000
                else "fewer spans than the target's",
            )
        )
    logs = results.get("logs", {})
    for event in ("structlog event", "stdlib record"):
        if f"{event}/distro" in logs:
            value = median_ratio(logs, f"{event}/distro", f"{event}/vanilla")
            rows.append(
                (f"log bridge ≤ 1.05× vanilla's: {event}", f"{value:.2f}", verdict(value, 1.05))
            )
    exits = results.get("shutdown", {})
    for key, times in exits.items():
        if key.endswith("/otel-excellence"):
            rows.append(
                (
                    f"exit time with a dead collector, {key.split('/')[0]} spans",
                    f"{statistics.median(times):.2f} s (vanilla "
                    f"{statistics.median(exits[key.replace('otel-excellence', 'vanilla')]):.2f} s)",
                    "reported",
                )
            )
    gateway = results.get("gateway", {}).get("levels", [])
    if gateway:
        first = gateway[0]
        best = max(
            (lv for lv in gateway if lv["sustained"]),
            default=None,
            key=lambda lv: lv["achieved_spans_per_s"],
        )
        text = (
            f"{first['achieved_spans_per_s']:,.0f} spans/s, refused {first['refused_spans']:,.0f}, "
            f"RSS peak {first['gateway_rss_peak_mib']:.0f} MiB"
        )
        if best is not None:
            text += f"; highest sustained here {best['achieved_spans_per_s']:,.0f}/s"
        rows.append(
            (
                "gateway ≥ 20,000 spans/s on 2 cores, nothing refused",
                text,
                "met" if first["sustained"] and first["target_spans_per_s"] >= 20_000 else "missed",
            )
        )
    lines = ["### Targets (issue 13)", "", "| target | this run | |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return lines


def reprint(path: Path) -> None:
    """The Markdown of a saved run, without measuring again."""
    results = json.loads(path.read_text())
    tables = results.get("tables", {})
    renderers = {
        "request": report_request,
        "callgrind": lambda d: report_callgrind(d, spans_per_request(results)),
        "rss": report_rss,
    }
    for stage in STAGES:
        if stage in tables:
            print("\n".join(tables[stage]) + "\n")
        elif stage in results and stage in renderers:
            print("\n".join(renderers[stage](results[stage])) + "\n")
    print("\n".join(report_targets(results)))


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One bench at a time: two would disturb each other's figures, and a second one may
    re-install otel-excellence into the venv the first is measuring."""
    import fcntl

    _venvs.CACHE.mkdir(parents=True, exist_ok=True)
    with (_venvs.CACHE / "bench.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("bench: another bench run holds the lock; waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main() -> None:
    args = parse_args()
    if args.reprint:
        reprint(args.reprint)
        return
    with exclusive():
        measure_all(args)


def measure_all(args: argparse.Namespace) -> None:
    info = machine()
    say(f"bench: {info['date']} on {info['cores']} x {info['cpu']} (load {info['load_at_start']})")
    needed = {CONFIGS[name].venv for name in args.config_list} | {"ours"}
    peers = prepare(needed | ({"vanilla"} if "rss" in args.stage_list else set()))
    info["pins"] = json.dumps({n: _venvs.pins(v) for n, v in peers.venvs.items()})
    info["otel_excellence_sources"] = peers.ours_content
    results: dict[str, Any] = {"machine": info, "args": sys.argv[1:]}
    report = [
        f"## {info['date']}: {info['cores']} x {info['cpu']}, Python {info['python']}, "
        f"load average at start {info['load_at_start']}",
        "",
    ]
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=_venvs.CACHE))
    shutil.copy2(HERE / "request_app.py", workdir / "request_app.py")
    results["tables"] = {}
    try:
        for stage in args.stage_list:
            started = time.monotonic()
            results["tables"][stage] = run_stage(stage, args, peers, workdir, results)
            report += [*results["tables"][stage], ""]
            say(f"bench: stage {stage} took {time.monotonic() - started:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report += report_targets(results)
    print("\n".join(report))
    target = args.json or _venvs.CACHE / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1))
    say(f"bench: results in {target}")
    if not args.no_plot and {"request", "spans"} & set(results):
        plot(target, args.plot or target.with_suffix(".png"))


def plot(results: Path, png: Path) -> None:
    """Draw the PNG with matplotlib from the bench's own tools venv."""
    tools = _venvs.ensure("tools", say)
    subprocess.run(
        [tools.python, str(HERE / "plot.py"), str(results), str(png)], check=True, cwd=_venvs.CACHE
    )
    say(f"bench: plot in {png}")


if __name__ == "__main__":
    main()
