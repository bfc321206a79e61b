"""Statement sanitizing and scrubbing: a secret in a literal must never leave the process.

Literals become ``?``, comments go, IN-lists collapse to ``IN (?)``; placeholders and
identifiers stay, so the statement still says what ran. The same normal form is the
statement's fingerprint for N+1 detection. Error texts (status descriptions, exception
messages and stack traces) are scrubbed of bound parameters, row values quoted back by
PostgreSQL, and passwords in connection strings.

Why our own tokenizer: the instrumentations export statements verbatim, and the
libraries that normalize SQL (sqlparse, sqlglot) are an order of magnitude slower per
statement than this single regular-expression pass and would be new dependencies.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Fail closed: a backslash escapes the next character (MySQL, PostgreSQL E'' strings) and
# an unterminated comment, string or dollar quote runs to the end of the text - both
# redact more than needed rather than let the rest of a literal through.
_COMMON = r"""
      (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<dollar>\$\$.*?(?:\$\$|\Z)|\$(?P<tag>[A-Za-z_]\w*)\$.*?(?:\$(?P=tag)\$|\Z))
    | (?P<string>[eEbBxXnN]?'(?:[^'\\]|\\.|'')*(?:'|\Z))
    | {double}
    | (?P<placeholder>%\([^)]+\)s|%s|(?<!:):[A-Za-z_]\w*|\?|\$\d+)
    | (?P<number>(?<![\w$.])(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.]))
"""
# "..." is an identifier in standard SQL (PostgreSQL) but a string literal in MySQL and,
# when no such column exists, in SQLite: there it is redacted too.
_TOKEN = re.compile(
    _COMMON.replace("{double}", r"(?P<ident>\"(?:[^\"]|\"\")*\"|`[^`]*`)"),
    re.VERBOSE | re.DOTALL,
)
_TOKEN_DOUBLE_QUOTED_STRINGS = re.compile(
    _COMMON.replace(
        "{double}", r"(?P<dstring>\"(?:[^\"\\]|\\.|\"\")*(?:\"|\Z)) | (?P<ident>`[^`]*`)"
    ),
    re.VERBOSE | re.DOTALL,
)
DOUBLE_QUOTED_STRING_SYSTEMS = frozenset({"mysql", "mariadb", "sqlite"})
_PARAM = r"(?:\?|%\([^)]+\)s|%s|:[A-Za-z_]\w*|\$\d+)"
_IN_LIST = re.compile(rf"\bIN\s*\(\s*{_PARAM}(?:\s*,\s*{_PARAM})*\s*\)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_MAX_STATEMENT = 4096
# Longer statements are cut before anything else (and before caching), so neither the
# work nor the cache grows with a multi-megabyte bulk INSERT.
_MAX_INPUT = _MAX_STATEMENT * 4


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "comment":
        return " "
    if kind in {"dollar", "string", "dstring", "number"}:
        return "?"
    return match.group(0)


def sanitize_statement(statement: str, system: str | None = None) -> str:
    """``statement`` with literals replaced by ``?``, comments removed, IN-lists collapsed.

    ``system`` (``db.system``) decides whether double-quoted text is a string literal.
    """
    return _sanitize(statement[:_MAX_INPUT], system in DOUBLE_QUOTED_STRING_SYSTEMS)


@lru_cache(maxsize=2048)
def _sanitize(statement: str, double_quoted_strings: bool) -> str:
    pattern = _TOKEN_DOUBLE_QUOTED_STRINGS if double_quoted_strings else _TOKEN
    text = pattern.sub(_replace, statement)
    text = _IN_LIST.sub("IN (?)", text)
    return _SPACE.sub(" ", text).strip()[:_MAX_STATEMENT]


_URL_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^@\s/]+@")
_DSN_PASSWORD = re.compile(r"\b(password|passwd|pwd)\s*=\s*(?:'[^']*'|\"[^\"]*\"|[^\s;]+)", re.I)
_SQL_BLOCK = re.compile(r"\[SQL: (.*?)\](?=\s*\n\[parameters|\s*\n\(Background|\s*$)", re.DOTALL)
_PARAMETERS_LINE = re.compile(r"^\[parameters: .*$", re.MULTILINE)
_KEY_DETAIL = re.compile(r"(Key \((?:[^()]|\([^()]*\))*\))=\((?:[^()]|\([^()]*\))*\)")
_FAILING_ROW = re.compile(r"(Failing row contains )\(.*\)")


def scrub_credentials(text: str) -> str:
    """Passwords removed from URLs (``scheme://user:***@``) and DSNs (``password=***``)."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(r"\1:***@", text)
    if "=" in text:
        text = _DSN_PASSWORD.sub(r"\1=***", text)
    return text


def scrub_error_text(text: str) -> str:
    """An error message or stack trace without bound values, row data or passwords."""
    text = scrub_credentials(text)
    if "[SQL: " in text:
        text = _SQL_BLOCK.sub(lambda m: f"[SQL: {sanitize_statement(m.group(1))}]", text)
    if "[parameters: " in text:
        text = _PARAMETERS_LINE.sub("[parameters: ***]", text)
    if "Key (" in text:
        text = _KEY_DETAIL.sub(r"\1=(?)", text)
    if "Failing row contains" in text:
        text = _FAILING_ROW.sub(r"\1(?)", text)
    return text
