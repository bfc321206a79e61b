"""An app with the problems otel-excellence finds, and no OpenTelemetry code of its own.

Environment: SQLITE_PATH, PG_URL, REDIS_URL, CLOSED_REDIS_PORT, SECRET.
"""

import contextlib
import os
import sys

import redis
import sqlalchemy as sa
from opentelemetry import trace
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    books: Mapped[list["Book"]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("authors.id"))
    author: Mapped[Author] = relationship(back_populates="books")


tracer = trace.get_tracer("findings.app")


def main() -> int:
    sqlite = sa.create_engine(f"sqlite:///{os.environ['SQLITE_PATH']}")
    pg = sa.create_engine(os.environ["PG_URL"])
    cache = redis.Redis.from_url(os.environ["REDIS_URL"])
    dead_cache = redis.Redis(port=int(os.environ["CLOSED_REDIS_PORT"]), socket_connect_timeout=1)
    for engine in (sqlite, pg):
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
    with Session(sqlite) as session:
        session.add_all([Author(email=f"a{n}@x", books=[Book(), Book()]) for n in range(6)])
        session.commit()

    with tracer.start_as_current_span("list-authors"), Session(sqlite) as session:
        for author in session.scalars(sa.select(Author)).all():
            len(author.books)

    try:
        with tracer.start_as_current_span("register"), Session(pg) as session:
            session.add_all(
                [Author(email=os.environ["SECRET"]), Author(email=os.environ["SECRET"])]
            )
            session.commit()
    except sa.exc.IntegrityError:
        pass

    try:
        with tracer.start_as_current_span("report"), pg.connect() as connection:
            connection.execute(sa.text("SET statement_timeout = 100"))
            connection.execute(sa.text("SELECT pg_sleep(0.6)"))
    except sa.exc.OperationalError:
        pass

    with tracer.start_as_current_span("slow-report"), pg.connect() as connection:
        connection.execute(sa.text("SELECT pg_sleep(0.55)"))
        connection.execute(sa.text(f"SELECT '{os.environ['SECRET']}' AS token"))

    try:
        with tracer.start_as_current_span("upstream"):
            raise TimeoutError("upstream did not answer in time")
    except TimeoutError:
        pass

    with tracer.start_as_current_span("cached-profile"):
        cache.set("profile:1", "alice")
        cache.get("profile:1")
        cache.get("profile:2")
    with contextlib.suppress(redis.exceptions.ConnectionError):
        dead_cache.get("profile:1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
