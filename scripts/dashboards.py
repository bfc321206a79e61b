"""The Grafana dashboards, as code: the one source of grafana/dashboards/*.json.

    python scripts/dashboards.py          write grafana/dashboards/*.json (`make dashboards`)
    python scripts/dashboards.py --check  exit 1 if a committed file differs (as the tests do)

Built with grafana-foundation-sdk (typed builders for Grafana's dashboard schema). Every
PromQL expression uses the names our gateway really writes to Prometheus (see
docs/telemetry.md and docs/dashboards.md): application metrics carry `job`
(service.namespace/service.name) and `instance` (service.instance.id); the environment
and the version live on `target_info`, so the environment filter is a join with it;
span metrics carry a `collector_instance_id` that every query aggregates away. A panel
behind an alert links to that alert's runbook section (read from deploy/rules/).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The SDK marks the classic (v1) dashboard schema deprecated in favour of v2; file
# provisioning in Grafana 13 reads v1 JSON, which is what we ship.
warnings.filterwarnings("ignore", category=DeprecationWarning, module="grafana_foundation_sdk")

from grafana_foundation_sdk.builders import (  # noqa: E402 - after the warnings filter
    common as common_builders,
)
from grafana_foundation_sdk.builders import (  # noqa: E402
    dashboard,
    logs,
    loki,
    prometheus,
    stat,
    table,
    tempo,
    timeseries,
)
from grafana_foundation_sdk.cog.builder import Builder  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.models import common  # noqa: E402
from grafana_foundation_sdk.models import dashboard as model  # noqa: E402
from grafana_foundation_sdk.models import prometheus as prom_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "grafana" / "dashboards"
RULES = REPO / "deploy" / "rules"
SLOS = REPO / "deploy" / "slos.yaml"

PROMETHEUS = common.DataSourceRef(type_val="prometheus", uid="prometheus")
TEMPO = common.DataSourceRef(type_val="tempo", uid="tempo")
LOKI = common.DataSourceRef(type_val="loki", uid="loki")

TAG = "otel-excellence"
GATEWAY_JOB = "otelcol-excellence-gateway"  # the scrape job of collector-config/gateway.yaml

# Selectors shared by the queries. `$service` is service.name; `job` is
# service.namespace/service.name, hence the optional namespace prefix.
SERVICE = 'job=~"(.+/)?$service"'
REQUESTS = 'span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"'
IN_ENVIRONMENT = 'deployment_environment_name=~"$environment"'
ENVIRONMENT = f"target_info{{{IN_ENVIRONMENT}}}"
GATEWAY = 'instance=~"$gateway"'
SIGNALS = (("spans", "traces"), ("metric_points", "metrics"), ("log_records", "logs"))


def in_environment(expr: str) -> str:
    """Keep the series of instances in the selected environment (a join on target_info)."""
    return f"({expr} and on (job, instance) {ENVIRONMENT})"


def job_in_environment(expr: str) -> str:
    """The same for series aggregated by job (recording rules keep no instance)."""
    return f"({expr} and on (job) group by (job) ({ENVIRONMENT}))"


def guarded(failures: str, total: str) -> str:
    """A failure counter exists only after the first failure: read its absence as 0."""
    return f"({failures} or 0 * {total})"


# --- alerts and runbooks ---------------------------------------------------------------


def runbook_urls() -> dict[str, str]:
    """Alert name -> runbook_url, from the rule files Prometheus loads."""
    urls: dict[str, str] = {}
    for path in sorted(RULES.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    urls[rule["alert"]] = rule["annotations"]["runbook_url"]
    return urls


RUNBOOKS = runbook_urls()
OBJECTIVES = {slo["name"]: slo["objective"] for slo in yaml.safe_load(SLOS.read_text())["slos"]}


def runbook(*alerts: str) -> list[Builder[model.DashboardLink]]:
    return [
        dashboard.DashboardLink(f"Runbook: {alert}")
        .type(model.DashboardLinkType.LINK)
        .url(RUNBOOKS[alert])
        .tooltip(f"What the {alert} alert means and what to do")
        .target_blank(True)
        for alert in alerts
    ]


# --- queries and panels ----------------------------------------------------------------


def promql(expr: str, legend: str = "", *, ref: str = "A", exemplar: bool = False) -> Any:
    query = (
        prometheus.Dataquery()
        .datasource(PROMETHEUS)
        .ref_id(ref)
        .expr(expr)
        .legend_format(legend or "__auto")
    )
    return query.exemplar(True) if exemplar else query


def promql_table(expr: str, ref: str) -> Any:
    return (
        prometheus.Dataquery()
        .datasource(PROMETHEUS)
        .ref_id(ref)
        .expr(expr)
        .instant()
        .format(prom_model.PromQueryFormat.TABLE)
    )


def legend() -> Any:
    return (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
    )


def series(
    title: str,
    description: str,
    unit: str,
    *queries: Any,
    links: Iterable[Builder[model.DashboardLink]] = (),
    stacked: bool = False,
    width: int = 12,
) -> Any:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .targets(list(queries))
        .legend(legend())
        .span(width)
        .height(8)
        .fill_opacity(10)
        .links(list(links))
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def single(
    title: str,
    description: str,
    unit: str,
    query: Any,
    *,
    links: Iterable[Builder[model.DashboardLink]] = (),
    width: int = 6,
) -> Any:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .with_target(query)
        .span(width)
        .height(4)
        .links(list(links))
    )


def grid(
    title: str, description: str, unit: str, *queries: Any, width: int = 24, height: int = 9
) -> Any:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .targets(list(queries))
        .span(width)
        .height(height)
    )


def organize(
    renames: dict[str, str], hidden: Iterable[str] = ("Time",)
) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": dict.fromkeys(hidden, True), "renameByName": renames},
    )


def merge() -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val="merge", options={})


# --- variables -------------------------------------------------------------------------


def _query_variable(name: str, label: str, description: str, query: str) -> Any:
    """A multi-value Prometheus query variable, "All" meaning every value."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(PROMETHEUS)
        .query({"qryType": 1, "query": query})
        .definition(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def environment_variable() -> Any:
    return _query_variable(
        "environment",
        "Environment",
        "deployment.environment.name, from target_info",
        "label_values(target_info, deployment_environment_name)",
    ).sort(model.VariableSort.ALPHABETICAL_ASC)


def service_variable() -> Any:
    query = f'label_values(target_info{{{IN_ENVIRONMENT},job!="{GATEWAY_JOB}"}}, job)'
    return (
        _query_variable(
            "service",
            "Service",
            "service.name (the `job` label is service.namespace/service.name)",
            query,
        )
        .regex("/^(?:.*\\/)?(?<value>[^/]+)$/")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def gateway_variable() -> Any:
    query = f'label_values(otelcol_process_uptime_total{{job="{GATEWAY_JOB}"}}, instance)'
    return _query_variable(
        "gateway", "Gateway", "A gateway's service.instance.id (new at each start)", query
    )


def fingerprint_variable() -> Any:
    errors = f"otel_excellence_errors_total{{{SERVICE}}}"
    query = f"label_values({errors}, otel_excellence_error_fingerprint)"
    return _query_variable(
        "fingerprint",
        "Error fingerprint",
        "Choose one (or follow a link in the table) for its traces and logs",
        query,
    )


# --- dashboards ------------------------------------------------------------------------


@dataclass
class Board:
    uid: str
    title: str
    question: str
    variables: list[Any]
    rows: list[tuple[str, list[Any]]] = field(default_factory=list)

    def build(self) -> dict[str, Any]:
        board = (
            dashboard.Dashboard(self.title)
            .uid(self.uid)
            .description(self.question)
            .tags([TAG])
            .time("now-1h", "now")
            .refresh("30s")
            .timezone("browser")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .variables(self.variables)
            .link(
                dashboard.DashboardLink("otel-excellence")
                .type(model.DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )
        for title, panels in self.rows:
            board = board.with_row(dashboard.Row(title))
            for panel in panels:
                board = board.with_panel(panel)
        data: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
        # Ids: the SDK leaves them unset (0); Grafana needs them unique within a dashboard.
        for number, panel in enumerate(data["panels"], start=1):
            panel["id"] = number
        return data


def service_overview() -> Board:
    calls = f"traces_span_metrics_calls_total{{{SERVICE},{REQUESTS}}}"
    failed = (
        f'traces_span_metrics_calls_total{{{SERVICE},{REQUESTS},status_code="STATUS_CODE_ERROR"}}'
    )
    buckets = f"traces_span_metrics_duration_seconds_bucket{{{SERVICE},{REQUESTS}}}"

    def rate(selector: str, by: str) -> str:
        return f"sum by ({by}) ({in_environment(f'rate({selector}[$__rate_interval])')})"

    def quantile(q: str, by: str) -> str:
        return f"histogram_quantile({q}, {rate(buckets, by + ', le')})"

    def burn(slo: str) -> str:
        budget = f"{1 - OBJECTIVES[slo]:.10g}"
        recorded = f'slo:sli_error:ratio_rate1h{{slo="{slo}",{SERVICE}}}'
        return f"{job_in_environment(recorded)} / {budget}"

    error_ratio = (
        f"{guarded(rate(failed, 'job, span_name'), '0 * ' + rate(calls, 'job, span_name'))}"
        f" / {rate(calls, 'job, span_name')}"
    )
    return Board(
        uid="otel-excellence-service-overview",
        title="Service overview",
        question="Is each service up to its objectives: how much traffic, how many "
        "failures, how slow, per service and operation? (RED from span metrics)",
        variables=[environment_variable(), service_variable()],
        rows=[
            (
                "Now",
                [
                    single(
                        "Requests per second",
                        "Server and consumer spans of the selected services.",
                        "reqps",
                        promql(f"sum({in_environment(f'rate({calls}[$__rate_interval])')})"),
                    ),
                    single(
                        "Failed requests",
                        "Share of server and consumer spans with status ERROR.",
                        "percentunit",
                        promql(
                            f"{guarded(rate(failed, 'job'), '0 * ' + rate(calls, 'job'))}"
                            f" / {rate(calls, 'job')}"
                        ),
                        links=runbook("ServiceAvailabilityBudgetBurn"),
                    ),
                    single(
                        "p95 latency",
                        "95th percentile duration of server and consumer spans.",
                        "s",
                        promql(quantile("0.95", "job")),
                        links=runbook("ServiceLatencyBudgetBurn"),
                    ),
                    single(
                        "Error-budget burn rate (1h)",
                        "How fast the 30-day availability budget burns: 1 spends it in exactly "
                        "30 days; the page threshold is 14.4.",
                        "suffix:x",
                        promql(burn("availability")),
                        links=runbook("ServiceAvailabilityBudgetBurn"),
                    ),
                ],
            ),
            (
                "Rate, errors, duration by operation",
                [
                    series(
                        "Requests per second by operation",
                        "Span metrics (every span, before tail sampling), by span name.",
                        "reqps",
                        promql(rate(calls, "job, span_name"), "{{job}} {{span_name}}"),
                    ),
                    series(
                        "Failed share by operation",
                        "Failed server and consumer spans over all, by span name.",
                        "percentunit",
                        promql(error_ratio, "{{job}} {{span_name}}"),
                        links=runbook("ServiceAvailabilityBudgetBurn"),
                    ),
                    series(
                        "Latency p50 / p95 / p99 by service",
                        "Click an exemplar (a dot) to open the trace behind it in Tempo.",
                        "s",
                        promql(quantile("0.5", "job"), "p50 {{job}}", ref="A"),
                        promql(quantile("0.95", "job"), "p95 {{job}}", ref="B", exemplar=True),
                        promql(quantile("0.99", "job"), "p99 {{job}}", ref="C", exemplar=True),
                        links=runbook("ServiceLatencyBudgetBurn"),
                    ),
                    series(
                        "p95 latency by operation",
                        "Click an exemplar to open a trace of that operation.",
                        "s",
                        promql(
                            quantile("0.95", "job, span_name"),
                            "{{job}} {{span_name}}",
                            exemplar=True,
                        ),
                        links=runbook("ServiceLatencyBudgetBurn"),
                    ),
                ],
            ),
            (
                "Service level objectives",
                [
                    series(
                        "Availability budget burn rate (1h)",
                        f"Objective {OBJECTIVES['availability']:.2%} over 30 days; "
                        "pages at 14.4 (1h and 5m) or 6 (6h and 30m).",
                        "suffix:x",
                        promql(burn("availability"), "{{job}}"),
                        links=runbook("ServiceAvailabilityBudgetBurn"),
                    ),
                    series(
                        "Latency budget burn rate (1h)",
                        f"Objective {OBJECTIVES['latency']:.0%} of requests under 500 ms over "
                        "30 days; pages at 14.4 (1h and 5m) or 6 (6h and 30m).",
                        "suffix:x",
                        promql(burn("latency"), "{{job}}"),
                        links=runbook("ServiceLatencyBudgetBurn"),
                    ),
                ],
            ),
        ],
    )


def database() -> Board:
    ops = f"db_client_operation_duration_seconds_count{{{SERVICE}}}"
    buckets = f"db_client_operation_duration_seconds_bucket{{{SERVICE}}}"
    seconds = f"db_client_operation_duration_seconds_sum{{{SERVICE}}}"
    failed = f'db_client_operation_duration_seconds_count{{{SERVICE},error_type!=""}}'
    slow = f"otel_excellence_db_slow_queries_total{{{SERVICE}}}"
    n_plus_one = f"otel_excellence_db_n_plus_one_total{{{SERVICE}}}"
    pattern = "job, otel_excellence_route, otel_excellence_db_n_plus_one_statement, db_system_name"

    def rate(selector: str, by: str, window: str = "$__rate_interval") -> str:
        return f"sum by ({by}) ({in_environment(f'rate({selector}[{window}])')})"

    def increase(selector: str, by: str) -> str:
        return f"sum by ({by}) ({in_environment(f'increase({selector}[$__range])')})"

    return Board(
        uid="otel-excellence-database",
        title="Database",
        question="Which statements make the services slow: duration by system and "
        "operation, slow queries, N+1 patterns by statement and route, where the time goes?",
        variables=[environment_variable(), service_variable()],
        rows=[
            (
                "Operations (db.client.operation.duration)",
                [
                    series(
                        "Operations per second by system and operation",
                        "Every SQL statement and Redis command, one point each.",
                        "ops",
                        promql(
                            rate(ops, "db_system_name, db_operation_name"),
                            "{{db_system_name}} {{db_operation_name}}",
                        ),
                    ),
                    series(
                        "p95 duration by system and operation",
                        "From the db.client.operation.duration histogram.",
                        "s",
                        promql(
                            "histogram_quantile(0.95, "
                            f"{rate(buckets, 'db_system_name, db_operation_name, le')})",
                            "{{db_system_name}} {{db_operation_name}}",
                        ),
                        links=runbook("SlowQuerySurge"),
                    ),
                    series(
                        "Failed operations per second by error type",
                        "Operations that raised, by error.type (present from the first failure).",
                        "ops",
                        promql(
                            rate(failed, "db_system_name, error_type"),
                            "{{db_system_name}} {{error_type}}",
                        ),
                    ),
                    grid(
                        "Top operations by total time",
                        "Where the database time goes in the selected range: system, "
                        "database and operation (statement texts are on the traces: see "
                        "the slow statements below).",
                        "s",
                        promql_table(
                            "topk(10, "
                            + increase(
                                seconds, "job, db_system_name, db_namespace, db_operation_name"
                            )
                            + ")",
                            "A",
                        ),
                        width=12,
                        height=8,
                    ).with_transformation(organize({"Value": "Total time"})),
                ],
            ),
            (
                "Slow queries",
                [
                    series(
                        "Slow queries per second",
                        "Operations at or above OTEL_EXCELLENCE_SLOW_DB_THRESHOLD_MS.",
                        "ops",
                        promql(
                            rate(slow, "job, db_system_name, db_operation_name"),
                            "{{job}} {{db_system_name}} {{db_operation_name}}",
                        ),
                        links=runbook("SlowQuerySurge"),
                    ),
                    series(
                        "Slow share (10m)",
                        "Slow operations over all operations; SlowQuerySurge fires above 5% "
                        "and twice the day before.",
                        "percentunit",
                        promql(
                            job_in_environment(
                                "job_db_operation:otel_excellence_db_slow_queries:ratio_rate10m"
                                f"{{{SERVICE}}}"
                            ),
                            "{{job}} {{db_system_name}} {{db_operation_name}}",
                        ),
                        links=runbook("SlowQuerySurge"),
                    ),
                    grid(
                        "Slow statements (sampled traces)",
                        "Database spans flagged otel_excellence.db.slow, with their "
                        "sanitized statement; the gateway keeps every such trace.",
                        "ms",
                        tempo.Dataquery()
                        .datasource(TEMPO)
                        .ref_id("A")
                        .query_type("traceql")
                        .query(
                            "{ span.otel_excellence.db.slow = true"
                            ' && resource.service.name =~ "$service" }'
                            " | select(span.db.query.text, span.db.statement, span.db.system.name)"
                        )
                        .limit(20),
                    ).datasource(TEMPO),
                ],
            ),
            (
                "N+1 patterns",
                [
                    grid(
                        "N+1 patterns by statement and route",
                        "Requests in the selected range that ran one statement per row, by "
                        "route (http.route of the request, else its span name) and statement.",
                        "short",
                        promql_table(f"sort_desc({increase(n_plus_one, pattern)})", "A"),
                        width=24,
                    )
                    .with_transformation(
                        organize(
                            {
                                "otel_excellence_route": "Route",
                                "otel_excellence_db_n_plus_one_statement": "Statement",
                                "db_system_name": "System",
                                "Value": "Requests with the pattern",
                            }
                        )
                    )
                    .links(runbook("NPlusOnePatternNew", "NPlusOnePatternSurge")),
                    series(
                        "N+1 patterns found per minute by route",
                        "One per request (or task) whose statements repeat per row.",
                        "short",
                        promql(
                            "60 * " + rate(n_plus_one, "job, otel_excellence_route"),
                            "{{job}} {{otel_excellence_route}}",
                        ),
                        links=runbook("NPlusOnePatternNew", "NPlusOnePatternSurge"),
                        width=24,
                    ),
                ],
            ),
        ],
    )


def errors() -> Board:
    chosen = 'otel_excellence_error_fingerprint=~"$fingerprint"'
    errors_selector = f"otel_excellence_errors_total{{{SERVICE},{chosen}}}"
    every_error = f"otel_excellence_errors_total{{{SERVICE}}}"
    issue = (
        "job, service_version, error_type, otel_excellence_error_fingerprint, "
        "otel_excellence_error_category, otel_excellence_error_retryable"
    )
    # The version of each instance, from target_info (value 1), restricted to the
    # environment: `* on (job, instance) group_left (service_version) VERSION`.
    version = (
        "on (job, instance) group_left (service_version) group by (job, instance, "
        'service_version) (max_over_time(target_info{deployment_environment_name=~"$environment"}'
        "[$__range]))"
    )

    def rate(selector: str, by: str) -> str:
        return f"sum by ({by}) ({in_environment(f'rate({selector}[$__rate_interval])')})"

    count = f"sum by ({issue}) (increase({errors_selector}[$__range]) * {version})"
    # Seen = the counter's first sample (it appears with the first error), and the last
    # step where it changed within 2 minutes (two exports at the SDK's default 60 s); a
    # counter that never changed again was last seen when it was first seen.
    appeared = f"min_over_time(timestamp({errors_selector})[$__range:$__interval])"
    changed = f"max_over_time(timestamp(changes({errors_selector}[2m]) > 0)[$__range:$__interval])"
    first_seen = f"1000 * min by ({issue}) ({appeared} * {version})"
    last_seen = f"1000 * max by ({issue}) (({changed} or {appeared}) * {version})"
    same_dashboard = (
        "/d/otel-excellence-errors?${__url_time_range}&${environment:queryparam}"
        "&${service:queryparam}&var-fingerprint=${__data.fields.otel_excellence_error_fingerprint}"
    )
    issues = (
        grid(
            "Errors as issues",
            "One row per error type, fingerprint and service.version, with its count in "
            "the range and when it was first and last seen. Click a fingerprint for its "
            "example traces and logs below.",
            "short",
            promql_table(count, "A"),
            promql_table(first_seen, "B"),
            promql_table(last_seen, "C"),
            height=10,
        )
        .with_transformation(merge())
        .with_transformation(
            organize(
                {
                    "job": "Service",
                    "service_version": "Version",
                    "error_type": "Error type",
                    "otel_excellence_error_fingerprint": "Fingerprint",
                    "otel_excellence_error_category": "Category",
                    "otel_excellence_error_retryable": "Retryable",
                    "Value #A": "Count",
                    "Value #B": "First seen",
                    "Value #C": "Last seen",
                }
            )
        )
        .override_by_name(
            "Value #B", [model.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")]
        )
        .override_by_name(
            "Value #C", [model.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")]
        )
        .override_by_name(
            "otel_excellence_error_fingerprint",
            [
                model.DynamicConfigValue(
                    id_val="links",
                    value=[{"title": "Example traces and logs", "url": same_dashboard}],
                )
            ],
        )
        .links(runbook("NewErrorFingerprintAfterDeploy"))
    )
    return Board(
        uid="otel-excellence-errors",
        title="Errors as issues",
        question="Which errors are new, which are growing, and what do they look like: "
        "errors grouped by fingerprint per release, with an example trace and its logs.",
        variables=[environment_variable(), service_variable(), fingerprint_variable()],
        rows=[
            (
                "Errors",
                [
                    series(
                        "Errors per second by category",
                        "Classified by otel-excellence (timeout, connection, validation...).",
                        "cps",
                        promql(
                            rate(every_error, "otel_excellence_error_category"),
                            "{{otel_excellence_error_category}}",
                        ),
                        stacked=True,
                        width=8,
                    ),
                    series(
                        "Errors per second by retryability",
                        "Retryable errors may pass on retry; non-retryable ones will not.",
                        "cps",
                        promql(
                            rate(every_error, "otel_excellence_error_retryable"),
                            "retryable={{otel_excellence_error_retryable}}",
                        ),
                        links=runbook("NonRetryableErrorSpike"),
                        stacked=True,
                        width=8,
                    ),
                    series(
                        "Non-retryable errors per request (10m)",
                        "NonRetryableErrorSpike fires above 5% and 3 times the day before.",
                        "percentunit",
                        promql(
                            job_in_environment(
                                "job:otel_excellence_errors_nonretryable_per_request:ratio_rate10m"
                                f"{{{SERVICE}}}"
                            ),
                            "{{job}}",
                        ),
                        links=runbook("NonRetryableErrorSpike"),
                        width=8,
                    ),
                    series(
                        "Top error types",
                        "The ten most frequent error types now.",
                        "cps",
                        promql(
                            f"topk(10, {rate(every_error, 'job, error_type')})",
                            "{{job}} {{error_type}}",
                        ),
                        width=24,
                    ),
                ],
            ),
            ("Issues", [issues]),
            (
                "Example traces and logs of the selected fingerprint",
                [
                    grid(
                        "Example traces",
                        "Failed spans with the selected fingerprint (open one for its logs "
                        "too: Tempo links each trace to its log lines in Loki).",
                        "ms",
                        tempo.Dataquery()
                        .datasource(TEMPO)
                        .ref_id("A")
                        .query_type("traceql")
                        .query(
                            '{ span.otel_excellence.error.fingerprint =~ "$fingerprint" '
                            '&& resource.service.name =~ "$service" }'
                            " | select(span.error.type, span.otel_excellence.error.category)"
                        )
                        .limit(20),
                        width=12,
                        height=10,
                    ).datasource(TEMPO),
                    logs.Panel()
                    .title("Logs")
                    .description(
                        "Log records with the selected fingerprint (the bridge adds it to "
                        "every logged exception)."
                    )
                    .datasource(LOKI)
                    .with_target(
                        loki.Dataquery()
                        .datasource(LOKI)
                        .ref_id("A")
                        .expr(
                            '{service_name=~"$service"} '
                            '| deployment_environment_name=~"$environment" '
                            '| otel_excellence_error_fingerprint=~"$fingerprint"'
                        )
                    )
                    .span(12)
                    .height(10),
                ],
            ),
        ],
    )


def cache() -> Board:
    reads = f"otel_excellence_cache_requests_total{{{SERVICE}}}"
    hits = f'otel_excellence_cache_requests_total{{{SERVICE},otel_excellence_cache_result="hit"}}'
    redis = f'db_client_operation_duration_seconds_bucket{{{SERVICE},db_system_name="redis"}}'

    def rate(selector: str, by: str) -> str:
        return f"sum by ({by}) ({in_environment(f'rate({selector}[$__rate_interval])')})"

    def hit_ratio(by: str) -> str:
        return f"{guarded(rate(hits, by), '0 * ' + rate(reads, by))} / {rate(reads, by)}"

    return Board(
        uid="otel-excellence-cache",
        title="Cache",
        question="Does the cache work: Redis hit ratio by service and operation, reads "
        "by outcome, command latency?",
        variables=[environment_variable(), service_variable()],
        rows=[
            (
                "Redis",
                [
                    single(
                        "Hit ratio",
                        "GET-family reads that found their key (MGET counts one per key).",
                        "percentunit",
                        promql(hit_ratio("job")),
                    ),
                    series(
                        "Hit ratio by operation",
                        "By service and command (GET, HGET, MGET...).",
                        "percentunit",
                        promql(
                            hit_ratio("job, db_operation_name"), "{{job}} {{db_operation_name}}"
                        ),
                        width=18,
                    ),
                    series(
                        "Reads per second by outcome",
                        "Hits and misses of the read commands.",
                        "ops",
                        promql(
                            rate(reads, "job, otel_excellence_cache_result"),
                            "{{job}} {{otel_excellence_cache_result}}",
                        ),
                        stacked=True,
                    ),
                    series(
                        "Redis command p95 duration",
                        "From db.client.operation.duration, by command.",
                        "s",
                        promql(
                            "histogram_quantile(0.95, "
                            f"{rate(redis, 'job, db_operation_name, le')})",
                            "{{job}} {{db_operation_name}}",
                        ),
                    ),
                ],
            )
        ],
    )


def pipeline() -> Board:
    gateway_job = f'job="{GATEWAY_JOB}",{GATEWAY}'

    def per_signal(template: str, by: str, legend: str, guard: str | None = None) -> list[Any]:
        """One query per signal (their counters differ by name, not by label)."""
        queries = []
        for ref, (suffix, signal) in zip("ABC", SIGNALS, strict=True):
            window = "[$__rate_interval]"
            expr = f"sum by ({by}) (rate({template.format(suffix)}{{{gateway_job}}}{window}))"
            if guard is not None:
                total = f"sum by ({by}) (rate({guard.format(suffix)}{{{gateway_job}}}{window}))"
                expr = guarded(expr, "0 * " + total)
            queries.append(promql(expr, f"{signal} {legend}", ref=ref))
        return queries

    sdk_lost = job_in_environment(f"otel_sdk:items_lost:rate10m{{{SERVICE}}}")
    sdk_offered = job_in_environment(f"otel_sdk:items_offered:rate10m{{{SERVICE}}}")

    def sdk_queue(signal: str) -> str:
        size = f"otel_sdk_processor_{signal}_queue_size{{{SERVICE}}}"
        capacity = f"otel_sdk_processor_{signal}_queue_capacity{{{SERVICE}}}"
        return f"max by (job) ({in_environment(f'{size} / ({capacity} > 0)')})"

    return Board(
        uid="otel-excellence-pipeline",
        title="Telemetry pipeline",
        question="Is any telemetry lost on its way, and where: in the services' SDKs, at "
        "the gateways' receivers, queues or exporters? Are the gateways healthy?",
        variables=[environment_variable(), service_variable(), gateway_variable()],
        rows=[
            (
                "In the services (SDK)",
                [
                    series(
                        "Items lost by the SDK per second",
                        "Dropped by a full batch queue, or failed to export to the gateway.",
                        "cps",
                        promql(f"sum by (job, signal) ({sdk_lost})", "{{job}} {{signal}}"),
                        links=runbook("OtelSdkTelemetryLoss"),
                        width=8,
                    ),
                    series(
                        "Share of items lost by the SDK",
                        "OtelSdkTelemetryLoss fires above 1% for 10 minutes.",
                        "percentunit",
                        promql(
                            f"{sdk_lost} / on (job, signal) {sdk_offered}", "{{job}} {{signal}}"
                        ),
                        links=runbook("OtelSdkTelemetryLoss"),
                        width=8,
                    ),
                    series(
                        "SDK batch queue usage",
                        "Queue size over capacity; at 100% new items are dropped.",
                        "percentunit",
                        promql(sdk_queue("span"), "{{job}} spans", ref="A"),
                        promql(sdk_queue("log"), "{{job}} logs", ref="B"),
                        links=runbook("OtelSdkTelemetryLoss"),
                        width=8,
                    ),
                    grid(
                        "Last telemetry received per service",
                        "Seconds since each service last sent target_info (every metric "
                        "export); ServiceStoppedSendingTelemetry fires after 10 minutes.",
                        "s",
                        promql_table(
                            "time() - max by (job) (max_over_time(timestamp("
                            f"target_info{{{SERVICE},{IN_ENVIRONMENT}}})"
                            "[$__range:$__interval]))",
                            "A",
                        ),
                        height=8,
                    )
                    .with_transformation(organize({"job": "Service", "Value": "Seconds ago"}))
                    .links(runbook("ServiceStoppedSendingTelemetry")),
                ],
            ),
            (
                "Gateways: in",
                [
                    series(
                        "Accepted items per second",
                        "Spans, metric points and log records the receivers accepted.",
                        "cps",
                        *per_signal(
                            "otelcol_receiver_accepted_{}_total", "receiver", "{{receiver}}"
                        ),
                    ),
                    series(
                        "Refused items per second",
                        "Refused by a receiver (memory_limiter pressure): senders retry, "
                        "then drop.",
                        "cps",
                        *per_signal(
                            "otelcol_receiver_refused_{}_total", "receiver", "{{receiver}}"
                        ),
                        links=runbook("OtelCollectorRefusingData"),
                    ),
                ],
            ),
            (
                "Gateways: out",
                [
                    series(
                        "Sent items per second",
                        "By exporter (Tempo, Loki, Prometheus remote write).",
                        "cps",
                        *per_signal("otelcol_exporter_sent_{}_total", "exporter", "{{exporter}}"),
                        width=8,
                    ),
                    series(
                        "Export failures per second",
                        "Items that failed after all retries: lost.",
                        "cps",
                        *per_signal(
                            "otelcol_exporter_send_failed_{}_total",
                            "exporter",
                            "{{exporter}}",
                            guard="otelcol_exporter_sent_{}_total",
                        ),
                        links=runbook("OtelCollectorExportFailures"),
                        width=8,
                    ),
                    series(
                        "Dropped items per second (queue full)",
                        "Items an exporter's full sending queue refused: lost.",
                        "cps",
                        *per_signal(
                            "otelcol_exporter_enqueue_failed_{}_total",
                            "exporter",
                            "{{exporter}}",
                            guard="otelcol_exporter_sent_{}_total",
                        ),
                        links=runbook("OtelCollectorDroppingData"),
                        width=8,
                    ),
                    series(
                        "Sending queue usage",
                        "Queue size over capacity, per gateway and exporter.",
                        "percentunit",
                        promql(
                            "max by (instance, exporter) ("
                            f"otelcol_exporter_queue_size{{{gateway_job}}}"
                            f" / (otelcol_exporter_queue_capacity{{{gateway_job}}} > 0))",
                            "{{instance}} {{exporter}}",
                        ),
                        links=runbook("OtelCollectorQueueNearCapacity"),
                    ),
                    series(
                        "Tail sampling decisions per second",
                        "Traces kept or not by policy; dropped-too-early means num_traces "
                        "is too small for the traffic.",
                        "cps",
                        promql(
                            "sum by (policy, sampled) (rate("
                            "otelcol_processor_tail_sampling_count_traces_sampled_total"
                            f"{{{gateway_job}}}[$__rate_interval]))",
                            "{{policy}} sampled={{sampled}}",
                            ref="A",
                        ),
                        promql(
                            "sum(rate(otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total"
                            f"{{{gateway_job}}}[$__rate_interval]))",
                            "dropped too early",
                            ref="B",
                        ),
                    ),
                ],
            ),
            (
                "Gateways: resources",
                [
                    series(
                        "Memory (RSS and Go heap)",
                        "Resident memory and live heap per gateway; memory_limiter refuses "
                        "data above its limit.",
                        "bytes",
                        promql(
                            f"max by (instance) (otelcol_process_memory_rss{{{gateway_job}}})",
                            "{{instance}} RSS",
                            ref="A",
                        ),
                        promql(
                            "max by (instance) "
                            f"(otelcol_process_runtime_heap_alloc_bytes{{{gateway_job}}})",
                            "{{instance}} heap",
                            ref="B",
                        ),
                        width=8,
                    ),
                    series(
                        "CPU",
                        "CPU time per second (1 = one core).",
                        "percentunit",
                        promql(
                            "sum by (instance) (rate(otelcol_process_cpu_seconds_total"
                            f"{{{gateway_job}}}[$__rate_interval]))",
                            "{{instance}}",
                        ),
                        width=8,
                    ),
                    series(
                        "Uptime",
                        "Seconds since each gateway started (a drop is a restart).",
                        "s",
                        promql(
                            f"max by (instance) (otelcol_process_uptime_total{{{gateway_job}}})",
                            "{{instance}}",
                        ),
                        width=8,
                    ),
                ],
            ),
        ],
    )


BOARDS: tuple[Callable[[], Board], ...] = (service_overview, database, errors, cache, pipeline)


def render() -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    files = {}
    for make in BOARDS:
        board = make()
        files[f"{board.uid.removeprefix('otel-excellence-')}.json"] = (
            json.dumps(board.build(), indent=2, sort_keys=True) + "\n"
        )
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    files = render()
    if args.check:
        committed = {path.name for path in OUTPUT.glob("*.json")}
        stale = sorted(
            name
            for name, text in files.items()
            if not (OUTPUT / name).exists() or (OUTPUT / name).read_text() != text
        ) + sorted(committed - set(files))
        if stale:
            print(
                f"out of date in grafana/dashboards: {stale}; run `make dashboards`",
                file=sys.stderr,
            )
            return 1
        return 0
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for path in OUTPUT.glob("*.json"):
        if path.name not in files:
            path.unlink()
    for name, text in files.items():
        (OUTPUT / name).write_text(text)
    print(f"wrote {len(files)} dashboards to grafana/dashboards/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
