"""A Flask service, run under opentelemetry-instrument (no OpenTelemetry code of its own
beyond the error-reference helpers an app would use)."""

import logging
import os

from flask import Flask, jsonify

import otel_excellence

app = Flask(__name__)
log = logging.getLogger("http.server")
log.setLevel(logging.INFO)


@app.get("/work")
def work():  # type: ignore[no-untyped-def]
    log.info("server handled work")
    return jsonify(
        trace_id=otel_excellence.current_trace_id(),
        traceparent=otel_excellence.current_traceparent(),
    )


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]))
