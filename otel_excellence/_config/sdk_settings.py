"""Every standard ``OTEL_*`` variable the SDK and its OTLP exporters read, checked first.

SDK 1.45 raises on many bad values while it builds the providers (a zero queue size, a
negative limit, a timeout that is not a number, ``compression=none`` over gRPC, an
unknown id generator) and then configures nothing after that point; on others it prints
a traceback, repeats a warning per exporter, echoes a header that may hold a credential,
or quietly fails every export (a zero timeout). :func:`repair` runs before the SDK reads
anything, the way the distro already repairs protocols and exporter names: a bad value
gives one warning naming the variable and the value, and the SDK default is used (the
variable is unset, so the SDK's own fallback applies, e.g. from ``…_TRACES_TIMEOUT`` to
``OTEL_EXPORTER_OTLP_TIMEOUT``). A value the SDK reads wrongly but that is valid by the
specification (``OTEL_METRICS_EXEMPLAR_FILTER=ALWAYS_ON``) is normalised without a word.

The table below is the single declaration: ``docs/configuration.md`` renders it
(:func:`render_markdown`) and the tests walk it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import unquote, urlsplit

from opentelemetry.util._importlib_metadata import entry_points

# The SDK's own header grammar, so that what we keep is exactly what it accepts.
from opentelemetry.util.re import (
    _DELIMITER_PATTERN,
    _HEADER_PATTERN,
    _LIBERAL_HEADER_PATTERN,
)

from otel_excellence._diagnostics import warn_once
from otel_excellence._findings.sql import scrub_credentials

_DAY_MS = 86_400_000
# The Python exporters read OTLP timeouts in seconds (the specification says
# milliseconds); a value above an hour is almost always milliseconds by mistake.
_OTLP_TIMEOUT_MAX_S = 3600
_SIGNALS = ("TRACES", "METRICS", "LOGS")
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
_BUILTIN_SAMPLERS = (
    "always_on",
    "always_off",
    "parentbased_always_on",
    "parentbased_always_off",
    *_RATIO_SAMPLERS,
)


@dataclass(frozen=True)
class Fix:
    """What to do with a value the SDK cannot use.

    ``use`` replaces the value; ``None`` unsets the variable so the SDK default applies.
    ``problem`` says what is wrong (default: "is not <expected>"); ``quiet`` fixes
    without a warning (values valid by the specification that the SDK misreads).
    """

    use: str | None = None
    problem: str | None = None
    quiet: bool = False
    outcome: str | None = None  # what happens instead, when "using <value>" says too little


Check = Callable[[str, Mapping[str, str]], Fix | None]


@dataclass(frozen=True)
class SdkSetting:
    """One standard variable: its SDK default, what a usable value is, and the check."""

    env: str
    default: str
    expected: str
    check: Check
    secret: bool = False  # never printed (headers carry credentials)
    check_unset: bool = False  # also checked when unset (its default depends on another)
    blank_is_value: bool = False  # an empty value means something (the limits: no limit)


# -- checks -------------------------------------------------------------------------------


def _accepting(accept: Callable[[str], bool]) -> Check:
    def check(value: str, _environ: Mapping[str, str]) -> Fix | None:
        try:
            return None if accept(value.strip()) else Fix()
        except ValueError:
            return Fix()

    return check


def _is_int(text: str, minimum: int, maximum: int | None = None) -> bool:
    value = int(text)
    return value >= minimum and (maximum is None or value <= maximum)


def _is_number(text: str, low_exclusive: float, high: float) -> bool:
    value = float(text)
    return low_exclusive < value <= high  # also rejects NaN


def _integer(minimum: int, maximum: int | None = None) -> Check:
    return _accepting(lambda text: _is_int(text, minimum, maximum))


def _limit() -> Check:
    # The SDK's limits: a non-negative integer; an empty value means no limit.
    return _accepting(lambda text: text == "" or _is_int(text, 0))


def _boolean() -> Check:
    return _accepting(lambda text: text.lower() in ("true", "false"))


def _choice(choices: Iterable[str]) -> Check:
    """A case-insensitive choice; a valid value in the wrong case is normalised quietly."""
    allowed = tuple(choices)

    def check(value: str, _environ: Mapping[str, str]) -> Fix | None:
        if value in allowed:
            return None
        lowered = value.strip().lower()
        return Fix(use=lowered, quiet=True) if lowered in allowed else Fix()

    return check


def _entry_point(group: str, builtin: Iterable[str] = ()) -> Check:
    def check(value: str, _environ: Mapping[str, str]) -> Fix | None:
        names = set(builtin) | {ep.name for ep in entry_points(group=group)}
        name = value.strip()
        if name in names:
            return None if name == value else Fix(use=name, quiet=True)
        if name.lower() in names:
            return Fix(use=name.lower(), quiet=True)
        installed = ", ".join(sorted(names)) or "none"
        return Fix(problem=f"names nothing installed in {group} (installed: {installed})")

    return check


def _batch_size(queue_env: str, default: int) -> Check:
    """1 or more, and at most the queue size: the SDK raises otherwise (also when only
    the queue is set, below the default batch size: then batches take the queue size)."""

    def check(value: str, environ: Mapping[str, str]) -> Fix | None:
        queue = int(environ.get(queue_env) or 2048)  # checked already: it comes first
        if not value.strip():
            return Fix(use=str(queue), quiet=True) if queue < default else None
        try:
            size = int(value.strip())
        except ValueError:
            size = 0
        if size < 1:
            return Fix(use=str(queue) if queue < default else None)
        if size > queue:
            return Fix(use=str(queue), problem=f"is above {queue_env} ({queue})")
        return None

    return check


def _sampler_arg(value: str, environ: Mapping[str, str]) -> Fix | None:
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler not in _RATIO_SAMPLERS:
        return None  # custom samplers get the text as it is
    if not value.strip():
        # Unset means 1.0 by the specification; the SDK warns about it instead.
        return Fix(use="1.0", quiet=True)
    try:
        ratio = float(value.strip())
    except ValueError:
        return Fix(use="1.0")
    return None if 0.0 <= ratio <= 1.0 else Fix(use="1.0")


def _protocols(environ: Mapping[str, str], signal: str | None) -> set[str]:
    general = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip() or "grpc"
    signals = _SIGNALS if signal is None else (signal,)
    return {environ.get(f"OTEL_EXPORTER_OTLP_{s}_PROTOCOL", "").strip() or general for s in signals}


def _compression(signal: str | None) -> Check:
    # gRPC exporters map only "gzip" (and raise on "none", a valid value); the HTTP
    # exporters take none, gzip and deflate.
    def check(value: str, environ: Mapping[str, str]) -> Fix | None:
        text = value.strip().lower()
        grpc = "grpc" in _protocols(environ, signal)
        if text == "gzip" or (text == "deflate" and not grpc):
            return None if text == value else Fix(use=text, quiet=True)
        if text == "none":
            return (
                Fix(quiet=True) if grpc else (None if text == value else Fix(use=text, quiet=True))
            )
        return Fix()

    return check


_HOST_PORT = re.compile(r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}/?$")
_VALID_HOST = re.compile(r"^[A-Za-z0-9._~%-]+$|^\[[0-9A-Fa-f:.]+\]$")


def _usable_url(text: str) -> bool:
    parts = urlsplit(text)
    host = parts.netloc.rpartition("@")[2]
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    _ = parts.port  # raises ValueError on a port that is not a number in range
    return parts.scheme in ("http", "https") and bool(_VALID_HOST.match(host)) and " " not in text


def _endpoint(signal: str | None) -> Check:
    def check(value: str, environ: Mapping[str, str]) -> Fix | None:
        text = value.strip()
        try:
            if _usable_url(text):
                return None if text == value else Fix(use=text, quiet=True)
            if _HOST_PORT.match(text):
                # "collector:4317": the gRPC exporter treats "collector" as the scheme
                # and opens TLS unless told it is insecure; the HTTP one finds no
                # connection adapter. Keep what gRPC did: TLS unless INSECURE=true
                # (never downgrade a channel that carries headers with credentials).
                insecure = environ.get(
                    f"OTEL_EXPORTER_OTLP_{signal}_INSECURE" if signal else "", ""
                ) or environ.get("OTEL_EXPORTER_OTLP_INSECURE", "")
                scheme = "http" if insecure.strip().lower() == "true" else "https"
                candidate = f"{scheme}://{text}"
                if _usable_url(candidate):
                    return Fix(use=candidate, problem="has no scheme (http:// or https://)")
        except ValueError:
            pass
        return Fix()

    return check


def _timeout_seconds(value: str, _environ: Mapping[str, str]) -> Fix | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return Fix()
    if seconds <= 0:
        return Fix(problem="is not above 0: every export would fail at once")
    if not seconds <= _OTLP_TIMEOUT_MAX_S:
        return Fix(problem=f"is above {_OTLP_TIMEOUT_MAX_S} (the Python exporters read seconds)")
    return None


def _readable_file(value: str, _environ: Mapping[str, str]) -> Fix | None:
    path = value.strip()
    if os.path.isfile(path) and os.access(path, os.R_OK):
        return None if path == value else Fix(use=path, quiet=True)
    return Fix(problem="is not a readable file")


_GRPC_HEADER_NAME = re.compile(r"^[0-9a-z_.-]+$")
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")  # an HTTP header name
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


def _headers(signal: str | None) -> Check:
    """Keep the entries the exporters can send; never print a value (credentials)."""

    def check(value: str, environ: Mapping[str, str]) -> Fix | None:
        grpc = "grpc" in _protocols(environ, signal)
        entries = [e for e in _DELIMITER_PATTERN.split(value) if e.strip()]
        kept, bad = [], []
        for number, entry in enumerate(entries, 1):
            if _usable_header(entry, grpc):
                kept.append(entry)
            else:
                # A name is shown only if it looks like one: "Authorization: Bearer x"
                # before an "=" would show the token.
                name = entry.split("=", 1)[0].strip()
                shown = f" {name!r}" if "=" in entry and _TOKEN.match(name) else ""
                bad.append(f"entry {number}{shown}")
        if not bad:
            return None
        return Fix(
            use=",".join(kept) or None,
            problem=f"has {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} that cannot be "
            f"sent ({', '.join(bad)}; expected name=value, URL-encoded)",
            outcome="sending the others" if kept else "sending no headers",
        )

    return check


def _usable_header(entry: str, grpc: bool) -> bool:
    strict = _HEADER_PATTERN.fullmatch(entry.strip())
    if not strict and not _LIBERAL_HEADER_PATTERN.fullmatch(entry.strip()):
        return False
    name, raw = entry.split("=", 1)
    name = (unquote(name) if strict else name).strip().lower()
    decoded = (unquote(raw) if strict else raw).strip()
    if grpc and not _GRPC_HEADER_NAME.match(name):
        return False
    return bool(_PRINTABLE.match(decoded))


def _retryable_codes(value: str, _environ: Mapping[str, str]) -> Fix | None:
    from grpc import StatusCode

    names = [code.strip().upper() for code in value.split(",") if code.strip()]
    return None if all(name in StatusCode.__members__ for name in names) else Fix()


def _resource_attributes(value: str, _environ: Mapping[str, str]) -> Fix | None:
    items = value.split(",")
    bad = [item for item in items if item.strip() and "=" not in item]
    if not bad:
        return None
    shown = ", ".join(repr(item.strip()[:32]) for item in bad[:3])
    return Fix(
        use=",".join(item for item in items if item.strip() and "=" in item) or None,
        problem=f"has entries that are not key=value ({shown})",
        outcome="using the others",
    )


def _resource_detectors(value: str, _environ: Mapping[str, str]) -> Fix | None:
    installed = {ep.name for ep in entry_points(group="opentelemetry_resource_detector")}
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name != "*" and name not in installed]
    if not unknown:
        return None
    return Fix(
        use=",".join(name for name in names if name not in unknown) or None,
        problem=f"names unknown detector(s) {', '.join(unknown)} (installed: "
        f"{', '.join(sorted(installed))})",
        outcome="using the others",
    )


# -- the table -------------------------------------------------------------------------------

_MS = f"an integer number of milliseconds from 1 to {_DAY_MS}"


def _processor(prefix: str, what: str, schedule_default: int) -> list[SdkSetting]:
    queue, batch = f"{prefix}_MAX_QUEUE_SIZE", f"{prefix}_MAX_EXPORT_BATCH_SIZE"
    return [
        SdkSetting(
            f"{prefix}_SCHEDULE_DELAY",
            str(schedule_default),
            _MS,
            _integer(1, _DAY_MS),
        ),
        SdkSetting(f"{prefix}_EXPORT_TIMEOUT", "30000", _MS, _integer(1, _DAY_MS)),
        SdkSetting(
            queue,
            "2048",
            f"an integer >= 1 (how many {what} wait for export)",
            _integer(1),
        ),
        SdkSetting(
            batch,
            "512",
            f"an integer from 1 to {queue}",
            _batch_size(queue, 512),
            check_unset=True,
        ),
    ]


def _otlp(signal: str | None) -> list[SdkSetting]:
    infix = f"{signal}_" if signal else ""
    name = f"OTEL_EXPORTER_OTLP_{infix}"
    general = signal is None

    def fallback(variable: str, default: str) -> str:
        return default if general else f"`OTEL_EXPORTER_OTLP_{variable}`"

    return [
        SdkSetting(
            f"{name}ENDPOINT",
            fallback("ENDPOINT", "`http://localhost:4317` (gRPC), `http://localhost:4318` (HTTP)"),
            "a URL with scheme http or https and a host",
            _endpoint(signal),
        ),
        SdkSetting(
            f"{name}TIMEOUT",
            fallback("TIMEOUT", "10"),
            f"a number of seconds above 0, at most {_OTLP_TIMEOUT_MAX_S}",
            _timeout_seconds,
        ),
        SdkSetting(
            f"{name}COMPRESSION",
            fallback("COMPRESSION", "none"),
            "gzip or none (HTTP also: deflate)",
            _compression(signal),
        ),
        SdkSetting(
            f"{name}HEADERS",
            fallback("HEADERS", "(none)"),
            "comma-separated name=value pairs, URL-encoded",
            _headers(signal),
            secret=True,
        ),
        SdkSetting(
            f"{name}INSECURE", fallback("INSECURE", "from the scheme"), "true or false", _boolean()
        ),
        *(
            SdkSetting(
                f"{name}{kind}",
                fallback(kind, default),
                "a readable file",
                _readable_file,
            )
            for kind, default in (
                ("CERTIFICATE", "(none: the system's CA store)"),
                ("CLIENT_KEY", "(none: no client certificate)"),
                ("CLIENT_CERTIFICATE", "(none: no client certificate)"),
            )
        ),
    ]


def _credential_providers() -> list[SdkSetting]:
    return [
        SdkSetting(
            "_".join(("OTEL_PYTHON_EXPORTER_OTLP", transport, *((signal,) if signal else ())))
            + "_CREDENTIAL_PROVIDER",
            "(none)",
            "an installed opentelemetry_otlp_credential_provider",
            _entry_point("opentelemetry_otlp_credential_provider"),
        )
        for transport in ("GRPC", "HTTP")
        for signal in (None, *_SIGNALS)
    ]


_LIMITS = (
    ("OTEL_ATTRIBUTE_COUNT_LIMIT", "128"),
    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "no limit"),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "`OTEL_ATTRIBUTE_COUNT_LIMIT`, else 128"),
    ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`"),
    ("OTEL_SPAN_EVENT_COUNT_LIMIT", "128"),
    ("OTEL_SPAN_LINK_COUNT_LIMIT", "128"),
    ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "`OTEL_ATTRIBUTE_COUNT_LIMIT`, else 128"),
    ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "`OTEL_ATTRIBUTE_COUNT_LIMIT`, else 128"),
    ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "`OTEL_ATTRIBUTE_COUNT_LIMIT`, else 128"),
    ("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`"),
)

# Order matters where one check reads another variable: queue sizes before batch sizes,
# the sampler before its argument, protocols (repaired by the distro) before compression.
SDK_SETTINGS: tuple[SdkSetting, ...] = (
    SdkSetting("OTEL_SDK_DISABLED", "false", "true or false", _boolean()),
    SdkSetting(
        "OTEL_RESOURCE_ATTRIBUTES",
        "(none)",
        "comma-separated key=value pairs",
        _resource_attributes,
    ),
    SdkSetting(
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS",
        "(none)",
        "names of installed resource detectors, or *",
        _resource_detectors,
    ),
    SdkSetting(
        "OTEL_TRACES_SAMPLER",
        "parentbased_always_on",
        "a sampler name: " + ", ".join(_BUILTIN_SAMPLERS) + ", or an installed one",
        _entry_point("opentelemetry_traces_sampler", _BUILTIN_SAMPLERS),
    ),
    SdkSetting(
        "OTEL_TRACES_SAMPLER_ARG",
        "1.0 for the ratio samplers",
        "a number from 0 to 1 for the ratio samplers",
        _sampler_arg,
        check_unset=True,
    ),
    SdkSetting(
        "OTEL_PYTHON_ID_GENERATOR",
        "random",
        "an installed opentelemetry_id_generator",
        _entry_point("opentelemetry_id_generator"),
    ),
    *(
        SdkSetting(
            f"OTEL_PYTHON_{kind.upper()}_CONFIGURATOR",
            "(none)",
            f"an installed _opentelemetry_{kind}_configurator",
            _entry_point(f"_opentelemetry_{kind}_configurator"),
        )
        for kind in ("tracer", "meter", "logger")
    ),
    *(
        SdkSetting(env, default, "an integer >= 0 (empty: no limit)", _limit(), blank_is_value=True)
        for env, default in _LIMITS
    ),
    *_processor("OTEL_BSP", "spans", 5000),
    *_processor("OTEL_BLRP", "log records", 1000),
    SdkSetting(
        "OTEL_METRIC_EXPORT_INTERVAL",
        "60000",
        f"a number of milliseconds above 0, at most {_DAY_MS}",
        _accepting(lambda text: _is_number(text, 0, _DAY_MS)),
    ),
    SdkSetting(
        "OTEL_METRIC_EXPORT_TIMEOUT",
        "30000",
        f"a number of milliseconds above 0, at most {_DAY_MS}",
        _accepting(lambda text: _is_number(text, 0, _DAY_MS)),
    ),
    SdkSetting(
        "OTEL_METRICS_EXEMPLAR_FILTER",
        "trace_based",
        "trace_based, always_on or always_off",
        _choice(("trace_based", "always_on", "always_off")),
    ),
    SdkSetting(
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        "cumulative",
        "cumulative, delta or lowmemory",
        _choice(("cumulative", "delta", "lowmemory")),
    ),
    SdkSetting(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        "explicit_bucket_histogram",
        "explicit_bucket_histogram or base2_exponential_bucket_histogram",
        _choice(("explicit_bucket_histogram", "base2_exponential_bucket_histogram")),
    ),
    *_otlp(None),
    *(setting for signal in _SIGNALS for setting in _otlp(signal)),
    SdkSetting(
        "OTEL_PYTHON_EXPORTER_OTLP_GRPC_RETRYABLE_ERROR_CODES",
        "CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, "
        "UNAVAILABLE, DATA_LOSS",
        "comma-separated gRPC status names",
        _retryable_codes,
    ),
    *_credential_providers(),
    SdkSetting("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "false", "true or false", _boolean()),
    SdkSetting(
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "false", "true or false", _boolean()
    ),
)


def repair(environ: MutableMapping[str, str], defaults: Mapping[str, str] | None = None) -> None:
    """Check every variable in :data:`SDK_SETTINGS`; fix the ones the SDK cannot use.

    ``defaults`` are the distro's own defaults (e.g. a 15 s metric interval): a bad
    value falls back to those rather than to the SDK's. An empty value means unset, as
    the specification says (several SDK readers raise on it).
    """
    defaults = defaults or {}
    for setting in SDK_SETTINGS:
        value = environ.get(setting.env)
        blank = value is None or (not value.strip() and not setting.blank_is_value)
        fix = None
        if not blank or setting.check_unset:
            fix = setting.check(value or "", environ)
        if fix is None and blank and value is not None:
            fix = Fix(quiet=True)
        if fix is None:
            continue
        replacement = fix.use if fix.use is not None else defaults.get(setting.env)
        if replacement is None:
            environ.pop(setting.env, None)
        else:
            environ[setting.env] = replacement
        if not fix.quiet:
            _warn(setting, value or "", fix, replacement)


def _warn(setting: SdkSetting, value: str, fix: Fix, replacement: str | None) -> None:
    if setting.secret:
        # Headers carry credentials: the variable is named, its value never shown.
        shown = f"{setting.env} (value not shown)"
    else:
        shown = f"{setting.env}={scrub_credentials(value)!r}"
    if fix.outcome:
        outcome = fix.outcome
    elif replacement is None:
        default = setting.default.replace("`", "")
        outcome = f"using the default {default if default.startswith('(') else f'({default})'}"
    else:
        outcome = f"using {scrub_credentials(replacement)!r}"
    warn_once(
        ("sdk-setting", setting.env, value),
        "%s %s; %s",
        shown,
        fix.problem or f"is not {setting.expected}",
        outcome,
    )


def render_markdown() -> str:
    """The table of checked standard variables for ``docs/configuration.md``."""
    lines = ["| Variable | SDK default | A usable value |", "|---|---|---|"]
    for setting in SDK_SETTINGS:
        plain = "`" in setting.default or " " in setting.default or "(" in setting.default
        default = setting.default if plain else f"`{setting.default}`"
        lines.append(f"| `{setting.env}` | {default} | {setting.expected} |")
    return "\n".join(lines) + "\n"


class ProcessorDefaults(TypedDict):
    max_queue_size: int
    schedule_delay_millis: int
    max_export_batch_size: int
    export_timeout_millis: int


def processor_defaults(prefix: str) -> ProcessorDefaults:
    """A batch processor's SDK defaults (``OTEL_BSP`` or ``OTEL_BLRP``), as its keywords."""
    defaults = {setting.env: setting.default for setting in SDK_SETTINGS}
    return ProcessorDefaults(
        max_queue_size=int(defaults[f"{prefix}_MAX_QUEUE_SIZE"]),
        schedule_delay_millis=int(defaults[f"{prefix}_SCHEDULE_DELAY"]),
        max_export_batch_size=int(defaults[f"{prefix}_MAX_EXPORT_BATCH_SIZE"]),
        export_timeout_millis=int(defaults[f"{prefix}_EXPORT_TIMEOUT"]),
    )
