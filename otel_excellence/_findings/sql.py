"""Statement sanitizing and error-text scrubbing: a secret must never leave the process.

Literals become ``?``, comments go, IN-lists collapse to ``IN (?)``; placeholders and
identifiers stay, so the statement still says what ran. The same normal form is the
statement's fingerprint for N+1 detection. Error texts (status descriptions, exception
messages and stack traces) are scrubbed of bound parameters, values the database echoes
back, and passwords in connection strings.

Bounded work on any input. Every function here reads at most a fixed prefix of its
input (``MAX_*_READ``) and emits at most a fixed size, and does work linear in what it
read: each scanner is one left-to-right pass in which every character is consumed once.
The regular expressions are written for that: every alternative either matches what it
scanned or fails within a bounded distance (a token that could run on - a string, a
comment, a dollar quote - always matches, to the end of the text if it is never closed),
and no quantified group overlaps its neighbour, so Python's backtracking engine never
re-reads a stretch of text. The growth test (tests/test_text_safety.py) holds this to
account from 1 KB to 1 MB; benchmarks/text_safety.py measures it.

Why hand-written scanners: the SQL libraries (sqlparse, sqlglot) parse an order of
magnitude slower and do not redact; google-re2 guarantees linear matching but its Python
``sub`` costs about 4 µs per match (measured: 18 ms for 4,096 string literals against
0.2 ms for ``re``), and what we need most is a replacement per literal.

Fail closed: where two dialects (or two settings of one, such as MySQL's
NO_BACKSLASH_ESCAPES or PostgreSQL's standard_conforming_strings) would read the text
differently, the rest of the text is redacted rather than risk that one of them saw a
literal where we saw code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

# -- caps -------------------------------------------------------------------------------
# What is emitted: a statement is for humans and for grouping; 4 KiB shows any ordinary
# statement whole (SQLAlchemy's and Django's longest SELECTs are 1-2 KiB).
MAX_STATEMENT = 4096
# What is read of a statement: literals shrink to "?" and IN-lists collapse, so four times
# the output still yields a full 4 KiB of normal form; the rest of a multi-megabyte bulk
# INSERT is never looked at (and never cached).
MAX_STATEMENT_READ = 4 * MAX_STATEMENT
# Statements up to this size are cached (2,048 of them: at most ~8 MiB); longer ones are
# rare and would make the cache's memory depend on the input.
_MAX_CACHED_STATEMENT = 2048
# What is read of, and emitted for, an error text (message, status description or stack
# trace): a Python traceback of 30 frames with SQLAlchemy's chained message is 6-10 KiB.
# The head is kept: scrubbing must start where the text starts to know what it is in.
MAX_ERROR_TEXT = 16 * 1024
# At most this many findings (URLs, SQL blocks, echoed values...) are acted on per text;
# a text with more is cut after the last one. Bounds the per-finding work on crafted text.
MAX_ERROR_FINDINGS = 64
TRUNCATED = " [...]"

# -- statements -------------------------------------------------------------------------
_POSTGRESQL = "postgresql"
_MYSQL = "mysql"
_SQLITE = "sqlite"
_UNKNOWN = "unknown"
_DIALECTS = {
    "postgresql": _POSTGRESQL,
    "postgres": _POSTGRESQL,
    "mysql": _MYSQL,
    "mariadb": _MYSQL,
    "sqlite": _SQLITE,
}
# Kept for callers that asked which systems read "..." as a string.
DOUBLE_QUOTED_STRING_SYSTEMS = frozenset({"mysql", "mariadb", "sqlite"})

_ANY = r"[\s\S]"
_REST = rf"{_ANY}*"  # everything to the end of the text (fail closed)


def _nested_comment(depth: int) -> str:
    """A PostgreSQL block comment (they nest), to ``depth`` levels; deeper runs to the end.

    Every level always matches: it stops only at its ``*/`` or at the end of the text.
    """
    inner = rf"/\*{_REST}" if depth == 0 else _nested_comment(depth - 1)
    return rf"/\*(?:[^*/]+|\*+(?!/)|/+(?!\*)|{inner})*(?:\*/|\Z)"


def _alternatives(*parts: tuple[str, str]) -> tuple[re.Pattern[str], dict[str, str | None]]:
    """One pattern of named alternatives (tried in order) and what each becomes.

    A kind is "lit" (becomes ``?``), "drop" (a comment: becomes a space) or "ident" (kept
    if its closing quote, the group ``close``, was found; else ``?``). Group names get
    the alternative's index, so each pattern can use ``close`` and ``tag`` once per part.
    """
    outputs: dict[str, str | None] = {}
    branches = []
    for index, (kind, pattern) in enumerate(parts):
        name = f"{kind}{index}"
        outputs[name] = {"lit": "?", "drop": " ", "ident": None}[kind]
        pattern = pattern.replace("<close>", f"<close{index}>").replace("tag>", f"tag{index}>")
        pattern = pattern.replace("(?P=tag)", f"(?P=tag{index})")
        branches.append(f"(?P<{name}>{pattern})")
    return re.compile("|".join(branches)), outputs


# Numbers in every form the dialects accept (1, 1., .5, 1e5, 1.5e-3, 1_000, 0x1F, 0b101,
# 0o17, and MySQL's 1abc, which is an identifier there: redacted all the same). Not when
# part of an identifier (t1), a parameter ($1, ?1) or a qualified name (a.b).
_NUMBER = r"(?<![\w$.?])(?:\d|\.\d)(?:[\w.]+|(?<=\d[eE])[-+])*"
# '...' with '' for a quote. A backslash before a quote is an escape in MySQL and in
# PostgreSQL without standard_conforming_strings, and a plain character elsewhere: the
# two readings end the string in different places, so the rest of the text is redacted.
_SQ_AMBIGUOUS = rf"'(?:[^'\\]+|''|\\[^'])*(?:'|\\'{_REST}|\\?\Z)"
_SQ_PLAIN = r"'(?:[^']+|'')*(?:'|\Z)"  # SQLite: a backslash is a plain character
_SQ_ESCAPES = rf"(?<![\w$])[eE]'(?:[^'\\]+|''|\\{_ANY})*(?:'|\\?\Z)"  # PostgreSQL E'...'
_DQ_AMBIGUOUS = rf'"(?:[^"\\]+|""|\\[^"])*(?:"|\\"{_REST}|\\?\Z)'
_DQ_PLAIN = r'"(?:[^"]+|"")*(?:"|\Z)'
# Quoted identifiers are kept; one never closed runs to the end and is redacted.
_DQ_IDENT = r'"(?:[^"]+|"")*(?:(?P<close>")|\Z)'
_BT_IDENT = r"`(?:[^`]+|``)*(?:(?P<close>`)|\Z)"
_LINE_COMMENT = r"--[^\n]*"
_FLAT_COMMENT = r"/\*(?:[^*]+|\*+(?!/))*(?:\*/|\Z)"
# MySQL runs the inside of /*! ... */ and /*M! ... */ as code: dropped like a comment,
# unless it holds a quote (a string might open inside and close outside). Patterns that
# can fail iterate one character at a time, so failing never backtracks more than once.
_EXEC_COMMENT_QUOTED = rf"/\*M?!(?:[^*'\"`]|\*(?!/))*['\"`]{_REST}"
_DOLLAR_TAG = r"(?:[^\W\d]\w{0,62})?"
# PostgreSQL dollar quotes; tags are identifiers (at most 63 characters, NAMEDATALEN):
# a longer one is redacted to the end.
_DOLLAR = (
    rf"(?<![\w$])\$(?P<tag>{_DOLLAR_TAG})\${_ANY}*?(?:\$(?P=tag)\$|\Z)"
    rf"|(?<![\w$])\$[^\W\d]\w{{63}}\w*\${_REST}"
)
# Elsewhere "$a$" is not a quote: one holding a quote is redacted to the end.
_DOLLAR_QUOTED = rf"(?<![\w$])\$(?P<tag>{_DOLLAR_TAG})\$(?:(?!\$(?P=tag)\$)[^'\"`])*['\"`]{_REST}"

_POSTGRESQL_TOKENS = _alternatives(
    ("drop", _LINE_COMMENT),
    ("drop", _nested_comment(8)),
    ("lit", _DOLLAR),
    ("lit", _SQ_ESCAPES),
    ("lit", _SQ_AMBIGUOUS),
    ("ident", _DQ_IDENT),
    ("lit", _NUMBER),
)
_MYSQL_TOKENS = _alternatives(
    ("drop", r"--(?=[ \t\n\r\f\v]|\Z)[^\n]*|#[^\n]*"),  # "--x" is not a comment in MySQL
    ("lit", _EXEC_COMMENT_QUOTED),
    ("drop", _FLAT_COMMENT),
    ("lit", _SQ_AMBIGUOUS),
    ("lit", _DQ_AMBIGUOUS),  # a string, unless ANSI_QUOTES: redacted either way
    ("ident", _BT_IDENT),
    ("lit", _NUMBER),
)
_SQLITE_TOKENS = _alternatives(
    ("drop", _LINE_COMMENT),
    ("drop", _FLAT_COMMENT),
    ("lit", _SQ_PLAIN),
    # "..." is an identifier, or a string when no such column exists: redacted.
    ("lit", _DQ_PLAIN),
    ("ident", _BT_IDENT),
    ("lit", _NUMBER),
)
# Any other system: every construct one of the three dialects reads differently is read
# the way that redacts, and where they disagree on where a literal ends, to the end.
_UNKNOWN_TOKENS = _alternatives(
    ("drop", r"--(?=[ \t\n\r\f\v]|\Z)[^\n]*"),  # a comment in every dialect
    ("lit", rf"(?:--|#)[^\n'\"`]*['\"`]{_REST}"),  # a comment only in some: quotes inside
    ("drop", r"(?:--|#)[^\n]*"),
    ("lit", _EXEC_COMMENT_QUOTED),
    ("lit", rf"/\*(?:[^*/]|\*(?!/)|/(?!\*))*/\*{_REST}"),  # nests only in PostgreSQL
    ("drop", _FLAT_COMMENT),
    ("lit", _DOLLAR_QUOTED),
    ("lit", _DOLLAR),
    ("lit", _SQ_AMBIGUOUS),
    ("lit", _DQ_AMBIGUOUS),
    ("ident", rf"`(?:[^`'\"]+|``)*(?:(?P<close>`)|['\"]{_REST}|\Z)"),
    ("lit", _NUMBER),
)
_TOKENS = {
    _POSTGRESQL: _POSTGRESQL_TOKENS,
    _MYSQL: _MYSQL_TOKENS,
    _SQLITE: _SQLITE_TOKENS,
    _UNKNOWN: _UNKNOWN_TOKENS,
}

_PARAM = (
    r"(?:\?\d{0,5}|%s|%\([^()\s]{1,64}\)s|:[^\W\d]\w{0,63}|\$\d{1,5}|@[^\W\d]\w{0,63})"
)
_IN_LIST = re.compile(rf"\bIN ?\( ?{_PARAM}(?: ?, ?{_PARAM})* ?\)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def _dialect(system: str | None) -> str:
    if system is None:
        return _UNKNOWN
    return _DIALECTS.get(system.lower(), _UNKNOWN)


def _sanitize(statement: str, dialect: str) -> str:
    pattern, outputs = _TOKENS[dialect]

    def token(match: re.Match[str]) -> str:
        name = match.lastgroup or ""
        output = outputs[name]
        if output is not None:
            return output
        return match.group() if match.group("close" + name[5:]) is not None else "?"

    text = pattern.sub(token, statement)
    text = _SPACE.sub(" ", text)
    text = _IN_LIST.sub("IN (?)", text)
    return text.strip()[:MAX_STATEMENT]


_sanitize_cached = lru_cache(maxsize=2048)(_sanitize)


def sanitize_statement(statement: str, system: str | None = None) -> str:
    """``statement`` with literals replaced by ``?``, comments removed, IN-lists collapsed.

    ``system`` (``db.system``) selects the dialect: ``postgresql``, ``mysql``/``mariadb``
    or ``sqlite``; any other (or None) is read the way that redacts most.
    """
    text = statement[:MAX_STATEMENT_READ]
    dialect = _dialect(system)
    if len(text) <= _MAX_CACHED_STATEMENT:
        return _valid(_sanitize_cached(text, dialect))
    return _valid(_sanitize(text, dialect))


# The verbs a statement can start with. Anything else is "OTHER": the operation name is a
# metric attribute, so it must never carry text of the user's.
SQL_OPERATIONS = frozenset(
    """SELECT INSERT UPDATE DELETE MERGE WITH CREATE ALTER DROP TRUNCATE BEGIN COMMIT
    ROLLBACK SAVEPOINT RELEASE SET RESET SHOW EXPLAIN CALL EXEC EXECUTE PRAGMA VACUUM
    ANALYZE GRANT REVOKE LOCK UNLOCK COPY VALUES REPLACE UPSERT LISTEN UNLISTEN NOTIFY
    DECLARE FETCH CLOSE MOVE PREPARE DEALLOCATE START END ABORT REINDEX CLUSTER REFRESH
    COMMENT DISCARD DO LOAD CHECKPOINT TABLE ATTACH DETACH USE DESCRIBE DESC HANDLER
    OPTIMIZE REPAIR CHECKSUM RENAME FLUSH KILL PURGE""".split()
)
_FIRST_WORD = re.compile(r"[\s(]*([A-Za-z]{1,16})\b")


def operation_name(sanitized_statement: str) -> str:
    """The statement's leading SQL verb, upper-cased, or ``OTHER``.

    Read from the sanitized text (comments already gone) and only from a fixed list of
    verbs: ``/* user text */ SELECT ...`` is ``SELECT``, ``hunter2`` is ``OTHER``.
    """
    match = _FIRST_WORD.match(sanitized_statement[:64])
    if match is None:
        return "OTHER"
    word = match.group(1).upper()
    return word if word in SQL_OPERATIONS else "OTHER"


# -- error texts ------------------------------------------------------------------------
# Each finding starts with a fixed string (so the search skips other text quickly) and
# is handled by a function that returns its replacement and where scanning resumes.
_CREDENTIAL_MARKERS = r"""
      (?P<url>://)
    | (?P<dsn>(?i:password|passwd|pwd)["']?[ \t]*[=:][ \t]*)
"""
_ERROR_MARKERS = (
    _CREDENTIAL_MARKERS
    + r"""
    | (?P<sql>\[SQL:[ ])
    | (?P<parameters>\[parameters:[ ])
    | (?P<field>(?:DETAIL|CONTEXT|HINT):[ ]+)
    | (?P<key>[Kk]ey[ ]\()
    | (?P<row>Failing[ ]row[ ]contains[ ]\()
    | (?P<excerpt>LINE[ ]\d{1,9}:[ ])
    | (?P<echo>(?:near|:|value|Token|statement)[ ]"
               |(?:near|entry|value:?|parameter[ ]\$\d{1,5}[ ]=)[ ]')
    | (?P<rest_of_line>args[ ]beginning[ ]with:|data,[ ]line[ ]\d{1,9}:)
"""
)
_ERROR_MARKER = re.compile(_ERROR_MARKERS, re.VERBOSE)
_CREDENTIAL_MARKER = re.compile(_CREDENTIAL_MARKERS, re.VERBOSE)
_NON_SPACE = re.compile(r"\S*")
_DSN_IN_URL = re.compile(
    r"((?i:password|passwd|pwd)=)[^&;#\s]*"
)  # a password in a URL's query string
_PARAMETERS_START = "]\n[parameters: "
_PARAMETERS_END = "]\n(Background on this error at: "
# A DETAIL/CONTEXT/HINT value: after the key columns, in a failing row, in quotes.
_VALUE_OPENER = re.compile(r"\)[ ]?=[ ]?\(|contains[ ]\(|[\"']|line[ ]\d{1,9}:[ ]")
_PAREN_VALUE = re.compile(r"\)[ ]?=[ ]?\(|contains[ ]\(")
_KEY_VALUE = re.compile(r"\)[ ]?=[ ]?\(")
# Quoted DSN values (libpq, Python reprs, JSON: backslash escapes) and ODBC's {...};
# each always matches, to the end of the text if never closed.
_QUOTED_VALUE = {
    "'": re.compile(r"'(?:[^'\\]+|\\[\s\S])*(?:'|\\?\Z)"),
    '"': re.compile(r'"(?:[^"\\]+|\\[\s\S])*(?:"|\\?\Z)'),
    "{": re.compile(r"\{(?:[^}]+|\}\})*(?:\}|\Z)"),
}
_DRIVER = re.compile(
    r"\((?:(?P<sqlite>sqlite3|pysqlite|aiosqlite)|(?P<mysql>pymysql|MySQLdb|mysql|mariadb"
    r"|aiomysql|asyncmy)|(?P<postgresql>psycopg2?|asyncpg|pg8000)|sqlalchemy\.dialects\."
    r"(?P<dialect>\w{1,32}))[.)]"
)


class _Scrub:
    """One pass over one error text: the text, the dialect, and the handlers."""

    def __init__(self, text: str, system: str | None) -> None:
        self.text = text
        self.system = system
        self._sql_ends: tuple[int, int] | None = None

    # Each handler: (replacement, position after the finding). Positions only move on.
    def url(self, match: re.Match[str]) -> tuple[str, int]:
        """``scheme://user:***@host``: everything between the first ``:`` after ``//``
        and the last ``@`` of the URL, so a password with ``/ @ :`` in it goes whole."""
        start = match.end()
        run = _NON_SPACE.match(self.text, start)
        end = run.end() if run else start
        url = self.text[start:end]
        at = url.rfind("@")
        colon = url.find(":", 0, at) if at > 0 else -1
        if colon >= 0:
            url = f"{url[: colon + 1]}***{url[at:]}"
        if "=" in url:
            url = _DSN_IN_URL.sub(r"\1***", url)
        return "://" + url, end

    def dsn(self, match: re.Match[str]) -> tuple[str, int]:
        """``password=***``: quoted (libpq, Python reprs, JSON), ODBC's ``{...}``, or up
        to the next whitespace (a ``;`` is part of a libpq value); never closed: to the end.
        """
        text, start = self.text, match.end()
        quoted = _QUOTED_VALUE.get(text[start : start + 1])
        value = (quoted or _NON_SPACE).match(text, start)
        return match.group() + "***", value.end() if value else start

    def sql(self, match: re.Match[str]) -> tuple[str, int]:
        """SQLAlchemy's ``[SQL: ...]``, sanitized. It ends before the last of SQLAlchemy's
        closing lines in the text (a statement may contain ``]`` and newlines), or at the
        end of the text."""
        if self._sql_ends is None:
            text = self.text
            self._sql_ends = (text.rfind(_PARAMETERS_START), text.rfind(_PARAMETERS_END))
        start = match.end()
        end = next((e for e in self._sql_ends if e >= start), len(self.text))
        statement = sanitize_statement(self.text[start:end], self._dialect())
        return f"[SQL: {statement}", end

    def parameters(self, match: re.Match[str]) -> tuple[str, int]:
        end = self.text.find(_PARAMETERS_END, match.end())
        if end < 0:
            return "[parameters: ***]", len(self.text)
        return "[parameters: ***", end

    def field(self, match: re.Match[str]) -> tuple[str, int]:
        """A PostgreSQL DETAIL/CONTEXT/HINT line: any value in it redacted."""
        return self._value_line(match, _VALUE_OPENER)

    def key(self, match: re.Match[str]) -> tuple[str, int]:
        return self._value_line(match, _KEY_VALUE)

    def row(self, match: re.Match[str]) -> tuple[str, int]:
        return self._redact_value(match.start(), match.end(), "(")

    def excerpt(self, match: re.Match[str]) -> tuple[str, int]:
        """PostgreSQL's ``LINE n:`` excerpt of the statement. Only the first line, shown
        from its start, is known to start outside a literal: it is sanitized; any other
        excerpt (a later line, or cut with "...") is redacted whole."""
        text, start = self.text, match.end()
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        excerpt = text[start:end]
        if match.group().startswith("LINE 1:") and not excerpt.startswith("..."):
            return match.group() + sanitize_statement(excerpt, _POSTGRESQL), end
        return match.group() + "?", end

    def echo(self, match: re.Match[str]) -> tuple[str, int]:
        """A value a database quotes back (``for type integer: "..."``, ``near "..."``,
        ``Duplicate entry '...'``): to the last such quote on the line."""
        return self._redact_value(match.start(), match.end(), match.group()[-1])

    def rest_of_line(self, match: re.Match[str]) -> tuple[str, int]:
        """Redis's ``unknown command ..., with args beginning with: ...`` and PostgreSQL's
        ``JSON data, line 1: ...``: the rest of the line is input."""
        end = self.text.find("\n", match.end())
        return match.group() + " ?", len(self.text) if end < 0 else end

    def _value_line(self, match: re.Match[str], opener: re.Pattern[str]) -> tuple[str, int]:
        text = self.text
        end = text.find("\n", match.end())
        end = len(text) if end < 0 else end
        found = opener.search(text, match.end(), end)
        if found is None:
            return match.group(), match.end()
        # The key's value first: a quoted column name must not be taken for the value.
        paren = _PAREN_VALUE.search(text, match.end(), end)
        if paren is not None:
            found = paren
        head = text[match.start() : found.start()]
        if found.group().startswith("line"):
            return head + found.group() + "?", end
        value, resume = self._redact_value(found.start(), found.end(), found.group()[-1])
        return head + value, resume

    def _redact_value(self, start: int, value_start: int, opener: str) -> tuple[str, int]:
        """``text[start:value_start]`` then ``?`` up to the last closer on the line.

        A value can contain anything, its closer included, so the last one on the line
        ends it; a line without one means the value goes on to later lines (a newline in
        the data), and from there nothing can be trusted: the rest of the text goes.
        """
        text = self.text
        closer = ")" if opener == "(" else opener
        end = text.find("\n", value_start)
        end = len(text) if end < 0 else end
        last = text.rfind(closer, value_start, end)
        head = text[start:value_start]
        if last < 0:
            return head + "?" + TRUNCATED, len(text)
        return head + "?", last

    def _dialect(self) -> str | None:
        if self.system is not None:
            return self.system
        found = {
            dialect or ("sqlite" if sqlite else "mysql" if mysql else "postgresql")
            for sqlite, mysql, _, dialect in set(_DRIVER.findall(self.text))
        }
        # None of them, or two dialects in one text: read the way that redacts most.
        return found.pop() if len(found) == 1 else None


def _run(text: str, marker: re.Pattern[str], system: str | None) -> str:
    cut = len(text) > MAX_ERROR_TEXT
    text = text[:MAX_ERROR_TEXT]
    scrub = _Scrub(text, system)
    handlers: dict[str, Callable[[re.Match[str]], tuple[str, int]]] = {
        "url": scrub.url,
        "dsn": scrub.dsn,
        "sql": scrub.sql,
        "parameters": scrub.parameters,
        "field": scrub.field,
        "key": scrub.key,
        "row": scrub.row,
        "excerpt": scrub.excerpt,
        "echo": scrub.echo,
        "rest_of_line": scrub.rest_of_line,
    }
    out: list[str] = []
    position = 0
    for _ in range(MAX_ERROR_FINDINGS):
        match = marker.search(text, position)
        if match is None:
            break
        out.append(text[position : match.start()])
        replacement, resume = handlers[match.lastgroup or ""](match)
        out.append(replacement)
        position = max(resume, match.end())
    else:
        if marker.search(text, position) is not None:
            out.append(TRUNCATED)  # too many findings: the rest is not looked at
            position = len(text)
    out.append(text[position:])
    if cut and position < len(text):
        out.append(TRUNCATED)
    result = "".join(out)
    if len(result) > MAX_ERROR_TEXT:
        result = result[:MAX_ERROR_TEXT] + TRUNCATED
    return _valid(result)


def scrub_credentials(text: str) -> str:
    """Passwords removed from URLs (``scheme://user:***@``) and DSNs (``password=***``)."""
    return _run(text, _CREDENTIAL_MARKER, None)


def scrub_error_text(text: str, system: str | None = None) -> str:
    """An error message or stack trace without bound values, echoed values or passwords.

    ``system`` (``db.system``) is the dialect of SQLAlchemy's ``[SQL: ...]`` blocks; when
    None it is read from the driver SQLAlchemy names in the text, else fails closed.
    """
    return _run(text, _ERROR_MARKER, system)


def _valid(text: str) -> str:
    """``text`` as valid UTF-8: a lone surrogate would make the OTLP encoder reject the
    whole batch the text is in."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode()
    return text
