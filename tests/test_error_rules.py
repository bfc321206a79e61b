"""The classification table, rule by rule where a user would notice, and its extension."""

from __future__ import annotations

import logging
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

import otel_excellence
from otel_excellence import ErrorRule, add_error_rules, classify_exception
from otel_excellence._findings.error_rules import CLASSIFIER, RULES
from otel_excellence._findings.errors import (
    CATEGORIES,
    Classifier,
    ErrorClass,
    ErrorFacts,
    load_rules,
)


@pytest.fixture(autouse=True)
def _no_user_rules() -> Iterator[None]:
    CLASSIFIER.reset_user_rules()
    yield
    CLASSIFIER.reset_user_rules()


def test_every_builtin_rule_names_a_known_category() -> None:
    assert {rule.category for rule in RULES} <= set(CATEGORIES)


class TestExceptions:
    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (TimeoutError("t"), ErrorClass("timeout", True)),
            (ConnectionRefusedError(111, "refused"), ErrorClass("connection", True)),
            (ConnectionResetError(), ErrorClass("connection", True)),
            (BrokenPipeError(), ErrorClass("connection", True)),
            (PermissionError(), ErrorClass("auth", False)),
            (FileNotFoundError(), ErrorClass("not_found", False)),
            (ValueError("bad"), ErrorClass("validation", False)),
            (KeyError("k"), ErrorClass("internal", False)),
            (RuntimeError("bug"), ErrorClass("internal", False)),
            (redis.exceptions.TimeoutError(), ErrorClass("timeout", True)),
            (redis.exceptions.BusyLoadingError(), ErrorClass("unavailable", True)),
            (redis.exceptions.ResponseError("BUSY Redis is busy"), ErrorClass("unavailable", True)),
            (redis.exceptions.ResponseError("LOADING"), ErrorClass("unavailable", True)),
            (
                redis.exceptions.ResponseError("WRONGTYPE Operation"),
                ErrorClass("validation", False),
            ),
            (redis.exceptions.AuthenticationError(), ErrorClass("auth", False)),
            (redis.exceptions.WatchError(), ErrorClass("conflict", True)),
            (sa.exc.TimeoutError(), ErrorClass("timeout", True)),
        ],
        ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.category,
    )
    def test_verdicts(self, exc: BaseException, expected: ErrorClass) -> None:
        assert classify_exception(exc) == expected

    def test_sqlite_constraint_errors_from_the_real_library(self) -> None:
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE t (a UNIQUE, b NOT NULL)")
        db.execute("INSERT INTO t VALUES (1, 1)")
        with pytest.raises(sqlite3.IntegrityError) as unique:
            db.execute("INSERT INTO t VALUES (1, 1)")
        with pytest.raises(sqlite3.IntegrityError) as not_null:
            db.execute("INSERT INTO t VALUES (2, NULL)")
        assert classify_exception(unique.value) == ErrorClass("conflict", False)
        assert classify_exception(not_null.value) == ErrorClass("validation", False)

    def test_a_wrapped_cause_decides_when_the_wrapper_says_nothing(self) -> None:
        try:
            try:
                raise ConnectionResetError("peer reset")
            except ConnectionResetError as cause:
                raise RuntimeError("payment service failed") from cause
        except RuntimeError as wrapper:
            assert classify_exception(wrapper) == ErrorClass("connection", True)


class TestStatuses:
    @pytest.mark.parametrize(
        ("status", "category", "retryable"),
        [
            (400, "validation", False),
            (401, "auth", False),
            (403, "auth", False),
            (404, "not_found", False),
            (408, "timeout", True),
            (409, "conflict", False),
            (422, "validation", False),
            (429, "rate_limited", True),
            (500, "internal", False),
            (502, "unavailable", True),
            (503, "unavailable", True),
            (504, "timeout", True),
        ],
    )
    def test_http(self, status: int, category: str, retryable: bool) -> None:
        assert CLASSIFIER.classify_status(status, None) == ErrorClass(category, retryable)

    @pytest.mark.parametrize(
        ("code", "category", "retryable"),
        [
            ("DEADLINE_EXCEEDED", "timeout", True),
            ("UNAVAILABLE", "unavailable", True),
            ("RESOURCE_EXHAUSTED", "rate_limited", True),
            ("ALREADY_EXISTS", "conflict", False),
            ("ABORTED", "conflict", True),
            ("UNAUTHENTICATED", "auth", False),
            ("CANCELLED", "cancelled", False),
            ("INTERNAL", "internal", False),
        ],
    )
    def test_grpc(self, code: str, category: str, retryable: bool) -> None:
        assert CLASSIFIER.classify_status(None, code) == ErrorClass(category, retryable)

    def test_exported_strings_alone_still_classify(self) -> None:
        """A span ended outside its handler keeps only strings: SQLAlchemy names the cause."""
        verdict = CLASSIFIER.classify_strings(
            "sqlalchemy.exc.OperationalError",
            "(psycopg.OperationalError) connection failed: Connection refused",
        )
        assert verdict == ErrorClass("connection", True)

    def test_a_type_name_matches_rules_for_its_bases(self) -> None:
        """Only the name reached the span (a Celery task span ends outside the handler):
        a built-in subclass, or a class of a module already imported, still matches
        rules written for its base; an unknown name is taken as it is."""
        assert CLASSIFIER.classify_strings("ConnectionRefusedError", "[Errno 111]") == ErrorClass(
            "connection", True
        )
        assert CLASSIFIER.classify_strings(
            "redis.exceptions.BusyLoadingError", "LOADING"
        ) == ErrorClass("unavailable", True)
        assert CLASSIFIER.classify_strings("nowhere.Missing", "x") == ErrorClass("internal", False)


class QuotaExceeded(Exception):
    pass


class TestUserRules:
    def test_user_rules_come_before_the_builtin_table(self) -> None:
        assert classify_exception(ValueError("quota")) == ErrorClass("validation", False)
        added = add_error_rules(ErrorRule("rate_limited", True, exception="ValueError",
                                          message="quota"))  # fmt: skip
        assert added == 1
        assert classify_exception(ValueError("quota exceeded")) == ErrorClass("rate_limited", True)
        assert classify_exception(ValueError("other")) == ErrorClass("validation", False)

    def test_a_rule_added_later_applies_to_an_error_already_classified(self) -> None:
        """Verdicts are remembered per error; a rule added (or removed) still counts."""
        assert classify_exception(ValueError("quota")) == ErrorClass("validation", False)
        add_error_rules(ErrorRule("rate_limited", True, exception="ValueError"))
        assert classify_exception(ValueError("quota")) == ErrorClass("rate_limited", True)
        CLASSIFIER.reset_user_rules()
        assert classify_exception(ValueError("quota")) == ErrorClass("validation", False)

    def test_a_rule_with_an_unknown_category_is_ignored_with_a_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        logging.getLogger("otel_excellence").addHandler(caplog.handler)
        try:
            assert add_error_rules(ErrorRule("slow", True, exception="ValueError")) == 0
        finally:
            logging.getLogger("otel_excellence").removeHandler(caplog.handler)
        assert "'slow'" in caplog.text
        assert "category must be one of" in caplog.text

    def test_rules_load_from_a_module_reference(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "shop_rules.py").write_text(
            textwrap.dedent(
                """
                from otel_excellence import ErrorRule
                RULES = [ErrorRule("rate_limited", True,
                                   exception="tests.test_error_rules.QuotaExceeded")]
                """
            )
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        classifier = Classifier(RULES)
        classifier.add(load_rules("shop_rules:RULES"))
        assert classifier.classify_exception(QuotaExceeded()) == ErrorClass("rate_limited", True)
        sys.modules.pop("shop_rules", None)

    @pytest.mark.parametrize(
        ("reference", "problem"),
        [
            ("string:ascii_letters", "names a str"),  # iterating it gave 52 "rules"
            ("os:path", "names a module"),
            ("otel_excellence._findings.errors:CATEGORIES", "entries that are not ErrorRules"),
        ],
    )
    def test_a_reference_to_the_wrong_object_gives_one_warning(
        self, reference: str, problem: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Whatever the reference names, one warning; the built-in rules stay."""
        logging.getLogger("otel_excellence").addHandler(caplog.handler)
        try:
            classifier = Classifier(RULES)
            assert classifier.add(load_rules(reference)) == 0
        finally:
            logging.getLogger("otel_excellence").removeHandler(caplog.handler)
        assert len(caplog.records) == 1, caplog.text
        assert f"OTEL_EXCELLENCE_ERROR_RULES={reference!r}" in caplog.text
        assert problem in caplog.text
        assert classifier.classify_exception(TimeoutError()) == ErrorClass("timeout", True)

    def test_usable_rules_of_a_mixed_list_are_kept_with_one_warning(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A list with some wrong entries keeps the right ones."""
        module = type(sys)("mixed_rules")
        module.RULES = [  # type: ignore[attr-defined]
            ErrorRule("rate_limited", True, exception="tests.test_error_rules.QuotaExceeded"),
            ErrorRule("slow", True, exception="ValueError"),
            "not a rule",
        ]
        monkeypatch.setitem(sys.modules, "mixed_rules", module)
        logging.getLogger("otel_excellence").addHandler(caplog.handler)
        try:
            classifier = Classifier(RULES)
            assert classifier.add(load_rules("mixed_rules:RULES")) == 1
        finally:
            logging.getLogger("otel_excellence").removeHandler(caplog.handler)
        assert len(caplog.records) == 1, caplog.text
        assert "2 of 3 entries" in caplog.text
        assert classifier.classify_exception(QuotaExceeded()) == ErrorClass("rate_limited", True)

    def test_several_bad_rules_added_at_once_give_one_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """add_error_rules with many wrong rules: one line, not one per rule."""
        logging.getLogger("otel_excellence").addHandler(caplog.handler)
        try:
            bad = [ErrorRule(f"slow{i}", True, exception="ValueError") for i in range(49)]
            assert add_error_rules(*bad) == 0
        finally:
            logging.getLogger("otel_excellence").removeHandler(caplog.handler)
        assert len(caplog.records) == 1
        assert "ignoring 49 error rule(s)" in caplog.text

    def test_a_bad_module_reference_warns_and_keeps_the_builtin_rules(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        logging.getLogger("otel_excellence").addHandler(caplog.handler)
        try:
            assert load_rules("no_such_module:RULES") == []
        finally:
            logging.getLogger("otel_excellence").removeHandler(caplog.handler)
        assert "OTEL_EXCELLENCE_ERROR_RULES='no_such_module:RULES'" in caplog.text


def test_public_api_is_exported() -> None:
    for name in ("ErrorRule", "ErrorClass", "CATEGORIES", "add_error_rules", "classify_exception"):
        assert name in otel_excellence.__all__
        assert hasattr(otel_excellence, name)


# -- the rule index: the same first match as trying every rule in order ---------------------
_USER_RULES = (
    ErrorRule("rate_limited", True, message="quota"),
    ErrorRule("conflict", False, sqlstate="23"),
    ErrorRule("not_found", False, exception="builtins.LookupError"),
    ErrorRule("unavailable", True, http_status=(503,)),
)


def _facts() -> st.SearchStrategy[ErrorFacts]:
    """Facts built from the values the rules name, so that many of them match."""
    names = sorted({r.exception for r in (*RULES, *_USER_RULES) if r.exception} | {"x.Other"})
    sqlstates = sorted({r.sqlstate for r in RULES if r.sqlstate} | {"23505", "99999"})
    sqlites = sorted({r.sqlite for r in RULES if r.sqlite} | {"SQLITE_BUSY_X"})
    statuses = sorted({s for r in RULES for s in r.http_status} | {200, 503, 418})
    codes = sorted({c for r in RULES for c in r.grpc_code} | {"OK"})
    return st.builds(
        ErrorFacts,
        types=st.lists(st.sampled_from(names), max_size=4),
        message=st.sampled_from(["", "quota exceeded", "timed out", "deadlock detected"]),
        sqlstate=st.none() | st.sampled_from(sqlstates),
        sqlite=st.none() | st.sampled_from(sqlites),
        http_status=st.none() | st.sampled_from(statuses),
        grpc_code=st.none() | st.sampled_from(codes),
    )


@settings(max_examples=3000, deadline=None)
@given(facts=_facts())
def test_the_rule_index_finds_the_first_rule_that_matches_in_order(facts: ErrorFacts) -> None:
    classifier = Classifier(RULES)
    classifier.add(_USER_RULES)
    every_rule = (*_USER_RULES, *RULES)
    expected = next((rule for rule in every_rule if rule.matches(facts)), None)
    found = classifier.match(facts)
    assert found == (ErrorClass(expected.category, expected.retryable) if expected else None)
