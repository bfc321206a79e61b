"""The catalogue of db_sync_app on the asyncio stack: FastAPI, SQLAlchemy's async engine
(asyncpg or aiosqlite), ``redis.asyncio``. Lazy loads are awaited
(``await author.awaitable_attrs.books``), the async form of the same N+1.

No OpenTelemetry code beyond one span of its own standing in for a template render.
Served by uvicorn under ``opentelemetry-instrument``: ``uvicorn db_async_app:app``.
Environment: DB_URL (postgresql+asyncpg or sqlite+aiosqlite), REDIS_URL.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
import sqlalchemy as sa
from db_models import (
    DASHBOARD,
    FEW,
    MANY,
    RENDER_SPAN,
    RENDERED,
    SAME,
    Author,
    Base,
    StatementCount,
    books_of_author_one,
    catalogue,
    first_authors,
    slow_statement,
    sqlite_sleep,
)
from fastapi import FastAPI
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

POOL = 4  # connections opened before serving: concurrent requests open none later

engine = create_async_engine(os.environ["DB_URL"], pool_size=POOL)
cache = redis.Redis.from_url(os.environ["REDIS_URL"])
statements = StatementCount()
tracer = trace.get_tracer("db_async_app")
pair = asyncio.Barrier(2)


@sa.event.listens_for(engine.sync_engine, "connect")
def _register_sleep(dbapi_connection, record):  # type: ignore[no-untyped-def]
    if engine.dialect.name == "sqlite":
        dbapi_connection.create_function("sleep_ms", 1, sqlite_sleep)


async def books_of(authors: list[Author]) -> int:
    return sum([len(await author.awaitable_attrs.books) for author in authors])


async def lazy_loads(n: int) -> dict[str, int]:
    async with AsyncSession(engine) as session:
        authors = list((await session.scalars(first_authors(n))).all())
        return {"books": await books_of(authors)}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as session:
        session.add_all(catalogue())
        await session.commit()
    connections = [await engine.connect() for _ in range(POOL)]
    for connection in connections:
        await connection.close()
    await cache.set("cache:present", "1")
    yield
    await cache.aclose()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/authors/few")
async def few() -> dict[str, int]:
    return await lazy_loads(FEW)


@app.get("/authors/many")
async def many() -> dict[str, int]:
    return await lazy_loads(MANY)


@app.get("/authors/paired/{n}")
async def paired(n: int) -> dict[str, int]:
    async with asyncio.timeout(20):
        await pair.wait()  # both requests of a pair interleave on the one event loop
    return await lazy_loads(n)


@app.get("/authors/same")
async def same() -> dict[str, int]:
    async with AsyncSession(engine) as session:
        rows = [len((await session.scalars(books_of_author_one())).all()) for _ in range(SAME)]
    return {"books": sum(rows)}


@app.get("/authors/rendered")
async def rendered() -> dict[str, int]:
    async with AsyncSession(engine) as session:
        authors = list((await session.scalars(first_authors(RENDERED))).all())
        # The lazy loads run while rendering; the render is a span of the app's own.
        with tracer.start_as_current_span(RENDER_SPAN):
            return {"books": await books_of(authors)}


@app.get("/dashboard")
async def dashboard() -> dict[str, int]:
    async with AsyncSession(engine) as session:
        authors = list((await session.scalars(first_authors(max(DASHBOARD)))).all())
        books = await books_of(authors[: DASHBOARD[0]])
        reviews = [len(await a.awaitable_attrs.reviews) for a in authors[: DASHBOARD[1]]]
    return {"books": books, "reviews": sum(reviews)}


@app.get("/reports/slow")
async def slow_report() -> dict[str, bool]:
    async with engine.connect() as connection:
        await connection.execute(slow_statement(engine.dialect.name))
    return {"done": True}


@app.get("/cache/{key}")
async def cached(key: str) -> dict[str, bool]:
    return {"hit": await cache.get(f"cache:{key}") is not None}


@app.get("/statements")
async def executed() -> dict[str, int]:
    return statements.snapshot()
