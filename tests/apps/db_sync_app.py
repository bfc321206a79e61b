"""A Flask + SQLAlchemy (sync) catalogue with N+1 pages, a slow report and a cache page.

No OpenTelemetry code beyond one span of its own standing in for a template render.
Run under ``opentelemetry-instrument``. Environment: DB_URL (SQLAlchemy URL: sqlite,
postgresql+psycopg2, postgresql+psycopg), REDIS_URL, PORT.
"""

import os
import threading

import redis
import sqlalchemy as sa
from db_models import (
    DASHBOARD,
    FEW,
    MANY,
    RENDER_SPAN,
    RENDERED,
    SAME,
    Base,
    StatementCount,
    books_of_author_one,
    catalogue,
    first_authors,
    slow_statement,
    sqlite_sleep,
)
from flask import Flask, jsonify, render_template_string
from opentelemetry import trace
from sqlalchemy.orm import Session

POOL = 4  # connections opened before serving: concurrent requests open none later
TEMPLATE = "{% for a in authors %}{{ a.name }}: {{ a.books | length }} books\n{% endfor %}"

app = Flask(__name__)
engine = sa.create_engine(os.environ["DB_URL"], pool_size=POOL)
cache = redis.Redis.from_url(os.environ["REDIS_URL"])
statements = StatementCount()
tracer = trace.get_tracer("db_sync_app")
pair = threading.Barrier(2, timeout=20)


@sa.event.listens_for(engine, "connect")
def _register_sleep(dbapi_connection, record):  # type: ignore[no-untyped-def]
    if engine.dialect.name == "sqlite":
        dbapi_connection.create_function("sleep_ms", 1, sqlite_sleep)


def lazy_loads(n: int) -> dict[str, int]:
    with Session(engine) as session:
        authors = session.scalars(first_authors(n)).all()
        return {"books": sum(len(author.books) for author in authors)}


@app.get("/authors/few")
def few():  # type: ignore[no-untyped-def]
    return jsonify(lazy_loads(FEW))


@app.get("/authors/many")
def many():  # type: ignore[no-untyped-def]
    return jsonify(lazy_loads(MANY))


@app.get("/authors/paired/<int:n>")
def paired(n: int):  # type: ignore[no-untyped-def]
    pair.wait()  # both requests of a pair run at the same time, on two threads
    return jsonify(lazy_loads(n))


@app.get("/authors/same")
def same():  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        rows = [len(session.scalars(books_of_author_one()).all()) for _ in range(SAME)]
    return jsonify(books=sum(rows))


@app.get("/authors/rendered")
def rendered():  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        authors = session.scalars(first_authors(RENDERED)).all()
        # The lazy loads run in the template; the render is a span of the app's own.
        with tracer.start_as_current_span(RENDER_SPAN):
            page = render_template_string(TEMPLATE, authors=authors)
    return jsonify(lines=len(page.splitlines()))


@app.get("/dashboard")
def dashboard():  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        authors = session.scalars(first_authors(max(DASHBOARD))).all()
        books = sum(len(author.books) for author in authors[: DASHBOARD[0]])
        reviews = sum(len(author.reviews) for author in authors[: DASHBOARD[1]])
    return jsonify(books=books, reviews=reviews)


@app.get("/reports/slow")
def slow_report():  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        connection.execute(slow_statement(engine.dialect.name))
    return jsonify(done=True)


@app.get("/cache/<key>")
def cached(key: str):  # type: ignore[no-untyped-def]
    return jsonify(hit=cache.get(f"cache:{key}") is not None)


@app.get("/statements")
def executed():  # type: ignore[no-untyped-def]
    return jsonify(statements.snapshot())


def prepare() -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(catalogue())
        session.commit()
    connections = [engine.connect() for _ in range(POOL)]
    for connection in connections:
        connection.close()
    cache.set("cache:present", "1")


if __name__ == "__main__":
    prepare()
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
