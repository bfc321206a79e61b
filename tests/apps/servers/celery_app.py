"""A Celery app for the prefork worker tests, no telemetry code of its own.

Broker and result backend: the real Redis at ``REDIS_URL``. The tasks run what the
distro's findings look for: an error, an N+1 (the same SELECT once per item), and a slow
query (SQLite calling a function that sleeps), each straight under the task.
"""

import os
import sqlite3
import time

from celery import Celery

app = Celery("celery_app", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.update(broker_connection_retry_on_startup=True)

ITEMS = 6


def _db() -> sqlite3.Cursor:
    db = sqlite3.connect(":memory:")
    db.create_function("pause_ms", 1, lambda ms: time.sleep(ms / 1000) or ms)
    cursor = db.cursor()
    cursor.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
    cursor.executemany("INSERT INTO item VALUES (?, ?)", [(i, f"item {i}") for i in range(ITEMS)])
    return cursor


@app.task
def add(x: int, y: int) -> dict[str, int]:
    return {"sum": x + y, "pid": os.getpid()}


@app.task
def list_items() -> dict[str, object]:
    db = _db()
    names = []
    for i in range(ITEMS):
        db.execute("SELECT name FROM item WHERE id = ?", (i,))
        names.append(db.fetchone()[0])
    return {"names": names, "pid": os.getpid()}


@app.task
def slow_report() -> dict[str, int]:
    db = _db()
    db.execute("SELECT pause_ms(300)")
    return {"pid": os.getpid()}


@app.task
def charge(order: int) -> None:
    raise TimeoutError(f"payment provider timed out on order {order}")
