"""Regenerate the settings tables in docs/configuration.md from _config/settings.py and
_config/sdk_settings.py."""

from pathlib import Path

from otel_excellence._config import sdk_settings
from otel_excellence._config.settings import render_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
START = "| Variable | Type | Default | Description |"
END = "\n## Standard OpenTelemetry variables"

text = DOC.read_text()
head, rest = text.split(START, 1)
_, tail = rest.split(END, 1)
text = head + render_markdown() + END + tail

SDK_START = "| Variable | SDK default | A usable value |"
head, rest = text.split(SDK_START, 1)
_, tail = rest.split("\n\n", 1) if "\n\n" in rest else (rest, "")
DOC.write_text(head + sdk_settings.render_markdown() + "\n" + tail)
