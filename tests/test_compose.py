"""docker-compose.yml cannot run here (no Docker engine); what can be checked, is."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import (
    PROMETHEUS_FLAGS,
    REPO,
    prometheus_tool,
    prometheus_version,
)

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
    """promtool 3 accepts deploy/prometheus.yml and the rule files it loads."""
    result = subprocess.run(
        [prometheus_tool("promtool"), "check", "config", str(REPO / "deploy" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(list((REPO / 'deploy' / 'rules').glob('*.rules.yml')))} rule files found" in (
        result.stdout
    )


def test_prometheus_runs_the_release_and_the_flags_the_tests_use() -> None:
    """Compose runs the Prometheus release scripts/build-prometheus.sh builds for the tests,
    with the same flags: remote write in, and exemplars kept (dropped silently without)."""
    prometheus = _services()["prometheus"]
    assert prometheus["image"] == f"prom/prometheus:v{prometheus_version()}"
    assert set(PROMETHEUS_FLAGS) <= set(prometheus["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    stack = (REPO / "scripts" / "stack.py").read_text()  # `make stack`, without Docker
    assert all(f'"{flag}"' in stack for flag in PROMETHEUS_FLAGS)


def test_prometheus_loads_the_tested_rule_files_and_accepts_late_samples() -> None:
    """The rules directory is mounted where deploy/prometheus.yml looks for it, and late
    remote writes (a gateway catching up after an outage) are accepted."""
    prometheus = _services()["prometheus"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "./deploy/rules:/etc/prometheus/rules:ro" in prometheus["volumes"]
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.rules.yml"]
    window = config["storage"]["tsdb"]["out_of_order_time_window"]
    assert window.endswith("m") and int(window[:-1]) >= 10


def test_grafana_provisions_the_generated_dashboards() -> None:
    """The dashboard provider reads the directory compose mounts grafana/dashboards at."""
    provisioning = REPO / "grafana" / "provisioning" / "dashboards" / "otel-excellence.yaml"
    [provider] = yaml.safe_load(provisioning.read_text())["providers"]
    assert provider["type"] == "file"
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in _services()["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert list((REPO / "grafana" / "dashboards").glob("*.json"))


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


def test_the_prometheus_build_is_cached_and_reports_its_release() -> None:
    """A second `make prometheus` reuses the binaries without Go, and they report the
    release compose pins (the version is set at link time)."""
    result = subprocess.run(
        ["scripts/build-prometheus.sh"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin"}
        | {k: os.environ[k] for k in ("HOME", "XDG_CACHE_HOME") if k in os.environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "building" not in result.stderr
    directory = Path(result.stdout.strip())
    assert directory.name == f"prometheus-{prometheus_version()}"
    for tool in ("prometheus", "promtool"):
        version = subprocess.run(
            [str(directory / tool), "--version"], capture_output=True, text=True, check=True
        )
        assert f"{tool}, version {prometheus_version()} " in version.stdout
