"""Every PromQL expression the repository ships, and what it reads, for the checks.

Dashboards (grafana/dashboards/*.json: panel targets and variable queries) and rule files
(deploy/rules/*.rules.yml: recording and alerting rules). Dashboard variables are
substituted the way Grafana would for one concrete selection (VARIABLES), then every
expression is parsed with promql-parser (the Prometheus grammar, in Rust).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import promql_parser
import yaml

from tests.support.services import REPO

DASHBOARDS = REPO / "grafana" / "dashboards"
RULES = REPO / "deploy" / "rules"

# One sensible selection: Grafana substitutes these before Prometheus sees a query.
# `$service` is a service.name (the job carries the namespace); "All" is `.*`.
DEFAULT_VARIABLES = {
    "environment": ".*",
    "service": ".*",
    "gateway": ".*",
    "fingerprint": ".*",
    "__rate_interval": "5m",
    "__interval": "15s",
    "__range": "15m",
}

COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
SET_OPERATORS = {"and", "or", "unless"}


@dataclass(frozen=True)
class Expression:
    where: str  # "dashboards/errors.json panel 7 'Errors as issues' A" or "rules/x.yml Alert"
    text: str  # as shipped (with Grafana variables)
    kind: str  # "panel", "variable", "record", "alert"
    name: str = ""  # the recorded metric or the alert name

    def substituted(self, variables: Mapping[str, str] | None = None) -> str:
        return substitute(self.text, {**DEFAULT_VARIABLES, **(variables or {})})


def substitute(text: str, variables: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"no value for Grafana variable ${name} in {text!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, text)


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def rule_files() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(RULES.glob("*.yml"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def dashboard_expressions() -> list[Expression]:
    found = []
    for name, board in dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                if source.get("type") == "prometheus":
                    where = f"dashboards/{name} panel {panel['id']} {panel['title']!r}"
                    where += f" {target['refId']}"
                    found.append(Expression(where, target["expr"], "panel"))
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]["query"]
                selector = re.fullmatch(r"label_values\((.*), *(\w+)\)", query)
                assert selector, f"{name}: variable {variable['name']}: {query!r}"
                found.append(
                    Expression(
                        f"dashboards/{name} variable {variable['name']}",
                        selector.group(1),
                        "variable",
                        selector.group(2),
                    )
                )
    return found


def rule_expressions() -> list[Expression]:
    found = []
    for name, content in rule_files().items():
        for group in content["groups"]:
            for rule in group["rules"]:
                kind, title = (
                    ("alert", rule["alert"]) if "alert" in rule else ("record", rule["record"])
                )
                where = f"rules/{name} {group['name']} {title}"
                found.append(Expression(where, rule["expr"], kind, title))
    return found


def parse(text: str) -> Any:
    return promql_parser.parse(text)


def is_scalar(node: Any) -> bool:
    if isinstance(node, promql_parser.NumberLiteral):
        return True
    if isinstance(node, promql_parser.ParenExpr):
        return is_scalar(node.expr)
    if isinstance(node, promql_parser.UnaryExpr):
        return is_scalar(node.expr)
    if isinstance(node, promql_parser.BinaryExpr):
        return is_scalar(node.lhs) and is_scalar(node.rhs)
    return False


def data_operands(node: Any) -> list[Any]:
    """The parts of an alert expression that must return data on a healthy system.

    A threshold (`x > 0.05`) or a set operation (`a and b`, `a unless b`) is empty when
    all is well; what it compares or combines must not be: those parts are returned.
    """
    if isinstance(node, promql_parser.ParenExpr):
        return data_operands(node.expr)
    if isinstance(node, promql_parser.BinaryExpr):
        op = str(node.op)
        if op in SET_OPERATORS:
            return data_operands(node.lhs) + data_operands(node.rhs)
        returns_bool = bool(node.modifier and node.modifier.return_bool)
        if op in COMPARISONS and not returns_bool:
            sides = [side for side in (node.lhs, node.rhs) if not is_scalar(side)]
            return [part for side in sides for part in data_operands(side)]
    return [node]


def without_offsets(text: str) -> str:
    """Comparisons with "the day before" read history a fresh Prometheus does not have:
    the same series without the offset prove the names and labels."""
    return re.sub(r"\s+offset\s+\d+[smhdwy]", "", text)


@dataclass(frozen=True)
class Selector:
    name: str
    text: str  # PromQL selector, e.g. otel_excellence_errors_total{job=~"..."}


def selectors(node: Any) -> list[Selector]:
    found: list[Selector] = []

    def visit(current: Any) -> None:
        if isinstance(current, promql_parser.VectorSelector):
            matchers = ",".join(
                f'{m.name}{_OPS[str(m.op)]}"{_escape(m.value)}"' for m in current.matchers.matchers
            )
            found.append(Selector(current.name or "", f"{current.name or ''}{{{matchers}}}"))

    promql_parser.walk(node, visit)
    return found


def grouping_labels(node: Any) -> list[tuple[str, list[Selector]]]:
    """(label, the selectors below) for every `by (...)` label of every aggregation."""
    found: list[tuple[str, list[Selector]]] = []

    def visit(current: Any) -> None:
        modifier = getattr(current, "modifier", None)
        aggregation = isinstance(current, promql_parser.AggregateExpr)
        if aggregation and modifier is not None and str(modifier.type).endswith("By"):
            below = selectors(current.expr)
            found.extend((label, below) for label in modifier.labels)

    promql_parser.walk(node, visit)
    return found


_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
