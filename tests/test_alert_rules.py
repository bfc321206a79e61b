"""The Prometheus rule files: valid for promtool 3, unit-tested, documented, generated.

promtool is the one docker-compose.yml's release ships (3.14, built by `make prometheus`):
2.42 evaluates range windows differently, so unit tests written against it are wrong on
3.x. The unit tests themselves are tests/rules/*.test.yml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import promql
from tests.support.services import REPO, prometheus_tool
from tests.test_dashboards import RUNBOOK, RUNBOOK_URL, github_anchors, load_script

RULE_FILES = sorted((REPO / "deploy" / "rules").glob("*.rules.yml"))
UNIT_TESTS = sorted((REPO / "tests" / "rules").glob("*.test.yml"))
ALERTS = [
    (path.name, rule)
    for path in RULE_FILES
    for group in yaml.safe_load(path.read_text())["groups"]
    for rule in group["rules"]
    if "alert" in rule
]
# Every alert the issue asks for (issue 12), by the name it has here.
EXPECTED_ALERTS = {
    "ServiceAvailabilityBudgetBurn",  # SLO burn rate, availability
    "ServiceLatencyBudgetBurn",  # SLO burn rate, latency
    "SlowQuerySurge",
    "NPlusOnePatternNew",  # a new N+1 pattern
    "NPlusOnePatternSurge",  # a surging N+1 pattern
    "NonRetryableErrorSpike",
    "NewErrorFingerprintAfterDeploy",
    "ServiceStoppedSendingTelemetry",
    "OtelCollectorRefusingData",
    "OtelCollectorDroppingData",
    "OtelCollectorExportFailures",
    "OtelCollectorQueueNearCapacity",
    "OtelSdkTelemetryLoss",
}


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_tool("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_promtool_is_the_release_compose_runs() -> None:
    """The rules are checked by promtool 3.x, not by Debian's 2.42."""
    result = promtool("--version")
    assert re.search(r"promtool, version 3\.\d+\.\d+", result.stdout), result.stdout


def test_promtool_check_rules_passes() -> None:
    """Every rule file is valid for Prometheus 3 (syntax, templates, PromQL)."""
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_check_rules_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: an expression with a typo is rejected."""
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(RULE_FILES[0].read_text().replace("sum by", "sum byy", 1))
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0


def test_promtool_unit_tests_pass() -> None:
    """Each alert fires on its bad case and stays silent on the healthy ones (3.x)."""
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_a_unit_test_fails_when_an_alert_stops_firing(tmp_path: Path) -> None:
    """The unit tests can fail: with a threshold raised past the bad case, promtool says so."""
    rules = tmp_path / "deploy" / "rules"
    rules.mkdir(parents=True)
    for path in RULE_FILES:
        shutil.copy(path, rules)
    target = rules / "pipeline.rules.yml"
    target.write_text(target.read_text().replace("> 0.8", "> 0.95"))
    tests = tmp_path / "tests" / "rules"
    tests.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "rules" / "pipeline.test.yml", tests)
    result = promtool("test", "rules", str(tests / "pipeline.test.yml"), cwd=tmp_path)
    assert result.returncode != 0
    assert "OtelCollectorQueueNearCapacity" in result.stdout + result.stderr


def test_the_issue_s_alerts_all_exist() -> None:
    """Every alert issue 12 lists is defined, under the name the runbook uses."""
    assert {rule["alert"] for _, rule in ALERTS} == EXPECTED_ALERTS


def alert_tests() -> dict[str, dict[str, int]]:
    """Alert name -> how many unit-test evaluations expect it firing / silent."""
    seen: dict[str, dict[str, int]] = {}
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                counts = seen.setdefault(check["alertname"], {"firing": 0, "silent": 0})
                counts["firing" if check.get("exp_alerts") else "silent"] += 1
    return seen


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_every_alert_has_a_firing_and_a_silent_unit_test(name: str) -> None:
    """A bad case that makes it fire, a healthy one that keeps it silent."""
    counts = alert_tests().get(name, {"firing": 0, "silent": 0})
    assert counts["firing"] >= 1, f"{name}: no unit test where it fires"
    assert counts["silent"] >= 1, f"{name}: no unit test where it stays silent"


@pytest.mark.parametrize(("file", "rule"), ALERTS, ids=lambda x: x if isinstance(x, str) else "")
def test_every_alert_is_documented_and_classified(file: str, rule: dict[str, Any]) -> None:
    """summary, description and a runbook_url to an existing heading of docs/runbook.md;
    a severity of page or ticket."""
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_URL), url
    assert url.removeprefix(RUNBOOK_URL) in github_anchors(RUNBOOK.read_text()), url
    assert url.removeprefix(RUNBOOK_URL) == rule["alert"].lower()
    assert rule["labels"]["severity"] in {"page", "ticket"}


def test_each_runbook_section_says_what_it_means_what_to_check_and_what_to_do() -> None:
    """The runbook has a section per alert, each with its three parts."""
    sections = re.split(r"^## ", RUNBOOK.read_text(), flags=re.MULTILINE)[1:]
    by_title = {section.splitlines()[0].strip(): section for section in sections}
    assert set(by_title) == EXPECTED_ALERTS
    for title, section in by_title.items():
        for part in ("**Means.**", "**Check first.**", "**Do.**"):
            assert part in section, f"{title}: no {part}"


@pytest.mark.parametrize(("file", "rule"), ALERTS, ids=lambda x: x if isinstance(x, str) else "")
def test_ratio_alerts_are_held_for_minutes(file: str, rule: dict[str, Any]) -> None:
    """A ratio over a threshold must hold for minutes before it fires ("any failure" pages
    on noise). Alerts that compare windows ("new", "stopped") hold by their windows."""
    node = promql.parse(rule["expr"])
    ratio = any("/" in str(part) for part in promql.data_operands(node))
    if ratio:
        hold = rule.get("for", "0m")
        minutes = int(hold[:-1]) * {"m": 1, "h": 60}[hold[-1]]
        assert minutes >= 2, f"{rule['alert']}: for {hold}"


FAILURE_ONLY_COUNTERS = (
    'status_code="STATUS_CODE_ERROR"',
    "otel_excellence_errors_total",
    "otel_excellence_db_slow_queries_total",
    'error_type!=""',
)


def test_ratios_are_guarded_against_missing_failure_counters() -> None:
    """Failure counters exist only after the first failure: every recorded ratio or loss
    built on one reads 0 instead of nothing (`failures or 0 * total`)."""
    recordings = [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule and ("ratio" in rule["record"] or "lost" in rule["record"])
    ]
    on_failures = [
        rule for rule in recordings if any(c in rule["expr"] for c in FAILURE_ONLY_COUNTERS)
    ]
    assert len(on_failures) >= 9
    for rule in on_failures:
        assert re.search(r"\bor\s+0 \*", rule["expr"]), rule["record"]


def test_the_slo_rules_are_generated_from_the_spec() -> None:
    """deploy/rules/slo.rules.yml is scripts/slo_rules.py's output for deploy/slos.yaml."""
    generator = load_script("slo_rules")
    expected = generator.render(generator.load())
    assert (REPO / "deploy" / "rules" / "slo.rules.yml").read_text() == expected


def test_the_slo_alerts_use_the_sre_workbook_windows() -> None:
    """Page on 1h/5m x14.4 or 6h/30m x6; ticket on 1d/2h x3 or 3d/6h x1 (30-day budget)."""
    slo = yaml.safe_load((REPO / "deploy" / "rules" / "slo.rules.yml").read_text())
    rules = [r for g in slo["groups"] for r in g["rules"] if r.get("alert")]
    availability = {
        r["labels"]["severity"]: r["expr"] for r in rules if r["labels"]["slo"] == "availability"
    }
    budget = 1 - 0.995
    for severity, pairs in (
        ("page", [("1h", "5m", 14.4), ("6h", "30m", 6)]),
        ("ticket", [("1d", "2h", 3), ("3d", "6h", 1)]),
    ):
        for long, short, factor in pairs:
            threshold = f"{factor * budget:.10g}"
            for window in (long, short):
                assert (
                    f'slo:sli_error:ratio_rate{window}{{slo="availability"}} > {threshold}'
                    in availability[severity]
                )


def test_the_slo_latency_threshold_is_a_span_metrics_bucket() -> None:
    """The `le` of the latency SLI is one of the gateway's histogram buckets (or it matches
    no series at all)."""
    spec = yaml.safe_load((REPO / "deploy" / "slos.yaml").read_text())
    gateway = yaml.safe_load((REPO / "collector-config" / "gateway.yaml").read_text())
    buckets = gateway["connectors"]["span_metrics"]["histogram"]["explicit"]["buckets"]
    seconds = {
        str(float(b[:-2]) / 1000 if b.endswith("ms") else float(b[:-1])).removesuffix(".0")
        for b in buckets
    }
    for slo in spec["slos"]:
        if slo.get("good"):
            [le] = re.findall(r'le="([^"]+)"', slo["good"])
            assert le in seconds, (le, seconds)
