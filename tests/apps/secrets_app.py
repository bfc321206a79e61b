"""Runs every case of tests/data/secrets_corpus.tsv with its real driver, each in a span
named "case <id>"; a failing case's exception goes through the span and a log record.

Environment: CORPUS, SQLITE_PATH, PG_PORT, REDIS_URL, CLOSED_PORT.
"""

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys

import asyncpg
import psycopg
import psycopg2
import redis
import sqlalchemy as sa
from opentelemetry import trace
from sqlalchemy.ext.asyncio import create_async_engine

PG_PORT = os.environ["PG_PORT"]
DSN = f"host=127.0.0.1 port={PG_PORT} user=postgres dbname=postgres"
PG_URL = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
PG_SETUP = [
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    "CREATE TABLE corpus_accounts (id int PRIMARY KEY, email text UNIQUE, "
    "n int NOT NULL DEFAULT 1, age int CHECK (age > 0) DEFAULT 1)",
    "CREATE TABLE corpus_handles (handle text)",
    "CREATE UNIQUE INDEX corpus_handles_lower ON corpus_handles (lower(handle))",
    "CREATE TABLE corpus_rooms (room text, during tsrange, "
    "EXCLUDE USING gist (room WITH =, during WITH &&))",
    "CREATE TABLE corpus_orders (account_email text REFERENCES corpus_accounts (email))",
]
SQLITE_SETUP = ["CREATE TABLE corpus_accounts (id INTEGER PRIMARY KEY, email TEXT UNIQUE)"]

tracer = trace.get_tracer("secrets.app")
log = logging.getLogger("secrets.app")


def cases():
    with open(os.environ["CORPUS"], encoding="utf-8") as corpus:
        for line in corpus:
            if line.startswith(("#", "id\t")) or not line.strip():
                continue
            case_id, _, driver, trigger, secret = line.rstrip("\n").split("\t")
            yield case_id, driver, trigger.replace("\\n", "\n"), secret


def split_param(trigger, secret):
    """(statement, parameters) - "PARAM ..." binds the secret instead of inlining it."""
    if trigger.startswith("PARAM "):
        return trigger[len("PARAM ") :], secret
    return trigger, None


class Runner:
    def __init__(self):
        self.pg2 = psycopg2.connect(DSN)
        self.pg2.autocommit = True
        self.pg3 = psycopg.connect(DSN, autocommit=True)
        self.sqlite = sqlite3.connect(os.environ["SQLITE_PATH"], isolation_level=None)
        self.sa_sqlite = sa.create_engine(f"sqlite:///{os.environ['SQLITE_PATH']}")
        self.sa = {
            "sa-psycopg2": sa.create_engine(PG_URL.replace("postgresql:", "postgresql+psycopg2:")),
            "sa-psycopg": sa.create_engine(PG_URL.replace("postgresql:", "postgresql+psycopg:")),
        }
        self.redis = redis.Redis.from_url(os.environ["REDIS_URL"])
        self.loop = asyncio.new_event_loop()
        self.apg = self.loop.run_until_complete(asyncpg.connect(PG_URL))
        self.sa_async = create_async_engine(PG_URL.replace("postgresql:", "postgresql+asyncpg:"))
        for statement in PG_SETUP:
            self.pg2.cursor().execute(statement)
        for statement in SQLITE_SETUP:
            self.sqlite.execute(statement)

    def run(self, driver, trigger, secret):
        statement, param = split_param(trigger, secret)
        if driver == "psycopg2":
            self.pg2.cursor().execute(statement, None if param is None else (param,))
        elif driver == "psycopg":
            self.pg3.execute(statement, None if param is None else (param,))
        elif driver == "asyncpg":
            args = () if param is None else (param,)
            self.loop.run_until_complete(self.apg.execute(statement, *args))
        elif driver == "sqlite3":
            # A cursor's execute: the sqlite3 instrumentation traces cursors, not the
            # connection's execute shortcut (which would leave no statement to check).
            self.sqlite.cursor().execute(statement)
        elif driver in self.sa or driver == "sa-sqlite":
            engine = self.sa_sqlite if driver == "sa-sqlite" else self.sa[driver]
            with engine.connect() as connection:
                if param is None:
                    connection.exec_driver_sql(statement)
                else:
                    connection.execute(sa.text(statement), {"v": param})
                connection.commit()
        elif driver == "sa-asyncpg":
            self.loop.run_until_complete(self._sa_async(statement, param))
        elif driver == "redis":
            self.redis.execute_command(*statement.split(" "))
        elif driver == "redis-url":
            url = statement.replace("{CLOSED}", os.environ["CLOSED_PORT"])
            redis.Redis.from_url(url, socket_connect_timeout=1).get("x")
        elif driver == "app-error":
            raise RuntimeError(statement)
        else:
            raise SystemExit(f"unknown driver {driver}")

    async def _sa_async(self, statement, param):
        async with self.sa_async.connect() as connection:
            if param is None:
                await connection.exec_driver_sql(statement)
            else:
                await connection.execute(sa.text(statement), {"v": param})
            await connection.commit()

    def close(self):
        self.loop.run_until_complete(self.apg.close())
        self.loop.run_until_complete(self.sa_async.dispose())
        self.loop.close()


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    runner = Runner()
    failed = 0
    for case_id, driver, trigger, secret in cases():
        try:
            with tracer.start_as_current_span(f"case {case_id}"):
                runner.run(driver, trigger, secret)
        except Exception:
            failed += 1
            log.exception("case %s failed", case_id)
    with contextlib.suppress(Exception):
        runner.close()
    print(f"cases done, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
