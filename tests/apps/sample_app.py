"""A plain application with no OpenTelemetry code: SQLAlchemy, Redis, stdlib and structlog.

Run under ``opentelemetry-instrument`` by the end-to-end tests. Environment:
SQLITE_PATH, PG_URL, REDIS_URL (each optional), APP_STRUCTLOG=default|stdlib,
APP_EXIT_CODE.
"""

import logging
import os
import sys

import sqlalchemy as sa
import structlog
from opentelemetry import trace

logging.getLogger("sample").setLevel(logging.INFO)
stdlib_log = logging.getLogger("sample.stdlib")

if os.environ.get("APP_STRUCTLOG") == "stdlib":
    # The common production setup: structlog rendering JSON through stdlib logging,
    # configured by the app after the distro has started.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
struct_log = structlog.get_logger("sample.structlog")


def main() -> int:
    tracer = trace.get_tracer("sample.app")
    engines = []
    if os.environ.get("SQLITE_PATH"):
        engines.append(sa.create_engine(f"sqlite:///{os.environ['SQLITE_PATH']}"))
    if os.environ.get("PG_URL"):
        engines.append(sa.create_engine(os.environ["PG_URL"]))
    client = None
    if os.environ.get("REDIS_URL"):
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])

    with tracer.start_as_current_span("sample.job"):
        for engine in engines:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        if client is not None:
            client.set("sample:key", "value")
            client.get("sample:key")
        stdlib_log.info("stdlib record inside the job")
        struct_log.info("structlog event inside the job", items=3)
    stdlib_log.info("stdlib record outside any span")
    return int(os.environ.get("APP_EXIT_CODE", "0"))


if __name__ == "__main__":
    sys.exit(main())
