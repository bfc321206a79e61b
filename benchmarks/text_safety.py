"""Time of our text processing on crafted worst cases, and on ordinary statements.

Each crafted family is one of the inputs that took quadratic time before issue 10
(URL credentials, SQLAlchemy's ``[SQL: `` block, ``Failing row contains``, the
fingerprint's frame-line pattern on blank lines), plus inputs dense in the tokens the
scanners act on. Each measurement runs in a child process with a time limit, so a
quadratic implementation shows as ">limit" instead of hanging the benchmark.

    .venv/bin/python benchmarks/text_safety.py                 # this checkout
    .venv/bin/python benchmarks/text_safety.py --repo ../main  # another checkout
    .venv/bin/python benchmarks/text_safety.py --sizes 65536 262144 1048576 --limit 60

Seconds per call (best of a few runs) at each size, then microseconds per call for
ordinary statements (PostgreSQL, Django and SQLAlchemy on SQLite), cached and uncached.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def families() -> dict[str, Callable[[int], str]]:
    """Crafted inputs of ``n`` characters, by name (the function they target in brackets)."""
    return {
        "url-credentials [scrub_error_text]": lambda n: ("://" + "a-" * n)[:n],
        "sql-block [scrub_error_text]": lambda n: ("[SQL: " * n)[:n],
        "failing-row [scrub_error_text]": lambda n: ("Failing row contains (" * n)[:n],
        "blank-lines [fingerprint_stacktrace]": lambda n: "\n" * n,
        "frame-lines [fingerprint_stacktrace]": lambda n: (' File "a.py", line 1, in f\n' * n)[:n],
        "detail-lines [scrub_error_text]": lambda n: ("DETAIL:  Key (a)=(" * n)[:n],
        "quotes [scrub_error_text]": lambda n: (': "' * n)[:n],
        "comments [sanitize_statement]": lambda n: ("/*" * n)[:n],
        "literals [sanitize_statement]": lambda n: ("1,'a'," * n)[:n],
        "in-lists [sanitize_statement]": lambda n: ("IN (%(" * n)[:n],
        # SQLite's "..." names, each decided by the reader: dense in names, in items
        "sqlite-names [sanitize_statement_sqlite]": lambda n: ('SET "a"=1,' * n)[:n],
        "sqlite-items [sanitize_statement_sqlite]": lambda n: ('( ) ( ) "x"' * n)[:n],
    }


def _target(name: str) -> str:
    return name.rsplit("[", 1)[1].rstrip("]")


def child(repo: str, family: str, size: int, runs: int) -> None:
    sys.path.insert(0, repo)
    from otel_excellence._findings import fingerprint, sql

    functions: dict[str, Callable[[str], object]] = {
        "scrub_error_text": sql.scrub_error_text,
        "sanitize_statement": lambda text: sql.sanitize_statement(text, "postgresql"),
        "sanitize_statement_sqlite": lambda text: sql.sanitize_statement(text, "sqlite"),
        "fingerprint_stacktrace": lambda text: fingerprint.fingerprint_stacktrace("E", text),
    }
    text = families()[family](size)
    function = functions[_target(family)]
    best = float("inf")
    for index in range(runs):
        # a fresh string each run: the statement cache must not answer
        sample = text[:-1] + ("x" if index % 2 else "y")
        started = time.perf_counter()
        function(sample)
        best = min(best, time.perf_counter() - started)
    print(json.dumps(best))


def measure(repo: str, family: str, size: int, limit: float, runs: int) -> str:
    command = [sys.executable, __file__, "--child", repo, family, str(size), str(runs)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return f">{limit:g} s"
    seconds = float(json.loads(done.stdout))
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.1f} s"


# Ordinary statements: what a PostgreSQL app, Django on SQLite (every name double-quoted)
# and SQLAlchemy on SQLite (reserved names double-quoted) send.
ORDINARY = {
    "postgresql": (
        "SELECT users.id, users.email, users.name FROM users "
        "WHERE users.email = 'alice@example.com' AND users.age > 21 LIMIT 10"
    ),
    "django-sqlite": (
        'SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."total", '
        '"shop_order"."group", "shop_customer"."id", "shop_customer"."name" FROM "shop_order" '
        'INNER JOIN "shop_customer" ON ("shop_order"."customer_id" = "shop_customer"."id") '
        'WHERE ("shop_customer"."name" = %s AND "shop_order"."total" > 21) LIMIT 21'
    ),
    "sqlalchemy-sqlite": (
        'SELECT items.id, items."order", items.user, items."group" \nFROM items \n'
        'WHERE items."order" > ? AND items."group" = ? AND items.id > 21'
    ),
}


def ordinary(repo: str, repeats: int = 5) -> dict[str, float]:
    """Microseconds per call, the best of ``repeats`` rounds (the machine is shared)."""
    sys.path.insert(0, repo)
    from otel_excellence._findings import sql

    def best(function: Callable[[str], object], texts: list[str]) -> float:
        fastest = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for text in texts:
                function(text)
            fastest = min(fastest, (time.perf_counter() - started) / len(texts))
        return fastest * 1e6

    result = {}
    for name, statement in ORDINARY.items():
        system = name.rsplit("-", 1)[-1]
        result[f"{name} cached_us"] = best(
            lambda text, system=system: sql.sanitize_statement(text, system), [statement] * 20_000
        )
        # A new statement each call (the numbers differ): none is in the cache.
        result[f"{name} uncached_us"] = best(
            lambda text, system=system: sql._sanitize(text, system),
            [statement.replace("21", str(n)) for n in range(2_000)],
        )
    message = (
        "(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "
        '"users_email_key"\nDETAIL:  Key (email)=(alice@example.com) already exists.\n'
        "[SQL: INSERT INTO users (email) VALUES (%(email)s)]\n[parameters: {'email': 'a'}]\n"
        "(Background on this error at: https://sqlalche.me/e/20/gkpj)"
    )
    result["scrub_us"] = best(sql.scrub_error_text, [message] * 2_000)
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default=str(REPO), help="checkout whose code is measured")
    parser.add_argument("--sizes", type=int, nargs="+", default=[65536, 262144, 1048576])
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=None, help="family name prefixes")
    args = parser.parse_args()
    repo = str(Path(args.repo).resolve())
    print(f"code: {repo}")
    print("| input | " + " | ".join(f"{s // 1024} KiB" for s in args.sizes) + " |")
    print("|---" * (len(args.sizes) + 1) + "|")
    for family in families():
        if args.only and not any(family.startswith(p) for p in args.only):
            continue
        cells = [measure(repo, family, s, args.limit, args.runs) for s in args.sizes]
        print(f"| {family} | " + " | ".join(cells) + " |", flush=True)
    numbers = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import json,sys; sys.argv=['x']; "
            f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import text_safety as t; "
            f"print(json.dumps(t.ordinary({repo!r})))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(numbers.stdout)
    for name in ORDINARY:
        print(
            f"ordinary {name} statement: {result[f'{name} cached_us']:.2f} µs cached, "
            f"{result[f'{name} uncached_us']:.1f} µs uncached"
        )
    print(f"ordinary SQLAlchemy error text: {result['scrub_us']:.1f} µs per scrub")


if __name__ == "__main__":
    main()
