"""Generates traces of known kinds, for the Collector tests. No OpenTelemetry setup of its own.

TRAFFIC="ordinary:200,error:5,slow:3,n_plus_one:2" - how many traces of each kind.
SQLITE_PATH - the database file. Prints {"kind": [trace ids...]} as JSON on stdout.
"""

import contextlib
import json
import logging
import os
import sys
import time

import sqlalchemy as sa
from opentelemetry import trace

logging.getLogger("traffic").setLevel(logging.INFO)
log = logging.getLogger("traffic")
tracer = trace.get_tracer("traffic.app")


def engine() -> sa.Engine:
    db = sa.create_engine(f"sqlite:///{os.environ['SQLITE_PATH']}")

    @sa.event.listens_for(db, "connect")
    def _functions(connection, _record):  # type: ignore[no-untyped-def]
        connection.create_function("sleep_ms", 1, lambda ms: time.sleep(ms / 1000) or 0)

    with db.begin() as connection:
        connection.execute(sa.text("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY)"))
        connection.execute(sa.text("DELETE FROM items"))
        connection.execute(sa.text("INSERT INTO items (id) VALUES (1), (2), (3), (4), (5), (6)"))
    return db


def run(db: sa.Engine, kind: str, index: int) -> str:
    with contextlib.suppress(TimeoutError), tracer.start_as_current_span(f"{kind}-{index}") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        log.info("handling %s %d", kind, index)
        with db.connect() as connection:
            if kind == "slow":
                connection.execute(sa.text("SELECT sleep_ms(300)"))
            elif kind == "n_plus_one":
                for item in range(1, 7):
                    connection.execute(sa.text("SELECT id FROM items WHERE id = :id"), {"id": item})
            else:
                connection.execute(sa.text("SELECT count(*) FROM items"))
        with tracer.start_as_current_span("render"):
            if kind == "error":
                with (
                    contextlib.suppress(TimeoutError),
                    tracer.start_as_current_span("call-upstream"),
                ):
                    raise TimeoutError("upstream timed out")
                raise TimeoutError("request timed out")
    return trace_id


def main() -> int:
    db = engine()
    plan = [item.split(":") for item in os.environ["TRAFFIC"].split(",") if item]
    ids: dict[str, list[str]] = {}
    for kind, count in plan:
        for index in range(int(count)):
            ids.setdefault(kind, []).append(run(db, kind, index))
    print(json.dumps(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
