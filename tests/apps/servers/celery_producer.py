"""Sends the Celery tasks of ``celery_app`` from inside one span and waits for them.

Prints one line per task: its name and the pid of the worker process that ran it.
"""

import json
import sys

from celery_app import add, charge, list_items, slow_report
from opentelemetry import trace

ADDS = int(sys.argv[1]) if len(sys.argv) > 1 else 8

with trace.get_tracer("celery.producer").start_as_current_span("producer.batch"):
    results = [("add", add.delay(i, i)) for i in range(ADDS)]
    results += [("list_items", list_items.delay()), ("slow_report", slow_report.delay())]
    failed = charge.delay(7)

for name, result in results:
    print(json.dumps({"task": name, "pid": result.get(timeout=60)["pid"]}), flush=True)
try:
    failed.get(timeout=60)
except TimeoutError:
    print(json.dumps({"task": "charge", "pid": None}), flush=True)
