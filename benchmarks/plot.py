"""Draw docs/benchmarks.png from a results JSON written by ``bench.py``.

Run with matplotlib (``bench.py --plot`` uses its own cached tools venv):

    python benchmarks/plot.py ~/.cache/otel-excellence/bench/results/<run>.json docs/benchmarks.png
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LABELS = {
    "none": "uninstrumented",
    "vanilla": "vanilla OTel",
    "ours": "otel-excellence",
    "ours-bare": "otel-excellence,\nenrichers removed",
    "logfire": "logfire 5.4",
}
KIND_LABELS = {
    "root": "root (server)",
    "internal": "internal",
    "db": "DB client",
    "failed": "failed",
}
SETUP_LABELS = {"sdk": "vanilla SDK", "bare": "ours, enrichers removed", "distro": "ours"}


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 4:
        return statistics.median(values), min(values), max(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q1, q3


def per_request(ax: Any, data: dict[str, Any]) -> None:
    cpu = data["cpu_us"]
    names = list(LABELS)
    width = 0.38
    for offset, kind, color in ((-width / 2, "live", "#4c72b0"), (width / 2, "dead", "#dd8452")):
        xs, medians, lows, highs = [], [], [], []
        for i, name in enumerate(names):
            key = f"{name}/{kind}"
            if key not in cpu:
                continue
            median, q1, q3 = quartiles(cpu[key])
            xs.append(i + (0 if name == "none" else offset))
            medians.append(median)
            lows.append(median - q1)
            highs.append(q3 - median)
        label = "live OTLP receiver" if kind == "live" else "dead endpoint"
        ax.bar(xs, medians, width, yerr=[lows, highs], capsize=3, color=color, label=label)
    ax.set_xticks(range(len(names)), [LABELS[n] for n in names], fontsize=8)
    ax.set_ylabel("CPU µs per request (all threads)")
    ax.set_title(
        f"Reference request (Flask + SQLAlchemy/SQLite + Redis + structlog)\n"
        f"median and IQR of {data['rounds']} rounds",
        fontsize=10,
    )
    ax.legend(fontsize=8)


def per_span(ax: Any, data: dict[str, Any]) -> None:
    spans = data["per_span_us"]
    kinds = list(KIND_LABELS)
    width = 0.27
    for j, (setup, color) in enumerate(
        (("sdk", "#4c72b0"), ("bare", "#8fbc8f"), ("distro", "#c44e52"))
    ):
        medians, lows, highs = [], [], []
        for kind in kinds:
            median, q1, q3 = quartiles(spans[setup][kind])
            medians.append(median)
            lows.append(median - q1)
            highs.append(q3 - median)
        xs = [i + (j - 1) * width for i in range(len(kinds))]
        ax.bar(xs, medians, width, yerr=[lows, highs], capsize=3, color=color,
               label=SETUP_LABELS[setup])  # fmt: skip
    ax.set_xticks(range(len(kinds)), [KIND_LABELS[k] for k in kinds], fontsize=8)
    ax.set_ylabel("CPU µs per span (application thread)")
    ax.set_title(f"Per-span cost by span kind\nmedian and IQR of {data['rounds']} rounds",
                 fontsize=10)  # fmt: skip
    ax.legend(fontsize=8)


def main() -> None:
    results = json.loads(Path(sys.argv[1]).read_text())
    panels = [p for p in ("request", "spans") if p in results]
    if not panels:
        raise SystemExit("plot: the results hold neither the request nor the spans stage")
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.8), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        (per_request if panel == "request" else per_span)(ax, results[panel])
    machine = results.get("machine", {})
    fig.suptitle(
        f"otel-excellence overhead, {machine.get('date', '')}, {machine.get('cores', '?')} x "
        f"{machine.get('cpu', '')} (load at start {machine.get('load_at_start', '?')})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
