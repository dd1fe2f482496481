#!/usr/bin/env python3
"""The `orders` job as the textbook Python multiprocessing pipeline (for the benchmarks).

    python_pipeline.py IN.csv OUT.db [--batch 1000] [--queue-size 8]

Four processes, load -> clean -> transform -> store, connected by bounded
multiprocessing.Queue objects that carry batches of records; a full queue blocks its
producer (backpressure). A stage that fails makes the main process stop the others and
exit 1. There is no recovery: a killed stage loses the batches in flight, and a Queue whose
user was killed may be corrupt, so the run must be started again from scratch.

It implements WORKLOAD.md with the csv module (non-strict mode; on every corner case we
tried it splits records and fields as the workload says), ASCII-only case changes and
integer money, and writes the same two tables.
"""

import calendar
import csv
import datetime
import multiprocessing as mp
import multiprocessing.connection
import os
import re
import sqlite3
import sys

SCHEMA = """
CREATE TABLE orders(order_id INTEGER PRIMARY KEY, record_no INTEGER, ts INTEGER, day TEXT,
  hour INTEGER, customer TEXT, country TEXT, currency TEXT, qty INTEGER, amount_cents INTEGER,
  amount_usd_cents INTEGER, total_usd_cents INTEGER, tier TEXT, sku TEXT, note TEXT);
CREATE TABLE rejects(record_no INTEGER PRIMARY KEY, reason TEXT);
"""
# CAST keeps text that is not valid UTF-8 (passed as bytes) stored as TEXT.
INSERT_ORDER = ("INSERT INTO orders VALUES (?,?,?,?,?,CAST(? AS TEXT),?,?,?,?,?,?,?,"
                "CAST(? AS TEXT),CAST(? AS TEXT))")
INSERT_REJECT = "INSERT INTO rejects VALUES (?,?)"

RATES = {"USD": 1000000, "EUR": 1080000, "GBP": 1270000, "JPY": 6700, "CNY": 138000}

DIGITS = re.compile(r"[0-9]+")
TS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
COUNTRY = re.compile(r"[A-Z]{2}")
AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]{1,2}))?")

# str.lower()/upper() change every Unicode letter ('ß' -> 'SS'); the job changes ASCII only.
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

DONE = None  # end-of-stream marker sent down every queue


def load(path, out_q, batch_size):
    csv.field_size_limit(sys.maxsize)  # an unclosed quote may make one huge field
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        next(reader, None)  # header
        batch = []
        for record_no, row in enumerate(reader, start=1):
            batch.append((record_no, row))
            if len(batch) == batch_size:
                out_q.put(batch)
                batch = []
        if batch:
            out_q.put(batch)
    out_q.put(DONE)


def check(record_no, row):
    """Returns a clean record tuple, or a reject reason string."""
    if len(row) != 9:
        return "bad_field_count"
    order_id, ts, customer, country, amount, currency, qty, sku, note = (
        field.strip(" \t") for field in row)

    if not DIGITS.fullmatch(order_id) or not 1 <= int(order_id) <= 2**63 - 1:
        return "bad_order_id"
    m = TS.fullmatch(ts)
    if not m:
        return "bad_ts"
    try:
        when = datetime.datetime(*(int(g) for g in m.groups()))
    except ValueError:
        return "bad_ts"
    if when.year < 1970:
        return "bad_ts"
    customer = customer.translate(ASCII_LOWER)
    if not customer:
        return "bad_customer"
    country = country.translate(ASCII_UPPER)
    if not COUNTRY.fullmatch(country):
        return "bad_country"
    m = AMOUNT.fullmatch(amount)
    if not m:
        return "bad_amount"
    cents = int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))
    if cents > 100000000:
        return "bad_amount"
    currency = currency.translate(ASCII_UPPER)
    if currency not in RATES:
        return "bad_currency"
    if not DIGITS.fullmatch(qty) or not 1 <= int(qty) <= 1000:
        return "bad_qty"
    return (int(order_id), record_no, when, customer, country, currency, int(qty), cents,
            sku, note)


def clean(in_q, out_q):
    seen = set()
    while (batch := in_q.get()) is not DONE:
        out = []
        for record_no, row in batch:
            result = check(record_no, row)
            if isinstance(result, str):
                out.append((record_no, result))
            elif result[0] in seen:
                out.append((record_no, "duplicate"))
            else:
                seen.add(result[0])
                out.append(result)
        out_q.put(out)
    out_q.put(DONE)


def transform(in_q, out_q):
    while (batch := in_q.get()) is not DONE:
        out = []
        for rec in batch:
            if len(rec) == 2:  # a reject passes through
                out.append(rec)
                continue
            order_id, record_no, when, customer, country, currency, qty, cents, sku, note = rec
            usd_cents = (cents * RATES[currency] + 500000) // 1000000
            total = usd_cents * qty
            tier = "high" if total >= 100000 else "mid" if total >= 10000 else "low"
            out.append((order_id, record_no, calendar.timegm(when.timetuple()),
                        when.strftime("%Y-%m-%d"), when.hour, customer, country, currency, qty,
                        cents, usd_cents, total, tier, sku, note))
        out_q.put(out)
    out_q.put(DONE)


def as_bytes(row):
    # Input that is not valid UTF-8 arrives as surrogate escapes, which sqlite3 refuses.
    return tuple(v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v for v in row)


def store(path, in_q, commit_every):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    pending = 0
    while (batch := in_q.get()) is not DONE:
        orders = [r for r in batch if len(r) != 2]
        rejects = [r for r in batch if len(r) == 2]
        try:
            db.executemany(INSERT_ORDER, orders)
        except UnicodeEncodeError:
            db.executemany(INSERT_ORDER, [as_bytes(r) for r in orders])
        db.executemany(INSERT_REJECT, rejects)
        pending += len(batch)
        if pending >= commit_every:
            db.commit()
            pending = 0
    db.commit()
    db.close()


def main(argv):
    import argparse
    p = argparse.ArgumentParser(description="The orders job as a Python multiprocessing "
                                "pipeline.")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--batch", type=int, default=1000, help="records per queue item")
    p.add_argument("--queue-size", type=int, default=8, help="batches per queue (maxsize)")
    args = p.parse_args(argv[1:])
    if not os.path.isfile(args.input):
        print(f"python_pipeline: {args.input}: no such file", file=sys.stderr)
        return 1
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(args.output + suffix):
            os.remove(args.output + suffix)

    q1, q2, q3 = (mp.Queue(maxsize=args.queue_size) for _ in range(3))
    stages = [
        mp.Process(target=load, args=(args.input, q1, args.batch), name="load"),
        mp.Process(target=clean, args=(q1, q2), name="clean"),
        mp.Process(target=transform, args=(q2, q3), name="transform"),
        mp.Process(target=store, args=(args.output, q3, 50 * args.batch), name="store"),
    ]
    for s in stages:
        s.start()
    running = {s.sentinel: s for s in stages}
    failed = None
    while running and failed is None:
        for sentinel in mp.connection.wait(list(running)):
            s = running.pop(sentinel)
            s.join()
            if s.exitcode != 0:
                failed = s
    if failed is not None:
        # A stage died: the others would block forever on its queue.
        for s in stages:
            if s.is_alive():
                s.terminate()
            s.join()
        print(f"python_pipeline: stage {failed.name} failed (exit code {failed.exitcode})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
