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
from importlib import metadata

from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts
from opentelemetry.instrumentation.environment_variables import (
    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS,
)
from opentelemetry.util._importlib_metadata import entry_points
from packaging.requirements import InvalidRequirement, Requirement

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


# Rows of the official bootstrap table that would mislead here, and why.
_NOT_RECOMMENDED = {
    # tortoise-orm's row for its pydantic models: pydantic itself has no instrumentation.
    ("pydantic", "opentelemetry-instrumentation-tortoiseorm"),
    # The ASGI package is middleware for frameworks' own instrumentations; it has no
    # instrumentor to load (Django, FastAPI and Starlette's instrumentations use it).
    ("asgiref", "opentelemetry-instrumentation-asgi"),
}
# Covered by another instrumentation when that one is installed: both would wrap the
# same application (FastAPI apps are Starlette apps).
_COVERED_BY = {"opentelemetry-instrumentation-starlette": "opentelemetry-instrumentation-fastapi"}
_DISTRIBUTION = "otel-excellence"


@dataclass(frozen=True)
class MissingInstrumentation:
    library: str  # the installed distribution, e.g. "Flask"
    version: str
    instrumentation: str  # e.g. "opentelemetry-instrumentation-flask==0.66b1"
    command: str  # the exact pip command
    our_dependency: bool  # installed because our exporters need it (requests, grpcio...)


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _our_extras() -> dict[str, str]:
    """instrumentation distribution name -> the extra of ours that installs it."""
    try:
        requires = metadata.requires(_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return {}
    extras: dict[str, str] = {}
    for line in requires:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        marker = str(requirement.marker or "")
        if "extra ==" in marker and requirement.name.startswith("opentelemetry-instrumentation-"):
            extra = marker.split("extra ==", 1)[1].strip().strip("'\"")
            if extra not in {"all", "test", "demo"}:
                extras.setdefault(requirement.name, extra)
    return extras


def _dependency_closure(root: str) -> set[str]:
    """Distributions installed because ``root`` requires them (extras not followed)."""
    seen: set[str] = set()
    pending = [root]
    while pending:
        name = pending.pop()
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            key = requirement.name.lower().replace("_", "-")
            if key not in seen:
                seen.add(key)
                pending.append(requirement.name)
    return seen


def missing_instrumentations() -> list[MissingInstrumentation]:
    """Installed libraries that have an official instrumentation which is not installed.

    The table is the official bootstrap's (``opentelemetry-bootstrap``), for this
    release train; the command is our extra where one exists, else the exact pin.
    """
    from opentelemetry.instrumentation.bootstrap_gen import libraries

    extras = _our_extras()
    ours = _dependency_closure(_DISTRIBUTION)
    found: dict[str, MissingInstrumentation] = {}
    for row in libraries:
        try:
            library = Requirement(row["library"])
            instrumentation = Requirement(row["instrumentation"])
        except InvalidRequirement:
            continue
        if (library.name.lower(), instrumentation.name) in _NOT_RECOMMENDED:
            continue
        installed = _installed_version(library.name)
        if installed is None or not library.specifier.contains(installed, prereleases=True):
            continue
        if _installed_version(instrumentation.name) is not None:
            continue
        covering = _COVERED_BY.get(instrumentation.name)
        if covering is not None and _installed_version(covering) is not None:
            continue
        extra = extras.get(instrumentation.name)
        command = (
            f"pip install '{_DISTRIBUTION}[{extra}]'"
            if extra
            else f"pip install '{row['instrumentation']}'"
        )
        key = f"{library.name.lower()}|{instrumentation.name}"
        found[key] = MissingInstrumentation(
            library=library.name,
            version=installed,
            instrumentation=str(row["instrumentation"]),
            command=command,
            our_dependency=library.name.lower().replace("_", "-") in ours,
        )
    return sorted(found.values(), key=lambda m: (m.our_dependency, m.library.lower()))
