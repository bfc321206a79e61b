"""The resource every signal carries: who is sending (service, version, host, process)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import PurePath

from opentelemetry.sdk.resources import (
    OsResourceDetector,
    OTELResourceDetector,
    ProcessResourceDetector,
    ResourceDetector,
)
from opentelemetry.util.types import AttributeValue

from otel_excellence._config.settings import Settings
from otel_excellence._diagnostics import internal_error, warn_once

SERVICE_NAME = "service.name"
SERVICE_VERSION = "service.version"
DEPLOYMENT_ENVIRONMENT = "deployment.environment.name"
# The pre-1.27 semantic-convention name; respected if a user still sets it.
_LEGACY_DEPLOYMENT_ENVIRONMENT = "deployment.environment"

# The command line can carry credentials (``--password=...``, DSNs); never export it.
_PROCESS_ATTRIBUTES_DROPPED = frozenset({"process.command_line", "process.command_args"})


def fallback_service_name(argv: Sequence[str]) -> str:
    """A service name derived from the running program, for when none is configured.

    ``python app.py`` gives ``app``; ``python -m billing`` gives ``billing``; a console
    script such as ``gunicorn`` gives its own name.
    """
    program = argv[0] if argv and argv[0] else ""
    if not program or program in {"-c", "-"}:
        return "unknown_service:python"
    path = PurePath(program)
    if path.stem == "__main__" and path.parent.name:
        return path.parent.name
    return path.stem or "unknown_service:python"


def _host_attributes() -> dict[str, AttributeValue]:
    # The SDK's host detector is private (_HostResourceDetector); these two are all
    # we need and cannot fail.
    import platform
    import socket

    return {"host.name": socket.gethostname(), "host.arch": platform.machine()}


def _run_detector(detector: ResourceDetector) -> Mapping[str, AttributeValue]:
    try:
        return detector.detect().attributes
    except Exception:  # noqa: BLE001 - a detector must never stop the application
        internal_error(f"resource detector {type(detector).__name__}")
        return {}


def _detected(name: str) -> Mapping[str, AttributeValue]:
    if name == "host":
        return _host_attributes()
    if name == "os":
        return _run_detector(OsResourceDetector())
    if name == "process":
        attributes = _run_detector(ProcessResourceDetector())
        return {k: v for k, v in attributes.items() if k not in _PROCESS_ATTRIBUTES_DROPPED}
    return {}


def resource_attributes(
    settings: Settings, argv: Sequence[str] | None = None
) -> dict[str, AttributeValue]:
    """Attributes to add to the SDK's resource, never overriding what the user set.

    The SDK merges these over ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME``, so any
    key the user already set is left out here: the user's environment always wins.
    """
    user = _run_detector(OTELResourceDetector())
    attributes: dict[str, AttributeValue] = {}

    def add(key: str, value: AttributeValue) -> None:
        if key not in user and key not in attributes:
            attributes[key] = value

    if SERVICE_NAME not in user:
        name = fallback_service_name(sys.argv if argv is None else argv)
        warn_once(
            "service-name-fallback",
            "OTEL_SERVICE_NAME is not set; using service.name=%r derived from the program. "
            "Set OTEL_SERVICE_NAME to name this service.",
            name,
        )
        add(SERVICE_NAME, name)
    if settings.service_version:
        add(SERVICE_VERSION, settings.service_version)
    if settings.environment and _LEGACY_DEPLOYMENT_ENVIRONMENT not in user:
        add(DEPLOYMENT_ENVIRONMENT, settings.environment)
    for detector in settings.resource_detectors:
        for key, value in _detected(detector).items():
            add(key, value)
    return attributes
