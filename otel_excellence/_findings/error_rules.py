"""The built-in classification table. First match wins, so specific rules come first.

Categories: timeout, connection, unavailable, rate_limited, auth, validation, not_found,
conflict, database, cancelled, internal (see docs/telemetry.md). ``retryable`` answers:
would retrying the same operation plausibly succeed?
"""

from __future__ import annotations

import os

from otel_excellence._findings.errors import Classifier, load_rules
from otel_excellence._findings.errors import ErrorRule as R

_CONNECTION_TEXT = (
    r"connection refused|could not connect|connection (?:failed|reset|timed out)|"
    r"server closed the connection|terminating connection|no route to host|"
    r"could not translate host name|network is unreachable"
)

RULES: tuple[R, ...] = (
    # PostgreSQL, by SQLSTATE (psycopg 3 `.sqlstate`, psycopg2 `.pgcode`).
    R("timeout", True, sqlstate="57014", message=r"statement timeout|lock timeout"),
    R("cancelled", False, sqlstate="57014"),  # query_canceled by a client or admin
    R("timeout", True, sqlstate="55P03"),  # lock_not_available (lock_timeout, NOWAIT)
    R("unavailable", True, sqlstate="57P0"),  # admin/crash shutdown, cannot connect now
    R("connection", True, sqlstate="08"),  # connection exception
    R("conflict", True, sqlstate="40001"),  # serialization_failure
    R("conflict", True, sqlstate="40P01"),  # deadlock_detected
    R("conflict", False, sqlstate="23505"),  # unique_violation
    R("conflict", False, sqlstate="23503"),  # foreign_key_violation
    R("conflict", False, sqlstate="23P01"),  # exclusion_violation
    R("validation", False, sqlstate="23"),  # not-null, check
    R("validation", False, sqlstate="22"),  # data exception (bad value, overflow)
    R("auth", False, sqlstate="28"),  # invalid authorization
    R("auth", False, sqlstate="42501"),  # insufficient_privilege
    R("unavailable", True, sqlstate="53"),  # insufficient resources (too many connections)
    R("database", False, sqlstate=""),  # any other SQLSTATE
    # SQLite, by extended error name (Python 3.11+), then by message.
    R("conflict", False, sqlite="SQLITE_CONSTRAINT_UNIQUE"),
    R("conflict", False, sqlite="SQLITE_CONSTRAINT_PRIMARYKEY"),
    R("conflict", False, sqlite="SQLITE_CONSTRAINT_FOREIGNKEY"),
    R("validation", False, sqlite="SQLITE_CONSTRAINT"),
    R("timeout", True, sqlite="SQLITE_BUSY"),
    R("timeout", True, sqlite="SQLITE_LOCKED"),
    R("database", False, sqlite="SQLITE_"),
    R(
        "conflict",
        False,
        exception="sqlite3.IntegrityError",
        message=r"UNIQUE constraint|PRIMARY KEY|FOREIGN KEY constraint",
    ),
    R("validation", False, exception="sqlite3.IntegrityError"),
    R(
        "timeout",
        True,
        exception="sqlite3.OperationalError",
        message=r"database (?:table )?is locked",
    ),
    # SQLAlchemy. Its DBAPIError wrappers are classified by `.orig` first (above).
    R("timeout", True, exception="sqlalchemy.exc.TimeoutError"),  # pool checkout
    R("connection", True, exception="sqlalchemy.exc.DisconnectionError"),
    R("connection", True, exception="sqlalchemy.exc.OperationalError", message=_CONNECTION_TEXT),
    R("conflict", False, exception="sqlalchemy.exc.IntegrityError"),
    R("validation", False, exception="sqlalchemy.exc.DataError"),
    R("not_found", False, exception="sqlalchemy.exc.NoResultFound"),
    R("conflict", False, exception="sqlalchemy.orm.exc.StaleDataError"),
    R("database", False, exception="sqlalchemy.exc.DBAPIError"),
    # psycopg errors without a SQLSTATE: the server was never reached.
    R("connection", True, exception="psycopg.OperationalError", message=_CONNECTION_TEXT),
    R("timeout", True, exception="psycopg.OperationalError", message=r"timeout expired"),
    R("database", False, exception="psycopg.Error"),
    R("database", False, exception="sqlite3.Error"),
    # redis-py. Server replies arrive as ResponseError with the reply's first word.
    R("unavailable", True, exception="redis.exceptions.BusyLoadingError"),
    R("timeout", True, exception="redis.exceptions.TimeoutError"),
    R("auth", False, exception="redis.exceptions.AuthenticationError"),
    R("auth", False, exception="redis.exceptions.AuthorizationError"),
    R("auth", False, exception="redis.exceptions.NoPermissionError"),
    R("connection", True, exception="redis.exceptions.ConnectionError"),
    R(
        "unavailable",
        True,
        exception="redis.exceptions.ResponseError",
        message=r"^(?:BUSY|LOADING|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|OOM)\b",
    ),
    R("auth", False, exception="redis.exceptions.ResponseError", message=r"^(?:NOAUTH|WRONGPASS)"),
    R("validation", False, exception="redis.exceptions.ResponseError", message=r"^WRONGTYPE\b"),
    R("conflict", True, exception="redis.exceptions.WatchError"),
    R("validation", False, exception="redis.exceptions.DataError"),
    R("database", False, exception="redis.exceptions.RedisError"),
    # HTTP clients.
    R("timeout", True, exception="requests.exceptions.Timeout"),
    R("connection", True, exception="requests.exceptions.ConnectionError"),
    R("timeout", True, exception="httpx._exceptions.TimeoutException"),
    R("connection", True, exception="httpx._exceptions.NetworkError"),
    R("connection", True, exception="urllib3.exceptions.NewConnectionError"),
    R("timeout", True, exception="urllib3.exceptions.TimeoutError"),
    R("connection", True, exception="urllib3.exceptions.ProtocolError"),
    R("timeout", True, exception="aiohttp.client_exceptions.ServerTimeoutError"),
    R("connection", True, exception="aiohttp.client_exceptions.ClientConnectionError"),
    # HTTP status codes (spans, and exceptions carrying a response).
    R("timeout", True, http_status=(408, 504)),
    R("rate_limited", True, http_status=(429,)),
    R("unavailable", True, http_status=(502, 503)),
    R("auth", False, http_status=(401, 403, 407)),
    R("not_found", False, http_status=(404, 410)),
    R("conflict", False, http_status=(409, 412)),
    R("validation", False, http_status=(400, 411, 413, 414, 415, 416, 422)),
    R("cancelled", False, http_status=(499,)),
    # gRPC status codes.
    R("cancelled", False, grpc_code=("CANCELLED",)),
    R("timeout", True, grpc_code=("DEADLINE_EXCEEDED",)),
    R("validation", False, grpc_code=("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE")),
    R("not_found", False, grpc_code=("NOT_FOUND",)),
    R("conflict", False, grpc_code=("ALREADY_EXISTS",)),
    R("conflict", True, grpc_code=("ABORTED",)),
    R("auth", False, grpc_code=("PERMISSION_DENIED", "UNAUTHENTICATED")),
    R("rate_limited", True, grpc_code=("RESOURCE_EXHAUSTED",)),
    R("unavailable", True, grpc_code=("UNAVAILABLE",)),
    # Python built-ins last: library errors often subclass them.
    R("timeout", True, exception="TimeoutError"),
    R("timeout", True, exception="asyncio.exceptions.TimeoutError"),  # Python 3.10
    R("timeout", True, exception="concurrent.futures._base.TimeoutError"),  # Python 3.10
    R("cancelled", False, exception="asyncio.exceptions.CancelledError"),
    R("cancelled", False, exception="concurrent.futures._base.CancelledError"),
    R("cancelled", False, exception="KeyboardInterrupt"),
    R("connection", True, exception="ConnectionError"),  # refused, reset, aborted, pipe
    R("connection", True, exception="socket.gaierror"),
    R("auth", False, exception="PermissionError"),
    R("not_found", False, exception="FileNotFoundError"),
    R("not_found", False, exception="LookupError", message=r"not found|does not exist"),
    R("validation", False, exception="ValueError"),
)


def _rules_from_environment() -> list[R]:
    from otel_excellence._config.settings import ERROR_RULES

    reference = ERROR_RULES.read(os.environ)
    return load_rules(reference) if reference else []


# The process-wide classifier: the built-in table plus rules added with
# ``otel_excellence.add_error_rules`` or named by OTEL_EXCELLENCE_ERROR_RULES (loaded at
# configuration, or at the first classification in a process that never configured).
CLASSIFIER = Classifier(RULES, user_rules=_rules_from_environment)
