"""The reference request, measured inside one fresh process (started by ``bench.py``).

One request = a real WSGI call into a Flask app (the Flask instrumentation's server span
is the parent), a SQLAlchemy SELECT and INSERT on SQLite (ORM-layer and sqlite3 driver
spans, as ``opentelemetry-bootstrap`` installs both), a Redis SET and GET against a real
redis-server on loopback, and one structlog event; everything exported by the
configuration under test.

This file runs inside each peer's own venv, from a folder outside the checkout, so it uses
only the standard library and the application's libraries. It prints one line,
``BENCH-RESULT {json}``; everything else goes to stderr.

Configurations (``--config``):
  none       no telemetry (run with plain ``python``)
  vanilla    ``opentelemetry-instrument`` with opentelemetry-distro
  ours       ``opentelemetry-instrument`` with otel-excellence
  ours-bare  the same with OXBENCH_NO_ENRICHERS=1 (see ``_venvs.py``)
  logfire    ``logfire.configure(send_to_logfire=False)`` plus its instrument_* calls;
             it exports over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import sys
import time
from typing import Any


def _logfire_setup() -> Any:
    import logfire

    logfire.configure(
        send_to_logfire=False,
        service_name=os.environ.get("OTEL_SERVICE_NAME", "bench"),
        console=False,
    )
    logfire.instrument_sqlalchemy()  # patches create_engine: call before the app builds one
    logfire.instrument_sqlite3()
    logfire.instrument_redis()
    return logfire


def build_app(config: str, redis_port: int, db_path: str) -> Any:
    import flask
    import redis
    import sqlalchemy as sa
    import structlog

    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    if config == "logfire":
        import logfire

        processors.append(logfire.StructlogProcessor())
    processors.append(structlog.processors.JSONRenderer())
    # The OTel structlog instrumentation re-inserts its processor when the app configures.
    structlog.configure(
        processors=processors,
        logger_factory=structlog.WriteLoggerFactory(file=open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, note TEXT)")
        )
        connection.execute(sa.text("CREATE INDEX orders_customer ON orders (customer)"))
    cache = redis.Redis(host="127.0.0.1", port=redis_port)
    log = structlog.get_logger("bench")
    app = flask.Flask("bench")

    @app.get("/orders/<int:customer>")
    def orders(customer: int) -> dict[str, Any]:
        with engine.begin() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT id, note FROM orders WHERE customer = :customer "
                    "ORDER BY id DESC LIMIT 5"
                ),
                {"customer": customer},
            ).fetchall()
            connection.execute(
                sa.text("INSERT INTO orders (customer, note) VALUES (:customer, :note)"),
                {"customer": customer, "note": "bench"},
            )
        key = f"orders:{customer}"
        cache.set(key, len(rows))
        cached = cache.get(key) is not None
        log.info("orders.listed", customer=customer, count=len(rows), cached=cached)
        return {"customer": customer, "count": len(rows)}

    if config == "logfire":
        import logfire

        logfire.instrument_flask(app)
    return app


def _start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
    _start_response.status = status  # type: ignore[attr-defined]
    return None


def one_request(app: Any, n: int) -> None:
    """A real WSGI call, as a server hands it to the app."""
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": f"/orders/{n % 50}",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "oxbench/1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    body = app(environ, _start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    if not _start_response.status.startswith("200"):  # type: ignore[attr-defined]
        raise SystemExit(f"request {n} failed: {_start_response.status}")  # type: ignore[attr-defined]


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _flush(config: str, logfire: Any) -> None:
    if logfire is not None:
        logfire.force_flush(timeout_millis=10_000)
        return
    if config == "none":
        return
    from opentelemetry import _logs, metrics, trace

    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(),
                     metrics.get_meter_provider()):  # fmt: skip
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(10_000)


def _loaded() -> dict[str, Any]:
    """What this process really runs: the check against the egg-info trap."""
    module = sys.modules.get("otel_excellence")
    switch = sys.modules.get("oxbench_switch")
    tracer_provider = None
    if "opentelemetry.trace" in sys.modules:
        from opentelemetry import trace

        tracer_provider = type(trace.get_tracer_provider()).__name__
    return {
        "otel_excellence": getattr(module, "__file__", None),
        "switch_applied": bool(getattr(switch, "applied", False)),
        "switch_error": getattr(switch, "error", None),
        "logfire": "logfire" in sys.modules,
        "tracer_provider": tracer_provider,
        "cwd": os.getcwd(),
        "sys_path0": sys.path[0] if sys.path else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--flush",
        action="store_true",
        help="flush every signal before and at the end of the measured requests, so the "
        "window holds exactly the export of what it produced (live endpoint only: at a dead "
        "one a flush waits for the exporter's retries)",
    )
    parser.add_argument("--callgrind-lib", help="toggle callgrind around the measured loop")
    args = parser.parse_args()

    logfire = _logfire_setup() if args.config == "logfire" else None
    app = build_app(args.config, args.redis_port, args.db)
    toggle = None
    if args.callgrind_lib:
        import ctypes

        toggle = ctypes.CDLL(args.callgrind_lib)

    for n in range(args.warmup):
        one_request(app, n)
    if args.flush:
        _flush(args.config, logfire)
    gc.collect()
    rss_before = _rss_kib()
    if toggle is not None:
        toggle.oxbench_start()
    times0 = os.times()
    cpu0, wall0, thread0 = time.process_time(), time.perf_counter(), time.thread_time()
    rss_mid = 0
    half = args.warmup + args.requests // 2
    for n in range(args.warmup, args.warmup + args.requests):
        one_request(app, n)
        if n == half:
            rss_mid = _rss_kib()  # linear growth vs a level reached: a leak vs a buffer filling
    if toggle is not None:
        toggle.oxbench_mark()  # the requests apart from the flush, on this thread
    if args.flush:
        _flush(args.config, logfire)
    # process_time: CPU of every thread of the process (the request thread, the batch
    # processors' export threads, the metric reader), user + system.
    cpu1, wall1, thread1 = time.process_time(), time.perf_counter(), time.thread_time()
    times1 = os.times()
    if toggle is not None:
        toggle.oxbench_stop()
    gc.collect()
    rss_after = _rss_kib()
    result = {
        "config": args.config,
        "requests": args.requests,
        "total_requests": args.warmup + args.requests,
        "cpu_us": (cpu1 - cpu0) / args.requests * 1e6,
        "thread_cpu_us": (thread1 - thread0) / args.requests * 1e6,
        "system_cpu_us": (times1.system - times0.system) / args.requests * 1e6,
        "wall_us": (wall1 - wall0) / args.requests * 1e6,
        "rss_before_kib": rss_before,
        "rss_mid_kib": rss_mid,
        "rss_after_kib": rss_after,
        "loaded": _loaded(),
    }
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    sys.stderr.flush()
    # Exit without the providers' shutdown: with a dead endpoint vanilla waits for its
    # retries (tens of seconds; benchmarks/shutdown.py measures exit time on its own).
    os._exit(0)


if __name__ == "__main__":
    main()
