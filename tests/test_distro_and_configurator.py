"""The distro's defaults and checks, and the configurator's behaviour as a user sees it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from opentelemetry.instrumentation import dependencies
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_excellence import Settings
from otel_excellence import _diagnostics as _log
from otel_excellence._config.distro import (
    DEFAULTS,
    apply_defaults,
    warn_about_unsupported_libraries,
)
from otel_excellence._config.instrumentations import UNSUPPORTED, instrumentation_statuses
from otel_excellence._config.resource import fallback_service_name, resource_attributes
from otel_excellence._export.delivery import does_nothing
from otel_excellence._export.pipeline import EnrichingSpanProcessor, SpanChanges
from tests.launch import clean_env
from tests.support.otlp_sink import OtlpSink


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (global providers are per process)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestDistroDefaults:
    def test_defaults_fill_only_what_the_user_left_unset(self) -> None:
        environ = {"OTEL_LOGS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
        apply_defaults(environ)
        assert environ["OTEL_LOGS_EXPORTER"] == "console"
        assert environ["OTEL_METRIC_EXPORT_INTERVAL"] == "1000"
        assert environ["OTEL_TRACES_EXPORTER"] == "otlp"
        assert environ["OTEL_METRICS_EXPORTER"] == "otlp"
        assert environ["OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION"] == "true"
        assert set(DEFAULTS) <= set(environ)

    @pytest.mark.parametrize(
        ("endpoint", "protocol"),
        [
            ("http://collector:4318", "http/protobuf"),
            ("http://collector:4317", "grpc"),
            ("", "grpc"),
            ("collector:4318", "http/protobuf"),
        ],
    )
    def test_protocol_follows_the_endpoint_port_when_unset(
        self, endpoint: str, protocol: str
    ) -> None:
        environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        apply_defaults(environ)
        assert environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == protocol

    def test_explicit_protocol_wins_over_the_port(self) -> None:
        environ = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
        apply_defaults(environ)
        assert environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"

    def test_unsupported_protocol_warns_and_falls_back(
        self, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        environ = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}
        apply_defaults(environ)
        assert environ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
        assert "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json'" in warnings_seen.text

    def test_unknown_exporter_is_dropped_and_the_others_kept(
        self, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        environ = {"OTEL_TRACES_EXPORTER": "otlp,zipkin_typo"}
        apply_defaults(environ)
        assert environ["OTEL_TRACES_EXPORTER"] == "otlp"
        assert "zipkin_typo" in warnings_seen.text


class TestUnsupportedLibraryVersions:
    def test_sqlalchemy_2_1_is_reported_loudly(
        self, monkeypatch: pytest.MonkeyPatch, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """The instrumentation's own verdict (from its metadata) becomes our warning."""
        real_version = dependencies.version
        monkeypatch.setattr(
            dependencies,
            "version",
            lambda name: "2.1.9" if name.lower() == "sqlalchemy" else real_version(name),
        )
        statuses = {s.name: s for s in instrumentation_statuses()}
        assert statuses["sqlalchemy"].status == UNSUPPORTED
        assert "2.1.9" in statuses["sqlalchemy"].reason
        warn_about_unsupported_libraries()
        assert "'sqlalchemy' will not run" in warnings_seen.text
        assert "2.1.9" in warnings_seen.text


class TestResource:
    @pytest.mark.parametrize(
        ("argv", "name"),
        [
            (["app.py"], "app"),
            (["/srv/billing/__main__.py"], "billing"),
            (["/venv/bin/gunicorn", "app:wsgi"], "app"),
            (["-c"], "unknown_service:python"),
            ([], "unknown_service:python"),
        ],
    )
    def test_fallback_service_name_comes_from_the_program(self, argv: list[str], name: str) -> None:
        assert fallback_service_name(argv) == name

    def test_missing_service_name_warns_once_and_uses_the_fallback(
        self, monkeypatch: pytest.MonkeyPatch, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
        attributes = resource_attributes(Settings(), argv=["worker.py"])
        resource_attributes(Settings(), argv=["worker.py"])
        assert attributes["service.name"] == "worker"
        assert warnings_seen.text.count("OTEL_SERVICE_NAME is not set") == 1

    def test_user_resource_attributes_always_win(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
        monkeypatch.setenv(
            "OTEL_RESOURCE_ATTRIBUTES", "service.version=9.9,deployment.environment.name=qa"
        )
        attributes = resource_attributes(
            Settings(service_version="1.0", environment="production"), argv=["x.py"]
        )
        # Keys the user set are left out, so the SDK keeps the user's values.
        assert "service.name" not in attributes
        assert "service.version" not in attributes
        assert "deployment.environment.name" not in attributes

    def test_version_environment_and_detectors(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
        monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
        attributes = resource_attributes(
            Settings(service_version="1.4.2", environment="staging"), argv=["x.py"]
        )
        assert attributes["service.version"] == "1.4.2"
        assert attributes["deployment.environment.name"] == "staging"
        assert {"host.name", "os.type", "process.pid", "process.runtime.name"} <= set(attributes)
        # The command line can carry secrets: never exported.
        assert "process.command_line" not in attributes
        assert "process.command_args" not in attributes


class _Exploding:
    def on_start(self, span: object, parent_context: object) -> None:
        return None

    def __call__(self, span: ReadableSpan, changes: SpanChanges | None) -> SpanChanges | None:
        assert changes is not None  # runs after _Tagging here
        changes.attributes["half"] = "applied"
        raise RuntimeError("enricher bug")


class _Tagging:
    def on_start(self, span: object, parent_context: object) -> None:
        return None

    def __call__(self, span: ReadableSpan, changes: SpanChanges | None) -> SpanChanges | None:
        changes = changes or SpanChanges()
        changes.attributes["tagged"] = "yes"
        return changes


class TestEnrichingProcessor:
    def _provider(self, *enrichers: object) -> tuple[TracerProvider, InMemorySpanExporter]:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(
            EnrichingSpanProcessor(SimpleSpanProcessor(exporter), enrichers)  # type: ignore[arg-type]
        )
        return provider, exporter

    def test_enricher_attributes_reach_the_exported_span(self) -> None:
        provider, exporter = self._provider(_Tagging())
        with provider.get_tracer("t").start_as_current_span("work") as span:
            span.set_attribute("own", 1)
        [exported] = exporter.get_finished_spans()
        assert exported.attributes == {"own": 1, "tagged": "yes"}

    def test_failing_enricher_is_logged_once_and_the_span_still_exported(
        self, warnings_seen: pytest.LogCaptureFixture
    ) -> None:
        """Changes recorded before the failure stay (enrichers protect before they find)."""
        _log.raise_internal_errors = False
        provider, exporter = self._provider(_Tagging(), _Exploding())
        tracer = provider.get_tracer("t")
        for _ in range(3):
            with tracer.start_as_current_span("work"):
                pass
        spans = exporter.get_finished_spans()
        assert len(spans) == 3
        assert all(s.attributes == {"half": "applied", "tagged": "yes"} for s in spans)
        assert warnings_seen.text.count("internal error in _Exploding") == 1


def _empty(self: object, span: object, parent_context: object = None) -> None:
    pass


def _documented(self: object, span: object, parent_context: object = None) -> None:
    """Only a docstring."""


def _returns(self: object, span: object, parent_context: object = None) -> int:
    return 1


def _stores(self: object, span: object, parent_context: object = None) -> None:
    span.seen = True  # type: ignore[attr-defined]


def _calls(self: object, span: object, parent_context: object = None) -> None:
    print(span)


class TestProcessorChain:
    @pytest.mark.parametrize(
        ("function", "empty"),
        [
            (_empty, True),
            (_documented, True),
            (SimpleSpanProcessor.on_start, True),
            (_returns, False),
            (_stores, False),
            (_calls, False),
            (len, False),  # no bytecode to read: assumed to do something
        ],
    )
    def test_only_empty_bodies_are_skipped(self, function: object, empty: bool) -> None:
        assert does_nothing(function) is empty

    def test_every_processor_still_sees_every_span_and_ours_exports_it(self) -> None:
        """The SDK's processors lose our empty placeholders, and our chain skips the
        batch processor's empty on_start: a processor the user adds still gets each
        span's start and end, and every span is exported and counted."""
        with OtlpSink() as sink:
            result = run_python(
                """
                import otel_excellence
                from opentelemetry import trace
                from opentelemetry.sdk.trace import SpanProcessor

                class Recorder(SpanProcessor):
                    starts = ends = 0
                    def on_start(self, span, parent_context=None):
                        Recorder.starts += 1
                    def on_end(self, span):
                        Recorder.ends += 1

                otel_excellence.configure()
                provider = trace.get_tracer_provider()
                provider.add_span_processor(Recorder())
                tracer = trace.get_tracer("chain")
                for n in range(5):
                    with tracer.start_as_current_span(f"span-{n}"):
                        pass
                names = [type(p).__name__ for p in provider._active_span_processor._span_processors]
                print(Recorder.starts, Recorder.ends, *names)
                """,
                {
                    "OTEL_SERVICE_NAME": "chain",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                },
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.split() == ["5", "5", "EnrichingSpanProcessor", "Recorder"]
            assert sink.wait_for(
                lambda: len([s for s in sink.spans() if s.name.startswith("span-")]) == 5
            )


class TestConfigureFromCode:
    def test_configure_exports_and_a_second_call_warns_once_and_does_nothing(self) -> None:
        with OtlpSink() as sink:
            result = run_python(
                """
                import otel_excellence
                from opentelemetry import trace
                first = otel_excellence.configure()
                second = otel_excellence.configure()
                third = otel_excellence.configure()
                with trace.get_tracer("nb").start_as_current_span("notebook-cell"):
                    pass
                print(first, second, third)
                """,
                {
                    "OTEL_SERVICE_NAME": "notebook",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": sink.http_endpoint,
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                },
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.split() == ["True", "False", "False"]
            assert result.stderr.count("already configured") == 1
            assert sink.wait_for(lambda: any(s.name == "notebook-cell" for s in sink.spans()))

    def test_configure_inside_an_instrumented_process_does_nothing(self) -> None:
        with OtlpSink() as sink:
            result = subprocess.run(
                [
                    f"{sys.prefix}/bin/opentelemetry-instrument",
                    sys.executable,
                    "-c",
                    "import otel_excellence; print(otel_excellence.configure())",
                ],
                env=clean_env(
                    {
                        "OTEL_SERVICE_NAME": "double",
                        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
                    }
                ),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "False"
        assert "already configured" in result.stderr

    def test_sdk_disabled_exports_nothing_and_the_app_runs(self) -> None:
        with OtlpSink() as sink:
            result = run_python(
                """
                import logging, otel_excellence
                from opentelemetry import trace
                otel_excellence.configure()
                with trace.get_tracer("t").start_as_current_span("off"):
                    logging.getLogger("x").warning("hello")
                print("app ran")
                """,
                {
                    "OTEL_SDK_DISABLED": "true",
                    "OTEL_SERVICE_NAME": "off",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
                },
            )
            assert result.returncode == 0, result.stderr
            assert "app ran" in result.stdout
            assert not sink.wait_for(lambda: bool(sink.trace_requests), timeout=1.5)
            assert not sink.log_requests

    def test_disabled_instrumentation_is_respected(self, tmp_path: object) -> None:
        with OtlpSink() as sink:
            result = run_python(
                f"""
                import otel_excellence, sqlalchemy as sa
                from opentelemetry import trace
                otel_excellence.configure()
                with trace.get_tracer("t").start_as_current_span("marker"):
                    with sa.create_engine("sqlite:///{tmp_path}/x.db").connect() as c:
                        c.execute(sa.text("SELECT 1"))
                """,
                {
                    "OTEL_SERVICE_NAME": "no-sql",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
                    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "sqlalchemy,sqlite3",
                },
            )
            assert result.returncode == 0, result.stderr
            assert sink.wait_for(lambda: any(s.name == "marker" for s in sink.spans()))
            assert [s.name for s in sink.spans()] == ["marker"]

    def test_bad_setting_in_configure_warns_and_the_app_runs(self) -> None:
        result = run_python(
            """
            import otel_excellence
            otel_excellence.configure(shutdown_timeout_ms="later")
            print("still running")
            """,
            {
                "OTEL_SERVICE_NAME": "bad",
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
            },
        )
        assert result.returncode == 0, result.stderr
        assert "still running" in result.stdout
        # The user wrote an argument: the warning names it (issue 14), once.
        assert "configure() argument shutdown_timeout_ms='later'" in result.stderr
        assert result.stderr.count("WARNING") == 1
