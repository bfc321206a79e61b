"""The benchmark harness (`make bench`) works: a smoke run and the checks that keep it honest.

Speed is never asserted here; these tests prove that the instrument measures what it says.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import REPO, missing

sys.path.insert(0, str(REPO / "benchmarks"))

import bench  # benchmarks/ is a folder of scripts, not a package
import gateway_load
from _stats import paired


@pytest.mark.services
@pytest.mark.timeout(1500)
def test_a_handful_of_requests_through_every_otel_configuration(tmp_path: Path) -> None:
    """One round of a few requests: vanilla, otel-excellence and otel-excellence without
    enrichers each run in their own venv outside the checkout, get a CPU figure at a live
    and a dead endpoint, and export what their names promise (the harness refuses a run
    where vanilla loaded our distro or the enrichers switch did not apply). Builds the
    peers' venvs on first use (cached under ~/.cache/otel-excellence/bench); logfire's is
    left to `make bench`."""
    if shutil.which("redis-server") is None:
        missing("redis-server", "`make test` installs the redis-server package")
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--stages", "request", "--rounds", "1",
         "--requests", "3", "--warmup", "2", "--configs", "vanilla,ours,ours-bare",
         "--json", str(out), "--no-plot"],
        cwd=REPO, capture_output=True, text=True, timeout=1400, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    data = json.loads(out.read_text())["request"]
    assert set(data["cpu_us"]) == {
        "none/live", "vanilla/live", "vanilla/dead", "ours/live", "ours/dead",
        "ours-bare/live", "ours-bare/dead",
    }  # fmt: skip
    assert all(values[0] > 0 for values in data["cpu_us"].values())
    exported = data["exported"]
    # A parent span with ORM and driver spans for SELECT and INSERT, pool connect, Redis
    # SET and GET: the same spans for every OTel configuration, and one log record.
    assert exported["vanilla"]["span_names"].keys() == exported["ours"]["span_names"].keys()
    assert "GET /orders/<int:customer>" in exported["ours"]["span_names"]
    assert exported["ours"]["logs"] >= 5
    assert exported["vanilla"]["ours_attributes"] == []
    assert exported["ours-bare"]["ours_attributes"] == []
    assert "otel_excellence.cache.result" in exported["ours"]["ours_attributes"]
    assert "db.client.operation.duration" in exported["ours"]["metric_names"]
    assert "vanilla (paired)" in result.stdout


class TestLoadedCheck:
    """The egg-info trap: a vanilla process that loaded otel_excellence is refused."""

    def loaded(self, **overrides: object) -> dict[str, object]:
        base: dict[str, object] = {
            "otel_excellence": None, "switch_applied": False, "switch_error": None,
            "logfire": False, "tracer_provider": "TracerProvider",
        }  # fmt: skip
        return {**base, **overrides}

    def test_vanilla_that_loaded_our_distro_is_refused(self) -> None:
        """What a vanilla run started inside our checkout would report."""
        with pytest.raises(SystemExit, match="egg-info trap"):
            bench.check_loaded(
                bench.CONFIGS["vanilla"],
                self.loaded(otel_excellence=str(REPO / "otel_excellence/__init__.py")),
                bench.Peers(),
            )

    def test_ours_from_the_checkout_instead_of_its_venv_is_refused(self) -> None:
        """An editable install measures the checkout, not the package users install."""
        peers = bench.Peers(venvs={"ours": bench._venvs.Venv("ours", Path("/nonexistent"))})
        with pytest.raises(SystemExit, match="not from /nonexistent"):
            bench.check_loaded(
                bench.CONFIGS["ours"],
                self.loaded(otel_excellence=str(REPO / "otel_excellence/__init__.py")),
                peers,
            )

    def test_enrichers_removed_without_the_switch_applying_is_refused(self) -> None:
        """If the configurator's seam moves, the bench says so instead of measuring 'ours'."""
        venv = bench._venvs.Venv("ours", Path("/v"))
        with pytest.raises(SystemExit, match="switch did not apply"):
            bench.check_loaded(
                bench.CONFIGS["ours-bare"],
                self.loaded(otel_excellence="/v/lib/otel_excellence/__init__.py"),
                bench.Peers(venvs={"ours": venv}),
            )


def test_paired_ratios_are_taken_round_by_round() -> None:
    """A drift that hits both sides of a round cancels: 2x in every round is 2.00."""
    summary = paired([200.0, 400.0, 800.0, 1600.0], [100.0, 200.0, 400.0, 800.0])
    assert (summary.median, summary.q1, summary.q3) == (2.0, 2.0, 2.0)


def test_instructions_are_read_per_thread_and_the_enrichment_on_the_application_thread(
    tmp_path: Path,
) -> None:
    """callgrind's --separate-threads files as valgrind 3.x writes them when the main
    thread dumps its counts between the requests and the flush: a part-1 file for the
    main thread alone (the requests), then one file per thread at exit, the main
    thread's with a wrapped-around "summary:" and its flush as "totals:". The total
    counts every part of every thread; the application thread's requests are its part
    1 alone, and the enrichment line reads them."""
    files = {
        "callgrind.out.4242.1-01": ("Client Request: requests", 5_000, 5_000),
        "callgrind.out.4242-01": ("Program termination", 2**64 - 5_000 + 900, 900),
        "callgrind.out.4242-02": ("Program termination", 0, 700),
        "callgrind.out.4242-03": ("Program termination", 0, 300),
    }
    for name, (trigger, summary, totals) in files.items():
        (tmp_path / name).write_text(
            f"version: 1\ncreator: callgrind-3.22.0\npid: 4242\npart: 1\n"
            f"desc: Trigger: {trigger}\nevents: Ir\nsummary: {summary}\ntotals: {totals}\n"
        )
    assert bench.thread_instructions(tmp_path) == {1: 5_900, 2: 700, 3: 300}
    assert bench.request_instructions(tmp_path) == 5_000
    (tmp_path / "callgrind.out.4242.1-01").unlink()  # no dump: no requests-only figure
    assert bench.request_instructions(tmp_path) is None

    data = {
        "requests": 10,
        "instructions": {"vanilla": 800.0, "ours": 600.0, "ours-bare": 470.0},
        "application_thread": {"vanilla": 700.0, "ours": 500.0, "ours-bare": 400.0},
        "application_requests": {"vanilla": 640.0, "ours": 480.0, "ours-bare": 390.0},
    }
    lines = bench.report_callgrind(data, spans=2.0)
    ours = next(line for line in lines if line.startswith("| otel-excellence, everything on |"))
    assert ours.split(" | ")[1:5] == ["600", "0.75", "n/a", "480"]
    assert "Enrichment: 65 instructions per span" in lines[-2]
    assert lines[-1].startswith(
        "On the application's thread, its requests alone: 45 instructions per span"
    )
    # Figures saved before the split still report the whole application thread.
    del data["application_requests"]
    lines = bench.report_callgrind(data, spans=2.0)
    assert lines[-1].startswith("On the application's thread alone: 50 instructions per span")


def test_the_load_generator_sends_new_traces_every_time() -> None:
    """Each re-send of the serialized batch carries trace ids never sent before, each on
    all 8 spans of its trace, so the gateway's tail sampling sees new traces."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    body, offsets = gateway_load.template(4, "load-0")
    buffer = bytearray(body)
    seen: set[bytes] = set()
    counter = 0
    for _ in range(3):
        counter = gateway_load.fresh_trace_ids(buffer, offsets, b"\x01" * 8, counter)
        spans = ExportTraceServiceRequest.FromString(bytes(buffer)).resource_spans[0]
        ids = [span.trace_id for span in spans.scope_spans[0].spans]
        assert len(ids) == 4 * gateway_load.SPANS_PER_TRACE
        assert len(set(ids)) == 4
        assert not seen & set(ids)
        seen |= set(ids)


def test_the_sdk_attribute_benchmark_compares_both_paths() -> None:
    """``benchmarks/sdk_attributes.py`` measures each call with the SDK's functions and
    with the fast paths installed (it stops if they do not install)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sdk_attributes.py"), "--rounds", "2",
         "--iterations", "20"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| ") and "µs" not in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| Histogram.record",
        "| UpDownCounter.add",
        "| start_span with 6 attributes",
        "| set_attribute",
    ]
