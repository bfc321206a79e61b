"""Calls the Flask service under baggage set the way a gateway or middleware would."""

import json
import logging
import os
import sys

import requests
from opentelemetry import baggage, context, trace

log = logging.getLogger("http.client")
log.setLevel(logging.INFO)


def main() -> int:
    ctx = baggage.set_baggage("request.id", "req-8f3a")
    ctx = baggage.set_baggage("tenant.id", "acme", ctx)
    ctx = baggage.set_baggage("user.email", "not-configured@example.com", ctx)
    token = context.attach(ctx)
    try:
        with trace.get_tracer("http.client").start_as_current_span("client-call") as span:
            log.info("client calling the service")
            reply = requests.get(os.environ["SERVICE_URL"], timeout=10).json()
            reply["client_trace_id"] = format(span.get_span_context().trace_id, "032x")
            print(json.dumps(reply))
    finally:
        context.detach(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
