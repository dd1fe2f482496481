#!/usr/bin/env python3
"""Compares the `orders` and `rejects` tables of two SQLite databases row for row.

    compare_db.py A.db B.db [--expect-records N] [--tables orders,rejects] [--max-diffs 20]

Rows are matched by primary key and compared on every column, value and storage type
(an INTEGER 5 differs from a TEXT '5' and from a REAL 5.0; TEXT is compared as its raw
bytes). Extra tables and indexes of either database are ignored. Prints the first
differences with their keys, then a summary; exits 0 when the tables are identical (and
the record count matches when --expect-records is given), 1 when they differ, 2 on a
usage error or an unreadable database.
"""

import argparse
import os
import sqlite3
import sys
import urllib.parse

TABLES = {
    "orders": ("order_id", ["order_id", "record_no", "ts", "day", "hour", "customer", "country",
                            "currency", "qty", "amount_cents", "amount_usd_cents",
                            "total_usd_cents", "tier", "sku", "note"]),
    "rejects": ("record_no", ["record_no", "reason"]),
}
TEXT_COLUMNS = {"day", "customer", "country", "currency", "tier", "sku", "note", "reason"}


class Unreadable(Exception):
    pass


def open_pair(path_a, path_b):
    """One connection with A and B attached read-only, so that SQLite does the join."""
    for path in (path_a, path_b):
        if not os.path.isfile(path):
            raise Unreadable(f"{path}: no such file")
    db = sqlite3.connect(":memory:", uri=True)
    db.text_factory = bytes  # raw TEXT bytes, whatever their encoding
    for name, path in (("a", path_a), ("b", path_b)):
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        try:
            db.execute(f"ATTACH DATABASE ? AS {name}", (uri,))
            db.execute(f"SELECT count(*) FROM {name}.sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise Unreadable(f"{path}: {e}") from e
    return db


def schema_of(db, schema, table):
    """[(name, declared type, pk position)] of a table, [] when it does not exist."""
    return [(r[1].decode(), r[2].decode().upper(), r[5])
            for r in db.execute(f"PRAGMA {schema}.table_info({table})")]


def expected_schema(table):
    key, cols = TABLES[table]
    return [(c, "TEXT" if c in TEXT_COLUMNS else "INTEGER", 1 if c == key else 0) for c in cols]


def show(kind, value):
    kind = kind.decode()
    if kind == "null":
        return "NULL"
    if kind == "text":
        return repr(value)[1:]  # b'..' -> '..', escapes kept visible
    if kind == "blob":
        return "x'" + value.hex() + "'"
    return f"{value!r} ({kind})" if kind == "real" else str(value)


def describe(db, table, key_value):
    """The differences of one row present in both databases, column by column."""
    key, cols = TABLES[table]
    select = ", ".join(f"typeof({c}), {c}" for c in cols)
    ra = db.execute(f"SELECT {select} FROM a.{table} WHERE {key} = ?", (key_value,)).fetchone()
    rb = db.execute(f"SELECT {select} FROM b.{table} WHERE {key} = ?", (key_value,)).fetchone()
    diffs = []
    for i, c in enumerate(cols):
        ta, va, tb, vb = ra[2 * i], ra[2 * i + 1], rb[2 * i], rb[2 * i + 1]
        if ta != tb or va != vb:
            diffs.append(f"{c}: A={show(ta, va)} B={show(tb, vb)}")
    return "; ".join(diffs)


def compare_table(db, table, max_shown):
    """Returns (rows_a, rows_b, differing, lines) or (None, problems) when not comparable.

    A row differs when its key is in one database only, or when a column differs in value
    or storage class (typeof): an INTEGER 5 is not the REAL 5.0 nor the TEXT '5'."""
    want = expected_schema(table)
    problems = []
    for name in ("a", "b"):
        got = schema_of(db, name, table)
        if not got:
            problems.append(f"{table}: table missing in {name.upper()}")
        elif got != want:
            problems.append(f"{table}: schema of {name.upper()} is {got}, expected {want}")
    if problems:
        return None, problems

    key, cols = TABLES[table]
    rows_a = db.execute(f"SELECT count(*) FROM a.{table}").fetchone()[0]
    rows_b = db.execute(f"SELECT count(*) FROM b.{table}").fetchone()[0]
    differs = " OR ".join(f"x.{c} IS NOT y.{c} OR typeof(x.{c}) != typeof(y.{c})" for c in cols)
    # Both keys are INTEGER PRIMARY KEYs (checked above): each lookup is a rowid search.
    in_a = db.execute(f"SELECT x.{key}, y.{key} IS NULL FROM a.{table} x "
                      f"LEFT JOIN b.{table} y ON y.{key} = x.{key} "
                      f"WHERE y.{key} IS NULL OR {differs} ORDER BY x.{key}")
    only_b = db.execute(f"SELECT y.{key} FROM b.{table} y WHERE NOT EXISTS "
                        f"(SELECT 1 FROM a.{table} x WHERE x.{key} = y.{key}) ORDER BY y.{key}")
    differing = 0
    first = []  # (key value, kind) of the first differences of each kind, by key
    for k, missing in in_a:
        differing += 1
        if len(first) < 2 * max_shown:
            first.append((k, "only in A" if missing else None))
    shown_b = 0
    for (k,) in only_b:
        differing += 1
        if shown_b < max_shown:
            first.append((k, "only in B"))
            shown_b += 1
    first.sort(key=lambda e: e[0])
    lines = []
    for k, kind in first[:max_shown]:
        lines.append(f"{table} {key}={k}: " + (kind or describe(db, table, k)))
    return (rows_a, rows_b, differing, lines), []


def main(argv):
    p = argparse.ArgumentParser(description="Compare the orders and rejects tables of two "
                                "SQLite databases row for row.")
    p.add_argument("a", metavar="A.db")
    p.add_argument("b", metavar="B.db")
    p.add_argument("--expect-records", type=int, metavar="N",
                   help="also require count(orders) + count(rejects) == N in both")
    p.add_argument("--tables", default="orders,rejects",
                   help="comma-separated subset of orders,rejects (default: both)")
    p.add_argument("--max-diffs", type=int, default=20, metavar="K",
                   help="print at most K differences (default 20)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    args = p.parse_args(argv[1:])
    tables = [t for t in args.tables.split(",") if t]
    unknown = [t for t in tables if t not in TABLES]
    if unknown or not tables:
        p.error(f"--tables: unknown table(s) {unknown}; choose from orders,rejects")
    if args.expect_records is not None and set(tables) != set(TABLES):
        p.error("--expect-records needs both tables")

    try:
        db = open_pair(args.a, args.b)
    except Unreadable as e:
        print(f"compare_db: {e}", file=sys.stderr)
        return 2

    shown = []
    total_problems = 0
    counts = {}
    summary = []
    for table in tables:
        try:
            result, problems = compare_table(db, table, args.max_diffs)
        except sqlite3.Error as e:
            print(f"compare_db: reading {table}: {e}", file=sys.stderr)
            return 2
        if result is None:
            total_problems += len(problems)
            shown += problems
            summary.append(f"{table}: not comparable")
            continue
        rows_a, rows_b, differing, lines = result
        total_problems += differing
        shown += lines
        counts[table] = (rows_a, rows_b)
        summary.append(f"{table}: A {rows_a} rows, B {rows_b} rows, {differing} differing")
    if not args.quiet:
        for line in shown[:args.max_diffs]:
            print(line)
        if total_problems > min(len(shown), args.max_diffs):
            print(f"... {total_problems - min(len(shown), args.max_diffs)} more differences "
                  "not shown")

    if args.expect_records is not None:
        for i, name in enumerate(("A", "B")):
            got = sum(counts[t][i] for t in TABLES) if len(counts) == len(TABLES) else None
            if got != args.expect_records:
                total_problems += 1
                summary.append(f"{name}: count(orders) + count(rejects) = {got}, "
                               f"expected {args.expect_records}")

    verdict = "identical" if total_problems == 0 else "DIFFERENT"
    print(f"{verdict}: " + "; ".join(summary))
    return 0 if total_problems == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
