"""Log records the OTLP encoder accepts, whatever the application logs.

One lone surrogate in one message (text decoded with ``surrogateescape``, a string cut
inside a pair) made the encoder raise, and every record of that export was lost - the
ordinary ones around it too. So were integers beyond 64 bits and non-UTF-8 attribute
keys. Now the records we emit carry valid UTF-8 and encodable values, and the
application's own console output is what it is without the distro.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry._logs import LogRecord, NoOpLoggerProvider
from opentelemetry.exporter.otlp.proto.common._internal import _encode_attributes, _encode_value
from opentelemetry.sdk.trace import TracerProvider

from otel_excellence._logs.bridge import BridgeProcessor, typed, valid_record
from tests.launch import instrumented
from tests.support.otlp_sink import OtlpSink
from tests.test_text_safety import PROFILE, SPECIAL

MESSAGES = ["first ordinary message", "user sent bad ? value", "last ordinary message"]
MODES = {
    "stdlib": ("stdlib", {}),
    # The SDK's own (deprecated) handler on the root logger instead of the instrumentation's.
    "stdlib-sdk-handler": ("stdlib", {"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true"}),
    "structlog": ("structlog", {}),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_lone_surrogate_loses_no_record(mode: str) -> None:
    """An app under opentelemetry-instrument logs a lone surrogate between two ordinary
    messages: all three records reach a real OTLP receiver, in order, the surrogate as
    ``?``; the app's stdout and stderr are byte for byte those of the same app run
    without the distro (its console still shows ``\\ud800``, nothing about exports)."""
    app_mode, extra = MODES[mode]
    with OtlpSink() as sink:
        env = {
            "MODE": app_mode,
            "OTEL_SERVICE_NAME": "log-bodies",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
            # A console that can show a surrogate, the same for both runs.
            "PYTHONIOENCODING": "utf-8:backslashreplace",
            **extra,
        }
        run = instrumented("log_surrogate_app.py", env)
        bare = instrumented("log_surrogate_app.py", env, wrapper=False)
        assert run.returncode == bare.returncode == 0, run.stderr
        assert sink.wait_for(lambda: len([r for r in sink.logs() if r.body in MESSAGES]) == 3)
        bodies = [r.body for r in sink.logs() if r.body in MESSAGES]
    assert bodies == MESSAGES
    assert "\\ud800" in run.stdout + run.stderr
    assert (run.stdout, run.stderr) == (bare.stdout, bare.stderr)


# Short texts from the characters that matter (surrogates among them): what a record
# holds, not how long it is, decides whether it encodes.
texts = st.text(alphabet=st.sampled_from(SPECIAL) | st.characters(), max_size=40)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.binary(max_size=20)
    | texts,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(texts | st.integers(), inner, max_size=5)
    ),
    max_leaves=12,
)


@settings(PROFILE)
@given(body=values | st.builds(object), severity=texts, key=texts, value=values)
def test_every_record_encodes(body: Any, severity: str, key: str, value: Any) -> None:
    """Whatever the body, severity text or attribute key and value, the record we emit
    encodes (the real OTLP encoder, which rejected the whole batch before)."""
    record = valid_record(LogRecord(body=body, severity_text=severity, event_name=severity))
    _encode_value(record.body).SerializeToString()
    assert record.severity_text is not None
    record.severity_text.encode()
    assert record.event_name is not None
    record.event_name.encode()
    attributes = BridgeProcessor._get_attributes({key: value, "event": "x"})
    for encoded in _encode_attributes(attributes) or []:
        encoded.SerializeToString()


def test_what_can_be_kept_is_kept() -> None:
    """Valid text, 64-bit integers and structures pass as they are; only what cannot be
    encoded changes."""
    assert valid_record(LogRecord(body="héllo")).body == "héllo"
    assert valid_record(LogRecord(body={"a": [1, "b"]})).body == {"a": [1, "b"]}
    assert typed(2**63 - 1) == 2**63 - 1
    assert typed(2**64) == str(2**64)
    assert valid_record(LogRecord(body="a\udcffb")).body == "a?b"


def test_each_rendered_line_carries_the_ids_of_its_own_span() -> None:
    """The ids are formatted once per span, and never carried over to the next span's
    lines, to a line outside any span or under an invalid context; ids the app put in
    the event itself stay."""
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    lines: list[dict[str, Any]] = []
    processors: list[Any] = [BridgeProcessor(logger_provider=NoOpLoggerProvider()), _keep(lines)]
    logger = structlog.wrap_logger(None, processors=processors)

    def ids(span: Any) -> tuple[str, str]:
        context = span.get_span_context()
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    with tracer.start_as_current_span("a") as a:
        logger.info("one")
        logger.info("two")
        with tracer.start_as_current_span("b") as b:
            logger.info("three")
        logger.info("four", trace_id="app's own")
    logger.info("five")
    with trace.use_span(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)):
        logger.info("six")
    with tracer.start_as_current_span("c") as c:
        logger.info("seven")
    got = [(line["event"], line.get("trace_id"), line.get("span_id")) for line in lines]
    assert got == [
        ("one", *ids(a)),
        ("two", *ids(a)),
        ("three", *ids(b)),
        ("four", "app's own", ids(a)[1]),
        ("five", None, None),
        ("six", None, None),
        ("seven", *ids(c)),
    ]


def _keep(lines: list[dict[str, Any]]) -> Any:
    def renderer(logger: Any, method: str, event_dict: dict[str, Any]) -> str:
        lines.append(dict(event_dict))
        raise structlog.DropEvent

    return renderer
