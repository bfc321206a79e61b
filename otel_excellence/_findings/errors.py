"""Error classification: what kind of failure, and would retrying plausibly succeed.

Every rule lives in one table (``_error_rules.RULES``); user rules are consulted first.
A rule matches on any combination of: an exception class (by fully qualified name,
anywhere in the exception's MRO), a SQLSTATE prefix, an SQLite error name prefix, a
message pattern, an HTTP status, a gRPC status. The first matching rule wins.

A wrapped error is classified by what it wraps: SQLAlchemy's ``DBAPIError.orig`` (the
psycopg or sqlite3 error with its SQLSTATE) and an explicit ``raise ... from`` cause.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_excellence._diagnostics import warn_once

CATEGORIES = (
    "timeout",
    "connection",
    "unavailable",
    "rate_limited",
    "auth",
    "validation",
    "not_found",
    "conflict",
    "database",
    "cancelled",
    "internal",
)
# Matches that say little on their own: a more specific wrapper or cause is preferred.
_GENERIC = frozenset({"database", "internal"})


@dataclass(frozen=True)
class ErrorRule:
    """One classification rule. Set the fields that must match; leave the rest None.

    >>> ErrorRule("rate_limited", True, exception="myapp.errors.QuotaExceeded")
    """

    category: str
    retryable: bool
    exception: str | None = None
    sqlstate: str | None = None
    sqlite: str | None = None
    message: str | None = None
    http_status: tuple[int, ...] = ()
    grpc_code: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.message is not None:
            object.__setattr__(self, "_pattern", re.compile(self.message, re.IGNORECASE))

    def matches(self, facts: ErrorFacts) -> bool:
        if self.exception is not None and self.exception not in facts.types:
            return False
        if self.sqlstate is not None and not (
            facts.sqlstate is not None and facts.sqlstate.startswith(self.sqlstate)
        ):
            return False
        if self.sqlite is not None and not (
            facts.sqlite is not None and facts.sqlite.startswith(self.sqlite)
        ):
            return False
        if self.http_status and facts.http_status not in self.http_status:
            return False
        if self.grpc_code and facts.grpc_code not in self.grpc_code:
            return False
        return not (self._pattern is not None and not self._pattern.search(facts.message))


@dataclass(frozen=True)
class ErrorClass:
    """The verdict: ``category`` (one of ``CATEGORIES``) and whether to retry."""

    category: str
    retryable: bool


INTERNAL = ErrorClass("internal", False)


@dataclass
class ErrorFacts:
    """What the rules can match on, from an exception object or from exported strings."""

    types: Sequence[str] = ()
    message: str = ""
    sqlstate: str | None = None
    sqlite: str | None = None
    http_status: int | None = None
    grpc_code: str | None = None


def qualified_name(cls: type) -> str:
    """``psycopg.errors.UniqueViolation``; built-ins without a module (``TimeoutError``)."""
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# What the rules' message patterns see: the head of the message. Every built-in pattern
# matches near the start, and a user's pattern (which may backtrack) gets bounded input.
MAX_RULE_MESSAGE = 2048


def attribute(obj: object, name: str) -> Any:
    """``getattr(obj, name, None)`` that also survives a property that raises."""
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - a broken property just means no such fact
        return None


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception's ``__str__`` is broken."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - classification must go on without the message
        return f"<{type(exc).__name__}: str() failed>"
    return text if isinstance(text, str) else ""


def wrapped(exc: BaseException) -> list[BaseException]:
    """What ``exc`` wraps: SQLAlchemy's ``.orig``, then ``__cause__`` (either may raise)."""
    found = [attribute(exc, "orig"), attribute(exc, "__cause__")]
    return [e for e in found if isinstance(e, BaseException) and e is not exc]


def _status_of(exc: BaseException) -> int | None:
    for holder in (attribute(exc, "response"), exc):
        for name in ("status_code", "status"):
            value = attribute(holder, name)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def _grpc_code_of(exc: BaseException) -> str | None:
    code = attribute(exc, "code")
    if not callable(code) or not str(type(exc).__module__).startswith("grpc"):
        return None
    try:
        name = getattr(code(), "name", None)
    except Exception:  # noqa: BLE001 - a broken code() just means no gRPC facts
        return None
    return name if isinstance(name, str) else None


@functools.lru_cache(maxsize=512)
def _mro_names(cls: type) -> tuple[str, ...]:
    # Per class, not per error: the names of a class and its bases do not change.
    return tuple(qualified_name(base) for base in cls.__mro__)


def facts_from_exception(exc: BaseException) -> ErrorFacts:
    """What the rules can match, read defensively: a broken ``__str__`` or a property
    that raises costs that one fact, never the classification."""
    sqlstate = attribute(exc, "sqlstate") or attribute(exc, "pgcode")
    sqlite = attribute(exc, "sqlite_errorname")
    return ErrorFacts(
        types=_mro_names(type(exc)),  # type: ignore[arg-type]  # classes hash; typeshed disagrees
        message=safe_str(exc)[:MAX_RULE_MESSAGE],
        sqlstate=sqlstate if isinstance(sqlstate, str) else None,
        sqlite=sqlite if isinstance(sqlite, str) else None,
        http_status=_status_of(exc),
        grpc_code=_grpc_code_of(exc),
    )


# "(psycopg.errors.UniqueViolation) duplicate key ..." - how SQLAlchemy names the
# wrapped error in its message; all the string path has of the original.
_WRAPPED_TYPE = re.compile(r"^\(([\w.]{1,256})\)")


# Verdicts remembered per index: keys hold at most MAX_RULE_MESSAGE characters of message.
_MAX_VERDICTS = 1024
_UNKNOWN: Any = object()


class _RuleIndex:
    """The rules in their order of precedence, found by what a rule requires.

    A rule naming an exception type can only match an error of that type, one naming a
    SQLSTATE only an error that has one, and so on: only those rules are tried, in
    their original order, instead of all ~90 for every error.
    """

    def __init__(self, rules: tuple[ErrorRule, ...]) -> None:
        self.rules = rules
        self.by_type: dict[str, list[int]] = {}
        self.by_fact: dict[str, list[int]] = {}
        self.always: list[int] = []
        self._verdicts: dict[tuple[Any, ...], ErrorClass | None] = {}
        for position, rule in enumerate(rules):
            if rule.exception is not None:
                self.by_type.setdefault(rule.exception, []).append(position)
            elif (fact := _required_fact(rule)) is not None:
                self.by_fact.setdefault(fact, []).append(position)
            else:
                self.always.append(position)

    def verdict(self, facts: ErrorFacts) -> ErrorClass | None:
        """``match``'s verdict, remembered per set of facts: a failing dependency fails
        the same way again and again, and a verdict depends on nothing else (the index
        is rebuilt, and this forgotten, when the rules change)."""
        key = (
            tuple(facts.types),
            facts.message,
            facts.sqlstate,
            facts.sqlite,
            facts.http_status,
            facts.grpc_code,
        )
        found = self._verdicts.get(key, _UNKNOWN)
        if found is _UNKNOWN:
            rule = self.match(facts)
            found = ErrorClass(rule.category, rule.retryable) if rule is not None else None
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts.clear()  # bounded; as good as LRU for a hot few
            self._verdicts[key] = found
        return found  # type: ignore[no-any-return]

    def match(self, facts: ErrorFacts) -> ErrorRule | None:
        positions = list(self.always)
        by_type = self.by_type
        for name in facts.types:
            found = by_type.get(name)
            if found:
                positions += found
        for fact, found in self.by_fact.items():
            if getattr(facts, fact) is not None:
                positions += found
        positions.sort()
        rules = self.rules
        for position in positions:
            rule = rules[position]
            if rule.matches(facts):
                return rule
        return None


def _required_fact(rule: ErrorRule) -> str | None:
    """The ``ErrorFacts`` field an exception-less rule cannot match without."""
    if rule.sqlstate is not None:
        return "sqlstate"
    if rule.sqlite is not None:
        return "sqlite"
    if rule.http_status:
        return "http_status"
    if rule.grpc_code:
        return "grpc_code"
    return None


class Classifier:
    """User rules first, then the built-in table. Thread-safe to extend while in use.

    ``user_rules`` (if given) supplies the configured rules, loaded at the first
    classification or by ``load_user_rules()``: classification in a process that never
    configured telemetry (``classify_exception()`` in a test, say) applies them too.
    """

    def __init__(
        self,
        builtin: Iterable[ErrorRule],
        user_rules: Callable[[], Iterable[ErrorRule]] | None = None,
    ) -> None:
        self._builtin = tuple(builtin)
        self._user: tuple[ErrorRule, ...] = ()  # add_error_rules(), later calls first
        self._configured: tuple[ErrorRule, ...] = ()  # OTEL_EXCELLENCE_ERROR_RULES
        self._lock = threading.Lock()
        self._pending_user_rules = user_rules
        self._index = _RuleIndex(self._builtin)

    def _reindex(self) -> None:
        """Called with the lock held, after the rules changed."""
        self._index = _RuleIndex((*self._user, *self._configured, *self._builtin))

    def load_user_rules(self, source: Callable[[], Iterable[ErrorRule]] | None = None) -> None:
        """Load the configured rules now, from ``source`` if given. They replace rules
        loaded before (``configure(error_rules=...)`` wins over the environment's,
        which a classification before it may have loaded), never pile up."""
        with self._lock:
            loader = source or self._pending_user_rules
            self._pending_user_rules = None
        if loader is not None:
            accepted = self._usable(loader())
            with self._lock:
                self._configured = tuple(accepted)
                self._reindex()

    def add(self, rules: Iterable[ErrorRule]) -> int:
        accepted = self._usable(rules)
        with self._lock:
            self._user = (*accepted, *self._user)
            self._reindex()
        return len(accepted)

    @staticmethod
    def _usable(rules: Iterable[ErrorRule]) -> list[ErrorRule]:
        accepted: list[ErrorRule] = []
        ignored: list[object] = []
        for rule in rules:
            (accepted if _usable(rule) else ignored).append(rule)
        if ignored:
            # One warning per call, however many entries are wrong.
            shown = ", ".join(repr(rule)[:120] for rule in ignored[:3])
            warn_once(
                ("bad-rules", tuple(repr(rule) for rule in ignored)),
                "ignoring %d error rule(s) (each must be an ErrorRule, and its category must "
                "be one of %s): %s%s",
                len(ignored),
                ", ".join(CATEGORIES),
                shown,
                ", ..." if len(ignored) > 3 else "",
            )
        return accepted

    def reset_user_rules(self) -> None:
        with self._lock:
            self._user = ()
            self._configured = ()
            self._reindex()

    def match(self, facts: ErrorFacts) -> ErrorClass | None:
        if self._pending_user_rules is not None:
            self.load_user_rules()
        return self._index.verdict(facts)

    def classify_exception(self, exc: BaseException) -> ErrorClass:
        """Classify ``exc``, preferring what it wraps when that is more specific."""
        inner = wrapped(exc)
        fallback: ErrorClass | None = None
        for candidate in (*inner[:1], exc, *inner[1:]):
            found = self.match(facts_from_exception(candidate))
            if found is not None and found.category not in _GENERIC:
                return found
            fallback = fallback or found
        return fallback or INTERNAL

    def classify_strings(self, exception_type: str, message: str) -> ErrorClass:
        """Classify from exported strings alone (no exception object at hand)."""
        candidates = []
        message = message[:MAX_RULE_MESSAGE]
        inner = _WRAPPED_TYPE.match(message)
        if inner:
            candidates.append(ErrorFacts(types=[inner.group(1)], message=message))
        candidates.append(ErrorFacts(types=type_names(exception_type), message=message))
        fallback: ErrorClass | None = None
        for facts in candidates:
            found = self.match(facts)
            if found is not None and found.category not in _GENERIC:
                return found
            fallback = fallback or found
        return fallback or INTERNAL

    def classify_status(self, http_status: int | None, grpc_code: str | None) -> ErrorClass:
        return self.match(ErrorFacts(http_status=http_status, grpc_code=grpc_code)) or INTERNAL


def type_names(exception_type: str) -> list[str]:
    """An exported exception type's class and bases, when the class is at hand.

    Resolved only among built-ins and modules already imported (never importing one):
    a span ended outside its exception's handler (Celery's task spans) still matches
    rules written for a base class, ``ConnectionError`` for ``ConnectionRefusedError``.
    """
    module, _, name = exception_type.rpartition(".")
    owner: Any = builtins if not module else sys.modules.get(module)
    found: Any = None
    if owner is not None and name.isidentifier():
        found = getattr(owner, name, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        names = [qualified_name(cls) for cls in found.__mro__]
        if names[0] == exception_type:
            return names
    return [exception_type]


def _usable(rule: object) -> bool:
    return isinstance(rule, ErrorRule) and rule.category in CATEGORIES


def load_rules(reference: str) -> list[ErrorRule]:
    """Rules named by ``module:attribute`` (OTEL_EXCELLENCE_ERROR_RULES); [] on failure.

    Whatever is wrong (no such module, no such attribute, not a list, entries that are
    not usable rules) gives one warning; usable entries of a list are kept.
    """
    module_name, _, attribute = reference.partition(":")
    try:
        value: Any = getattr(importlib.import_module(module_name), attribute or "RULES")
    except Exception as error:  # noqa: BLE001 - a bad reference must not stop the app
        _bad_reference(reference, f"could not be loaded ({error})")
        return []
    if isinstance(value, ErrorRule):
        value = [value]
    if not isinstance(value, (list, tuple)):
        # A string, a module, a class... iterating it would make a "rule" of each item.
        _bad_reference(reference, f"names a {type(value).__name__}, not a list of ErrorRule")
        return []
    rules = [rule for rule in value if _usable(rule)]
    if len(rules) < len(value):
        _bad_reference(
            reference,
            f"has {len(value) - len(rules)} of {len(value)} entries that are not ErrorRules "
            f"with a category from {', '.join(CATEGORIES)} (first: "
            f"{next(repr(r)[:120] for r in value if not _usable(r))})",
            kept=len(rules),
        )
    return rules


def _bad_reference(reference: str, problem: str, kept: int = 0) -> None:
    warn_once(
        ("error-rules", reference),
        "OTEL_EXCELLENCE_ERROR_RULES=%r %s; using %s",
        reference,
        problem,
        f"its {kept} usable rule(s) and the built-in ones" if kept else "the built-in rules only",
    )
