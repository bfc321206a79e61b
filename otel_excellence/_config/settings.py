"""Every ``OTEL_EXCELLENCE_*`` setting, declared once: name, type, default, doc.

Values resolve as: argument to ``configure()`` > environment variable > default. A bad
value gives one warning naming the variable and the value, and the default is used:
configuration never raises into the application. ``docs/configuration.md`` is generated
from this table (``otel-excellence settings --markdown``) and a test keeps them equal.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from otel_excellence._diagnostics import warn_once
from otel_excellence.exceptions import ConfigurationError

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Parser(Generic[T]):
    """Turns the text of a variable into a value, or raises ``ValueError``."""

    expected: str
    parse: Callable[[str], T]
    render: Callable[[T], str] = str


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(text)


def boolean() -> Parser[bool]:
    return Parser("a boolean (true/false)", _parse_bool, lambda v: "true" if v else "false")


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser[int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(text)
        return value

    if minimum is not None and maximum is not None:
        expected = f"an integer from {minimum} to {maximum}"
    elif minimum is not None:
        expected = f"an integer >= {minimum}"
    else:
        expected = "an integer"
    return Parser(expected, parse)


def number(minimum: float, maximum: float) -> Parser[float]:
    def parse(text: str) -> float:
        value = float(text.strip())
        if not minimum <= value <= maximum:  # also rejects NaN
            raise ValueError(text)
        return value

    return Parser(f"a number from {minimum:g} to {maximum:g}", parse, lambda v: f"{v:g}")


def text() -> Parser[str]:
    return Parser("a string", lambda t: t.strip())


def name_list() -> Parser[tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in value.split(",") if item.strip())

    return Parser("a comma-separated list", parse, ",".join)


def choice_list(choices: tuple[str, ...]) -> Parser[tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        if value.strip().lower() == "none":
            return ()
        items = tuple(item.strip().lower() for item in value.split(",") if item.strip())
        if any(item not in choices for item in items):
            raise ValueError(value)
        return items

    return Parser(
        "a comma-separated list of " + ", ".join(choices) + ", or none",
        parse,
        lambda v: ",".join(v) or "none",
    )


def choice(choices: tuple[str, ...]) -> Parser[str]:
    def parse(value: str) -> str:
        picked = value.strip().lower()
        if picked not in choices:
            raise ValueError(value)
        return picked

    return Parser("one of " + ", ".join(choices), parse)


def log_level() -> Parser[str]:
    levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

    def parse(value: str) -> str:
        level = value.strip().upper()
        if level not in levels:
            raise ValueError(value)
        return level

    return Parser("one of " + ", ".join(levels), parse)


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One ``OTEL_EXCELLENCE_*`` variable."""

    field: str
    env: str
    parser: Parser[T]
    default: T
    doc: str

    def read(self, environ: Mapping[str, str]) -> T:
        """The variable's value from ``environ``, or the default after one warning."""
        raw = environ.get(self.env)
        if raw is None or raw.strip() == "":
            return self.default
        return self.coerce(raw)

    def coerce(self, raw: object, name: str | None = None) -> T:
        """Parse a text (or already typed) value; bad ones warn and give the default.

        ``name`` is what the warning calls the value: the variable by default, the
        keyword argument when the value came from ``configure()``.
        """
        try:
            if isinstance(raw, str):
                return self.parser.parse(raw)
            return self.parser.parse(self.parser.render(raw))  # type: ignore[arg-type]
        except (ValueError, TypeError):
            error = ConfigurationError(name or self.env, raw, self.parser.expected)
            warn_once(
                ("setting", name or self.env, repr(raw)),
                "%s; using the default %s",
                error,
                self.parser.render(self.default) or '""',
            )
            return self.default


_REGISTRY: list[Setting[Any]] = []


def _declare(field: str, parser: Parser[T], default: T, doc: str) -> Setting[T]:
    setting = Setting(field, "OTEL_EXCELLENCE_" + field.upper(), parser, default, doc)
    _REGISTRY.append(setting)
    return setting


# Upper bounds on durations: a larger value is a unit mistake, and past
# threading.TIMEOUT_MAX (about 292 years) the waits at exit raise OverflowError.
SHUTDOWN_TIMEOUT_MS = _declare(
    "shutdown_timeout_ms",
    integer(minimum=0, maximum=600_000),
    2000,
    "Upper bound, in milliseconds, on flushing telemetry when the process exits. "
    "Vanilla OpenTelemetry can block about 30 s at exit when the endpoint is down; "
    "past this bound the process exits and one line says how much was not delivered.",
)
SERVICE_VERSION = _declare(
    "service_version",
    text(),
    "",
    "Sets the `service.version` resource attribute unless `OTEL_RESOURCE_ATTRIBUTES` "
    "already has one.",
)
ENVIRONMENT = _declare(
    "environment",
    text(),
    "",
    "Sets the `deployment.environment.name` resource attribute (e.g. `production`) "
    "unless `OTEL_RESOURCE_ATTRIBUTES` already has one.",
)
RESOURCE_DETECTORS = _declare(
    "resource_detectors",
    choice_list(("host", "os", "process")),
    ("host", "os", "process"),
    "Resource detectors to run. `process` never records the command line (it can carry "
    "secrets). `none` disables them; `OTEL_EXPERIMENTAL_RESOURCE_DETECTORS` still works.",
)
SLOW_DB_THRESHOLD_MS = _declare(
    "slow_db_threshold_ms",
    integer(minimum=0, maximum=3_600_000),
    500,
    "A database client span lasting at least this many milliseconds gets "
    "`otel_excellence.db.slow=true` and counts in `otel_excellence.db.slow_queries`.",
)
N_PLUS_ONE_THRESHOLD = _declare(
    "n_plus_one_threshold",
    integer(minimum=2),
    5,
    "A request or task (the local root span) within which the same statement ran at least "
    "this many times, with different parameters, is flagged `otel_excellence.db.n_plus_one`.",
)
DB_STATEMENT = _declare(
    "db_statement",
    choice(("sanitized", "raw", "omit")),
    "sanitized",
    "What `db.statement`/`db.query.text` export: `sanitized` replaces literals with `?`, "
    "drops comments and collapses IN-lists (and scrubs bound values from error "
    "messages); `raw` exports statements as executed; `omit` drops them.",
)
ERROR_RULES = _declare(
    "error_rules",
    text(),
    "",
    "Extra error-classification rules, as `module:attribute` naming a list of "
    "`otel_excellence.ErrorRule`; consulted before the built-in table.",
)
BAGGAGE_KEYS = _declare(
    "baggage_keys",
    name_list(),
    (),
    "W3C baggage keys (e.g. `request.id,tenant.id`) copied onto every span and log record "
    "started under that baggage, as attributes of the same name.",
)
DEV = _declare(
    "dev",
    boolean(),
    False,
    "Dev mode: all three signals stay on this machine. Traces print as trees on stdout "
    "with each log record under its span, and at exit a metrics summary and the "
    "findings (N+1 and slow statements by route, errors, cache hits); nothing is sent "
    "over the network. Sets `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER` and "
    "`OTEL_LOGS_EXPORTER` to `devconsole` (a different value there gets one warning).",
)
LOG_LEVEL = _declare(
    "log_level",
    log_level(),
    "WARNING",
    "Level of the distro's own diagnostics, printed to stderr with the prefix `otel-excellence:`.",
)


def all_settings() -> tuple[Setting[Any], ...]:
    """Every declared setting, in declaration order."""
    return tuple(_REGISTRY)


@dataclass(frozen=True)
class Settings:
    """A resolved snapshot of every setting."""

    shutdown_timeout_ms: int = SHUTDOWN_TIMEOUT_MS.default
    service_version: str = SERVICE_VERSION.default
    environment: str = ENVIRONMENT.default
    resource_detectors: tuple[str, ...] = RESOURCE_DETECTORS.default
    slow_db_threshold_ms: int = SLOW_DB_THRESHOLD_MS.default
    n_plus_one_threshold: int = N_PLUS_ONE_THRESHOLD.default
    db_statement: str = DB_STATEMENT.default
    error_rules: str = ERROR_RULES.default
    baggage_keys: tuple[str, ...] = BAGGAGE_KEYS.default
    dev: bool = DEV.default
    log_level: str = LOG_LEVEL.default

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Resolve every setting: ``overrides`` > ``environ`` > default."""
        env = os.environ if environ is None else environ
        overrides = dict(overrides or {})
        values: dict[str, Any] = {}
        for setting in _REGISTRY:
            if setting.field in overrides:
                values[setting.field] = setting.coerce(
                    overrides.pop(setting.field), name=f"configure() argument {setting.field}"
                )
            else:
                values[setting.field] = setting.read(env)
        for unknown in sorted(overrides):
            warn_once(
                ("setting-unknown", unknown),
                "configure() got an unknown setting %r; known settings: %s",
                unknown,
                ", ".join(s.field for s in _REGISTRY),
            )
        return cls(**values)

    def apply_log_level(self) -> None:
        logging.getLogger("otel_excellence").setLevel(self.log_level)


def _check_registry_matches_dataclass() -> None:
    # A setting declared in the registry but missing here (or the reverse) is a bug
    # in this module; fail at import so the test suite catches it immediately.
    fields = {f.name for f in dataclasses.fields(Settings)}
    declared = {s.field for s in _REGISTRY}
    if fields != declared:  # pragma: no cover - guards future edits
        raise RuntimeError(f"Settings fields {fields ^ declared} are not declared once")


_check_registry_matches_dataclass()


def render_markdown() -> str:
    """The configuration reference table for ``docs/configuration.md``."""
    lines = [
        "| Variable | Type | Default | Description |",
        "|---|---|---|---|",
    ]
    for setting in _REGISTRY:
        default = setting.parser.render(setting.default)
        lines.append(
            f"| `{setting.env}` | {setting.parser.expected} | `{default}` | {setting.doc} |"
            if default
            else f"| `{setting.env}` | {setting.parser.expected} | (unset) | {setting.doc} |"
        )
    return "\n".join(lines) + "\n"
