"""A small shop service with the problems real services have, and a load generator.

Plain Flask + SQLAlchemy + Redis code with no OpenTelemetry setup: ``otel-excellence
demo`` runs it under ``opentelemetry-instrument``. The only otel-excellence call is the
one a real app makes: putting the trace id in its error responses.

Embedded defaults: SQLite in a temporary directory; Redis at REDIS_URL when reachable,
otherwise fakeredis (a Redis-compatible client that the Redis instrumentation still
traces, because it is a redis.Redis).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import time
from typing import Any

import redis
import requests
import sqlalchemy as sa
from flask import Flask, jsonify, request
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from werkzeug.serving import make_server

import otel_excellence

log = logging.getLogger("demo.shop")


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    orders: Mapped[list[Order]] = relationship(back_populates="customer")


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    total_cents: Mapped[int]
    customer: Mapped[Customer] = relationship(back_populates="orders")


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    price_cents: Mapped[int]


SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, email VARCHAR(200) NOT NULL UNIQUE);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    total_cents INTEGER NOT NULL
);
CREATE TABLE products (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL,
                       price_cents INTEGER NOT NULL);
"""


def database(path: str) -> sa.Engine:
    # Schema and seed data come from a migration-style script run with sqlite3 directly,
    # as a deploy step would: the traces then show the service's own work only.
    with sqlite3.connect(path) as seed:
        seed.executescript(SCHEMA)
        seed.executemany("INSERT INTO customers (email) VALUES (?)",
                         [(f"customer{n}@example.com",) for n in range(8)])  # fmt: skip
        seed.executemany(
            "INSERT INTO orders (customer_id, total_cents) VALUES (?, ?)",
            [(c, 1000 * k) for c in range(1, 9) for k in range(1, 4)],
        )
        seed.executemany("INSERT INTO products (name, price_cents) VALUES (?, ?)",
                         [(f"product {n}", 499 + n) for n in range(10)])  # fmt: skip
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _functions(connection: Any, _record: Any) -> None:
        # The "expensive aggregate" of the slow report (SQLite has no pg_sleep).
        connection.create_function("expensive_aggregate", 1, lambda ms: time.sleep(ms / 1000))

    return engine


def cache_client() -> redis.Redis:
    url = os.environ.get("REDIS_URL")
    if url:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        try:
            client.ping()
            return client
        except redis.exceptions.ConnectionError:
            log.warning("Redis at %s is not reachable: using the in-process fallback", url)
    import fakeredis

    return fakeredis.FakeRedis()


def create_app(engine: sa.Engine, cache: redis.Redis) -> Flask:
    app = Flask("demo-shop")

    def error(status: int, message: str) -> Any:
        # What a user reporting the problem can quote.
        body = {"error": message, "trace_id": otel_excellence.current_trace_id()}
        return jsonify(body), status

    @app.get("/products/<int:product_id>")
    def product(product_id: int) -> Any:
        cached = cache.get(f"product:{product_id}")
        if cached is not None:
            name = cached.decode() if isinstance(cached, bytes) else str(cached)
            return jsonify(name=name, cached=True)
        with Session(engine) as session:
            found = session.get(Product, product_id)
        if found is None:
            return error(404, "no such product")
        cache.set(f"product:{product_id}", found.name, ex=60)
        return jsonify(name=found.name, cached=False)

    @app.get("/customers/orders-summary")
    def orders_summary() -> Any:
        with Session(engine) as session:
            customers = session.scalars(sa.select(Customer)).all()
            # Lazy loading in a loop: one query per customer (the N+1).
            summary = {c.email: sum(o.total_cents for o in c.orders) for c in customers}
        return jsonify(summary)

    @app.get("/reports/sales")
    def sales_report() -> Any:
        with engine.connect() as connection:
            total = connection.execute(
                sa.text(
                    "SELECT sum(total_cents) + coalesce(expensive_aggregate(600), 0) FROM orders"
                )
            ).scalar()
        return jsonify(total_cents=total)

    @app.post("/customers")
    def create_customer() -> Any:
        email = (request.get_json(silent=True) or {}).get("email")
        if not email:
            return error(400, "email is required")
        try:
            with Session(engine) as session:
                session.add(Customer(email=email))
                session.commit()
        except sa.exc.IntegrityError:
            log.warning("customer already exists")
            return error(409, "a customer with this email exists")
        return jsonify(email=email), 201

    @app.get("/recommendations")
    def recommendations() -> Any:
        upstream = os.environ.get("DEMO_UPSTREAM_URL") or request.host_url.rstrip("/")
        try:
            reply = requests.get(f"{upstream}/upstream/recommendations", timeout=0.25)
        except requests.exceptions.Timeout:
            log.warning("the recommendation service timed out")
            return error(504, "the recommendation service did not answer in time")
        return jsonify(reply.json())

    @app.get("/upstream/recommendations")
    def slow_upstream() -> Any:
        time.sleep(0.6)  # an overloaded dependency
        return jsonify(items=["product 1", "product 2"])

    return app


def generate_load(base: str) -> list[tuple[str, int]]:
    """Ordinary traffic plus each problem once or twice; returns (request, status)."""
    done = []

    def call(method: str, path: str, **kwargs: Any) -> None:
        response = requests.request(method, base + path, timeout=10, **kwargs)
        done.append((f"{method} {path}", response.status_code))

    for product_id in (1, 2, 3, 1, 2, 3, 1):
        call("GET", f"/products/{product_id}")
    call("GET", "/products/999")
    call("GET", "/customers/orders-summary")
    call("GET", "/customers/orders-summary")
    call("GET", "/reports/sales")
    call("POST", "/customers", json={"email": "new@example.com"})
    call("POST", "/customers", json={"email": "new@example.com"})
    call("POST", "/customers", json={})
    call("GET", "/recommendations")
    return done


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    workdir = tempfile.mkdtemp(prefix="otel-excellence-demo-")
    engine = database(os.path.join(workdir, "shop.db"))
    server = make_server("127.0.0.1", 0, create_app(engine, cache_client()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        requests_made = generate_load(f"http://127.0.0.1:{server.server_port}")
        time.sleep(0.5)  # let the slow upstream finish its (abandoned) reply
    finally:
        server.shutdown()
    print(f"demo: {len(requests_made)} requests served", flush=True)
    return 0
