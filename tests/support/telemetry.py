"""In-process telemetry for fast tests: real SDK providers, in-memory outputs.

The span chain is the distro's own (``EnrichingSpanProcessor`` + ``SpanInsights``), so
what a test reads is what would be exported. End-to-end tests elsewhere prove the same
through a real OTLP receiver.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_excellence._config.settings import Settings
from otel_excellence._export.metrics import FastMetrics, readers_of
from otel_excellence._export.pipeline import EnrichingSpanProcessor
from otel_excellence._findings.error_rules import RULES
from otel_excellence._findings.errors import Classifier
from otel_excellence._findings.hooks import LibraryHooks
from otel_excellence._findings.insights import SpanInsights


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    insights: SpanInsights
    hooks: LibraryHooks
    classifier: Classifier
    _metrics: list[Any] = field(default_factory=list)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        matches = [s for s in self.spans() if s.name == name]
        assert len(matches) == 1, [s.name for s in self.spans()]
        return matches[0]

    def points(self, metric: str) -> list[Any]:
        """Data points of ``metric`` collected so far (cumulative)."""
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)
        return found

    def counter_total(self, metric: str, **attributes: Any) -> int:
        total = 0
        for point in self.points(metric):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += point.value
        return total

    def reset(self) -> None:
        self.exporter.clear()


def make_telemetry(settings: Settings | None = None) -> Telemetry:
    settings = settings or Settings()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instruments = FastMetrics()
    instruments.attach(*readers_of(meter_provider))
    classifier = Classifier(RULES)
    insights = SpanInsights(settings, classifier, instruments)
    hooks = LibraryHooks(instruments)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(EnrichingSpanProcessor(SimpleSpanProcessor(exporter), [insights]))
    return Telemetry(provider, exporter, reader, insights, hooks, classifier)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def iter_strings(span: ReadableSpan) -> Iterator[str]:
    """Every string a span would export: name, attributes, status, events."""
    yield span.name
    yield span.status.description or ""
    for value in (span.attributes or {}).values():
        yield str(value)
    for event in span.events:
        yield event.name
        for value in (event.attributes or {}).values():
            yield str(value)
