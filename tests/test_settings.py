"""Settings: every OTEL_EXCELLENCE_* variable, good and bad values, one warning each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from otel_excellence import Settings
from otel_excellence._config.settings import all_settings, render_markdown

# env name -> (a good raw value, what it resolves to, a bad raw value)
CASES: dict[str, tuple[str, Any, str]] = {
    "OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS": ("1500", 1500, "-1"),
    "OTEL_EXCELLENCE_SERVICE_VERSION": (" 1.2.3 ", "1.2.3", ""),
    "OTEL_EXCELLENCE_ENVIRONMENT": ("production", "production", ""),
    "OTEL_EXCELLENCE_RESOURCE_DETECTORS": ("host, OS", ("host", "os"), "host,docker"),
    "OTEL_EXCELLENCE_LOG_LEVEL": ("debug", "DEBUG", "loud"),
    "OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS": ("250", 250, "fast"),
    "OTEL_EXCELLENCE_N_PLUS_ONE_THRESHOLD": ("3", 3, "1"),
    "OTEL_EXCELLENCE_DB_STATEMENT": ("RAW", "raw", "redact"),
    "OTEL_EXCELLENCE_ERROR_RULES": ("myapp.errors:RULES", "myapp.errors:RULES", ""),
    "OTEL_EXCELLENCE_BAGGAGE_KEYS": ("request.id, tenant.id", ("request.id", "tenant.id"), ""),
    "OTEL_EXCELLENCE_DEV": ("TRUE", True, "maybe"),
}


def _value(settings: Settings, env: str) -> Any:
    field = next(s.field for s in all_settings() if s.env == env)
    return getattr(settings, field)


class TestEverySetting:
    def test_cases_cover_every_declared_setting(self) -> None:
        """A new setting cannot be added without good and bad values tested here."""
        assert set(CASES) == {s.env for s in all_settings()}

    @pytest.mark.parametrize("env", sorted(CASES))
    def test_good_value_is_used(self, env: str) -> None:
        good, expected, _ = CASES[env]
        assert _value(Settings.load({env: good}), env) == expected

    @pytest.mark.parametrize("env", sorted(CASES))
    def test_unset_gives_the_default(self, env: str) -> None:
        setting = next(s for s in all_settings() if s.env == env)
        assert _value(Settings.load({}), env) == setting.default

    @pytest.mark.parametrize("env", sorted(e for e, (_, _, bad) in CASES.items() if bad), ids=str)
    def test_bad_value_warns_once_naming_variable_and_value_and_uses_default(
        self, env: str, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        setting = next(s for s in all_settings() if s.env == env)
        bad = CASES[env][2]
        first = Settings.load({env: bad})
        Settings.load({env: bad})
        assert _value(first, env) == setting.default
        messages = [r.getMessage() for r in warnings_seen.records if env in r.getMessage()]
        assert len(messages) == 1
        assert repr(bad) in messages[0]
        assert "using the default" in messages[0]


class TestUpperBounds:
    @pytest.mark.parametrize(
        ("env", "value"),
        [
            # 1e13 ms used to reach the exit wait and raise OverflowError there.
            ("OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS", "10000000000000"),
            ("OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS", "600001"),
            ("OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS", "3600001"),
        ],
    )
    def test_a_duration_above_its_bound_warns_and_uses_the_default(
        self, env: str, value: str, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """Durations have an upper bound: beyond it, one warning and the default."""
        setting = next(s for s in all_settings() if s.env == env)
        assert _value(Settings.load({env: value}), env) == setting.default
        assert f"{env}={value!r}" in warnings_seen.text

    def test_the_bound_itself_is_accepted(self) -> None:
        """Ten minutes is a usable exit bound."""
        assert (
            Settings.load({"OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS": "600000"}).shutdown_timeout_ms
            == 600000
        )


class TestResolutionOrder:
    def test_argument_beats_environment(self) -> None:
        """configure(shutdown_timeout_ms=...) wins over the variable."""
        settings = Settings.load(
            {"OTEL_EXCELLENCE_SHUTDOWN_TIMEOUT_MS": "1000"}, overrides={"shutdown_timeout_ms": 250}
        )
        assert settings.shutdown_timeout_ms == 250

    def test_bad_argument_warns_and_falls_back(
        self, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        settings = Settings.load({}, overrides={"shutdown_timeout_ms": "soon"})
        assert settings.shutdown_timeout_ms == 2000
        assert "'soon'" in warnings_seen.text

    def test_bad_argument_warning_names_the_argument_not_the_variable(
        self, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """configure(slow_db_threshold_ms='abc'): the user wrote an argument, not a
        variable; the one warning names what they wrote."""
        settings = Settings.load({}, overrides={"slow_db_threshold_ms": "abc"})
        assert settings.slow_db_threshold_ms == 500
        messages = [r.getMessage() for r in warnings_seen.records]
        assert len(messages) == 1
        assert "configure() argument slow_db_threshold_ms='abc' is not an integer" in messages[0]
        assert "OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS" not in messages[0]

    def test_unknown_argument_is_named(self, warnings_seen: pytest.LogCaptureFixture) -> None:
        Settings.load({}, overrides={"shutdown_timout_ms": 5})
        assert "shutdown_timout_ms" in warnings_seen.text

    def test_none_disables_resource_detectors(self) -> None:
        settings = Settings.load({"OTEL_EXCELLENCE_RESOURCE_DETECTORS": "none"})
        assert settings.resource_detectors == ()


def test_configuration_reference_lists_every_setting() -> None:
    """docs/configuration.md carries the generated table verbatim."""
    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    assert render_markdown() in docs
