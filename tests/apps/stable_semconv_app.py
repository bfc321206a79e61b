"""SQLAlchemy on SQLite, run with OTEL_SEMCONV_STABILITY_OPT_IN=database: the sqlite3
instrumentation then records db.client.operation.duration itself. Prints how many
SELECTs it ran. No OpenTelemetry code but one span around the work."""

import os
import sys

import sqlalchemy as sa
from opentelemetry import trace

engine = sa.create_engine(f"sqlite:///{os.environ['SQLITE_PATH']}")
with engine.begin() as connection:
    connection.execute(sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY)"))
selects = 0
with trace.get_tracer("stable.app").start_as_current_span("job"), engine.connect() as connection:
    for n in range(7):
        connection.execute(sa.text("SELECT id FROM items WHERE id = :id"), {"id": n})
        selects += 1
print("selects", selects)
sys.exit(0)
