"""Forked children, with telemetry configured once in the parent before the fork.

What SDK 1.45 does by itself after a fork, and what the distro adds (see
``otel_excellence/_export/fork.py``): each child exports from its own threads, as
itself (``process.pid``, ``service.instance.id``), only its own metric points; what the
parent had queued before the fork is exported once, by the parent. The pre-fork servers
themselves are in ``test_servers.py`` and ``test_celery.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.launch import instrumented
from tests.support.otlp_sink import Metric, OtlpSink, Span


@dataclass
class Forked:
    parent: int
    children: list[int]
    spans: list[Span]
    metrics: list[Metric]
    stderr: str

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


def _run(mode: str, **extra: str) -> Forked:
    with OtlpSink() as sink:
        result = instrumented(
            "fork_app.py",
            {
                "MODE": mode,
                "OTEL_SERVICE_NAME": f"fork-{mode}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "60000",
                "OTEL_METRIC_EXPORT_INTERVAL": "60000",
                "OTEL_LOGS_EXPORTER": "none",
                **extra,
            },
        )
        assert result.returncode == 0, result.stderr
        lines = [line.split() for line in result.stdout.splitlines()]
        [parent] = [int(pid) for kind, pid in lines if kind == "parent"]
        children = [int(pid) for kind, pid in lines if kind != "parent"]
        return Forked(parent, children, sink.spans(), sink.metrics(), result.stderr)


@pytest.fixture(scope="module", params=["os._exit", "sys.exit"])
def forked(request: pytest.FixtureRequest) -> Iterator[Forked]:
    yield _run("fork", CHILDREN="3", EXIT="sys" if request.param == "sys.exit" else "os")


class TestForkedChildren:
    def test_each_child_exports_its_spans_as_itself(self, forked: Forked) -> None:
        """Its own pid and instance id, neither the parent's nor a sibling's."""
        spans = forked.named("child.work")
        assert sorted(s.resource["process.pid"] for s in spans) == sorted(forked.children)
        assert all(s.resource["process.parent_pid"] == forked.parent for s in spans)
        parent_instance = forked.named("parent.before-fork")[0].resource["service.instance.id"]
        instances = {s.resource["service.instance.id"] for s in spans}
        assert len(instances) == len(forked.children)
        assert parent_instance not in instances
        assert "not delivered" not in forked.stderr

    def test_what_the_parent_queued_before_the_fork_is_exported_once_by_the_parent(
        self, forked: Forked
    ) -> None:
        """Children start with empty queues; the parent still holds and sends its own."""
        [span] = forked.named("parent.before-fork")
        assert span.resource["process.pid"] == forked.parent

    def test_each_child_exports_only_its_own_metric_points(self, forked: Forked) -> None:
        """The parent counted 5 before forking: each child reports 1, the parent 5."""
        values = {
            m.resource["process.pid"]: sum(p.as_int for p in m.points)
            for m in forked.metrics
            if m.name == "app.jobs"
        }
        assert values == {forked.parent: 5, **dict.fromkeys(forked.children, 1)}


def test_multiprocessing_pool_workers_export_their_spans_as_themselves() -> None:
    """Pool workers end with os._exit (no atexit): every task span still arrives."""
    run = _run("multiprocessing")
    spans = run.named("pool.task")
    assert sorted(s.attributes["app.task"] for s in spans) == list(range(6)), run.stderr
    assert sorted(s.resource["process.pid"] for s in spans) == sorted(run.children)
    assert run.parent not in run.children
