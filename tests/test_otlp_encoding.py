"""Our OTLP encoder writes what the SDK's encoder writes, and the exporters use it safely.

The property tests generate spans and log records of every shape the SDK encodes
(attribute values of every type, nested maps and lists, 64-bit edges, invalid values
the SDK drops, events, links, trace state, remote parents, dropped counts, resources and
scopes equal but not identical) and require our bytes to be the SDK's bytes, and the
message parsed from them to equal the SDK's message. Under ``CI=true`` each property
runs 10,000 examples. The end-to-end tests are in ``test_otlp_encoding_e2e.py``.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, TraceState

from otel_excellence import _diagnostics
from otel_excellence._export import otlp_encoding
from otel_excellence._export.otlp_encoding import (
    _AttributeCache,
    _with_fallback,
    encode_logs_bytes,
    encode_spans_bytes,
)

settings.register_profile(
    "encoding-ci",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "encoding-dev",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PROFILE = settings.get_profile("encoding-ci" if IN_CI else "encoding-dev")

# Loggers the SDK writes to for the invalid values generated here (one line per dropped
# key, with a traceback): silenced while the properties run, they are not the subject.
NOISY_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.common._internal",
    "opentelemetry.attributes",
    "opentelemetry.trace.span",
    "opentelemetry.trace.status",
    "opentelemetry.sdk.trace",
)


@pytest.fixture(autouse=True)
def _quiet_sdk_loggers() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    before = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    yield
    for lg, was in zip(loggers, before, strict=True):
        lg.disabled = was


# --- values -----------------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1
    HUGE = 2**63  # out of int64 range: the SDK drops the key


class Label(str):
    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        return b"not what protobuf writes"


class Ratio(float):
    pass


class Blob(bytes):
    pass


INT64_EDGES = [0, 1, -1, 127, 128, 16383, 16384, 2**31 - 1, -(2**31), 2**32, 2**63 - 1, -(2**63)]
ints = (
    st.sampled_from(INT64_EDGES)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    # Outside int64: the SDK logs and drops the key (or fails the batch for a body).
    | st.sampled_from([2**63, -(2**63) - 1, 2**64, -(2**70)])
)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-310])
texts = (
    st.text(max_size=12)
    | st.sampled_from(["", "GET", "/users/{id}", "é", "日本", "\x00", "a" * 300])
    # Lone surrogates cannot be UTF-8: the SDK logs and drops the key.
    | st.sampled_from(["\ud800", "ok\udfff"])
)
scalars = (
    st.none()
    | st.booleans()
    | ints
    | floats
    | texts
    | st.binary(max_size=12)
    | st.sampled_from(
        [
            Color.RED,
            Color.HUGE,
            Label("labelled"),
            Ratio(0.25),
            Blob(b"\x01\x02"),
            bytearray(b"\x05\x06"),  # a Sequence of ints, not bytes
            range(3),
            MappingProxyType({"inner": 1}),
            {1, 2},  # no AnyValue for a set: the SDK drops the key
            object(),
        ]
    )
)
nested_keys = texts | st.integers(min_value=-3, max_value=3)  # nested keys become str(k)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(nested_keys, children, max_size=4)
    ),
    max_leaves=4,
)
# Mostly the keys real instrumentations use, so the cache sees repeats across examples.
keys = (
    st.sampled_from(["http.method", "db.system", "server.port", "error.type", "k", ""])
    | texts
    | st.integers(min_value=0, max_value=2)  # not a str: the SDK logs and drops the key
)
plain_attributes = st.dictionaries(keys, values, max_size=3)
# Span and log batches draw their attributes mostly from a pool of typical sets (so that
# 10,000 examples stay affordable) and sometimes flat generated ones; the whole space of
# values is the subject of test_attribute_values.
ATTRIBUTE_POOL = [
    None,
    {},
    {"http.request.method": "GET", "http.response.status_code": 200, "url.path": "/u/7"},
    {"db.system.name": "sqlite", "db.query.text": "SELECT 1", "server.port": 5432},
    {"error.type": "ValueError", "retry": True, "ratio": 0.5, "tags": ("a", "b")},
    BoundedAttributes(maxlen=2, attributes={"a": 1, "b": "x", "c": -1}, immutable=True),
    {"big": 2**63, "k": "v"},  # the SDK drops "big"
    {"nested": {"a": [1, "x", None]}, "bytes": b"\x00"},
]
flat_values = scalars | st.lists(scalars, max_size=3).map(tuple)
flat_attributes = st.dictionaries(keys, flat_values, max_size=3)
pooled_attributes = st.sampled_from(ATTRIBUTE_POOL)
attributes = st.one_of(
    pooled_attributes,
    pooled_attributes,
    pooled_attributes,
    flat_attributes,
    st.builds(
        lambda attrs, maxlen: BoundedAttributes(maxlen=maxlen, attributes=attrs, immutable=True),
        flat_attributes,
        st.integers(min_value=0, max_value=3),
    ),
)

# --- spans ------------------------------------------------------------------------------

TRACE_STATES = [
    DEFAULT_TRACE_STATE,
    TraceState(),
    TraceState([("vendor", "v1")]),
    TraceState([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]),
]
span_contexts = st.builds(
    SpanContext,
    trace_id=st.sampled_from([0, 1, 2**128 - 1]) | st.integers(0, 2**128 - 1),
    span_id=st.sampled_from([0, 1, 2**64 - 1]) | st.integers(0, 2**64 - 1),
    is_remote=st.booleans(),
    trace_flags=st.integers(0, 255).map(TraceFlags),
    trace_state=st.sampled_from(TRACE_STATES),
)
times = st.none() | st.sampled_from([0, 1, 2**64 - 1]) | st.integers(0, 2**64 - 1)
# Names, not attribute values: a name that is not UTF-8 fails the whole batch (tested apart).
names = st.text(max_size=12) | st.sampled_from(["", "GET /users/{id}", "é", "a" * 300])


def bounded(items: list[Any], maxlen: int | None) -> Any:
    if maxlen is None:
        return tuple(items)
    container: BoundedList[Any] = BoundedList(maxlen)
    container.extend(items)
    return container


# Events and links take pooled attributes: their values are covered by test_attribute_values.
events = st.lists(
    st.builds(Event, name=names, attributes=pooled_attributes, timestamp=times),
    max_size=2,
)
links = st.lists(st.builds(Link, span_contexts, pooled_attributes), max_size=2)

# Equal but distinct resources and scopes: the SDK groups them by equality.
RESOURCES = [
    Resource({"service.name": "shop"}),
    Resource({"service.name": "shop"}),
    Resource({"service.name": "billing", "service.version": "1.2"}, "https://schema/1.26"),
    Resource({}),
    Resource({"k8s.pod.uid": "x", "ports": (80, 443), "big": 2**63}),
]
SCOPES = [
    None,
    InstrumentationScope("opentelemetry.instrumentation.flask", "0.66b1"),
    InstrumentationScope("opentelemetry.instrumentation.flask", "0.66b1"),
    InstrumentationScope("app", None, "https://schema/1.21", {"team": "core", "n": 3}),
    InstrumentationScope("", None),
]


class MyReadableSpan(ReadableSpan):
    """A subclass: encoded through the public properties, not the private fields."""


span_classes = st.sampled_from([ReadableSpan, ReadableSpan, MyReadableSpan])
parents = st.none() | span_contexts
containers = st.none() | st.integers(0, 3)  # a tuple, or a BoundedList of that size
kinds = st.sampled_from(list(SpanKind))
statuses = st.none() | st.builds(Status, st.sampled_from(list(StatusCode)), st.none() | names)
resources = st.sampled_from(RESOURCES)
scopes = st.sampled_from(SCOPES)


@st.composite
def readable_spans(draw: st.DrawFn) -> ReadableSpan:
    cls = draw(span_classes)
    span: ReadableSpan = cls(
        name=draw(names),
        context=draw(span_contexts),
        parent=draw(parents),
        resource=draw(resources),
        attributes=draw(attributes),
        events=bounded(draw(events), draw(containers)),
        links=bounded(draw(links), draw(containers)),
        kind=draw(kinds),
        instrumentation_scope=draw(scopes),
        status=draw(statuses),
        start_time=draw(times),
        end_time=draw(times),
    )
    return span


# --- log records ------------------------------------------------------------------------

optional_names = st.none() | names
severities = st.none() | st.sampled_from(list(SeverityNumber)) | st.integers(0, 30)  # ints: dropped
observed_times = st.sampled_from([0, 1, 2**64 - 1]) | st.integers(0, 2**64 - 1)
log_attributes = (
    pooled_attributes
    | flat_attributes
    | st.builds(
        lambda attrs, maxlen: BoundedAttributes(maxlen=maxlen, attributes=attrs, immutable=False),
        flat_attributes,
        st.none() | st.integers(min_value=0, max_value=4),
    )
)
trace_ids = st.sampled_from([0, 2**128 - 1]) | st.integers(0, 2**128 - 1)
span_ids = st.sampled_from([0, 2**64 - 1]) | st.integers(0, 2**64 - 1)
flag_values = st.integers(0, 255)


@st.composite
def log_records(draw: st.DrawFn) -> ReadableLogRecord:
    record = LogRecord(
        timestamp=draw(times),
        observed_timestamp=draw(observed_times),
        severity_text=draw(optional_names),
        severity_number=draw(severities),
        body=draw(flat_values),
        event_name=draw(optional_names),
    )
    record.attributes = draw(log_attributes)
    record.trace_id = draw(trace_ids)
    record.span_id = draw(span_ids)
    record.trace_flags = TraceFlags(draw(flag_values))
    return ReadableLogRecord(
        log_record=record, resource=draw(resources), instrumentation_scope=draw(scopes)
    )


# --- the properties ---------------------------------------------------------------------


def _has_nan(message: Any) -> bool:
    """NaN never equals itself, so messages holding one compare unequal to themselves."""
    return any(math.isnan(x) for x in _doubles(message))


def _doubles(message: Any) -> Iterator[float]:
    for field, value in message.ListFields():
        if field.type == field.TYPE_DOUBLE:
            yield value
        elif field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                yield from _doubles(item)


def assert_same_encoding(ours: bytes, sdk_message: Any, parse: Any) -> None:
    assert ours == sdk_message.SerializeToString()
    if not _has_nan(sdk_message):
        assert parse(ours) == sdk_message


class TestSpansEncodeAsTheSdkEncodes:
    @pytest.mark.timeout(900)  # 10,000 examples under CI, on a machine that may be busy
    @PROFILE
    @given(plain_attributes, values)
    def test_attribute_values(self, attrs: dict[Any, Any], body: Any) -> None:
        """Every kind of value (nested lists and maps, 64-bit edges, NaN, -0.0, bytes,
        subclasses, values the SDK drops) on a span, an event, a link and a log record:
        our bytes are the SDK's."""
        context = SpanContext(7, 9, False)
        span = ReadableSpan(
            name="values",
            context=context,
            attributes=attrs,
            events=(Event("e", attrs, 1),),
            links=(Link(context, attrs),),
        )
        ours = _with_fallback(encode_spans_bytes, encode_spans, "test")([span])
        assert_same_encoding(ours, encode_spans([span]), ExportTraceServiceRequest.FromString)

        record = LogRecord(timestamp=1, observed_timestamp=2, body=body, attributes=attrs)
        records = [ReadableLogRecord(log_record=record, resource=RESOURCES[0])]
        encode = _with_fallback(encode_logs_bytes, encode_logs, "test")
        try:
            expected = encode_logs(records)
        except Exception as error:  # a body the SDK cannot encode fails its batch
            with pytest.raises(type(error)):
                encode(records)
            return
        assert_same_encoding(encode(records), expected, ExportLogsServiceRequest.FromString)

    @pytest.mark.timeout(900)  # 10,000 examples under CI, on a machine that may be busy
    @PROFILE
    @given(st.lists(readable_spans(), max_size=3))
    def test_any_batch_of_spans(self, spans: list[ReadableSpan]) -> None:
        """Every field, attribute type, grouping and order: our bytes are the SDK's.

        Where the SDK cannot encode the batch at all, ours raises the SDK's exception.
        """
        encode = _with_fallback(encode_spans_bytes, encode_spans, "test")
        try:
            expected = encode_spans(spans)
        except Exception as error:  # the batch itself is unencodable (e.g. an unknown kind)
            with pytest.raises(type(error)):
                encode(spans)
            return
        ours = encode(spans)
        assert type(ours) is bytes  # not a fallback: under tests that would have raised
        assert_same_encoding(ours, expected, ExportTraceServiceRequest.FromString)

    def test_an_empty_batch(self) -> None:
        """No spans: an empty request, as the SDK sends."""
        assert encode_spans_bytes([]) == encode_spans([]).SerializeToString() == b""

    def test_values_equal_across_types_keep_their_types(self) -> None:
        """1, True and 1.0 (and 0.0, -0.0) under one key are cached apart, never confused."""
        spans = [
            ReadableSpan(name="s", context=SpanContext(1, 2, False), attributes={"k": v})
            for v in (1, True, 1.0, 0.0, -0.0, "1", 1, True)
        ]
        for span in spans:
            ours = ExportTraceServiceRequest.FromString(encode_spans_bytes([span]))
            assert ours == encode_spans([span])
        values = [
            ExportTraceServiceRequest.FromString(encode_spans_bytes([span]))
            .resource_spans[0]
            .scope_spans[0]
            .spans[0]
            .attributes[0]
            .value.WhichOneof("value")
            for span in spans
        ]
        assert values == [
            "int_value",
            "bool_value",
            "double_value",
            "double_value",
            "double_value",
            "string_value",
            "int_value",
            "bool_value",
        ]

    def test_equal_resources_share_one_group(self) -> None:
        """Two equal resource objects make one ResourceSpans, as with the SDK's dict."""
        first, second = Resource({"service.name": "a"}), Resource({"service.name": "a"})
        spans = [
            ReadableSpan(name=str(i), context=SpanContext(1, i, False), resource=r)
            for i, r in enumerate([first, second, first])
        ]
        request = ExportTraceServiceRequest.FromString(encode_spans_bytes(spans))
        assert request == encode_spans(spans)
        assert len(request.resource_spans) == 1
        assert [s.name for s in request.resource_spans[0].scope_spans[0].spans] == ["0", "1", "2"]


class TestLogRecordsEncodeAsTheSdkEncodes:
    @pytest.mark.timeout(900)  # 10,000 examples under CI, on a machine that may be busy
    @PROFILE
    @given(st.lists(log_records(), max_size=3))
    def test_any_batch_of_log_records(self, records: list[ReadableLogRecord]) -> None:
        """Severity, bodies of every type, attributes, ids, flags, times, event names:
        our bytes are the SDK's. A body the SDK cannot encode fails the batch for both."""
        encode = _with_fallback(encode_logs_bytes, encode_logs, "test")
        try:
            expected = encode_logs(records)
        except Exception as error:
            with pytest.raises(type(error)):
                encode(records)
            return
        ours = encode(records)
        assert type(ours) is bytes
        assert_same_encoding(ours, expected, ExportLogsServiceRequest.FromString)


class TestCachesAreBounded:
    def test_unique_values_never_grow_a_cache_past_its_budget(self) -> None:
        """High-cardinality values (ids in URLs, ports) cost memory up to the bound only,
        and what is encoded after a cache empties is still right."""
        cache = _AttributeCache(b"\x4a", budget=16_384)
        emptied = 0
        for n in range(1000):
            attrs = {"http.target": f"/users/{n}", "port": n, "m": "GET"}
            before = len(cache.entries)
            fields = cache.encode(attrs)
            emptied += len(cache.entries) < before
            held = sum(
                len(f) + sys.getsizeof(k[0]) + sys.getsizeof(k[1]) + cache.ENTRY_OVERHEAD
                for k, f in cache.entries.items()
            )
            assert held == cache.size <= 16_384
            span = ReadableSpan(name="s", context=SpanContext(1, 2, False), attributes=attrs)
            sdk_span = encode_spans([span]).resource_spans[0].scope_spans[0].spans[0]
            assert fields == [
                b"\x4a" + bytes([kv.ByteSize()]) + kv.SerializeToString()
                for kv in sdk_span.attributes
            ]
        assert emptied > 10  # the bound was reached, many times

    def test_long_values_are_not_cached(self) -> None:
        """A value longer than the cap (a stack trace, a long statement) is encoded, not kept."""
        cache = _AttributeCache(b"\x4a")
        cache.encode({"exception.stacktrace": "x" * (_AttributeCache.MAX_CHARS + 1), "k": "v"})
        assert list(cache.entries) == [("k", "v")]

    def test_resources_and_scopes_are_bounded(self) -> None:
        """A scope made per call (get_tracer per request) never grows the scope cache."""
        limit = otlp_encoding._SCOPES.limit
        for n in range(limit + 10):
            scope = InstrumentationScope(f"per-call-{n}")
            span = ReadableSpan(
                name="s", context=SpanContext(1, 2, False), instrumentation_scope=scope
            )
            assert ExportTraceServiceRequest.FromString(encode_spans_bytes([span])) == (
                encode_spans([span])
            )
            assert len(otlp_encoding._SCOPES.entries) <= limit


class TestFallback:
    @pytest.fixture
    def swallow_internal_errors(self) -> Iterator[None]:
        _diagnostics.raise_internal_errors = False
        yield
        _diagnostics.raise_internal_errors = True

    def test_a_failing_encode_uses_the_sdk_encoder_and_reports_once(
        self,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        swallow_internal_errors: None,
    ) -> None:
        """A bug in our encoder costs nothing but speed: the SDK encodes that batch, and
        one internal error is reported however many batches fail."""

        def broken(*args: Any) -> bytes:
            raise RuntimeError("encoder bug")

        monkeypatch.setattr(otlp_encoding, "_span_fields", broken)
        spans = [ReadableSpan(name="kept", context=SpanContext(1, 2, False))]
        encode = otlp_encoding.http_encoder(encode_spans_bytes, encode_spans, "span encoding")
        with caplog.at_level(logging.WARNING, logger="otel_excellence"):
            first = encode(spans).SerializeToString()
            second = encode(spans).SerializeToString()
        assert first == second == encode_spans(spans).SerializeToString()
        reports = [r for r in caplog.records if "internal error in span encoding" in r.message]
        assert len(reports) == 1

    def test_a_batch_the_sdk_cannot_encode_either_raises_the_sdk_error(
        self, caplog: pytest.LogCaptureFixture, swallow_internal_errors: None
    ) -> None:
        """Bad input is not our bug: the exporter sees the SDK's own exception, as it
        would without us, and no internal error is reported."""
        spans = [ReadableSpan(name="s", context=SpanContext(1, 2, False), kind="bogus")]  # type: ignore[arg-type]
        encode = otlp_encoding.grpc_encoder(
            encode_spans_bytes, encode_spans, ExportTraceServiceRequest, "span encoding"
        )
        with pytest.raises(KeyError):
            encode_spans(spans)
        with caplog.at_level(logging.WARNING, logger="otel_excellence"), pytest.raises(KeyError):
            encode(spans)
        assert not [r for r in caplog.records if "internal error" in r.message]


class TestInstall:
    @pytest.fixture(autouse=True)
    def _restore(self) -> Iterator[None]:
        yield
        otlp_encoding.uninstall()

    def test_install_swaps_the_encoder_of_each_imported_exporter_once(self) -> None:
        """gRPC and HTTP, spans and logs: each exporter module calls ours after install,
        and the SDK's again after uninstall."""
        import opentelemetry.exporter.otlp.proto.grpc._log_exporter as grpc_logs
        import opentelemetry.exporter.otlp.proto.grpc.trace_exporter as grpc_traces
        import opentelemetry.exporter.otlp.proto.http._log_exporter as http_logs
        import opentelemetry.exporter.otlp.proto.http.trace_exporter as http_traces

        modules: Sequence[tuple[Any, str, Any]] = [
            (grpc_traces, "encode_spans", encode_spans),
            (http_traces, "encode_spans", encode_spans),
            (grpc_logs, "encode_logs", encode_logs),
            (http_logs, "encode_logs", encode_logs),
        ]
        assert otlp_encoding.install() is True
        assert otlp_encoding.install() is False  # already ours: not wrapped twice
        for module, name, sdk in modules:
            assert getattr(module, name).__wrapped__ is sdk
        span = ReadableSpan(name="s", context=SpanContext(1, 2, False))
        assert isinstance(grpc_traces.encode_spans([span]), ExportTraceServiceRequest)
        assert http_traces.encode_spans([span]).SerializePartialToString() == (
            encode_spans([span]).SerializePartialToString()
        )
        otlp_encoding.uninstall()
        for module, name, sdk in modules:
            assert getattr(module, name) is sdk

    def test_another_exporter_release_keeps_its_own_encoder(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Verified against one release only: under another, a field added upstream must
        not be lost, so nothing is installed."""
        import opentelemetry.exporter.otlp.proto.http.trace_exporter as http_traces

        monkeypatch.setattr(otlp_encoding, "VERIFIED_EXPORTER_VERSION", "0.0.0")
        assert otlp_encoding.install() is False
        assert http_traces.encode_spans is encode_spans
