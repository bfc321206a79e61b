"""Medians, interquartile ranges and paired ratios: the only statistics the bench prints."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    median: float
    q1: float
    q3: float
    n: int

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        if self.n == 0:
            return "n/a"
        if self.n < 4:
            return f"{self.median:.{digits}f}{unit}"
        return f"{self.median:.{digits}f}{unit} ({self.q1:.{digits}f}-{self.q3:.{digits}f})"


def summarize(values: Sequence[float]) -> Summary:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return Summary(float("nan"), float("nan"), float("nan"), 0)
    if len(values) < 4:
        return Summary(statistics.median(values), min(values), max(values), len(values))
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(statistics.median(values), q1, q3, len(values))


def paired(numerators: Sequence[float], denominators: Sequence[float]) -> Summary:
    """Ratios taken round by round (same round, same machine state), then summarized.

    Pairing cancels what drifts between rounds (other processes, thermal state), which a
    ratio of two medians would keep.
    """
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True) if b]
    return summarize(ratios)


def measure(fn: Callable[[], None], iterations: int) -> float:
    """CPU microseconds of the calling thread per call of ``fn`` (what a request waits for)."""
    started = time.thread_time()
    for _ in range(iterations):
        fn()
    return (time.thread_time() - started) / iterations * 1e6
