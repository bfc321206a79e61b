"""`otel-excellence demo` (what `make demo` runs): findings from the telemetry, in time."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.launch import BIN, clean_env
from tests.support.otlp_sink import OtlpSink
from tests.support.ports import free_port
from tests.support.services import Redis


def demo(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "otel-excellence"), "demo"],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, time.monotonic() - started


def summary_of(stdout: str) -> dict[str, list[str]]:
    """The findings summary's sections, each a list of its lines."""
    text = stdout.split("Findings (computed from the exported telemetry)", 1)[1]
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("    "):
            current = line.strip().split(":")[0]
            sections[current] = [line.strip()]
        elif line.startswith("    ") and current:
            sections[current].append(line.strip())
    return sections


@pytest.fixture(scope="module")
def embedded() -> Iterator[tuple[subprocess.CompletedProcess[str], float]]:
    """No Redis, no PostgreSQL, no Collector: the embedded defaults."""
    yield demo({})


class TestEmbeddedDefaults:
    def test_finishes_well_within_a_minute(
        self, embedded: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        result, seconds = embedded
        assert result.returncode == 0, result.stderr
        assert seconds < 60

    def test_prints_trace_trees(
        self, embedded: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        stdout = embedded[0].stdout
        assert len(re.findall(r"^trace [0-9a-f]{32}$", stdout, re.M)) >= 10
        assert "└─ GET /customers/orders-summary" in stdout

    def test_summary_names_the_n_plus_one_endpoint_with_its_count(
        self, embedded: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        [line] = summary_of(embedded[0].stdout)["N+1 queries"][1:]
        assert line.startswith("GET /customers/orders-summary: SELECT orders.")
        assert "ran 8× per request" in line

    def test_summary_names_the_slow_statement_with_its_duration(
        self, embedded: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        [line] = summary_of(embedded[0].stdout)["Slow database calls"][1:]
        duration, statement = re.match(r"(\d+) ms\s+(.*)", line).groups()  # type: ignore[union-attr]
        assert int(duration) >= 500
        assert "expensive_aggregate(?)" in statement

    def test_summary_counts_at_least_three_error_categories(
        self, embedded: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        lines = summary_of(embedded[0].stdout)["Errors by category (traces)"][1:]
        categories = {line.split(":")[0] for line in lines}
        assert {"timeout", "conflict", "validation", "not_found"} <= categories

    def test_summary_gives_the_cache_hit_ratio(
        self, embedded: tuple[subprocess.CompletedProcess[str], float]
    ) -> None:
        [line] = summary_of(embedded[0].stdout)["Cache hit ratio"]
        assert line == "Cache hit ratio: 50% (4 hits, 4 misses)"

    def test_error_responses_carry_the_trace_id(self) -> None:
        """The demo's own code path: its 409 body names the trace (checked in process)."""
        import tempfile

        import fakeredis

        from otel_excellence._cli.demo_app.app import create_app, database

        app = create_app(database(f"{tempfile.mkdtemp()}/t.db"), fakeredis.FakeRedis())
        client = app.test_client()
        client.post("/customers", json={"email": "a@b.c"})
        response = client.post("/customers", json={"email": "a@b.c"})
        assert response.status_code == 409
        assert "trace_id" in response.get_json()


def test_unreachable_redis_falls_back_to_the_in_process_cache() -> None:
    result, _ = demo({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.returncode == 0, result.stderr
    assert "using the in-process fallback" in result.stderr
    assert "Cache hit ratio: 50%" in result.stdout


@pytest.mark.services
def test_a_reachable_redis_is_used(redis_srv: Redis) -> None:
    result, _ = demo({"REDIS_URL": redis_srv.url})
    assert result.returncode == 0, result.stderr
    assert "in-process fallback" not in result.stderr
    assert "Cache hit ratio:" in result.stdout


def test_with_an_endpoint_the_demo_exports_over_otlp() -> None:
    with OtlpSink() as sink:
        result, _ = demo(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
             "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Findings" not in result.stdout
        assert sink.wait_for(
            lambda: any(s.attributes.get("otel_excellence.db.n_plus_one") for s in sink.spans())
        )
        assert {s.resource["service.name"] for s in sink.spans()} == {"otel-excellence-demo"}
        assert sink.logs()  # logs go out too


def test_demo_without_the_demo_extra_explains_what_to_install() -> None:
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys, importlib.util as u; u.find_spec = lambda name: None; "
         "from otel_excellence._cli.demo import run_demo; sys.exit(run_demo())"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'otel-excellence[demo]'" in result.stderr
