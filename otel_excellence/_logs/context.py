"""What an application can show a user who reports a problem: the trace to look up."""

from __future__ import annotations

from opentelemetry import trace


def current_trace_id() -> str | None:
    """The active trace's id as 32 hex characters, or None outside any trace.

    Put it in error responses so the person reporting a problem can quote it::

        return {"error": "conflict", "trace_id": otel_excellence.current_trace_id()}, 409
    """
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def current_traceparent() -> str | None:
    """The active span as a W3C ``traceparent`` value, or None outside any trace.

    For a response header (``traceparent`` or ``X-Trace``) that support tooling and
    browsers can follow back to the exact span.
    """
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
