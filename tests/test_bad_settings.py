"""Bad settings, end to end: a real app under ``opentelemetry-instrument``, a real OTLP
receiver. For every ``OTEL_EXCELLENCE_*`` variable and every standard variable in
``sdk_settings.SDK_SETTINGS`` (the OTEL_BSP_*, OTEL_BLRP_*, OTEL_METRIC_*, OTEL_ATTRIBUTE_*,
OTEL_EXPORTER_OTLP_* families and the rest): exactly one warning names the variable and
its value, and spans, log records and metrics still arrive.

Several independent cases share a process to keep this fast. Cases that could interact
never share one: a per-signal variable and its general form, a queue size and a batch
size, the sampler and its argument, the count limits (they fall back to one another).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from otel_excellence._config.settings import all_settings
from tests.launch import Run, instrumented
from tests.support.otlp_sink import OtlpSink
from tests.test_sdk_settings import CASES as SDK_CASES
from tests.test_sdk_settings import HTTPS, SECRET

# Every OTEL_EXCELLENCE_* variable -> a bad value (None: any text is a valid value).
EXCELLENCE_CASES: dict[str, str | None] = {
    "OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS": "10000000000000",
    "OTEL_EXCELLENCE_SERVICE_VERSION": None,
    "OTEL_EXCELLENCE_ENVIRONMENT": None,
    "OTEL_EXCELLENCE_RESOURCE_DETECTORS": "host,docker",
    "OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS": "fast",
    "OTEL_EXCELLENCE_N_PLUS_ONE_THRESHOLD": "1",
    "OTEL_EXCELLENCE_DB_STATEMENT": "redact",
    "OTEL_EXCELLENCE_ERROR_RULES": "string:ascii_letters",
    "OTEL_EXCELLENCE_BAGGAGE_KEYS": None,
    "OTEL_EXCELLENCE_DEV": "maybe",
    "OTEL_EXCELLENCE_LOG_LEVEL": "loud",
}

_COUNT_LIMITS = re.compile(r"^OTEL_(SPAN_|EVENT_|LINK_|LOGRECORD_)?ATTRIBUTE_COUNT_LIMIT$")
_LENGTH_LIMITS = re.compile(r"^OTEL_(SPAN_|LOGRECORD_)?ATTRIBUTE_VALUE_LENGTH_LIMIT$")


def family(variable: str) -> str:
    """Cases of one family can mask each other: never in the same process."""
    if _COUNT_LIMITS.match(variable):
        return "count limits"
    if _LENGTH_LIMITS.match(variable):
        return "length limits"
    if variable.startswith("OTEL_TRACES_SAMPLER"):
        return "sampler"
    name = re.sub(r"_(TRACES|METRICS|LOGS)_", "_", variable)
    return re.sub(r"_(MAX_QUEUE_SIZE|MAX_EXPORT_BATCH_SIZE)$", "_SIZES", name)


def cases() -> list[tuple[str, str, dict[str, str]]]:
    out = [(v, bad, {}) for v, bad in EXCELLENCE_CASES.items() if bad is not None]
    for variable, (bad, context) in SDK_CASES.items():
        # An https endpoint only makes the certificate files matter in process; here the
        # export has to reach a plain receiver, and the files are checked regardless.
        out.append((variable, bad, {} if context == HTTPS else dict(context)))
    return out


def groups(count: int = 6) -> list[list[tuple[str, str, dict[str, str]]]]:
    made: list[list[tuple[str, str, dict[str, str]]]] = [[] for _ in range(count)]
    for case in cases():
        fitting = [g for g in made if family(case[0]) not in {family(c[0]) for c in g}]
        min(fitting, key=len).append(case)
    return made


GROUPS = groups()
# The same checks over OTLP/HTTP, where the exporters read these differently.
HTTP_GROUP = [
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "-1", {}),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", {}),
    ("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization Bearer {SECRET}", {}),
    ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:port/v1/logs", {}),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", {}),
]


def run(cases: list[tuple[str, str, dict[str, str]]], protocol: str, sink: OtlpSink) -> Run:
    endpoint = sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint
    env = {
        "OTEL_SERVICE_NAME": "bad-settings",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "SQLITE_PATH": ":memory:",
    }
    if any(variable == "OTEL_EXPORTER_OTLP_ENDPOINT" for variable, _, _ in cases):
        # The general endpoint falls back to localhost: the signals go to the receiver
        # by their own variables in this process.
        for signal in ("TRACES", "METRICS", "LOGS"):
            env[f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"] = endpoint
    for variable, bad, context in cases:
        env.update(context)
        env[variable] = bad
    return instrumented("sample_app.py", env, timeout=180)


def warnings_naming(stderr: str, variable: str) -> list[str]:
    return re.findall(rf"^otel-excellence: WARNING: {re.escape(variable)}[= ].*$", stderr, re.M)


def check(run: Run, sink: OtlpSink, cases: list[tuple[str, str, dict[str, str]]]) -> None:
    assert run.returncode == 0, run.stderr
    for variable, bad, _ in cases:
        named = warnings_naming(run.stderr, variable)
        assert len(named) == 1, (variable, named, run.stderr)
        if variable.endswith("_HEADERS"):
            assert "value not shown" in named[0]
        else:
            assert f"{variable}={bad!r}" in named[0], named[0]
    assert SECRET not in run.stderr
    assert "internal error" not in run.stderr, run.stderr
    assert "not delivered" not in run.stderr, run.stderr
    assert sink.wait_for(lambda: any(s.name == "sample.job" for s in sink.spans()))
    assert sink.wait_for(lambda: any("inside the job" in str(r.body) for r in sink.logs()))
    assert sink.wait_for(
        lambda: any(m.points and not m.name.startswith("otel.sdk.") for m in sink.metrics())
    )


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as receiver:
        yield receiver


def test_every_variable_has_a_case() -> None:
    """A new OTEL_EXCELLENCE_* setting or checked OTEL_* variable needs a case here."""
    assert set(EXCELLENCE_CASES) == {s.env for s in all_settings()}
    assert {variable for group in GROUPS for variable, _, _ in group} == {
        *(v for v, bad in EXCELLENCE_CASES.items() if bad is not None),
        *SDK_CASES,
    }


def test_no_process_mixes_cases_that_interact() -> None:
    """Per-signal and general forms, queue and batch sizes, sampler and argument, and
    the limits that fall back to one another each run in a process of their own."""
    for group in GROUPS:
        families = [family(variable) for variable, _, _ in group]
        assert len(families) == len(set(families))
    assert family("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") == family("OTEL_EXPORTER_OTLP_TIMEOUT")
    assert family("OTEL_BSP_MAX_QUEUE_SIZE") == family("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")


@pytest.mark.parametrize("index", range(len(GROUPS)), ids=lambda i: f"group{i}")
def test_each_bad_value_warns_once_and_all_signals_arrive(index: int, sink: OtlpSink) -> None:
    """One warning per bad variable, naming it and its value; nothing is lost."""
    cases = GROUPS[index]
    check(run(cases, "grpc", sink), sink, cases)


def test_over_otlp_http_too(sink: OtlpSink) -> None:
    """The HTTP exporters read timeouts, compression, headers and endpoints themselves."""
    check(run(HTTP_GROUP, "http/protobuf", sink), sink, HTTP_GROUP)
