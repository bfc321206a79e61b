"""docker-compose.yml cannot run here (no Docker engine); what can be checked, is."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import REPO, find_tool, missing

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _services() -> dict[str, Any]:
    return dict(COMPOSE["services"])


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_image_is_pinned_to_a_version(name: str) -> None:
    image = _services()[name].get("image", "")
    assert ":" in image, f"{name}: {image!r} has no tag"
    assert not image.endswith((":latest", ":main")), f"{name}: {image!r} is not a version"


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_mounted_config_is_a_file_in_this_repository(name: str) -> None:
    for volume in _services()[name].get("volumes", []):
        source = volume.split(":", 1)[0]
        if source.startswith("./"):
            assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_the_gateway_runs_the_tested_config() -> None:
    gateway = _services()["gateway"]
    assert (
        "./collector-config/gateway.yaml:/etc/otelcol-excellence/gateway.yaml:ro"
        in gateway["volumes"]
    )
    assert gateway["command"][-1] == "/etc/otelcol-excellence/gateway.yaml"
    dockerfile = (REPO / "collector-config" / "Dockerfile").read_text()
    assert "scripts/build-collector.sh" in dockerfile  # the same build as `make collector`


def test_prometheus_config_passes_promtool() -> None:
    promtool = find_tool("promtool")
    if promtool is None:
        missing("promtool", "`make test` installs the prometheus package")
    result = subprocess.run(
        [str(promtool), "check", "config", str(REPO / "deploy" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_datasources_link_traces_logs_and_metrics() -> None:
    path = Path(REPO / "grafana" / "provisioning" / "datasources" / "datasources.yaml")
    sources = {s["uid"]: s for s in yaml.safe_load(path.read_text())["datasources"]}
    assert sources["tempo"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert sources["tempo"]["jsonData"]["tracesToMetrics"]["datasourceUid"] == "prometheus"
    assert sources["loki"]["jsonData"]["derivedFields"][0]["datasourceUid"] == "tempo"
    assert (
        sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"]
        == "tempo"
    )
