"""N+1 counting in batches gives the verdicts of counting each call as it ends.

``RootFindings`` notes calls and counts them only when 64 wait or the root ends (most
requests never reach the threshold and are never counted). The model below counts every
call at once, as the detector did before; both must find the same patterns, with the same
counts, parents and order, for any sequence of calls and any threshold.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_excellence._findings.n_plus_one import MAX_PATTERNS_PER_ROOT, NPlusOne, RootFindings
from tests.test_otlp_encoding import PROFILE

_PARENTS = 8


@dataclass
class _Eager:
    count: int = 0
    first: int | None = None
    varied: bool = False
    parents: dict[str, int] = field(default_factory=dict)


def eager(calls: list[tuple[str, int | None, str]], threshold: int) -> list[NPlusOne]:
    patterns: dict[str, _Eager] = {}
    for statement, identity, parent in calls:
        pattern = patterns.get(statement)
        if pattern is None:
            if len(patterns) >= MAX_PATTERNS_PER_ROOT:
                continue
            pattern = patterns[statement] = _Eager()
        pattern.count += 1
        if parent in pattern.parents or len(pattern.parents) < _PARENTS:
            pattern.parents[parent] = pattern.parents.get(parent, 0) + 1
        if identity is not None:
            if pattern.first is None:
                pattern.first = identity
            elif identity != pattern.first:
                pattern.varied = True
    found = [
        NPlusOne(s, p.count, "sqlite", "SELECT", max(p.parents, key=p.parents.__getitem__))
        for s, p in patterns.items()
        if p.count >= threshold and (p.varied or p.first is None)
    ]
    return sorted(found, key=lambda p: -p.count)


calls = st.lists(
    st.tuples(
        st.sampled_from([f"SELECT {n}" for n in range(6)])
        | st.integers(0, 200).map(lambda n: f"SELECT c{n}"),
        st.none() | st.integers(0, 2),
        st.sampled_from([f"parent-{n}" for n in range(11)]),
    ),
    max_size=400,
)


@settings(PROFILE)
@given(calls=calls, threshold=st.integers(2, 70))
def test_batched_counting_finds_what_eager_counting_finds(
    calls: list[tuple[str, int | None, str]], threshold: int
) -> None:
    findings = RootFindings()
    for statement, identity, parent in calls:
        findings.observe(statement, "sqlite", "SELECT", identity, parent)
    assert findings.finish(threshold) == eager(calls, threshold)


def test_calls_after_the_root_ended_change_nothing() -> None:
    findings = RootFindings()
    for _ in range(5):
        findings.observe("SELECT 1", "sqlite", "SELECT", None, "root")
    assert [p.count for p in findings.finish(5)] == [5]
    for _ in range(100):
        findings.observe("SELECT 1", "sqlite", "SELECT", None, "root")
    assert [p.count for p in findings.finish(5)] == [5]


def test_calls_from_many_threads_are_all_counted() -> None:
    """A request fanned out to a thread pool: every call counts, none twice."""
    findings = RootFindings()
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(1000):
            findings.observe(f"SELECT {i % 3}", "sqlite", "SELECT", n * 1000 + i, f"t{n}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.count for p in findings.finish(5)) == [2664, 2664, 2672]
