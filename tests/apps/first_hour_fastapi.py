"""A FastAPI + SQLAlchemy + Redis app as a new user writes it: no OpenTelemetry code.

Served by a real uvicorn on a socket, driven with real HTTP requests, then exits.
GET /orders lazily loads each order's customer (an N+1). Environment: REDIS_URL, DB_PATH.
"""

import logging
import os
import threading
import time

import httpx
import redis
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

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
app = FastAPI()


@app.get("/orders")
def orders() -> list[str]:
    cached = cache.get("orders")
    with Session(engine) as session:
        names = [order.customer.name for order in session.scalars(sa.select(Order))]
    cache.set("orders", ",".join(names))
    log.info("listed %d orders (cached: %s)", len(names), cached is not None)
    return names


def main() -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        customers = [Customer(name=f"c{i}") for i in range(ORDERS)]
        session.add_all(customers + [Order(customer=c) for c in customers])
        session.commit()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    for _ in range(2):
        httpx.get(f"http://127.0.0.1:{port}/orders", timeout=10).raise_for_status()
    server.should_exit = True
    thread.join(10)
    print(f"APP-END {time.time()}", flush=True)


if __name__ == "__main__":
    main()
