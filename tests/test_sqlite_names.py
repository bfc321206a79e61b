"""SQLite's double-quoted names: kept where SQLite reads a name, redacted where it may
read a string.

SQLite reads ``"x"`` as the string ``'x'`` where an expression may stand and no column
``x`` exists, so a secret in ``WHERE password = "hunter2"`` must not leave the process.
Django double-quotes every name, SQLAlchemy the reserved ones (``"order"``, ``"user"``):
those must stay, or statements on different tables become one text (one N+1 pattern, one
dashboard row). The proof is against SQLite itself (the stdlib ``sqlite3`` engine):

- the oracle: SQLite reads ``"zqxsekrit"`` as a string exactly when the statement
  compiles with it and fails with ``no such column: zqxsekrit`` once the quotes are
  removed (its double-quoted-string fallback is the only difference between the two);
- a table of positions, every single-token mutation of the statements Django and
  SQLAlchemy really emit, and hypothesis' compound mutations of them all go through the
  oracle: wherever SQLite reads a string, the sanitizer must have redacted it;
- those real statements (tests/data/sqlite_statements.json) keep their normal forms;
- end to end, both apps under ``opentelemetry-instrument``: the exported ``db.statement``
  reads like the query, a secret in a double-quoted value never arrives, and two lazy
  loads of the same shape on different tables are two patterns, not one N+1.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_excellence._findings.sql import sanitize_statement
from tests.launch import APPS as APPS_DIR
from tests.launch import Run, instrumented
from tests.support.otlp_sink import OtlpSink
from tests.test_text_safety import PROFILE

SECRET = "zqxsekrit"
QUOTED = f'"{SECRET}"'
MARK = "\x00"  # where the secret goes in a template
DATA = json.loads((Path(__file__).parent / "data" / "sqlite_statements.json").read_text())
REAL = [
    (app, row["raw"], row["sanitized"]) for app in ("django", "sqlalchemy") for row in DATA[app]
]
POSITION_SCHEMA = """
CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT);
CREATE TABLE u (id INTEGER PRIMARY KEY, t_id INT, c TEXT);
"""


def engine() -> sqlite3.Connection:
    """An in-memory database with the real apps' tables and the position tables."""
    db = sqlite3.connect(":memory:")
    for _, raw, _ in REAL:
        if raw.lstrip().upper().startswith("CREATE TABLE"):
            db.execute(raw)
    db.executescript(POSITION_SCHEMA)
    return db


DB = engine()


def compile_error(statement: str) -> str | None:
    """SQLite's error compiling ``statement`` (run under EXPLAIN: nothing changes), or None."""
    text = "EXPLAIN " + statement.replace("%s", "?")
    try:
        DB.execute(text).fetchall()
    except sqlite3.ProgrammingError as error:
        count = re.search(r"uses (\d+)", str(error))  # it compiled; bind the placeholders
        if count is None:
            return str(error)
        try:
            DB.execute(text, [None] * int(count.group(1))).fetchall()
        except sqlite3.Error as again:
            return str(again)
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError) as error:
        return str(error)
    return None


def reads_as_string(template: str) -> bool:
    """Whether SQLite reads the secret in ``template`` (at MARK) as a string."""
    if compile_error(template.replace(MARK, QUOTED)) is not None:
        return False
    bare = compile_error(template.replace(MARK, SECRET))
    return bare is not None and f"no such column: {SECRET}" in bare


def kept(template: str) -> bool:
    return SECRET in sanitize_statement(template.replace(MARK, QUOTED), "sqlite")


# (template with {} where "zqxsekrit" goes, whether it is a name the sanitizer keeps)
POSITIONS: list[tuple[str, bool]] = [
    # where SQLite may read a string: always redacted
    ("SELECT {} FROM t", False),
    ("SELECT * FROM t WHERE a = {}", False),
    ("SELECT * FROM t WHERE {} = a", False),
    ("SELECT * FROM t WHERE a IS NOT DISTINCT FROM {}", False),
    ("SELECT * FROM t WHERE a IN ({}, 2)", False),
    ("SELECT lower({}) FROM t", False),
    ("SELECT * FROM t ORDER BY {}", False),
    ("SELECT a FROM t GROUP BY {}", False),
    ("SELECT * FROM t LIMIT {}", False),
    ("SELECT * FROM t JOIN u ON {} = t.a", False),
    ("SELECT CASE WHEN a THEN {} END FROM t", False),
    ("SELECT * FROM t WHERE a = /* FROM */ {}", False),
    ("SELECT * FROM t WHERE a = -- JOIN\n{}", False),
    ("INSERT INTO t (a) VALUES ({})", False),
    ('INSERT INTO "t" ("id", "a") VALUES (1, {})', False),
    ("INSERT INTO t (id, a) SELECT 1, {}", False),
    ("UPDATE t SET a = {}", False),
    ('UPDATE "t" SET "a" = 1, "b" = {}', False),
    ('UPDATE "t" SET "a" = coalesce(NULL, {})', False),
    ("UPDATE t SET a = 1 RETURNING {}", False),
    ('UPDATE t SET a = 1 RETURNING "t"."id", {}', False),
    ("UPDATE t SET (a, b) = (1, {})", False),
    ('INSERT INTO t (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET "a" = {}', False),
    ("CREATE INDEX i1 ON t ({})", False),  # an index's columns are expressions
    ("CREATE INDEX i2 ON t (a) WHERE a = {}", False),
    ("CREATE TABLE x1 (a TEXT CHECK (a <> {}))", False),
    ("CREATE TABLE x2 (a TEXT CHECK ({} <> a))", False),
    ("CREATE TABLE x3 (a, b AS ({}))", False),
    ('CREATE TABLE "x4" ("a" TEXT DEFAULT {})', False),  # DEFAULT reads a name as a value
    ("PRAGMA table_info({})", False),
    ("PRAGMA cache_size = {}", False),
    ("SELECT key({}) FROM t", False),  # KEY ( is a list of names only after PRIMARY/FOREIGN
    ("SELECT a FROM t WHERE b IN (SELECT c FROM u WHERE c = {})", False),
    # a name, whatever exists: kept
    ("SELECT t.{} FROM t", True),
    ("SELECT {}.a FROM t", True),
    ('SELECT "t".{} FROM t', True),
    ("SELECT {}.* FROM t", True),
    ("SELECT * FROM {}", True),
    ('SELECT * FROM "t", {}', True),
    ("SELECT * FROM t AS {}", True),
    ("SELECT a AS {} FROM t", True),
    ("SELECT CAST(a AS {}) FROM t", True),
    ("SELECT a FROM t ORDER BY a COLLATE {}", True),
    ("SELECT * FROM t JOIN {} ON 1", True),
    ("SELECT * FROM t JOIN u USING ({})", True),
    ("INSERT INTO {} (a) VALUES (1)", True),
    ("INSERT INTO t (a, {}) VALUES (1, 2)", True),
    ('INSERT INTO "t" ({}) VALUES (1)', True),
    ("UPDATE {} SET a = 1", True),
    ("UPDATE t SET {} = 1", True),
    ('UPDATE "t" SET "a" = 1, {} = 2', True),
    ('UPDATE "t" SET "a" = ("t"."a" + 1), {}=2 WHERE "t"."id" = 1', True),
    ("DELETE FROM {} WHERE 1", True),
    ("CREATE TABLE {} (a)", True),
    ("CREATE TABLE IF NOT EXISTS {} (a)", True),
    ("CREATE TABLE x5 (a, {} TEXT)", True),
    ("CREATE TABLE x6 ({} TEXT NOT NULL, b)", True),
    ("CREATE TABLE x7 (a, b, PRIMARY KEY ({}))", True),
    ("CREATE TABLE x8 (a, b, UNIQUE (a, {}))", True),
    ("CREATE TABLE x9 (a REFERENCES t ({}))", True),
    ("CREATE TABLE y1 (a, FOREIGN KEY ({}) REFERENCES t (id))", True),
    ("CREATE INDEX {} ON t (a)", True),
    ("CREATE INDEX i3 ON {} (a)", True),
    ("CREATE UNIQUE INDEX IF NOT EXISTS i4 ON {} (a)", True),
    ("CREATE VIEW {} AS SELECT 1", True),
    ("ALTER TABLE t RENAME COLUMN b TO {}", True),
    ("ALTER TABLE t ADD COLUMN {} TEXT", True),
    ("DROP TABLE IF EXISTS {}", True),
    ("WITH {} AS (SELECT 1) SELECT 1", True),
    ("SAVEPOINT {}", True),
]


class TestPositions:
    """Each position, against the sanitizer and against SQLite's own reading."""

    @pytest.mark.parametrize(("template", "name"), POSITIONS)
    def test_kept_exactly_where_expected(self, template: str, name: bool) -> None:
        """The secret is kept in name positions and redacted anywhere else."""
        assert kept(template.replace("{}", MARK)) is name

    @pytest.mark.parametrize(("template", "name"), POSITIONS)
    def test_sqlite_never_reads_a_kept_name_as_a_string(self, template: str, name: bool) -> None:
        """What we keep, SQLite reads as a name (the oracle agrees with the table)."""
        if name:
            assert not reads_as_string(template.replace("{}", MARK))

    def test_the_oracle_sees_strings(self) -> None:
        """The oracle is not vacuous: SQLite reads most redacted positions as a string."""
        strings = [
            t for t, name in POSITIONS if not name and reads_as_string(t.replace("{}", MARK))
        ]
        assert len(strings) >= 20, strings


def pieces(statement: str) -> list[str]:
    """The statement as tokens a mutation can replace or insert after."""
    return re.findall(r"\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'|%s|\w+|\s+|\S", statement)


def mutations(statement: str) -> Iterator[str]:
    """Templates: each token replaced by the secret, and the secret after each token."""
    parts = pieces(statement)
    for index, part in enumerate(parts):
        if part.isspace():
            continue
        yield "".join(parts[:index]) + MARK + "".join(parts[index + 1 :])
        yield "".join(parts[: index + 1]) + " " + MARK + " " + "".join(parts[index + 1 :])


def test_every_single_mutation_of_the_real_statements() -> None:
    """Every token of every real statement replaced by (and followed by) a double-quoted
    secret: wherever SQLite then reads it as a string, the sanitizer redacted it. Both
    outcomes occur many times, so the check has teeth both ways."""
    strings = names = 0
    leaks = []
    for _, raw, _ in REAL:
        for template in mutations(raw):
            string = reads_as_string(template)
            keeps = kept(template)
            strings += string
            names += keeps
            if string and keeps:
                leaks.append(template.replace(MARK, QUOTED))
    assert not leaks, leaks[:5]
    assert strings >= 50 and names >= 300, (strings, names)


VOCABULARY = sorted(
    {p for _, raw, _ in REAL for p in pieces(raw) if not p.isspace()}
    | set(
        "( ) , . ; = == * ? %s AS ON FROM JOIN INTO SET VALUES SELECT WHERE RETURNING "  # noqa: SIM905
        "DISTINCT IS NOT IN CASE WHEN THEN END DEFAULT PRIMARY FOREIGN KEY UNIQUE USING "
        "REFERENCES TABLE INDEX EXISTS IF UPDATE DELETE INSERT ORDER BY GROUP LIMIT "
        "COLLATE WITH TO t u a b c id t.a [a] [a'b] `a` 'x' \"y\" $v( :v( -- /* */ ' \" ` "
        "\n".split(" ")
    )
)


BASES = [raw for _, raw, _ in REAL] + [template.replace("{}", "a") for template, _ in POSITIONS]


@settings(PROFILE)
@given(
    base=st.sampled_from(BASES),
    edits=st.lists(st.tuples(st.integers(0, 400), st.sampled_from(VOCABULARY)), max_size=3),
    where=st.integers(0, 400),
    replace=st.booleans(),
)
def test_compound_mutations_never_keep_a_string(
    base: str, edits: list[tuple[int, str]], where: int, replace: bool
) -> None:
    """Real statements (and the position table's) with up to three tokens swapped for
    SQL words, quotes, brackets, comments or parameters, and the secret put anywhere:
    SQLite never reads as a string a secret the sanitizer kept."""
    parts = [p for p in pieces(base) if not p.isspace()]
    for index, word in edits:
        parts[index % len(parts)] = word
    index = where % len(parts)
    if replace:
        parts[index] = MARK
    else:
        parts.insert(index, MARK)
    template = " ".join(parts)
    assert not (kept(template) and reads_as_string(template)), template.replace(MARK, QUOTED)


@pytest.mark.parametrize(("app", "raw", "expected"), REAL, ids=lambda v: str(v)[:60])
def test_real_statements_keep_their_names(app: str, raw: str, expected: str) -> None:
    """Django's and SQLAlchemy's statements normalise to the expected, readable text."""
    assert sanitize_statement(raw, "sqlite") == expected


def test_the_same_shape_on_different_tables_stays_two_statements() -> None:
    """Django's lazy loads of a customer and of a product (same columns) are two texts:
    they were one (``SELECT ?.?, ?.? FROM ? ...``), so N+1 detection merged them."""
    customer, product = (
        next(
            e
            for _, raw, e in REAL
            if raw.startswith(f'SELECT "shop_{t}"."id"') and "LIMIT 21" in raw
        )
        for t in ("customer", "product")
    )
    assert customer != product
    assert customer == (
        'SELECT "shop_customer"."id", "shop_customer"."name" FROM "shop_customer" '
        'WHERE "shop_customer"."id" = %s LIMIT ?'
    )


@pytest.mark.parametrize(
    "statement",
    [
        'SELECT "t"."a" FROM "t" WHERE "t"."b" = "hunter2"',
        'UPDATE "t" SET "a" = "hunter2"',
        'SELECT $a(") FROM t WHERE a = "hunter2"',  # a TCL parameter holds the quote
        "SELECT $a(') FROM t WHERE a = 'hunter2'",
        'SELECT [a"b] FROM "t" WHERE "t"."a" = "hunter2"',
        'SELECT "t"."a" FROM "t") WHERE "t"."a" = "hunter2"',
    ],
)
def test_tricks_redact(statement: str) -> None:
    """Parameters and brackets that hold quotes, and unbalanced parentheses, redact."""
    assert "hunter2" not in sanitize_statement(statement, "sqlite")


def test_other_dialects_are_unchanged() -> None:
    """MySQL reads "..." as a string (unless ANSI_QUOTES): redacted; PostgreSQL keeps it."""
    statement = 'SELECT "t"."a" FROM "t" WHERE "t"."b" = "x"'
    assert sanitize_statement(statement, "mysql") == "SELECT ?.? FROM ? WHERE ?.? = ?"
    assert sanitize_statement(statement, None) == "SELECT ?.? FROM ? WHERE ?.? = ?"
    assert sanitize_statement(statement, "postgresql") == statement


# -- end to end ---------------------------------------------------------------------------
APPS = {
    "django": (
        "sqlite_names_django.py",
        # Django's instrumentation reads the settings before the script's folder is on
        # sys.path: the settings module must be importable from the start.
        {"DJANGO_SETTINGS_MODULE": "sqlite_names_django_settings", "PYTHONPATH": str(APPS_DIR)},
    ),
    "sqlalchemy": ("sqlite_names_sqlalchemy.py", {}),
}
APP_SECRET = "sk66xDqSecretVal"
SERVER = 2  # SpanKind.SERVER in OTLP


def run_app(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OtlpSink, Run]]:
    script, env = APPS[name]
    with OtlpSink() as sink:
        run = instrumented(
            script,
            {
                "OTEL_SERVICE_NAME": f"sqlite-names-{name}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint,
                "DB_PATH": str(tmp_path_factory.mktemp(name) / "app.db"),
                "SECRET": APP_SECRET,
                **env,
            },
        )
        assert run.returncode == 0, run.stderr
        assert "APP-END" in run.stdout
        assert sink.wait_for(lambda: len(statements(sink)) >= len(DATA[name]) // 2)
        yield sink, run


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OtlpSink, Run]]:
    yield from run_app("django", tmp_path_factory)


@pytest.fixture(scope="module")
def sqlalchemy_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OtlpSink, Run]]:
    yield from run_app("sqlalchemy", tmp_path_factory)


@pytest.fixture(params=sorted(APPS))
def exported(request: pytest.FixtureRequest) -> tuple[str, OtlpSink]:
    sink, _ = request.getfixturevalue(f"{request.param}_app")
    return request.param, sink


def statements(sink: OtlpSink) -> set[str]:
    found = set()
    for span in sink.spans():
        text = span.attributes.get("db.statement") or span.attributes.get("db.query.text")
        if isinstance(text, str) and span.attributes.get("db.system") == "sqlite":
            found.add(text)
    return found


def test_exported_statements_read_like_the_queries(exported: tuple[str, OtlpSink]) -> None:
    """Every statement the app ran arrives in its normal form, names intact."""
    name, sink = exported
    got = statements(sink)
    missing = [row["sanitized"] for row in DATA[name] if row["sanitized"] not in got]
    assert not missing, (missing, sorted(got))
    assert not [s for s in got if "?.?" in s or "FROM ?" in s or "JOIN ?" in s]


def test_a_double_quoted_secret_never_arrives(exported: tuple[str, OtlpSink]) -> None:
    """The app's raw query compares with a double-quoted secret: the statement arrives,
    the secret in no exported byte."""
    _, sink = exported
    payload = b"".join(
        r.SerializeToString()
        for r in sink.trace_requests + sink.metric_requests + sink.log_requests
    )
    assert APP_SECRET.encode() not in payload
    assert any(s.endswith('."name" = ?') or s.endswith('."group" = ?') for s in statements(sink))


def test_lazy_loads_on_two_tables_are_not_one_n_plus_one(
    django_app: tuple[OtlpSink, Run],
) -> None:
    """Django: 3 customers and 3 products loaded lazily are two patterns of 3 (no N+1);
    6 customers are an N+1 of 6 on the request, with the statement naming the table."""
    sink, _ = django_app
    servers: dict[str, Any] = {s.name: s for s in sink.spans() if s.kind == SERVER}
    assert set(servers) == {"GET mixed/", "GET orders/"}
    assert "otel_excellence.db.n_plus_one" not in servers["GET mixed/"].attributes
    orders = servers["GET orders/"].attributes
    assert orders["otel_excellence.db.n_plus_one.count"] == 6
    assert orders["otel_excellence.db.n_plus_one.statement"] == (
        'SELECT "shop_customer"."id", "shop_customer"."name" FROM "shop_customer" '
        'WHERE "shop_customer"."id" = %s LIMIT ?'
    )
