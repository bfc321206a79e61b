"""A Flask service for the pre-fork servers (gunicorn sync and gthread), no telemetry
code of its own. ``/work?i=N`` answers with the pid of the process that served it.

Logging is left unconfigured, as in many real apps: the ``app`` logger's warnings reach
the console through Python's last-resort handler, with or without the distro.
"""

import logging
import os
import time

from flask import Flask, jsonify, request
from opentelemetry import trace

app = Flask(__name__)
log = logging.getLogger("app")
tracer = trace.get_tracer("servers.wsgi")
log.warning("app module imported")


@app.get("/work")
def work():  # type: ignore[no-untyped-def]
    i = request.args.get("i", "")
    with tracer.start_as_current_span("app.work") as span:
        span.set_attribute("app.request", i)
        time.sleep(float(request.args.get("sleep", "0")))
    log.warning("request %s served", i)
    return jsonify(pid=os.getpid(), i=i)
