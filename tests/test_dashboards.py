"""The Grafana dashboards, checked statically (Grafana itself is never run here).

The committed JSON is what scripts/dashboards.py generates; each dashboard is valid, with
unique panel ids, units, the service and environment variables, datasources that the
provisioning defines, queries that parse as PromQL, exemplars on latency, and runbook
links that resolve. tests/test_dashboards_e2e.py runs every query against real data.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.support import promql
from tests.support.services import REPO

DATASOURCES = {
    source["uid"]: source["type"]
    for source in yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text()
    )["datasources"]
}
BOARDS = promql.dashboards()
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/otel-excellence/otel-excellence/blob/main/docs/runbook.md#"
WITHOUT_UNITS = {"row", "logs", "text"}  # panels that show no numbers


def load_script(name: str) -> ModuleType:
    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def datasource_refs(node: Any) -> list[dict[str, str]]:
    """Every {"type", "uid"} datasource reference anywhere in a dashboard."""
    found = []
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict):
            found.append(source)
        for value in node.values():
            found += datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            found += datasource_refs(value)
    return found


def all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, panel) for name, board in BOARDS.items() for panel in promql.panels(board)]


def test_the_committed_json_is_what_the_source_generates() -> None:
    """grafana/dashboards/*.json equal scripts/dashboards.py's output: one source of truth."""
    generated = load_script("dashboards").render()
    committed = {path.name: path.read_text() for path in promql.DASHBOARDS.glob("*.json")}
    assert set(committed) == set(generated)
    stale = [name for name, text in generated.items() if committed[name] != text]
    assert not stale, f"{stale} differ from scripts/dashboards.py: run `make dashboards`"


def test_the_five_dashboards_of_the_issue_exist() -> None:
    """Service overview, database, errors as issues, cache, telemetry pipeline."""
    assert {board["uid"] for board in BOARDS.values()} == {
        "otel-excellence-service-overview",
        "otel-excellence-database",
        "otel-excellence-errors",
        "otel-excellence-cache",
        "otel-excellence-pipeline",
    }
    assert all(board["description"] and board["title"] for board in BOARDS.values())


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panel_ids_are_unique_and_set(name: str) -> None:
    """Grafana keys panels (and links to them) by id: unset or repeated ids break that."""
    ids = [panel["id"] for panel in promql.panels(BOARDS[name])]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_dashboard_filters_by_service_and_environment(name: str) -> None:
    """Both variables exist, and every Prometheus query of a service uses them."""
    variables = {v["name"] for v in BOARDS[name]["templating"]["list"]}
    assert {"service", "environment"} <= variables
    for panel in promql.panels(BOARDS[name]):
        for target in panel.get("targets", []):
            text = target.get("expr") or target.get("query") or ""
            if "otelcol_" in text:
                continue  # the gateways' own metrics: filtered by $gateway instead
            assert "$service" in text, f"{panel['title']}: {text}"
            kind = (target.get("datasource") or panel.get("datasource") or {}).get("type")
            if kind != "tempo":  # TraceQL: a missing attribute never matches, even `.*`
                assert "$environment" in text, f"{panel['title']}: {text}"


@pytest.mark.parametrize(("name", "panel"), all_panels(), ids=lambda x: str(x)[:60])
def test_every_panel_that_shows_numbers_has_a_unit(name: str, panel: dict[str, Any]) -> None:
    """A number without a unit is a guess: seconds or milliseconds, ratio or percent."""
    if panel["type"] in WITHOUT_UNITS:
        return
    assert panel["fieldConfig"]["defaults"].get("unit"), f"{name}: {panel['title']}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_datasource_uids_are_the_provisioned_ones(name: str) -> None:
    """Every datasource a panel, query or variable names is provisioned, by uid and type."""
    references = datasource_refs(BOARDS[name])
    assert references
    for reference in references:
        assert DATASOURCES.get(reference["uid"]) == reference["type"], reference


def test_a_wrong_datasource_uid_would_be_caught() -> None:
    """The check above can fail: a uid that is not provisioned is found."""
    broken = json.loads(json.dumps(BOARDS["cache.json"]).replace('"prometheus"', '"prom"'))
    assert any(DATASOURCES.get(r["uid"]) != r["type"] for r in datasource_refs(broken))


def test_every_prometheus_query_parses_as_promql() -> None:
    """With Grafana's variables substituted, every expression is valid PromQL."""
    expressions = promql.dashboard_expressions()
    assert len(expressions) > 40
    for expression in expressions:
        promql.parse(expression.substituted())  # raises on a syntax error
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        promql.parse("sum by (job) (rate(x[5m])")


def test_latency_panels_show_exemplars_that_link_to_traces() -> None:
    """Exemplars are asked for on latency, and Prometheus' datasource maps them to Tempo."""
    with_exemplars = [
        panel["title"]
        for _, panel in all_panels()
        for target in panel.get("targets", [])
        if target.get("exemplar") and "duration_seconds_bucket" in target["expr"]
    ]
    assert len(with_exemplars) >= 2
    sources = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text()
    )["datasources"]
    [prometheus] = [s for s in sources if s["uid"] == "prometheus"]
    [destination] = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert destination == {"name": "trace_id", "datasourceUid": "tempo"}


def runbook_links() -> list[tuple[str, str]]:
    return [
        (panel["title"], link["url"])
        for _, panel in all_panels()
        for link in panel.get("links", [])
        if link["title"].startswith("Runbook")
    ]


def test_panel_runbook_links_resolve_to_runbook_headings() -> None:
    """Each runbook link of a panel names an alert and lands on its runbook section."""
    anchors = github_anchors(RUNBOOK.read_text())
    links = runbook_links()
    assert links
    for title, url in links:
        assert url.startswith(RUNBOOK_URL), (title, url)
        assert url.removeprefix(RUNBOOK_URL) in anchors, (title, url)


def test_every_alert_is_linked_from_a_panel() -> None:
    """Each alert has a panel that shows what it watches, linking to its runbook."""
    alerts = {
        rule["alert"]: rule["annotations"]["runbook_url"]
        for content in promql.rule_files().values()
        for group in content["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    linked = {url for _, url in runbook_links()}
    assert sorted(name for name, url in alerts.items() if url not in linked) == []


def test_traces_and_logs_panels_use_attributes_of_the_telemetry_contract() -> None:
    """TraceQL and LogQL cannot run here (Tempo and Loki are not): the otel_excellence
    attributes they filter on must be ones docs/telemetry.md promises (Loki stores them
    as structured metadata, with underscores)."""
    contract = set(
        re.findall(r"`(otel_excellence\.[a-z_.]+)`", (REPO / "docs" / "telemetry.md").read_text())
    )
    traceql, logql = set(), set()
    for _, panel in all_panels():
        for target in panel.get("targets", []):
            kind = (target.get("datasource") or panel.get("datasource") or {}).get("type")
            if kind == "tempo":
                traceql |= set(re.findall(r"span\.(otel_excellence\.[a-z_.]+)", target["query"]))
            elif kind == "loki":
                logql |= set(re.findall(r"\b(otel_excellence_[a-z_]+)", target["expr"]))
    assert traceql and logql
    assert traceql <= contract
    assert logql <= {attribute.replace(".", "_") for attribute in contract}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_the_service_variable_offers_service_names(name: str) -> None:
    """The Service variable lists service.name, cut from `job` (namespace/name) by its
    regex, and queries put the namespace back as an optional `job` prefix."""
    [variable] = [v for v in BOARDS[name]["templating"]["list"] if v["name"] == "service"]
    pattern = re.compile(variable["regex"].strip("/").replace("(?<", "(?P<"))  # JS syntax
    for job, service in (("shop/checkout", "checkout"), ("checkout", "checkout")):
        match = pattern.fullmatch(job)
        assert match and match.group("value") == service
        assert re.fullmatch(f"(.+/)?{service}", job)
    assert "otelcol-excellence-gateway" in variable["query"]["query"]  # excluded: not a service
