"""What the db_* apps share: a small catalogue (authors, their books and reviews), the
pages' sizes, and a count of the statements the app itself executed.

Plain SQLAlchemy, no OpenTelemetry: the count is the app's own ground truth, made by a
SQLAlchemy event listener, never read back from telemetry.
"""

import threading
import time
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

AUTHORS = 12
FEW = 3  # lazy loads below the N+1 threshold (5): never a finding
MANY = 9  # lazy loads above it: one finding, count 9
SAME = 6  # one query with the same parameters, repeated: not an N+1
RENDERED = 7  # lazy loads inside the app's own "render authors.html" span
DASHBOARD = (8, 6)  # two patterns in one request: books for 8 authors, reviews for 6
SLOW_SECONDS = 1.2  # the slow report; the tests set the threshold to 1000 ms
RENDER_SPAN = "render authors.html"


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    books: Mapped[list["Book"]] = relationship(order_by="Book.id")
    reviews: Mapped[list["Review"]] = relationship(order_by="Review.id")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("authors.id"))
    title: Mapped[str] = mapped_column(sa.String(100))


class Review(Base):
    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("authors.id"))
    stars: Mapped[int]


def catalogue() -> list[Author]:
    return [
        Author(
            name=f"author {n}",
            books=[Book(title=f"book {n}.{k}") for k in (1, 2)],
            reviews=[Review(stars=n % 5 + 1)],
        )
        for n in range(1, AUTHORS + 1)
    ]


def first_authors(n: int) -> sa.Select[tuple[Author]]:
    return sa.select(Author).order_by(Author.id).limit(n)


def books_of_author_one() -> sa.Select[tuple[Book]]:
    return sa.select(Book).where(Book.author_id == 1)


def slow_statement(dialect: str) -> sa.TextClause:
    if dialect == "postgresql":
        return sa.text("SELECT pg_sleep(:seconds)").bindparams(seconds=SLOW_SECONDS)
    # SQLite has no sleep: the app registers one (see sqlite_sleep) on each connection.
    return sa.text("SELECT sleep_ms(:ms)").bindparams(ms=int(SLOW_SECONDS * 1000))


def sqlite_sleep(ms: int) -> int:
    time.sleep(ms / 1000)
    return ms


class StatementCount:
    """Statements executed through SQLAlchemy, per dialect (one per cursor execute)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        sa.event.listen(Engine, "before_cursor_execute", self._count)

    def _count(self, conn, *execution) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.counts[conn.dialect.name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)
