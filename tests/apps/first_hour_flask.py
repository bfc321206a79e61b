"""A Flask + SQLAlchemy + Redis app as a new user writes it: no OpenTelemetry code.

Serves on a real socket (werkzeug), drives itself with real HTTP requests, then exits.
GET /orders lazily loads each order's customer (an N+1 of ORDERS statements).
Environment: REDIS_URL, DB_PATH.
"""

import logging
import os
import threading
import time

import redis
import requests
import sqlalchemy as sa
from flask import Flask, jsonify
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from werkzeug.serving import make_server

ORDERS = 6
log = logging.getLogger("shop")
logging.basicConfig(level=logging.INFO)


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"))
    customer: Mapped[Customer] = relationship(lazy="select")


engine = sa.create_engine(f"sqlite:///{os.environ['DB_PATH']}")
cache = redis.Redis.from_url(os.environ["REDIS_URL"])
app = Flask(__name__)


@app.get("/orders")
def orders():
    cached = cache.get("orders")
    with Session(engine) as session:
        names = [order.customer.name for order in session.scalars(sa.select(Order))]
    cache.set("orders", ",".join(names))
    log.info("listed %d orders (cached: %s)", len(names), cached is not None)
    return jsonify(names)


def main() -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        customers = [Customer(name=f"c{i}") for i in range(ORDERS)]
        session.add_all(customers + [Order(customer=c) for c in customers])
        session.commit()
    server = make_server("127.0.0.1", 0, app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for _ in range(2):
        requests.get(f"http://127.0.0.1:{server.server_port}/orders", timeout=10).raise_for_status()
    server.shutdown()
    print(f"APP-END {time.time()}", flush=True)


if __name__ == "__main__":
    main()
