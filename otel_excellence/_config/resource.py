"""The resource every signal carries: who is sending (service, version, host, process)."""

from __future__ import annotations

import os
import re
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


# Servers that take the application as a ``module:attribute`` string: the service is
# the application, not the server (``gunicorn billing.wsgi:app`` is ``billing``).
_APP_STRING_RUNNERS = frozenset({"gunicorn", "uvicorn", "hypercorn", "daphne", "granian"})
# Runners that take the application with -A/--app (``celery -A billing worker``).
_APP_OPTION_RUNNERS = frozenset({"celery", "flask"})
# Module names that say how an app is served, not which app it is: dropped from the
# end of a dotted path while something is left (``billing.wsgi`` -> ``billing``).
_GENERIC_MODULES = frozenset({"wsgi", "asgi", "app", "application", "main", "server", "api"})
# Scripts whose name says nothing about the project they run (Django's manage.py):
# the directory they are in names it. (``python app.py`` stays ``app``, as documented.)
_GENERIC_SCRIPTS = frozenset({"manage"})
_APP_STRING = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*):[A-Za-z_]")
_UNKNOWN = "unknown_service:python"


def _module_after_options(args: Sequence[str]) -> str | None:
    """The module of ``python [options] -m module``, from the interpreter's own argv.

    At start-up (when the distro runs, from ``sitecustomize``) ``sys.argv[0]`` is just
    ``-m``; ``sys.orig_argv`` still has the command line as typed.
    """
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            return None  # a script (or stdin) runs, not a module
        if arg.startswith("--"):
            index += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        flags = arg[1:]
        for position, flag in enumerate(flags):
            if flag == "m":
                return flags[position + 1 :] or (args[index + 1] if index + 1 < len(args) else None)
            if flag == "c":
                return None
            if flag in "WX":  # takes a value, attached (-Wd) or next (-W d)
                if not flags[position + 1 :]:
                    index += 1
                break
        index += 1
    return None


def _app_name(module: str) -> str:
    parts = module.split(".")
    while len(parts) > 1 and parts[-1] in _GENERIC_MODULES:
        parts.pop()
    return ".".join(parts)


def _from_runner(runner: str, args: Sequence[str]) -> str | None:
    """The application a server or worker command runs, if its arguments name it."""
    if runner in _APP_STRING_RUNNERS:
        for arg in args:
            match = _APP_STRING.match(arg)
            if match:
                return _app_name(match.group(1))
        return None
    if runner in _APP_OPTION_RUNNERS:
        for index, arg in enumerate(args):
            value = None
            if arg in {"-A", "--app"} and index + 1 < len(args):
                value = args[index + 1]
            elif arg.startswith("--app="):
                value = arg.partition("=")[2]
            elif arg.startswith("-A") and len(arg) > 2:
                value = arg[2:]
            if value:
                module = value.split(":", 1)[0]
                module = module[:-3] if module.endswith(".py") else module
                return _app_name(PurePath(module).name if "/" in module else module)
    return None


def fallback_service_name(argv: Sequence[str], orig_argv: Sequence[str] | None = None) -> str:
    """A service name derived from the running program, for when none is configured.

    ``python app.py`` gives ``app``; ``python -m billing`` gives ``billing``; ``gunicorn
    billing.wsgi:app`` and ``uvicorn billing.main:app`` give ``billing``; ``celery -A
    billing worker`` gives ``billing``; ``python manage.py runserver`` gives the
    project's directory; any other console script gives its own name.
    """
    module = _module_after_options(list(orig_argv or ())[1:])
    args = list(argv[1:]) if argv else []
    if module:
        top = module.split(".")[0]
        if top in _APP_STRING_RUNNERS | _APP_OPTION_RUNNERS:
            return _from_runner(top, args) or top
        return module[: -len(".__main__")] if module.endswith(".__main__") else module
    program = argv[0] if argv and argv[0] else ""
    if not program or program in {"-c", "-", "-m"}:
        return _UNKNOWN
    return _from_program(program, args)


def _from_program(program: str, args: Sequence[str]) -> str:
    path = PurePath(program)
    if path.stem in _APP_STRING_RUNNERS | _APP_OPTION_RUNNERS:
        return _from_runner(path.stem, args) or path.stem
    generic = path.stem == "__main__" or (path.suffix == ".py" and path.stem in _GENERIC_SCRIPTS)
    if generic:
        parent = PurePath(os.path.abspath(program)).parent.name
        if parent:
            return parent
    return path.stem or _UNKNOWN


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
        if argv is None:
            name = fallback_service_name(sys.argv, getattr(sys, "orig_argv", None))
        else:
            name = fallback_service_name(argv)
        if not settings.dev:  # dev mode is local: the name only labels the console
            warn_once(
                "service-name-fallback",
                "OTEL_SERVICE_NAME is not set; using service.name=%r derived from the "
                "program. Set OTEL_SERVICE_NAME to name this service.",
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
