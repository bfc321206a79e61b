"""Metrics whose attribute values are equal but of other types (1, True, 1.0), and a
span with typed attributes; prints whether the attribute fast paths are installed."""

import opentelemetry.attributes as api
from opentelemetry import metrics, trace

meter = metrics.get_meter("app")
active = meter.create_up_down_counter("app.active")
for value in (1, True, 1.0, 1, True):
    active.add(1, {"a": value})
with trace.get_tracer("app").start_as_current_span("work", attributes={"a": True, "b": 2}):
    pass
print(hasattr(api._clean_attribute_value, "__wrapped__"))
