"""A Flask app on a database driver alone, no ORM: sqlite3 or psycopg (3), one
connection per request, statements written by hand.

No OpenTelemetry code beyond one span of its own standing in for a template render.
Run under ``opentelemetry-instrument``. Environment: DRIVER (sqlite3 or psycopg),
DATABASE (a file path for sqlite3, a libpq DSN for psycopg), PORT.
"""

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import Flask, jsonify
from opentelemetry import trace

DRIVER = os.environ["DRIVER"]
DATABASE = os.environ["DATABASE"]
SYSTEM = "sqlite" if DRIVER == "sqlite3" else "postgresql"
STATEMENTS = {  # each driver's placeholder style
    "sqlite3": {
        "titles": "SELECT title FROM books WHERE author_id = ?",
        "insert": "INSERT INTO books (author_id, title) VALUES (?, ?)",
        "create": "CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER, title TEXT)",
        "slow": "SELECT sleep_ms(?)",
    },
    "psycopg": {
        "titles": "SELECT title FROM books WHERE author_id = %s",
        "insert": "INSERT INTO books (author_id, title) VALUES (%s, %s)",
        "create": "CREATE TABLE books (id SERIAL PRIMARY KEY, author_id INTEGER, title TEXT)",
        "slow": "SELECT pg_sleep(%s)",
    },
}[DRIVER]
SLOW_ARGUMENT = 1.2 if DRIVER == "psycopg" else 1200  # seconds / milliseconds
RENDER_SPAN = "render titles.html"

app = Flask(__name__)
tracer = trace.get_tracer("db_driver_app")
_lock = threading.Lock()
executed = {SYSTEM: 0}  # the app's own count of the statements it executed


def sleep_ms(ms: int) -> int:
    time.sleep(ms / 1000)
    return ms


@contextmanager
def connection() -> Iterator[Any]:
    if DRIVER == "sqlite3":
        conn: Any = sqlite3.connect(DATABASE)
        conn.create_function("sleep_ms", 1, sleep_ms)
    else:
        conn = psycopg.connect(DATABASE)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def run(conn: Any, statement: str, parameters: Sequence[Any] = ()) -> list[Any]:
    with _lock:
        executed[SYSTEM] += 1
    cursor = conn.cursor()
    cursor.execute(statement, parameters)
    rows = cursor.fetchall() if cursor.description else []
    cursor.close()
    return rows


def titles(authors: Sequence[int]) -> int:
    with connection() as conn:
        return sum(len(run(conn, STATEMENTS["titles"], (author,))) for author in authors)


@app.get("/titles/few")
def few():  # type: ignore[no-untyped-def]
    return jsonify(titles=titles(range(1, 4)))


@app.get("/titles/many")
def many():  # type: ignore[no-untyped-def]
    return jsonify(titles=titles(range(1, 10)))


@app.get("/titles/same")
def same():  # type: ignore[no-untyped-def]
    return jsonify(titles=titles([1] * 6))


@app.get("/titles/literals")
def literals():  # type: ignore[no-untyped-def]
    # The values written into the text, no parameters: only repetition can tell.
    texts = [f"SELECT title FROM books WHERE author_id = {n}" for n in range(1, 10)]  # noqa: S608
    with connection() as conn:
        found = [run(conn, text) for text in texts]
    return jsonify(titles=sum(map(len, found)))


@app.get("/titles/rendered")
def rendered():  # type: ignore[no-untyped-def]
    with tracer.start_as_current_span(RENDER_SPAN):
        return jsonify(titles=titles(range(1, 10)))


@app.get("/reports/slow")
def slow_report():  # type: ignore[no-untyped-def]
    with connection() as conn:
        run(conn, STATEMENTS["slow"], (SLOW_ARGUMENT,))
    return jsonify(done=True)


@app.get("/statements")
def statements():  # type: ignore[no-untyped-def]
    with _lock:
        return jsonify(executed)


def prepare() -> None:
    with connection() as conn:
        run(conn, "DROP TABLE IF EXISTS books")
        run(conn, STATEMENTS["create"])
        for author in range(1, 13):
            for k in (1, 2):
                run(conn, STATEMENTS["insert"], (author, f"book {author}.{k}"))


if __name__ == "__main__":
    prepare()
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
