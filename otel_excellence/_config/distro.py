"""The ``opentelemetry_distro`` entry point: defaults, checks, and per-instrumentor hooks.

Defaults are set with ``os.environ.setdefault`` only, so the user's environment always
wins. ``opentelemetry-instrument`` calls ``configure()`` first, then our configurator,
then ``load_instrumentor`` for every instrumentation that is not disabled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.instrumentation.dependencies import DependencyConflictError
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.util._importlib_metadata import EntryPoint, entry_points

from otel_excellence._config import sdk_settings
from otel_excellence._config.instrumentations import UNSUPPORTED, instrumentation_statuses
from otel_excellence._config.settings import DEV
from otel_excellence._diagnostics import internal_error, logger, warn_once

DISTRO_NAME = "otel_excellence"

# Why each default: OTLP for all three signals is the point of the distro; the logs
# bridge turns stdlib logging into OTel records; 15 s matches Prometheus' usual scrape
# interval (the SDK's 60 s makes dashboards lag a minute behind reality).
DEFAULTS: Mapping[str, str] = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "true",
    "OTEL_METRIC_EXPORT_INTERVAL": "15000",
    "OTEL_PYTHON_CONFIGURATOR": DISTRO_NAME,
}

_PROTOCOLS = ("grpc", "http/protobuf")
_PROTOCOL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
)
_EXPORTER_VARIABLES = {
    "traces": "OTEL_TRACES_EXPORTER",
    "metrics": "OTEL_METRICS_EXPORTER",
    "logs": "OTEL_LOGS_EXPORTER",
}
DEV_EXPORTER = "devconsole"
# Dev mode: trees print promptly instead of every 5 s (spans) or 1 s (log records).
_DEV_DEFAULTS: Mapping[str, str] = {
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_BLRP_SCHEDULE_DELAY": "200",
}
# Instrumentor hooks registered by other modules: name -> fn(instrumentor kwargs).
_INSTRUMENT_KWARGS: dict[str, Callable[[], Mapping[str, Any]]] = {}
_AFTER_INSTRUMENT: dict[str, Callable[[], None]] = {}
_BEFORE_INSTRUMENT: dict[str, Callable[[], None]] = {}


def register_instrumentor_hooks(
    name: str,
    *,
    kwargs: Callable[[], Mapping[str, Any]] | None = None,
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
) -> None:
    """Let a feature module act before, pass kwargs to, or act after, one instrumentor."""
    if kwargs is not None:
        _INSTRUMENT_KWARGS[name] = kwargs
    if before is not None:
        _BEFORE_INSTRUMENT[name] = before
    if after is not None:
        _AFTER_INSTRUMENT[name] = after


def dev_mode(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> bool:
    """Whether ``OTEL_EXCELLENCE_DEV`` (or ``configure(dev=...)``) asks for dev mode."""
    if overrides and DEV.field in overrides:
        return bool(DEV.coerce(overrides[DEV.field]))
    return bool(DEV.read(environ))


def apply_defaults(
    environ: MutableMapping[str, str], overrides: Mapping[str, Any] | None = None
) -> None:
    """Set our defaults where the user has not, and repair unusable values."""
    if dev_mode(environ, overrides):
        _apply_dev_mode(environ)
    _infer_protocol(environ)
    for key, value in DEFAULTS.items():
        environ.setdefault(key, value)
    _repair_protocols(environ)
    _repair_exporter_names(environ)
    sdk_settings.repair(environ, DEFAULTS)
    # After the repair: only a certificate file that exists asks for the CA session.
    _respect_ca_file(environ)


def _apply_dev_mode(environ: MutableMapping[str, str]) -> None:
    # Dev mode is one switch for "nothing leaves this machine": it wins over exporter
    # variables set elsewhere (a shell profile, a .env file), and says so once.
    for variable in _EXPORTER_VARIABLES.values():
        value = environ.get(variable, "").strip()
        if value and value != DEV_EXPORTER:
            warn_once(
                ("dev-exporter", variable, value),
                "%s=true keeps telemetry on this machine: %s=%r is ignored, using %s",
                DEV.env,
                variable,
                value,
                DEV_EXPORTER,
            )
        environ[variable] = DEV_EXPORTER
    for key, value in _DEV_DEFAULTS.items():
        environ.setdefault(key, value)


def _infer_protocol(environ: MutableMapping[str, str]) -> None:
    # Python's OTLP default is gRPC, but an endpoint on 4318 is an OTLP/HTTP receiver:
    # guessing gRPC there fails every export. Follow the port the user gave.
    if environ.get("OTEL_EXPORTER_OTLP_PROTOCOL"):
        return
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    try:
        port = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}").port
    except ValueError:
        port = None
    environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf" if port == 4318 else "grpc"


def _repair_protocols(environ: MutableMapping[str, str]) -> None:
    for variable in _PROTOCOL_VARIABLES:
        value = environ.get(variable)
        if value is None or value.strip() in _PROTOCOLS:
            continue
        fallback = "http/protobuf" if value.strip().lower().startswith("http") else "grpc"
        warn_once(
            ("protocol", variable, value),
            "%s=%r is not supported (use grpc or http/protobuf); using %s",
            variable,
            value,
            fallback,
        )
        environ[variable] = fallback


def _repair_exporter_names(environ: MutableMapping[str, str]) -> None:
    # The SDK raises on an unknown exporter name and then configures nothing at all;
    # dropping only the unknown name keeps every exporter the user asked for that exists.
    for signal, variable in _EXPORTER_VARIABLES.items():
        value = environ.get(variable, "")
        names = [name.strip() for name in value.split(",") if name.strip()]
        if not names or value.strip().lower() == "none":
            continue
        known = {ep.name for ep in entry_points(group=f"opentelemetry_{signal}_exporter")}
        known |= {"otlp"}
        unknown = [name for name in names if name not in known]
        if not unknown:
            continue
        kept = [name for name in names if name in known]
        warn_once(
            ("exporter", variable, value),
            "%s=%r names unknown exporter(s) %s (installed: %s); using %r",
            variable,
            value,
            ", ".join(unknown),
            ", ".join(sorted(known)),
            ",".join(kept) or "none",
        )
        environ[variable] = ",".join(kept) or "none"


# Our entry point in opentelemetry_otlp_credential_provider (pyproject.toml), which
# names _export/tls.py: not imported here, as it imports requests (~40 ms at start-up).
CREDENTIAL_PROVIDER = "otel_excellence"
_HTTP_CREDENTIAL_PROVIDERS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_METRICS_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER",
)


def _respect_ca_file(environ: MutableMapping[str, str]) -> None:
    # With a CA file configured, the HTTP exporters get a session that honours it even
    # where REQUESTS_CA_BUNDLE is set (see _export/tls.py). Only if the user chose no
    # session of their own: the general variable would override a per-signal one.
    has_ca = any(
        environ.get(f"OTEL_EXPORTER_OTLP{signal}_CERTIFICATE")
        for signal in ("", "_TRACES", "_METRICS", "_LOGS")
    )
    if has_ca and not any(environ.get(name) for name in _HTTP_CREDENTIAL_PROVIDERS):
        environ[_HTTP_CREDENTIAL_PROVIDERS[0]] = CREDENTIAL_PROVIDER


def warn_about_other_distros() -> None:
    """Another distro installed beside ours wins or loses by entry-point order."""
    chosen = os.environ.get("OTEL_PYTHON_DISTRO")
    others = sorted(
        ep.name for ep in entry_points(group="opentelemetry_distro") if ep.name != DISTRO_NAME
    )
    if others and chosen is None:
        warn_once(
            "other-distros",
            "other OpenTelemetry distros are installed (%s); which one runs depends on "
            "entry-point order. Set OTEL_PYTHON_DISTRO=%s to make the choice explicit.",
            ", ".join(others),
            DISTRO_NAME,
        )


def warn_about_unsupported_libraries() -> None:
    for status in instrumentation_statuses():
        if status.status == UNSUPPORTED:
            warn_once(
                ("unsupported", status.name),
                "instrumentation %r will not run: %s. Install a supported version "
                "(see `otel-excellence doctor`).",
                status.name,
                status.reason,
            )


class OtelExcellenceDistro(BaseDistro):  # type: ignore[misc]  # BaseDistro is untyped
    """otel-excellence's distro: OTLP everywhere, logs bridged, checks up front."""

    def _configure(self, **kwargs: Any) -> None:
        try:
            apply_defaults(os.environ, kwargs.get("overrides"))
            warn_about_other_distros()
            warn_about_unsupported_libraries()
        except Exception:  # noqa: BLE001 - configuration never raises into the application
            internal_error("distro configuration")

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        # One failing instrumentor must not stop the others: the auto-loader re-raises
        # and abandons every instrumentor after it.
        name = entry_point.name
        before = _BEFORE_INSTRUMENT.get(name)
        if before is not None:
            try:
                before()
            except Exception:  # noqa: BLE001
                internal_error(f"before instrumenting {name}")
        try:
            extra = _INSTRUMENT_KWARGS.get(name)
            if extra is not None:
                kwargs = {**kwargs, **extra()}
            super().load_instrumentor(entry_point, **kwargs)
        except (ModuleNotFoundError, DependencyConflictError):
            # The instrumented library is not installed (or not in a supported version):
            # the auto-loader skips it quietly, as vanilla OpenTelemetry does.
            raise
        except Exception:  # noqa: BLE001 - telemetry must not break the application
            logger.warning("instrumentation %r failed to load; skipping it", name, exc_info=True)
            return
        after = _AFTER_INSTRUMENT.get(name)
        if after is not None:
            try:
                after()
            except Exception:  # noqa: BLE001
                internal_error(f"after instrumenting {name}")
