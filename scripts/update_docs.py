"""Regenerate the settings table in docs/configuration.md from _config/settings.py."""

from pathlib import Path

from otel_excellence._config.settings import render_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
START = "| Variable | Type | Default | Description |"
END = "\n## Standard OpenTelemetry variables"

text = DOC.read_text()
head, rest = text.split(START, 1)
_, tail = rest.split(END, 1)
DOC.write_text(head + render_markdown() + END + tail)
