"""Which instrumentations will load, which are skipped, and why.

The auto-loader logs an unsupported library version once, at ERROR, through stdlib
logging; once the logging bridge is on, that line goes only to the telemetry pipeline
and the user sees spans silently missing (SQLAlchemy 2.1 with instrumentation 0.66b*).
We compute the same verdict up front so the distro can warn loudly and ``doctor`` can
explain it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts
from opentelemetry.instrumentation.environment_variables import (
    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS,
)
from opentelemetry.util._importlib_metadata import entry_points

LOADS = "loads"
SKIPPED = "skipped"
UNSUPPORTED = "unsupported"
DISABLED = "disabled"


@dataclass(frozen=True)
class InstrumentationStatus:
    name: str
    status: str  # LOADS, SKIPPED (library absent), UNSUPPORTED (version) or DISABLED
    reason: str


def _disabled_names() -> set[str]:
    raw = os.environ.get(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def instrumentation_statuses() -> list[InstrumentationStatus]:
    """The verdict for every installed ``opentelemetry_instrumentor`` entry point."""
    disabled = _disabled_names()
    statuses = []
    for entry_point in entry_points(group="opentelemetry_instrumentor"):
        name = entry_point.name
        if "*" in disabled or name in disabled:
            statuses.append(
                InstrumentationStatus(
                    name, DISABLED, f"listed in {OTEL_PYTHON_DISABLED_INSTRUMENTATIONS}"
                )
            )
            continue
        dist = getattr(entry_point, "dist", None)
        conflict = get_dist_dependency_conflicts(dist) if dist is not None else None
        if conflict is None:
            statuses.append(InstrumentationStatus(name, LOADS, ""))
        elif conflict.found or conflict.found_any:
            found = conflict.found or ", ".join(conflict.found_any or ())
            statuses.append(
                InstrumentationStatus(
                    name,
                    UNSUPPORTED,
                    f"installed {found} is outside the supported range "
                    f"{conflict.required or conflict.required_any}: nothing will be traced",
                )
            )
        else:
            statuses.append(
                InstrumentationStatus(
                    name, SKIPPED, f"{conflict.required or conflict.required_any} not installed"
                )
            )
    return statuses
