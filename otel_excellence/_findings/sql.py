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
and no quantified group overlaps its neighbour, so Python's backtracking engine re-reads
a stretch of text at most once (where an alternative that failed is followed by one that
always matches). The growth test (tests/test_text_safety.py) holds this to
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

import heapq
import re
from functools import lru_cache

# -- caps -------------------------------------------------------------------------------
# What is emitted: a statement is for humans and for grouping; 4 KiB shows any ordinary
# statement whole (SQLAlchemy's and Django's longest SELECTs are 1-2 KiB).
MAX_STATEMENT = 4096
# What is read of a statement: as much as is emitted. The tokenizer's cost is ~0.25 µs
# per literal on this 2-core machine, so 4 KiB of "1,1,1,..." (the densest input) stays
# within the 1 ms budget; the rest of a multi-megabyte bulk INSERT is never looked at.
MAX_STATEMENT_READ = MAX_STATEMENT
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

_ANY = r"[\s\S]"
_REST = rf"{_ANY}*"  # everything to the end of the text (fail closed)


def _nested_comment(depth: int) -> str:
    """A PostgreSQL block comment after its ``/*`` (they nest), to ``depth`` levels;
    deeper runs to the end. Every level always matches: it stops only at its ``*/`` or
    at the end of the text."""
    inner = _REST if depth == 0 else _nested_comment(depth - 1)
    return rf"(?:[^*/]+|\*+(?!/)|/+(?!\*)|/\*{inner})*(?:\*/|\Z)"


def _alternatives(
    first: str, *parts: tuple[str, str]
) -> tuple[re.Pattern[str], dict[str, tuple[str, str, str]]]:
    """One pattern: a token's first character (``first``, a character class), then the
    named alternatives (tried in order), each written as what follows that character.

    Starting with a character class lets the regex engine skip the text between tokens
    in a tight loop (about 20 times faster than trying each alternative everywhere).
    A kind is "lit" (becomes ``?``), "drop" (a comment: a space), "keep" (kept as it
    is), "ident" (kept if its closing quote, the group ``close``, was found, else ``?``)
    or "name" (SQLite's ``"..."``: kept only where ``_SqliteReader`` finds a name).
    Group names are the kind and the alternative's index, so each part can use
    ``close``, ``tag`` and ``dots``; a group's name maps to its kind and the names of
    its ``close`` and ``dots`` groups.
    """
    kinds: dict[str, tuple[str, str, str]] = {}
    branches = []
    for index, (kind, pattern) in enumerate(parts):
        name = f"{kind}{index}"
        kinds[name] = (kind, f"close{index}" if "<close>" in pattern else name, f"dots{index}")
        renamed = pattern.replace("(?P=tag)", f"(?P=tag{index})")
        for group in ("close", "tag", "dots"):
            renamed = renamed.replace(f"<{group}>", f"<{group}{index}>")
        branches.append(f"(?P<{name}>{renamed})")
    return re.compile(f"{first}(?:{'|'.join(branches)})"), kinds


# Every part below starts right after the token's first character, which a lookbehind
# names: (?<=') is "a string", (?<=-) "a comment", and so on.
#
# Numbers in every form the dialects accept (1, 1., .5, 1e5, 1.5e-3, 1_000, 0x1F, 0b101,
# 0o17, and MySQL's 1abc, which is an identifier there: redacted all the same). Not when
# part of an identifier (t1), a parameter ($1, ?1) or a qualified name (a.b).
_NUMBER_TAIL = r"(?:[\w.]+|(?<=\d[eE])[-+])*"
_DIGIT = rf"(?<=\d)(?<![\w$.?]\d){_NUMBER_TAIL}"
_DOT_DIGIT = rf"(?<=\.)(?<![\w$.?]\.)\d{_NUMBER_TAIL}"
# '...' with '' for a quote. A backslash before a quote is an escape in MySQL and in
# PostgreSQL without standard_conforming_strings, and a plain character elsewhere: the
# two readings end the string in different places, so the rest of the text is redacted.
_SQ_AMBIGUOUS = rf"(?<=')(?:[^'\\]+|''|\\[^'])*(?:'|\\'{_REST}|\\?\Z)"
_SQ_PLAIN = r"(?<=')(?:[^']+|'')*(?:'|\Z)"  # SQLite: a backslash is a plain character
# PostgreSQL E'...': backslash escapes for sure (the E stays, outside the token).
_SQ_ESCAPES = rf"(?<=[eE]')(?<![\w$][eE]')(?:[^'\\]+|''|\\{_ANY})*(?:'|\\?\Z)"
_DQ_AMBIGUOUS = rf'(?<=")(?:[^"\\]+|""|\\[^"])*(?:"|\\"{_REST}|\\?\Z)'
# Quoted identifiers are kept; one never closed runs to the end and is redacted.
_DQ_IDENT = r'(?<=")(?:[^"]+|"")*(?:(?P<close>")|\Z)'
_BT_IDENT = r"(?<=`)(?:[^`]+|``)*(?:(?P<close>`)|\Z)"
_LINE_COMMENT = r"(?<=-)-[^\n]*"
_SPACE_AFTER = r"(?=[ \t\n\r\f\v]|\Z)"
_FLAT_COMMENT = r"(?<=/)\*(?:[^*]+|\*+(?!/))*(?:\*/|\Z)"
# MySQL runs the inside of /*! ... */ and /*M! ... */ as code: dropped like a comment,
# unless it holds a quote (a string might open inside and close outside). Patterns that
# can fail iterate one character at a time, so failing never backtracks more than once.
_EXEC_COMMENT_QUOTED = rf"(?<=/)\*M?!(?:[^*'\"`]|\*(?!/))*['\"`]{_REST}"
_DOLLAR_TAG = r"(?:[^\W\d]\w{0,62})?"
_DOLLAR_START = r"(?<=\$)(?<![\w$]\$)"
# PostgreSQL dollar quotes; tags are identifiers (at most 63 characters, NAMEDATALEN):
# a longer one is redacted to the end.
_DOLLAR = (
    rf"{_DOLLAR_START}(?P<tag>{_DOLLAR_TAG})\${_ANY}*?(?:\$(?P=tag)\$|\Z)"
    rf"|{_DOLLAR_START}[^\W\d]\w{{63}}\w*\${_REST}"
)
# Elsewhere "$a$" is not a quote: one holding a quote is redacted to the end.
_DOLLAR_QUOTED = (
    rf"{_DOLLAR_START}(?P<tag>{_DOLLAR_TAG})\$(?:(?!\$(?P=tag)\$)[^'\"`])*['\"`]{_REST}"
)

_POSTGRESQL_TOKENS = _alternatives(
    r"[-/$'\"\d.]",
    ("drop", _LINE_COMMENT),
    ("drop", rf"(?<=/)\*{_nested_comment(8)}"),
    ("lit", _DOLLAR),
    ("lit", _SQ_ESCAPES),
    ("lit", _SQ_AMBIGUOUS),
    ("ident", _DQ_IDENT),
    ("lit", _DIGIT),
    ("lit", _DOT_DIGIT),
)
_MYSQL_TOKENS = _alternatives(
    r"[-/#'\"`\d.]",
    ("drop", rf"(?<=-)-{_SPACE_AFTER}[^\n]*"),  # "--x" is not a comment in MySQL
    ("drop", r"(?<=#)[^\n]*"),
    ("lit", _EXEC_COMMENT_QUOTED),
    ("drop", _FLAT_COMMENT),
    ("lit", _SQ_AMBIGUOUS),
    ("lit", _DQ_AMBIGUOUS),  # a string, unless ANSI_QUOTES: redacted either way
    ("ident", _BT_IDENT),
    ("lit", _DIGIT),
    ("lit", _DOT_DIGIT),
)
# SQLite's identifier characters, and its parameters: $a, :a, @a, #a (with :: inside),
# which, followed by "(", run to the ")" or the next space whatever they hold, quotes
# included (TCL variables). Kept as names of parameters; with parentheses, redacted.
# Each starts where SQLite starts one and is consumed whole, never re-read.
_SQLITE_ID = r"[\w$\u0080-\U0010ffff]"
_SQLITE_PARAMETER = (
    rf"(?:(?<=\$)(?<!{_SQLITE_ID}\$)|(?<=[@:#]))(?:::)?{_SQLITE_ID}(?:{_SQLITE_ID}|::)*"
)
# A qualified name ("t"."c", "t".c, "t".*) is one token: a name wherever it stands. The
# parts after the first iterate one character at a time, so a part never closed fails
# after one pass instead of trying every way to split its text.
_SQLITE_QUOTED = r'"(?:[^"]|"")*"'
_SQLITE_QUOTED_NAME = (
    r'(?<=")(?:[^"]+|"")*'
    rf"(?:(?P<close>\")(?P<dots>(?:\.(?:{_SQLITE_QUOTED}|[^\W\d][\w$]*|\*))*)|\Z)"
)
_SQLITE_TOKENS = _alternatives(
    r"[-/'\"`\[$@:#\d.]",
    ("drop", _LINE_COMMENT),
    ("drop", _FLAT_COMMENT),
    ("lit", _SQ_PLAIN),
    # "..." is a name, or a string where an expression may stand and no such column
    # exists: kept only where SQLite reads a name (_SqliteReader).
    ("name", _SQLITE_QUOTED_NAME),
    ("ident", _BT_IDENT),
    ("ident", r"(?<=\[)[^\]]*(?:(?P<close>\])|\Z)"),  # [name]: never a string
    ("lit", rf"{_SQLITE_PARAMETER}\([^\s)]*\)?"),
    ("keep", _SQLITE_PARAMETER),
    ("lit", _DIGIT),
    ("lit", _DOT_DIGIT),
)
# Any other system: every construct one of the three dialects reads differently is read
# the way that redacts, and where they disagree on where a literal ends, to the end.
_UNKNOWN_TOKENS = _alternatives(
    r"[-/#$'\"`\d.]",
    ("drop", rf"(?<=-)-{_SPACE_AFTER}[^\n]*"),  # a comment in every dialect
    # "--x" and "#" are comments only in some dialects: with a quote inside, to the end.
    ("lit", rf"(?<=-)-[^\n'\"`]*['\"`]{_REST}"),
    ("lit", rf"(?<=#)[^\n'\"`]*['\"`]{_REST}"),
    ("drop", _LINE_COMMENT),
    ("drop", r"(?<=#)[^\n]*"),
    ("lit", _EXEC_COMMENT_QUOTED),
    ("lit", rf"(?<=/)\*(?:[^*/]|\*(?!/)|/(?!\*))*/\*{_REST}"),  # nests only in PostgreSQL
    ("drop", _FLAT_COMMENT),
    ("lit", _DOLLAR_QUOTED),
    ("lit", _DOLLAR),
    ("lit", _SQ_AMBIGUOUS),
    ("lit", _DQ_AMBIGUOUS),
    ("ident", rf"(?<=`)(?:[^`'\"]+|``)*(?:(?P<close>`)|['\"]{_REST}|\Z)"),
    ("lit", _DIGIT),
    ("lit", _DOT_DIGIT),
)
_TOKENS = {
    _POSTGRESQL: _POSTGRESQL_TOKENS,
    _MYSQL: _MYSQL_TOKENS,
    _SQLITE: _SQLITE_TOKENS,
    _UNKNOWN: _UNKNOWN_TOKENS,
}

_PARAM = r"(?:\?\d{0,5}|%s|%\([^()\s]{1,64}\)s|:[^\W\d]\w{0,63}|\$\d{1,5}|@[^\W\d]\w{0,63})"
# "IN" spelled out case by case and (?<!\w) for \b: the same matches, but the regex
# engine skips to the next i/I at C speed (3x faster on ordinary statements).
_IN_LIST = re.compile(rf"(?<!\w)[iI][nN] ?\( ?{_PARAM}(?: ?, ?{_PARAM})* ?\)")


# -- SQLite's "..." ---------------------------------------------------------------------
# SQLite reads "x" as a name, except where an expression may stand and no column x
# exists: there it is the string 'x' (its double-quoted string literal misfeature, on by
# default). Django quotes every name with "...", SQLAlchemy the reserved ones ("order",
# "user", "group"); redacting them all made statements on different tables one text
# (one N+1 pattern, one dashboard row) and unreadable. So a "..." is kept where SQLite's
# grammar reads a name and nothing else, and redacted everywhere else: a comparison,
# VALUES, a function argument, a select item, RETURNING, ORDER BY, DEFAULT, a PRAGMA's
# argument or value, an index's columns (expressions in SQLite), and any place this
# reader does not know. The places (each checked against SQLite itself in
# tests/test_sqlite_names.py):
#   - qualified: "t"."c", t."c", "t".c, "t".*  (nm DOT nm is never a string);
#   - right after JOIN, INTO, UPDATE, TABLE, VIEW, TRIGGER, INDEX, REFERENCES, EXISTS
#     (IF [NOT] EXISTS), AS, COLLATE, TO, COLUMN, WITH, RECURSIVE, SAVEPOINT, RELEASE;
#     after FROM unless it is IS [NOT] DISTINCT FROM; after ON when ON follows an
#     index's name (CREATE INDEX i ON t);
#   - first in an item of the parenthesised list right after INSERT INTO t, CREATE TABLE
#     t, REFERENCES t, USING, PRIMARY/FOREIGN KEY and UNIQUE (column names);
#   - a SET target (after SET or a comma of the SET list, before "=");
#   - a table after a comma of a FROM list.
# The reader follows the statement through the text between the tokens the dialect's
# pattern finds (so never inside a string or a comment), one item at a time, keeping
# the last three items, the parenthesis nesting and which comma list each level is in:
# linear, like the tokenizer. Where a parenthesis closes that never opened, or past a
# fixed number of items, every later "..." is redacted.
_NAME_AFTER = frozenset(
    "JOIN INTO UPDATE TABLE VIEW TRIGGER INDEX REFERENCES EXISTS AS COLLATE TO COLUMN "  # noqa: SIM905
    "WITH RECURSIVE SAVEPOINT RELEASE".split()
)
# Words that end a SET or FROM list at their level: what may follow one in SQLite's
# grammar, and more (ending a list early only redacts more).
_LIST_END = frozenset(
    "FROM WHERE GROUP HAVING WINDOW ORDER LIMIT UNION INTERSECT EXCEPT RETURNING ON DO "  # noqa: SIM905
    "SET VALUES SELECT USING".split()
)
# A "(" opens a list of names right after USING or UNIQUE (reserved words: never a
# function's name), PRIMARY KEY or FOREIGN KEY (KEY alone may be a function's name),
# or right after a name that follows INTO, TABLE, EXISTS or REFERENCES.
_NAMES_AFTER_WORD = frozenset({"USING", "UNIQUE"})
_KEY_OF = frozenset({"PRIMARY", "FOREIGN"})
_NAMES_AFTER_NAME = frozenset({"INTO", "TABLE", "EXISTS", "REFERENCES"})
_KEYWORDS = _NAME_AFTER | _LIST_END | _NAMES_AFTER_WORD | _KEY_OF | {"KEY", "DISTINCT"}
_LONGEST_KEYWORD = max(map(len, _KEYWORDS))
_INDEX_NAME = frozenset({"INDEX", "EXISTS"})
_NAME = "name"
_OTHER = "other"
_VALUES = "values"
# The items of the text between tokens: a word; a comma-separated run of parameters
# and numbers' remains (IN (%s, %s, ...)), equivalent to its last three items; one
# parameter or number's remains; a run of operators; any other character.
_VALUE = r"(?:[$@:#?%][\w$]*|\d[\w$]*)"
_ITEM = re.compile(
    rf"(?P<word>[^\W\d][\w$]*)|(?P<values>{_VALUE}(?:[ \t\n\f\r]*,[ \t\n\f\r]*{_VALUE})+)"
    r"|[$@:#?%]?[\w$]+|[^\s\w(),.;$@:#?%]+|\S"
)
# Items the reader takes per statement, the bound on its work whatever the text (about
# 0.7 ms here). SQLAlchemy's statements have an item per 4-5 characters (t.a, t."b"),
# Django's per 6 or more: any 4 KiB statement of theirs is read whole.
_MAX_ITEMS = 1024
_PUNCTUATION = frozenset("(),.;")
_LIST_ITEM = frozenset("(,")  # what comes right before a list's item
_USUAL_GAPS = {" ": "", "\n": "", ".": ".", ",": ",", ", ": ",", "=": _OTHER, " = ": _OTHER}
_QUALIFIED_NEXT = re.compile(r"\.(?:[^\W\d]|[\"`\[*])")
_ASSIGN = re.compile(r"[ \t\n\f\r]*=(?!=)")


class _SqliteReader:
    """Reads a SQLite statement along with the tokenizer's ``sub``: a ``"..."`` is kept
    where it can only be a name (see above), else it becomes ``?``."""

    __slots__ = (
        "budget", "group", "kinds", "last", "list", "lost", "p1", "p2", "p3", "stack", "text"
    )  # fmt: skip

    def __init__(self, text: str, kinds: dict[str, tuple[str, str, str]]) -> None:
        self.text = text
        self.kinds = kinds
        self.last = 0  # where the text after the previous token starts
        self.stack: list[tuple[bool, str | None]] = []  # enclosing levels
        self.group = False  # this level is a parenthesised list of names
        self.list: str | None = None  # the comma list this level is in: "set", "from"
        self.p1: str | None = None  # the last three items, p1 the latest
        self.p2: str | None = None
        self.p3: str | None = None
        self.lost = False  # unsure from here on: every "..." is redacted
        self.budget = _MAX_ITEMS

    def token(self, match: re.Match[str]) -> str:
        start, end = match.span()
        if self.last != start and not self.lost:
            gap = self.text[self.last : start]
            item = _USUAL_GAPS.get(gap)  # ".", ", ", " ": no reading needed
            if item is None:
                self._read(gap.strip())
            elif item:
                self.p3, self.p2, self.p1 = self.p2, self.p1, item
        self.last = end
        kind, close, dots = self.kinds[match.lastgroup or ""]
        if kind == "drop":
            return " "  # a comment is not an item: FROM /* x */ "t" is FROM "t"
        if kind == "keep":  # a parameter
            self.p3, self.p2, self.p1 = self.p2, self.p1, _OTHER
            return match.group()
        if (
            kind != "lit"
            and match.group(close) is not None
            and (kind == "ident" or (not self.lost and (match.group(dots) or self._is_name(end))))
        ):
            if self.p1 == "." and self.p2 == _NAME:  # a.b is one name
                self.p1, self.p2, self.p3 = _NAME, self.p3, None
            else:
                self.p3, self.p2, self.p1 = self.p2, self.p1, _NAME
            return match.group()
        self.p3, self.p2, self.p1 = self.p2, self.p1, _OTHER
        return "?"

    def _is_name(self, end: int) -> bool:  # noqa: PLR0911 - one return per rule
        """Whether the "..." ending at ``end`` stands where SQLite reads only a name."""
        p1, text = self.p1, self.text
        if (p1 == "." and self.p2 == _NAME) or p1 in _NAME_AFTER:
            return True  # t."c", JOIN "t", AS "a", ...
        if text.startswith(".", end) and _QUALIFIED_NEXT.match(text, end) is not None:
            return True  # "t".c
        if p1 == "FROM":
            return self.p2 != "DISTINCT"
        if p1 == "ON":
            return self.p2 == _NAME and self.p3 in _INDEX_NAME
        if p1 in _LIST_ITEM:
            if self.group or (p1 == "," and self.list == "from"):
                return True
        elif p1 != "SET":
            return False
        # A SET target: after SET or a comma of the SET list, and before "=".
        return p1 != "(" and self.list == "set" and _ASSIGN.match(text, end) is not None

    def _read(self, gap: str) -> None:
        """The items of ``gap`` (text between two tokens, stripped), within the reader's
        budget (beyond it, every later "..." is redacted)."""
        items = _items(gap)
        self.budget -= len(items)
        if self.budget < 0:
            self.lost = True
            return
        for item in items:
            if item == _NAME:
                if self.p1 == "." and self.p2 == _NAME:  # a.b is one name
                    self.p1, self.p2, self.p3 = _NAME, self.p3, None
                    continue
            elif item in _LIST_END:
                self.list = None
                if item == "SET":
                    self.list = "set"
                elif item == "FROM" and self.p1 != "DISTINCT":
                    self.list = "from"
            elif item == "(":
                p1 = self.p1
                names = (
                    p1 in _NAMES_AFTER_WORD
                    or (p1 == _NAME and self.p2 in _NAMES_AFTER_NAME)
                    or (p1 == "KEY" and self.p2 in _KEY_OF)
                )
                self.stack.append((self.group, self.list))
                self.group, self.list = names, None
            elif item == ")":
                if not self.stack:
                    self.lost = True
                    return
                self.group, self.list = self.stack.pop()
            elif item == ";":
                self.stack.clear()
                self.group, self.list = False, None
                self.p1 = self.p2 = self.p3 = None
                continue
            elif item == _VALUES:  # as its last three items
                self.p3, self.p2, self.p1 = _OTHER, ",", _OTHER
                continue
            self.p3, self.p2, self.p1 = self.p2, self.p1, item


# Gaps read before, as their items: the same few recur in every statement of an app
# (" FROM ", " WHERE ", ", t."). Short ones only, and at most so many (cleared when
# full): bounded memory.
_GAP_ITEMS: dict[str, tuple[str, ...]] = {}
_MAX_GAP_CACHED = 64
_MAX_GAPS = 4096


def _items(gap: str) -> tuple[str, ...]:
    """The items of a gap: a keyword the reader knows (upper case), ``_NAME`` for any
    other word, one of ``(),.;``, ``_VALUES``, or ``_OTHER``."""
    items = _GAP_ITEMS.get(gap)
    if items is not None:
        return items
    found = []
    for item in _ITEM.finditer(gap):
        text = item.group()
        kind = item.lastgroup
        if kind == "word":
            word = text.upper() if len(text) <= _LONGEST_KEYWORD else _NAME
            found.append(word if word in _KEYWORDS else _NAME)
        elif kind == "values":
            found.append(_VALUES)
        else:
            found.append(text if text in _PUNCTUATION else _OTHER)
    items = tuple(found)
    if len(gap) <= _MAX_GAP_CACHED:
        if len(_GAP_ITEMS) >= _MAX_GAPS:
            _GAP_ITEMS.clear()
        _GAP_ITEMS[gap] = items
    return items


def _dialect(system: str | None) -> str:
    if system is None:
        return _UNKNOWN
    return _DIALECTS.get(system.lower(), _UNKNOWN)


def _sanitize(statement: str, system: str | None) -> str:
    dialect = _dialect(system)
    pattern, kinds = _TOKENS[dialect]
    text = statement[:MAX_STATEMENT_READ]

    def token(match: re.Match[str]) -> str:
        kind, close, _ = kinds[match.lastgroup or ""]
        if kind == "drop":
            return " "
        if kind == "keep" or (kind == "ident" and match.group(close) is not None):
            return match.group()
        return "?"

    if dialect == _SQLITE and '"' in text:
        token = _SqliteReader(text, kinds).token
    text = pattern.sub(token, text)
    text = " ".join(text.split())  # runs of whitespace as one space (str.isspace, as \s)
    text = _IN_LIST.sub("IN (?)", text)
    return valid_utf8(text[:MAX_STATEMENT])


_sanitize_cached = lru_cache(maxsize=2048)(_sanitize)


def sanitize_statement(statement: str, system: str | None = None) -> str:
    """``statement`` with literals replaced by ``?``, comments removed, IN-lists collapsed.

    ``system`` (``db.system``) selects the dialect: ``postgresql``, ``mysql``/``mariadb``
    or ``sqlite``; any other (or None) is read the way that redacts most.
    """
    if len(statement) <= _MAX_CACHED_STATEMENT:
        return _sanitize_cached(statement, system)
    return _sanitize(statement, system)


# The verbs a statement can start with. Anything else is "OTHER": the operation name is a
# metric attribute, so it must never carry text of the user's.
SQL_OPERATIONS = frozenset(
    """SELECT INSERT UPDATE DELETE MERGE WITH CREATE ALTER DROP TRUNCATE BEGIN COMMIT
    ROLLBACK SAVEPOINT RELEASE SET RESET SHOW EXPLAIN CALL EXEC EXECUTE PRAGMA VACUUM
    ANALYZE GRANT REVOKE LOCK UNLOCK COPY VALUES REPLACE UPSERT LISTEN UNLISTEN NOTIFY
    DECLARE FETCH CLOSE MOVE PREPARE DEALLOCATE START END ABORT REINDEX CLUSTER REFRESH
    COMMENT DISCARD DO LOAD CHECKPOINT TABLE ATTACH DETACH USE DESCRIBE DESC HANDLER
    OPTIMIZE REPAIR CHECKSUM RENAME FLUSH KILL PURGE""".split()  # noqa: SIM905 - a table
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
# A finding starts with a fixed string. The scan keeps, for each such string, where it
# next occurs (str.find: C speed, each string's position only moves forward) and takes
# the nearest; a handler returns the finding's replacement and where scanning resumes.
# A regular expression over all of them would try its alternatives at every character
# that could start one (measured: ~2 ms per 16 KiB of ": : :"), this stays at C speed
# between findings whatever the text, and the Python work is bounded by the number of
# findings (MAX_ERROR_FINDINGS), not by the text.
#
# (fixed string, handler name, searched case-insensitively)
_FINDINGS: tuple[tuple[str, str, bool], ...] = (
    ("://", "url", False),
    ("password", "dsn", True),
    ("passwd", "dsn", True),
    ("pwd", "dsn", True),
    ("[SQL: ", "sql", False),
    ("[parameters: ", "parameters", False),
    ("DETAIL:", "field", False),
    ("CONTEXT:", "field", False),
    ("HINT:", "field", False),
    ("Key (", "key", False),
    ("key (", "key", False),
    ("Failing row contains (", "row", False),
    ("LINE ", "excerpt", False),
    # Values databases quote back: PostgreSQL (for type integer: "...", at or near "...",
    # invalid value "...", JSON's Token "...", PL/pgSQL's SQL statement "...", a portal
    # parameter $1 = '...'), SQLite (unrecognized token: "...", near "..."), MySQL
    # (Duplicate entry '...', Incorrect integer value: '...', near '...').
    ('near "', "echo", False),
    (': "', "echo", False),
    ('value "', "echo", False),
    ('Token "', "echo", False),
    ('statement "', "echo", False),
    ("near '", "echo", False),
    ("entry '", "echo", False),
    ("value '", "echo", False),
    ("value: '", "echo", False),
    (" = '", "parameter", False),
    # asyncpg: invalid input for query argument $1: '...' (...)
    ("argument $", "argument", False),
    # Redis: ERR unknown command 'x', with args beginning with: 'a' 'b'.
    ("args beginning with:", "rest_of_line", False),
    ("data, line ", "json_context", False),
)
_CREDENTIAL_FINDINGS = tuple(f for f in _FINDINGS if f[1] in {"url", "dsn"})
# Findings acted on plus positions refreshed: the bound on Python-level steps per text.
_MAX_STEPS = 4 * MAX_ERROR_FINDINGS
# Sanitized statement text per error text ([SQL: ...] blocks and LINE excerpts together).
_MAX_SANITIZED_PER_TEXT = 2048

_NON_SPACE = re.compile(r"\S*")
# What may follow a line holding a value (after empty lines, if any), in the texts of the
# drivers, SQLAlchemy and Python's tracebacks; or nothing: the end of the text.
_NEXT_LINES = (
    "HINT:", "CONTEXT:", "DETAIL:", "LINE ", "QUERY:", "WHERE:", "[SQL: ",
    "[parameters: ", "(Background on this error at: ", "Traceback (most recent call last)",
    "The above exception", "During handling of the above", '  File "',
)  # fmt: skip
_VALUE_TAIL = _NON_SPACE  # libpq reads {a};b as one unquoted value: so do we
_DSN_AT = re.compile(r"(?i:password|passwd|pwd)[\"']?[ \t]*[=:][ \t]*")
_DSN_IN_URL = re.compile(r"((?i:password|passwd|pwd)=)[^&;#\s]*")  # in a query string
_EXCERPT_AT = re.compile(r"LINE \d{1,9}: ")
_JSON_LINE_AT = re.compile(r"\d{1,9}: ")
_ARGUMENT_AT = re.compile(r"\d{1,5}: '")
_PARAMETER_BEFORE = re.compile(r"\$\d{1,5}\Z")
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
    """One pass over one error text: the text, the dialect, and the handlers.

    Each handler takes where its fixed string starts and ends and returns (replacement,
    position after the finding); ``replacement`` stands for ``text[start:position]``.
    """

    def __init__(self, text: str, system: str | None) -> None:
        self.text = text
        self.system = system
        self._sql_ends: tuple[int, int] | None = None
        self._sanitize_budget = _MAX_SANITIZED_PER_TEXT

    def url(self, start: int, end: int) -> tuple[str, int]:
        """``scheme://user:***@host``: everything between the first ``:`` after ``//``
        and the last ``@`` of the URL, so a password with ``/ @ :`` in it goes whole."""
        run = _NON_SPACE.match(self.text, end)
        stop = run.end() if run else end
        url = self.text[end:stop]
        at = url.rfind("@")
        colon = url.find(":", 0, at) if at > 0 else -1
        if colon >= 0:
            url = f"{url[: colon + 1]}***{url[at:]}"
        if "=" in url:
            url = _DSN_IN_URL.sub(r"\1***", url)
        return "://" + url, stop

    def dsn(self, start: int, end: int) -> tuple[str, int]:
        """``password=***``: quoted (libpq, Python reprs, JSON), ODBC's ``{...}``, or up
        to the next whitespace (a ``;`` is part of a libpq value); never closed: to the end.
        """
        text = self.text
        key = _DSN_AT.match(text, start)
        if key is None:
            return text[start:end], end
        value_start = key.end()
        quoted = _QUOTED_VALUE.get(text[value_start : value_start + 1])
        value = (quoted or _NON_SPACE).match(text, value_start)
        stop = value.end() if value else value_start
        if quoted is not None:  # 'a'b or {}b: what sticks to the quotes is value too
            rest = _VALUE_TAIL.match(text, stop)
            stop = rest.end() if rest else stop
        return key.group() + "***", stop

    def sql(self, start: int, end: int) -> tuple[str, int]:
        """SQLAlchemy's ``[SQL: ...]``, sanitized. It ends before the last of SQLAlchemy's
        closing lines in the text (a statement may contain ``]`` and newlines), or at the
        end of the text."""
        if self._sql_ends is None:
            text = self.text
            self._sql_ends = (text.rfind(_PARAMETERS_START), text.rfind(_PARAMETERS_END))
        stop = next((e for e in self._sql_ends if e >= end), len(self.text))
        return "[SQL: " + self._sanitized(self.text[end:stop], self._dialect()), stop

    def parameters(self, start: int, end: int) -> tuple[str, int]:
        stop = self.text.find(_PARAMETERS_END, end)
        if stop < 0:
            return "[parameters: ***]", len(self.text)
        return "[parameters: ***", stop

    def field(self, start: int, end: int) -> tuple[str, int]:
        """A PostgreSQL DETAIL/CONTEXT/HINT line: any value in it redacted."""
        return self._value_line(start, end, _VALUE_OPENER)

    def key(self, start: int, end: int) -> tuple[str, int]:
        return self._value_line(start, end, _KEY_VALUE)

    def row(self, start: int, end: int) -> tuple[str, int]:
        return self._redact_value(start, end, "(")

    def excerpt(self, start: int, end: int) -> tuple[str, int]:
        """PostgreSQL's ``LINE n:`` excerpt of the statement. Only the first line, shown
        from its start, is known to start outside a literal: it is sanitized; any other
        excerpt (a later line, or cut with "...") is redacted whole."""
        text = self.text
        marker = _EXCERPT_AT.match(text, start)
        if marker is None:
            return text[start:end], end
        stop = text.find("\n", marker.end())
        stop = len(text) if stop < 0 else stop
        excerpt = text[marker.end() : stop]
        if marker.group() == "LINE 1: " and not excerpt.startswith("..."):
            return marker.group() + self._sanitized(excerpt, _POSTGRESQL), stop
        return marker.group() + "?", stop

    def echo(self, start: int, end: int) -> tuple[str, int]:
        """A value a database quotes back: to the last such quote on the line. Not in a
        traceback's source lines (indented by four spaces): ``{"a": "b"}`` is code."""
        text = self.text
        if text.startswith("    ", text.rfind("\n", 0, start) + 1):
            return text[start:end], end
        return self._redact_value(start, end, text[end - 1])

    def parameter(self, start: int, end: int) -> tuple[str, int]:
        """PostgreSQL's ``unnamed portal parameter $1 = '...'``."""
        if _PARAMETER_BEFORE.search(self.text, max(0, start - 6), start) is None:
            return self.text[start:end], end
        return self._redact_value(start, end, "'")

    def argument(self, start: int, end: int) -> tuple[str, int]:
        number = _ARGUMENT_AT.match(self.text, end)
        if number is None:
            return self.text[start:end], end
        return self._redact_value(start, number.end(), "'")

    def rest_of_line(self, start: int, end: int) -> tuple[str, int]:
        stop = self.text.find("\n", end)
        return self.text[start:end] + " ?", len(self.text) if stop < 0 else stop

    def json_context(self, start: int, end: int) -> tuple[str, int]:
        """PostgreSQL's ``JSON data, line 1: ...``: the rest of the line is the input."""
        number = _JSON_LINE_AT.match(self.text, end)
        if number is None:
            return self.text[start:end], end
        return self.rest_of_line(start, number.end())

    def _value_line(self, start: int, end: int, opener: re.Pattern[str]) -> tuple[str, int]:
        text = self.text
        stop = text.find("\n", end)
        stop = len(text) if stop < 0 else stop
        found = opener.search(text, end, stop)
        if found is None:
            return text[start:end], end
        # The key's value first: a quoted column name must not be taken for the value.
        paren = _PAREN_VALUE.search(text, end, stop)
        if paren is not None:
            found = paren
        head = text[start : found.start()]
        if found.group().startswith("line"):
            return head + found.group() + "?", stop
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
        stop = text.find("\n", value_start)
        stop = len(text) if stop < 0 else stop
        last = text.rfind(closer, value_start, stop)
        head = text[start:value_start]
        # No closer, a parenthesis opened after the last one closed (a second value
        # that goes on), or a next line that no database or library writes there (the
        # value held a closer and a newline): nothing after can be trusted.
        if (
            last < 0
            or (opener == "(" and text.find("(", last, stop) >= 0)
            or not _trusted_next_line(text, stop)
        ):
            return head + "?" + TRUNCATED, len(text)
        return head + "?", last

    def _sanitized(self, statement: str, dialect: str | None) -> str:
        if len(statement) > self._sanitize_budget:
            statement = statement[: max(self._sanitize_budget, 0)]
            if not statement:
                return "?"
        self._sanitize_budget -= len(statement)
        return sanitize_statement(statement, dialect)

    def _dialect(self) -> str | None:
        if self.system is not None:
            return self.system
        found = {
            dialect or ("sqlite" if sqlite else "mysql" if mysql else "postgresql")
            for sqlite, mysql, _, dialect in set(_DRIVER.findall(self.text))
        }
        # None of them, or two dialects in one text: read the way that redacts most.
        return found.pop() if len(found) == 1 else None


def _trusted_next_line(text: str, stop: int) -> bool:
    """Whether what follows the line ending at ``stop`` is a line we know (or nothing)."""
    index = stop
    for _ in range(4):
        if index >= len(text) or text[index] != "\n":
            break
        index += 1
    return index >= len(text) or text.startswith(_NEXT_LINES, index)


def _run(text: str, findings: tuple[tuple[str, str, bool], ...], system: str | None) -> str:
    cut = len(text) > MAX_ERROR_TEXT
    text = text[:MAX_ERROR_TEXT]
    scrub = _Scrub(text, system)
    # Case-insensitive strings are searched in an ASCII-lowered copy: same positions.
    folded = text.encode("ascii", "replace").lower().decode("ascii")
    haystacks = [folded if insensitive else text for _, _, insensitive in findings]
    upcoming = []
    for index, (string, _, _) in enumerate(findings):
        at = haystacks[index].find(string)
        if at >= 0:
            upcoming.append((at, index))
    heapq.heapify(upcoming)
    out: list[str] = []
    position = 0
    for _ in range(_MAX_STEPS):
        if not upcoming:
            break
        at, index = heapq.heappop(upcoming)
        string, handler, _ = findings[index]
        if at < position:  # inside what an earlier finding covered: look further on
            at = haystacks[index].find(string, position)
            if at >= 0:
                heapq.heappush(upcoming, (at, index))
            continue
        out.append(text[position:at])
        replacement, resume = getattr(scrub, handler)(at, at + len(string))
        out.append(replacement)
        position = max(resume, at + len(string))
        at = haystacks[index].find(string, position)
        if at >= 0:
            heapq.heappush(upcoming, (at, index))
    else:
        if upcoming:
            out.append(TRUNCATED)  # too many findings: the rest is not looked at
            position = len(text)
    out.append(text[position:])
    if cut and position < len(text):
        out.append(TRUNCATED)
    result = "".join(out)
    if len(result) > MAX_ERROR_TEXT:
        result = result[:MAX_ERROR_TEXT] + TRUNCATED
    return valid_utf8(result)


def scrub_credentials(text: str) -> str:
    """Passwords removed from URLs (``scheme://user:***@``) and DSNs (``password=***``)."""
    return _run(text, _CREDENTIAL_FINDINGS, None)


def scrub_error_text(text: str, system: str | None = None) -> str:
    """An error message or stack trace without bound values, echoed values or passwords.

    ``system`` (``db.system``) is the dialect of SQLAlchemy's ``[SQL: ...]`` blocks; when
    None it is read from the driver SQLAlchemy names in the text, else fails closed.
    """
    if len(text) <= _CACHED_ERROR_TEXT:
        return _scrub_error_text_cached(text, system)
    return _run(text, _FINDINGS, system)


# When a dependency fails, the same message and stack trace come back thousands of times
# a minute (and a span's status, exception message and stack trace repeat one another):
# each distinct text is scrubbed once. Bounded: 256 entries of at most 4 KiB in, about
# as much out.
_CACHED_ERROR_TEXT = 4096


@lru_cache(maxsize=256)
def _scrub_error_text_cached(text: str, system: str | None) -> str:
    return _run(text, _FINDINGS, system)


def valid_utf8(text: str) -> str:
    """``text`` as valid UTF-8: a lone surrogate would make the OTLP encoder reject the
    whole batch the text is in."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode()
    return text
