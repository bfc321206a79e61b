"""A small web service with every problem the dashboards and alerts are about.

No OpenTelemetry code of its own: the test runs it under ``opentelemetry-instrument``.
Flask on a loopback port, called ROUNDS times by a client in the same process:
  GET  /authors          N+1: lazy-loaded books per author (PostgreSQL, SQLAlchemy ORM)
  GET  /books/<id>       Redis cache: a miss (then SQLite and SET), then hits
  GET  /report           a slow statement (pg_sleep above the slow threshold)
  POST /authors          a duplicate e-mail: unique violation (conflict, not retryable)
  GET  /recommendations  an upstream timeout (retryable), answered 500
  GET  /search           bad input: ValueError (validation, not retryable), answered 500

Environment: PG_URL, REDIS_URL, SQLITE_PATH, ROUNDS (default 6), PAUSE (seconds between
rounds, default 0.5: several metric exports happen while it runs). Prints the number of
requests made as JSON on stdout.
"""

import json
import logging
import os
import sqlite3
import sys
import threading
import time

import redis
import requests
import sqlalchemy as sa
from flask import Flask, jsonify, request
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from werkzeug.serving import make_server

log = logging.getLogger("dashboards.app")


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "dash_authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    books: Mapped[list["Book"]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "dash_books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("dash_authors.id"))
    author: Mapped[Author] = relationship(back_populates="books")


def create_app(pg: sa.Engine, sqlite_path: str, cache: redis.Redis) -> Flask:
    app = Flask("dashboards-app")

    @app.get("/authors")
    def authors():  # type: ignore[no-untyped-def]
        with Session(pg) as session:
            found = session.scalars(sa.select(Author)).all()
            return jsonify({a.email: len(a.books) for a in found})

    @app.get("/books/<int:book_id>")
    def book(book_id: int):  # type: ignore[no-untyped-def]
        cached = cache.get(f"book:{book_id}")
        if cached is not None:
            return jsonify(title=cached.decode(), cached=True)
        with sqlite3.connect(sqlite_path) as connection:
            row = connection.execute("SELECT title FROM titles WHERE id = ?", (book_id,)).fetchone()
        cache.set(f"book:{book_id}", row[0], ex=60)
        return jsonify(title=row[0], cached=False)

    @app.get("/report")
    def report():  # type: ignore[no-untyped-def]
        with pg.connect() as connection:
            connection.execute(sa.text("SELECT pg_sleep(0.15)"))
        return jsonify(ok=True)

    @app.post("/authors")
    def create_author():  # type: ignore[no-untyped-def]
        try:
            with Session(pg) as session:
                session.add(Author(email=request.get_json()["email"]))
                session.commit()
        except sa.exc.IntegrityError:
            log.warning("author exists")
            return jsonify(error="exists"), 409
        return jsonify(ok=True), 201

    @app.get("/recommendations")
    def recommendations():  # type: ignore[no-untyped-def]
        raise TimeoutError("the recommendation service did not answer in time")

    @app.get("/search")
    def search():  # type: ignore[no-untyped-def]
        return jsonify(limit=int(request.args.get("limit", "x")))

    return app


def prepare(pg: sa.Engine, sqlite_path: str) -> None:
    Base.metadata.drop_all(pg)
    Base.metadata.create_all(pg)
    with Session(pg) as session:
        session.add_all([Author(email=f"a{n}@x", books=[Book(), Book()]) for n in range(6)])
        session.commit()
    with sqlite3.connect(sqlite_path) as connection:
        connection.execute("CREATE TABLE titles (id INTEGER PRIMARY KEY, title TEXT)")
        connection.executemany("INSERT INTO titles VALUES (?, ?)", [(1, "Dune"), (2, "Emma")])


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    pg = sa.create_engine(os.environ["PG_URL"])
    sqlite_path = os.environ["SQLITE_PATH"]
    cache = redis.Redis.from_url(os.environ["REDIS_URL"])
    cache.flushdb()
    prepare(pg, sqlite_path)
    server = make_server("127.0.0.1", 0, create_app(pg, sqlite_path, cache), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    made = 0
    try:
        for round_ in range(int(os.environ.get("ROUNDS", "6"))):
            for method, path, body in (
                ("GET", "/authors", None),
                ("GET", "/books/1", None),
                ("GET", "/books/2", None),
                ("GET", "/report", None),
                ("POST", "/authors", {"email": "a0@x"}),
                ("POST", "/authors", {"email": f"new{round_}@x"}),
                ("GET", "/recommendations", None),
                ("GET", "/search?limit=ten", None),
            ):
                requests.request(method, base + path, json=body, timeout=10)
                made += 1
            time.sleep(float(os.environ.get("PAUSE", "0.5")))
    finally:
        server.shutdown()
    print(json.dumps({"requests": made}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
