"""N+1 detection: the same statement run again and again within one request or task.

Executions are counted under the **local root** (the request's server span, a consumer or
task span) rather than under the immediate parent: lazy loads that run while a template
renders belong to the request a user looks at. The name of the span they ran directly
under is kept per pattern, so the finding still says where in the request they happened.

State lives on the root's SDK span object (``lineage.FINDINGS``) and is finished when the
root ends: concurrent requests, on threads or interleaved on one event loop, each count
into their own root. A lock per root guards work fanned out to thread pools.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

MAX_PATTERNS_PER_ROOT = 64
_MAX_PARENT_NAMES = 8
_FOLD_AT = 64  # noted calls waiting before they are counted (bounds the deque)


class _Pattern:
    # A plain class with slots: one is made per distinct statement per request, and a
    # dataclass with a default factory costs several times as much to build.
    __slots__ = ("count", "first_identity", "operation", "parents", "statement", "system", "varied")

    def __init__(self, statement: str, system: str, operation: str) -> None:
        self.statement = statement
        self.system = system
        self.operation = operation
        self.count = 0
        self.first_identity: int | None = None
        self.varied = False  # seen with at least two different parameter sets
        self.parents: dict[str, int] = {}


@dataclass(frozen=True)
class NPlusOne:
    """One repeated statement under one root."""

    statement: str
    count: int
    system: str
    operation: str
    parent: str  # the span the executions ran directly under (the most frequent one)


class RootFindings:
    """What the database calls under one local root looked like, until the root ends.

    Calls are noted as they end and counted into patterns only in batches: when
    ``_FOLD_AT`` are waiting, and when the root ends with at least ``threshold`` of
    them. Most requests run fewer statements than the threshold and are then never
    counted at all, and the deque bounds what is waiting. ``deque.append`` and
    ``popleft`` are atomic, so noting takes no lock; counting does.
    """

    __slots__ = ("__weakref__", "_lock", "_pending", "closed", "patterns")

    def __init__(self) -> None:
        self.patterns: dict[str, _Pattern] = {}
        self.closed = False
        self._pending: deque[tuple[str, str, str, int | None, str]] = deque()
        self._lock = threading.Lock()

    def observe(
        self,
        statement: str,
        system: str,
        operation: str,
        identity: int | None,
        parent: str,
    ) -> None:
        if self.closed:
            return  # the root already ended; a straggler cannot change its verdict
        pending = self._pending
        pending.append((statement, system, operation, identity, parent))
        if len(pending) >= _FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        """Count the noted calls into patterns, in the order they were noted."""
        with self._lock:
            pending, patterns = self._pending, self.patterns
            while pending:
                statement, system, operation, identity, parent = pending.popleft()
                pattern = patterns.get(statement)
                if pattern is None:
                    if len(patterns) >= MAX_PATTERNS_PER_ROOT:
                        continue
                    pattern = patterns[statement] = _Pattern(statement, system, operation)
                pattern.count += 1
                parents = pattern.parents
                seen = parents.get(parent)
                if seen is not None:
                    parents[parent] = seen + 1
                elif len(parents) < _MAX_PARENT_NAMES:
                    parents[parent] = 1
                if identity is None:
                    continue
                if pattern.first_identity is None:
                    pattern.first_identity = identity
                elif identity != pattern.first_identity:
                    pattern.varied = True

    def finish(self, threshold: int) -> list[NPlusOne]:
        """The N+1 patterns found, most repeated first; the state takes no more calls."""
        with self._lock:
            self.closed = True
        if not self.patterns and len(self._pending) < threshold:
            return []  # fewer calls than the threshold in all: nothing can repeat enough
        self._fold()
        # Closed and counted, the patterns no longer change: read without the lock.
        found = [
            NPlusOne(
                p.statement,
                p.count,
                p.system,
                p.operation,
                max(p.parents, key=p.parents.__getitem__),
            )
            for p in self.patterns.values()
            # The same parameters every time is a repeated query, not an N+1; with no
            # parameters observable the repetition alone counts.
            if p.count >= threshold and (p.varied or p.first_identity is None)
        ]
        if len(found) > 1:
            found.sort(key=lambda p: -p.count)
        return found
