"""Correlation beyond the trace: configured baggage keys on spans and logs, across a real
HTTP hop between two instrumented processes; and the error-reference helpers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.launch import APPS, BIN, clean_env, instrumented
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port, wait_for_port

KEYS = "request.id,tenant.id"


@pytest.fixture(scope="module")
def hop() -> Iterator[tuple[OtlpSink, dict[str, Any]]]:
    with OtlpSink() as sink:
        common = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXCELLENCE_BAGGAGE_KEYS": KEYS,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
        }
        port = free_port()
        server = subprocess.Popen(
            [str(BIN / "opentelemetry-instrument"), sys.executable, str(APPS / "http_server.py")],
            env=clean_env({**common, "OTEL_SERVICE_NAME": "orders-api", "PORT": str(port)}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert wait_for_port(port, 30), "the Flask service did not start"
            client = instrumented(
                "http_client.py",
                {
                    **common,
                    "OTEL_SERVICE_NAME": "storefront",
                    "SERVICE_URL": f"http://127.0.0.1:{port}/work",
                },
            )
            assert client.returncode == 0, client.stderr
            reply = json.loads(client.stdout.strip().splitlines()[-1])
            assert sink.wait_for(
                lambda: (
                    any(r.body == "server handled work" for r in sink.logs())
                    and any(s.resource["service.name"] == "orders-api" for s in sink.spans())
                )
            )
            yield sink, reply
        finally:
            server.terminate()
            server.wait(10)


def _by_service(sink: OtlpSink, service: str) -> list[Any]:
    return [s for s in sink.spans() if s.resource["service.name"] == service]


def test_baggage_keys_land_on_spans_in_both_processes(hop: Any) -> None:
    sink, _ = hop
    for service in ("storefront", "orders-api"):
        spans = _by_service(sink, service)
        assert spans, service
        for span in spans:
            assert span.attributes["request.id"] == "req-8f3a", (service, span.name)
            assert span.attributes["tenant.id"] == "acme", (service, span.name)
            assert "user.email" not in span.attributes  # not a configured key


def test_baggage_keys_land_on_log_records_in_both_processes(hop: Any) -> None:
    sink, _ = hop
    for body in ("client calling the service", "server handled work"):
        [record] = [r for r in sink.logs() if r.body == body]
        assert record.attributes["request.id"] == "req-8f3a"
        assert record.attributes["tenant.id"] == "acme"
        assert "user.email" not in record.attributes


def test_the_server_span_is_in_the_clients_trace(hop: Any) -> None:
    sink, reply = hop
    [server_span] = [s for s in _by_service(sink, "orders-api") if s.kind == 2]  # SERVER
    assert server_span.trace_id == reply["client_trace_id"]


def test_error_reference_helpers_name_the_current_trace(hop: Any) -> None:
    sink, reply = hop
    [server_span] = [s for s in _by_service(sink, "orders-api") if s.kind == 2]
    assert reply["trace_id"] == server_span.trace_id
    version, trace_id, span_id, flags = reply["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", server_span.trace_id, server_span.span_id)
    assert int(flags, 16) & 0x01  # sampled (0x02, W3C level 2's "random", may be set too)


def test_helpers_outside_a_trace_return_none() -> None:
    import otel_excellence

    assert otel_excellence.current_trace_id() is None
    assert otel_excellence.current_traceparent() is None
