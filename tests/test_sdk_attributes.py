"""The SDK's attribute cleaning and metric series keys, fast paths included, give what
the SDK gives: same values of the same types, same warnings, same series.

The property tests generate attribute values of every shape (primitives and their
subclasses, ``True``/``1``/``1.0``, NaN and -0.0, 64-bit edges, bytes, lists and
tuples, nested and invalid mappings, keys the SDK drops or converts, objects it turns
into text) under every length limit, and compare with the SDK's own functions. Under
``CI=true`` each runs 10,000 examples.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import opentelemetry.attributes as api_attributes
import opentelemetry.sdk.metrics._internal._view_instrument_match as view_match
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal import measurement
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import Span, SpanLimits, TracerProvider

from otel_excellence._export import sdk_attributes
from otel_excellence._export.sdk_attributes import (
    MAX_KEYS,
    cached_keys,
    fast_clean,
    fast_set_attribute,
)
from tests.launch import instrumented
from tests.support.otlp_sink import OtlpSink, any_value
from tests.test_otlp_encoding import PROFILE


def _sdk(function: Any) -> Any:
    while hasattr(function, "__wrapped__"):
        function = function.__wrapped__
    return function


SDK_CLEAN = _sdk(api_attributes._clean_attribute_value)
SDK_HASH = _sdk(view_match._hash_attributes)
SDK_SET_ATTRIBUTE = _sdk(Span.set_attribute)


class Level(enum.IntEnum):
    HIGH = 2


class Name(str):
    pass


class Opaque:
    def __str__(self) -> str:
        return "opaque"


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 1.0, 0.0, -0.0, math.nan, True, False])
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.binary(max_size=6)
    | st.just(Level.HIGH)
    | st.text(max_size=5).map(Name)
    | st.just(Opaque())
)
keys = st.text(max_size=6) | st.sampled_from(["", "a", "b", "http.route"]) | st.just(Name("a"))
odd_keys = keys | st.integers(0, 3) | st.none() | st.just(Opaque())
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(odd_keys, inner, max_size=4)
    ),
    max_leaves=10,
)
flat = st.dictionaries(keys, scalars, max_size=6)


class Masking(dict[Any, Any]):
    """A dict subclass whose lookups (and iteration) answer otherwise than its items."""

    def __getitem__(self, key: Any) -> Any:
        return "***"

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().__iter__()))


class Adapter(Mapping[Any, Any]):
    """A mapping over a defaultdict (a lookup of a missing key adds it) whose lookups
    of missing keys raise a LookupError that is not a KeyError."""

    def __init__(self, items: dict[Any, Any]) -> None:
        self.inner = defaultdict(str, items)
        self.known = set(items)

    def __getitem__(self, key: Any) -> Any:
        if key not in self.known:
            raise LookupError(key)
        return self.inner[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.inner))

    def __len__(self) -> int:
        return len(self.inner)


# What a sampler hands each new span: a read-only view of the caller's own mapping.
proxies = (flat | st.dictionaries(odd_keys, values, max_size=4)).flatmap(
    lambda items: st.sampled_from([dict, Masking, Adapter]).map(
        lambda make: MappingProxyType(make(items))
    )
)
limits = st.sampled_from([None, 0, 3, 100])


def shape(value: Any) -> Any:
    """A value with each part's exact type beside it (``True`` is not ``1``; NaN is NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return (float, "nan")
    if isinstance(value, float):
        return (float, value, math.copysign(1.0, value))
    if isinstance(value, list | tuple):
        return (type(value), tuple(shape(v) for v in value))
    if isinstance(value, dict):
        return (type(value), tuple((shape(k), shape(v)) for k, v in value.items()))
    return (type(value), value)


@settings(PROFILE)
@given(value=scalars | values | flat | proxies, limit=limits)
def test_cleaning_gives_what_the_sdk_gives(value: Any, limit: int | None) -> None:
    """Same result, part for part and type for type, and the same lines logged."""
    ours = fast_clean(SDK_CLEAN)
    logged: list[list[str]] = []
    results = []
    for clean in (SDK_CLEAN, ours):
        handler = _Collect()
        sdk_logger = logging.getLogger("opentelemetry.attributes")
        sdk_logger.addHandler(handler)
        try:
            results.append(clean(value, limit))
        finally:
            sdk_logger.removeHandler(handler)
        logged.append(handler.lines)
    assert shape(results[1]) == shape(results[0])
    assert logged[1] == logged[0]
    if isinstance(value, dict | MappingProxyType):
        assert type(results[1]) is dict
        assert results[1] is not value  # a copy, as the SDK's: the caller may change it


span_limits = st.sampled_from([0, 1, 3, 128, SpanLimits.UNSET])
calls = st.lists(st.tuples(odd_keys, values), max_size=8)


@settings(PROFILE)
@given(
    started=flat,
    calls=calls,
    ended_after=st.none() | st.integers(0, 8),
    max_attributes=span_limits,
    max_length=st.sampled_from([3, SpanLimits.UNSET]),
)
def test_set_attribute_gives_what_the_sdk_gives(
    started: dict[str, Any],
    calls: list[tuple[Any, Any]],
    ended_after: int | None,
    max_attributes: int,
    max_length: int,
) -> None:
    """A span's attributes after any sequence of ``set_attribute`` calls, before and
    after it ends, under any limits: the same items in the same order with the same
    types, the same dropped count, the same lines logged."""
    limits = SpanLimits(max_span_attributes=max_attributes, max_attribute_length=max_length)
    tracer = TracerProvider(span_limits=limits).get_tracer("test")
    results = []
    for set_attribute in (SDK_SET_ATTRIBUTE, fast_set_attribute(SDK_SET_ATTRIBUTE)):
        span = tracer.start_span("s", attributes=started)
        handler = _Collect()
        loggers = [
            logging.getLogger(n) for n in ("opentelemetry.attributes", "opentelemetry.sdk.trace")
        ]
        for sdk_logger in loggers:
            sdk_logger.addHandler(handler)
        try:
            for n, (key, value) in enumerate(calls):
                if n == ended_after:
                    span.end()
                set_attribute(span, key, value)
        finally:
            for sdk_logger in loggers:
                sdk_logger.removeHandler(handler)
        attributes = span._attributes  # type: ignore[attr-defined]
        results.append((shape(dict(attributes._dict)), attributes.dropped, handler.lines))
    assert results[1] == results[0]


@pytest.mark.parametrize("state", ["frozen while live", "ended, not frozen"])
def test_set_attribute_on_a_span_in_a_state_the_sdk_never_leaves_it(state: str) -> None:
    """Each guard on its own: attributes frozen on a live span raise as the SDK's do;
    an ended span whose attributes were not frozen is left as the SDK leaves it."""
    outcomes = []
    for set_attribute in (SDK_SET_ATTRIBUTE, fast_set_attribute(SDK_SET_ATTRIBUTE)):
        span = TracerProvider().get_tracer("test").start_span("s", attributes={"a": 1})
        if state == "ended, not frozen":
            span.end()
        span._attributes._immutable = state == "frozen while live"  # type: ignore[attr-defined]
        try:
            set_attribute(span, "b", 2)
            outcome: Any = dict(span._attributes._dict)  # type: ignore[attr-defined]
        except TypeError as error:
            outcome = str(error)
        outcomes.append(outcome)
    assert outcomes[1] == outcomes[0]


def test_set_attribute_on_a_span_with_its_own_attributes_object() -> None:
    """A span whose attributes are not the SDK's ``BoundedAttributes`` (replaced by
    other code) is written the SDK's way."""
    fast = fast_set_attribute(SDK_SET_ATTRIBUTE)
    span = TracerProvider().get_tracer("test").start_span("s")
    mine: dict[str, Any] = {}
    span._attributes = mine  # type: ignore[attr-defined]
    fast(span, "a", 1)
    assert mine == {"a": 1}


@settings(PROFILE)
@given(mappings=st.lists(flat | st.dictionaries(keys, values, max_size=3), max_size=8))
def test_series_keys_are_the_sdks_whatever_came_before(mappings: list[dict[str, Any]]) -> None:
    """Each mapping's key equals the SDK's, after any other mappings were seen (the
    cache never answers for a different mapping). Equal is what a series key must be:
    the SDK uses it only as a dict key, and its type names already tell ``True``, ``1``
    and ``1.0`` apart (an equal key may carry an equal ``str`` subclass key)."""
    hash_attributes = cached_keys(SDK_HASH)
    for mapping in mappings * 2:
        cleaned = SDK_CLEAN(mapping, None)
        ours, sdk = hash_attributes(cleaned), SDK_HASH(cleaned)
        assert ours == sdk
        assert hash(ours) == hash(sdk)


@pytest.mark.parametrize("make", [Masking, Adapter], ids=["dict-subclass", "mapping"])
def test_a_spans_own_mapping_is_read_as_the_sdk_reads_it(make: Any) -> None:
    """The caller's mapping reaches the cleaning through the sampler's read-only view:
    its own lookups are never called (they may answer otherwise than its items, raise,
    or add keys), so the span gets what the SDK gives it and the mapping is unchanged."""
    got = []
    for fast in (False, True):
        sdk_attributes.uninstall()
        if fast:
            assert sdk_attributes.install() is True
        mapping = make({"a": "secret", "n": 1})
        span = TracerProvider().get_tracer("test").start_span("s", attributes=mapping)
        span.end()
        got.append((shape(dict(span.attributes or {})), span.dropped_attributes))  # type: ignore[attr-defined]
        assert set(getattr(mapping, "inner", mapping)) == {"a", "n"}
    sdk_attributes.uninstall()
    assert got[1] == got[0]
    assert got[0][0] == shape({"a": "secret", "n": 1})


def test_equal_values_of_other_types_stay_other_series() -> None:
    """``True == 1 == 1.0``, and each is its own series, as in the SDK."""
    hash_attributes = cached_keys(SDK_HASH)
    mappings: list[dict[str, Any]] = [{"a": 1}, {"a": True}, {"a": 1.0}, {"a": "1"}, {"a": 1}]
    found = [hash_attributes(m) for m in mappings]
    assert found == [SDK_HASH(m) for m in mappings]
    assert len(set(found)) == 4


def test_the_cache_is_bounded() -> None:
    """Series keys of unbounded attribute values (an id per request) keep at most
    ``MAX_KEYS`` mappings, and every answer stays right."""
    hash_attributes = cached_keys(SDK_HASH)
    for n in range(MAX_KEYS * 3):
        assert hash_attributes({"user": n}) == SDK_HASH({"user": n})
    (cache,) = (
        c.cell_contents for c in hash_attributes.__closure__ or () if type(c.cell_contents) is dict
    )
    assert 0 < len(cache) <= MAX_KEYS


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class TestInstalled:
    @pytest.fixture(autouse=True)
    def _restore(self) -> Iterator[None]:
        yield
        sdk_attributes.uninstall()

    def test_install_swaps_each_function_once_and_uninstall_restores_it(self) -> None:
        sdk_attributes.uninstall()
        assert sdk_attributes.install() is True
        assert sdk_attributes.install() is False  # already ours: not wrapped twice
        for module, name, sdk in (
            (api_attributes, "_clean_attribute_value", SDK_CLEAN),
            (measurement, "_clean_attribute_value", SDK_CLEAN),
            (view_match, "_hash_attributes", SDK_HASH),
            (Span, "set_attribute", SDK_SET_ATTRIBUTE),
        ):
            assert getattr(module, name).__wrapped__ is sdk
        sdk_attributes.uninstall()
        assert api_attributes._clean_attribute_value is SDK_CLEAN
        assert measurement._clean_attribute_value is SDK_CLEAN
        assert view_match._hash_attributes is SDK_HASH
        assert Span.set_attribute is SDK_SET_ATTRIBUTE

    def test_another_release_keeps_its_own_functions(self, monkeypatch: pytest.MonkeyPatch) -> None:
        sdk_attributes.uninstall()
        monkeypatch.setattr(sdk_attributes, "VERIFIED_VERSION", "0.0.0")
        assert sdk_attributes.install() is False
        assert api_attributes._clean_attribute_value is SDK_CLEAN

    def test_someone_elses_replacement_is_left_alone(self, monkeypatch: pytest.MonkeyPatch) -> None:
        sdk_attributes.uninstall()

        def theirs(value: Any) -> Any:
            return SDK_HASH(value)

        def their_cleaning(value: Any, limit: int | None) -> Any:
            return SDK_CLEAN(value, limit)

        def their_set_attribute(span: Any, key: str, value: Any) -> None:
            SDK_SET_ATTRIBUTE(span, key, value)

        monkeypatch.setattr(Span, "set_attribute", their_set_attribute)
        monkeypatch.setattr(view_match, "_hash_attributes", theirs)
        monkeypatch.setattr(api_attributes, "_clean_attribute_value", their_cleaning)
        monkeypatch.setattr(measurement, "_clean_attribute_value", their_cleaning)
        assert sdk_attributes.install() is False
        assert view_match._hash_attributes is theirs
        assert api_attributes._clean_attribute_value is their_cleaning
        assert measurement._clean_attribute_value is their_cleaning
        assert Span.set_attribute is their_set_attribute

    def test_exported_metrics_and_spans_are_the_sdks(self) -> None:
        """The same measurements and spans, recorded with the fast paths and without:
        the same series with the same values, the same span attributes."""
        recorded = []
        for fast in (False, True):
            sdk_attributes.uninstall()
            if fast:
                assert sdk_attributes.install() is True
            recorded.append(_record_some())
        assert recorded[1] == recorded[0]
        series, spans = recorded[1]
        assert len(series["active"]) == 6  # 1, True, 1.0, "1", a list and the pool: six
        assert len(spans) == 3


def _record_some() -> tuple[dict[str, list[Any]], list[Any]]:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    active = meter.create_up_down_counter("active")
    duration = meter.create_histogram("duration")
    for attributes in (
        {"a": 1},
        {"a": True},
        {"a": 1.0},
        {"a": "1"},
        {"a": [1, 2]},
        {"a": 1},
        {"pool.name": "main", "state": "used"},
    ):
        active.add(1, attributes)
        duration.record(0.5, attributes)
    active.add(-1, {"a": True})
    data = reader.get_metrics_data()
    series: dict[str, list[Any]] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                series[metric.name] = sorted((
                    (shape(dict(point.attributes)), getattr(point, "value", None),
                     getattr(point, "bucket_counts", None))
                    for point in metric.data.data_points
                ), key=repr)  # fmt: skip
    tracer = TracerProvider().get_tracer("test")
    spans = []
    for attributes in ({"a": 1, "b": "x"}, {"a": True, "": 1}, {"a": [1, 2], "b": None}):
        with tracer.start_as_current_span("s", attributes=attributes) as span:  # type: ignore[arg-type]
            span.set_attribute("c", 2.5)
            span.set_attribute("d", Name("n"))
            spans.append(shape(dict(span.attributes or {})))  # type: ignore[attr-defined]
    return series, spans


def test_an_instrumented_app_exports_what_vanilla_would() -> None:
    """Under ``opentelemetry-instrument`` the fast paths are in place, and a real OTLP
    receiver gets three series for ``1``, ``True`` and ``1.0`` with their own counts,
    and the span's attributes with their own types."""
    with OtlpSink() as sink:
        result = instrumented(
            "attributes_app.py",
            {
                "OTEL_SERVICE_NAME": "fast-paths",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "True"
        assert sink.wait_for(lambda: any(m.name == "app.active" for m in sink.metrics()))
        assert sink.wait_for(lambda: any(s.name == "work" for s in sink.spans()))
        points = [p for m in sink.metrics() if m.name == "app.active" for p in m.points]
        # Cumulative: a later export repeats each series' running total.
        counts = {repr(shape(any_value(p.attributes[0].value))): p.as_int for p in points}
        assert counts == {
            repr((bool, True)): 2,
            repr((float, 1.0, 1.0)): 1,
            repr((int, 1)): 2,
        }
        (span,) = [s for s in sink.spans() if s.name == "work"]
        assert shape(span.attributes) == shape({"a": True, "b": 2})
