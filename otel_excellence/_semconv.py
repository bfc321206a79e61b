"""Attribute names we read and write, old and stable database conventions alike.

``OTEL_SEMCONV_STABILITY_OPT_IN=database`` switches the instrumentations from
``db.system``/``db.statement``/``db.operation``/``db.name`` to ``db.system.name``/
``db.query.text``/``db.operation.name``/``db.namespace``; ``database/dup`` emits both.
Readers here accept either; our metrics always use the stable names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Ours (the telemetry contract, docs/telemetry.md).
ERROR_CATEGORY = "otel_excellence.error.category"
ERROR_RETRYABLE = "otel_excellence.error.retryable"
ERROR_FINGERPRINT = "otel_excellence.error.fingerprint"
DB_SLOW = "otel_excellence.db.slow"
N_PLUS_ONE = "otel_excellence.db.n_plus_one"
N_PLUS_ONE_COUNT = "otel_excellence.db.n_plus_one.count"
N_PLUS_ONE_STATEMENT = "otel_excellence.db.n_plus_one.statement"
N_PLUS_ONE_PARENT = "otel_excellence.db.n_plus_one.parent"
ROUTE = "otel_excellence.route"  # metric attribute: the local root's http.route, else name
CACHE_RESULT = "otel_excellence.cache.result"

# Semantic conventions.
ERROR_TYPE = "error.type"
DB_SYSTEM = ("db.system.name", "db.system")
DB_STATEMENT = ("db.query.text", "db.statement")
DB_OPERATION = ("db.operation.name", "db.operation")
DB_NAMESPACE = ("db.namespace", "db.name")
SERVER_ADDRESS = ("server.address", "net.peer.name")
SERVER_PORT = ("server.port", "net.peer.port")
HTTP_STATUS = ("http.response.status_code", "http.status_code")
GRPC_STATUS = ("rpc.grpc.status_code",)
CONNECTION_STRING = "db.connection_string"

EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"


def first(attributes: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    """The value of the first of ``names`` present in ``attributes``, or None."""
    for name in names:
        value = attributes.get(name)
        if value is not None:
            return value
    return None
