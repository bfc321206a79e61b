"""Trace-linked logs from applications configured the way real applications are.

Each mode of tests/apps/log_app.py runs twice: once plainly (the reference: what the app
prints on its own) and once with the distro, exporting to a real OTLP receiver. The
distro must produce exactly one OTel record per event, linked to its span, typed, with
exception details; and print the same lines, plus ``trace_id``/``span_id`` for structlog.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.launch import Run, instrumented
from tests.support.otlp_sink import Log, OtlpSink, Span

MODES = ["default", "json", "console", "before", "stdlib", "formatter", "dictconfig", "helper"]
STRUCTLOG_MODES = set(MODES) - {"dictconfig"}
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?")
IDS = re.compile(r" ?\b(?:trace_id|span_id)=[0-9a-f]{16,32}")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


@dataclass
class Outcome:
    mode: str
    plain: Run
    instrumented: Run
    logs: list[Log]
    spans: list[Span]

    @property
    def checkout(self) -> Span:
        [span] = [s for s in self.spans if s.name == "checkout"]
        return span

    def record(self, body: str) -> Log:
        matching = [r for r in self.logs if r.body == body]
        assert len(matching) == 1, f"{self.mode}: {len(matching)} records for {body!r}"
        return matching[0]


def _env(mode: str, sink: OtlpSink) -> dict[str, str]:
    return {
        "MODE": mode,
        "OTEL_SERVICE_NAME": f"logs-{mode}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }


@pytest.fixture(scope="module", params=MODES)
def outcome(request: pytest.FixtureRequest) -> Iterator[Outcome]:
    mode = request.param
    with OtlpSink() as sink:
        # "before" starts telemetry from code, so it runs without the wrapper; its
        # reference run has telemetry switched off.
        wrapper = mode != "before"
        plain = instrumented(
            "log_app.py", {"MODE": mode, "OTEL_SDK_DISABLED": "true"}, wrapper=False
        )
        run = instrumented("log_app.py", _env(mode, sink), wrapper=wrapper)
        assert plain.returncode == 0, plain.stderr
        assert run.returncode == 0, run.stderr
        yield Outcome(mode, plain, run, sink.logs(), sink.spans())


class TestOneRecordPerEvent:
    def test_each_event_is_exported_exactly_once(self, outcome: Outcome) -> None:
        """Also when structlog hands the rendered line to stdlib (a second bridge)."""
        bodies = [str(r.body) for r in outcome.logs]
        assert len([b for b in bodies if "order placed" in b]) == 1, bodies
        assert len([b for b in bodies if "payment failed" in b]) == 1, bodies
        assert len(bodies) == 2, bodies

    def test_records_carry_the_span_they_were_emitted_in(self, outcome: Outcome) -> None:
        checkout = outcome.checkout
        for body in ("order placed", "payment failed"):
            record = outcome.record(body)
            assert (record.trace_id, record.span_id) == (checkout.trace_id, checkout.span_id)

    def test_severity_is_mapped(self, outcome: Outcome) -> None:
        info, error = outcome.record("order placed"), outcome.record("payment failed")
        assert (info.severity_text, info.severity_number) == ("INFO", 9)
        assert (error.severity_text, error.severity_number) == ("ERROR", 17)


class TestRecordContent:
    def test_fields_become_typed_attributes(self, outcome: Outcome) -> None:
        attributes = outcome.record("order placed").attributes
        assert attributes["order_id"] == 42
        assert attributes["amount"] == 9.5
        assert attributes["paid"] is True
        assert attributes["tags"] == ["a", "b"]
        # Values OpenTelemetry cannot carry arrive as strings instead of being dropped.
        assert attributes["when"] == "2026-11-25"
        assert attributes["ref"] == "12345678-1234-5678-1234-567812345678"

    def test_exceptions_carry_the_same_details_as_failed_spans(self, outcome: Outcome) -> None:
        attributes = outcome.record("payment failed").attributes
        assert attributes["exception.type"] == "TimeoutError"
        assert attributes["exception.message"] == "payment provider timed out"
        assert "TimeoutError: payment provider timed out" in attributes["exception.stacktrace"]
        assert attributes["otel_excellence.error.category"] == "timeout"
        assert attributes["otel_excellence.error.retryable"] is True
        assert HEX16.match(attributes["otel_excellence.error.fingerprint"])


def _normalise(line: str) -> Any:
    line = TIMESTAMP.sub("<time>", line)
    if line.startswith("{"):
        data = json.loads(line)
        data.pop("trace_id", None)
        data.pop("span_id", None)
        data.pop("timestamp", None)
        return data
    # ConsoleRenderer pads the event column when key=value pairs follow: the added
    # ids can add that padding to a line that had none.
    return IDS.sub("", line).rstrip()


class TestWhatTheAppPrints:
    def test_nothing_is_lost_or_changed_beyond_the_added_ids(self, outcome: Outcome) -> None:
        plain = outcome.plain.stdout.splitlines()
        ours = outcome.instrumented.stdout.splitlines()
        assert len(ours) == len(plain)
        assert [_normalise(line) for line in ours] == [_normalise(line) for line in plain]

    def test_structlog_lines_carry_trace_and_span_ids(self, outcome: Outcome) -> None:
        if outcome.mode not in STRUCTLOG_MODES:
            assert "trace_id" not in outcome.instrumented.stdout  # stdlib formats are the app's
            return
        checkout = outcome.checkout
        lines = [ln for ln in outcome.instrumented.stdout.splitlines() if "order placed" in ln]
        assert len(lines) == 1
        if lines[0].startswith("{"):
            data = json.loads(lines[0])
            assert (data["trace_id"], data["span_id"]) == (checkout.trace_id, checkout.span_id)
        else:
            assert f"trace_id={checkout.trace_id}" in lines[0]
            assert f"span_id={checkout.span_id}" in lines[0]


def test_structlog_records_reach_the_loki_bound_exporter_through_the_collector() -> None:
    """App (structlog JSON) -> otelcol-excellence gateway -> Loki's OTLP endpoint."""
    from tests.support.collector import Collector
    from tests.support.ports import free_port

    tempo, loki = OtlpSink().start(), OtlpSink().start()
    gateway = Collector(
        "gateway.yaml",
        {
            "TEMPO_OTLP_ENDPOINT": f"127.0.0.1:{tempo.grpc_port}",
            "LOKI_OTLP_ENDPOINT": f"http://127.0.0.1:{loki.http_port}/otlp",
            # Metrics are not under test here: a closed port, retried in the background.
            "PROMETHEUS_REMOTE_WRITE_ENDPOINT": f"http://127.0.0.1:{free_port()}/api/v1/write",
            "OTELCOL_SAMPLING_PERCENTAGE": "100",
            "OTELCOL_TAIL_DECISION_WAIT": "500ms",
        },
    ).start()
    try:
        run = instrumented(
            "log_app.py",
            {"MODE": "json", "OTEL_SERVICE_NAME": "logs-via-collector",
             "OTEL_EXPORTER_OTLP_ENDPOINT": gateway.grpc_endpoint},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert loki.wait_for(lambda: len(loki.logs()) >= 2, timeout=30)
        assert tempo.wait_for(lambda: any(s.name == "checkout" for s in tempo.spans()))
        [checkout] = [s for s in tempo.spans() if s.name == "checkout"]
        records = {r.body: r for r in loki.logs()}
        assert set(records) == {"order placed", "payment failed"}
        for record in records.values():
            assert (record.trace_id, record.span_id) == (checkout.trace_id, checkout.span_id)
            # Loki turns these into the service_name label and structured metadata.
            assert record.resource["service.name"] == "logs-via-collector"
        assert records["order placed"].attributes["order_id"] == 42
        assert records["payment failed"].attributes["otel_excellence.error.category"] == "timeout"
    finally:
        gateway.stop()
        tempo.stop()
        loki.stop()
