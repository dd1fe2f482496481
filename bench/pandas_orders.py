#!/usr/bin/env python3
"""The `orders` job in pandas, vectorised, for the benchmark comparison.

    pandas_orders.py IN.csv OUT.db [--chunk-rows 200000]

Reads the input in chunks, checks and transforms each chunk with column operations and
appends it to SQLite with DataFrame.to_sql; only the set of kept order ids grows with the
input.

How it differs from a bare `pd.read_csv` script, and why:
- Records are split by the csv module and then turned into DataFrames. `read_csv` pads a
  short record with empty fields, so a record with 8 fields could not be told from one
  whose 9th field is empty (and it stops with an error on a record with too many fields);
  counting fields exactly is the first check of the job.
- Dates are checked and converted with integer arithmetic: `pd.to_datetime` cannot
  represent years after 2262, which the job accepts.
- Case changes use a translation table: `str.lower`/`str.upper` change non-ASCII letters
  too (`ß` becomes `SS`), the job changes ASCII letters only.

Known differences from the exact rules (none occurs in the benchmark's generated input):
- Input that is not valid UTF-8 is not supported: to_sql cannot store the surrogate escapes
  it decodes to, and the run fails.
- An extremely long record (one unclosed quote running through a large file) is held in
  memory as one field.
"""

import argparse
import csv
import itertools
import os
import sqlite3
import sys

import numpy as np
import pandas as pd

SCHEMA = """
CREATE TABLE orders(order_id INTEGER PRIMARY KEY, record_no INTEGER, ts INTEGER, day TEXT,
  hour INTEGER, customer TEXT, country TEXT, currency TEXT, qty INTEGER, amount_cents INTEGER,
  amount_usd_cents INTEGER, total_usd_cents INTEGER, tier TEXT, sku TEXT, note TEXT);
CREATE TABLE rejects(record_no INTEGER PRIMARY KEY, reason TEXT);
"""
COLUMNS = ["order_id", "ts", "customer", "country", "amount", "currency", "qty", "sku", "note"]
ORDER_COLUMNS = ["order_id", "record_no", "ts", "day", "hour", "customer", "country",
                 "currency", "qty", "amount_cents", "amount_usd_cents", "total_usd_cents",
                 "tier", "sku", "note"]
RATES = {"USD": 1000000, "EUR": 1080000, "GBP": 1270000, "JPY": 6700, "CNY": 138000}

ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

TS_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"
AMOUNT_RE = r"[0-9]+(\.[0-9]{1,2})?"
DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def read_chunks(path, chunk_rows):
    """Yields (first record_no, field counts, DataFrame) per chunk; the DataFrame has one
    column per field and None where a record has fewer fields than the widest of the chunk."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f)
        next(reader, None)  # header
        first = 1
        while True:
            rows = list(itertools.islice(reader, chunk_rows))
            if not rows:
                return
            yield first, np.fromiter(map(len, rows), np.int64, len(rows)), pd.DataFrame(rows)
            first += len(rows)


def digits_value(s, max_digits):
    """Integer values of digit strings, -1 where the value has more than max_digits digits."""
    stripped = s.str.lstrip("0")
    too_long = stripped.str.len() > max_digits
    return np.where(too_long, -1, stripped.where(~too_long & (stripped != ""), "0").astype("int64"))


def days_from_civil(y, m, d):
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def process_chunk(first, nfields, raw):
    n = len(raw)
    record_no = np.arange(first, first + n, dtype=np.int64)
    for i in range(raw.shape[1], 9):
        raw[i] = None
    raw = raw.iloc[:, :9].fillna("")
    f = {name: raw[i].str.strip(" \t") for i, name in enumerate(COLUMNS)}

    oid_ok = f["order_id"].str.fullmatch("[0-9]+")
    oid_str = f["order_id"].where(oid_ok, "0")
    # Fits in int64: at most 19 significant digits, and not above the maximum.
    oid_sig = oid_str.str.lstrip("0")
    oid_fits = (oid_sig.str.len() < 19) | ((oid_sig.str.len() == 19)
                                           & (oid_sig <= "9223372036854775807"))
    order_id = oid_sig.where(oid_fits & (oid_sig != ""), "0").astype("int64").to_numpy()
    bad_order_id = ~(oid_ok & oid_fits).to_numpy() | (order_id < 1)

    # A valid ts is 20 ASCII characters: read its digits at fixed positions, all at once.
    ts_ok = f["ts"].str.fullmatch(TS_RE).to_numpy()
    ts_bytes = f["ts"].where(ts_ok, "0000-00-00T00:00:00Z").to_numpy().astype("S20")
    digit = np.frombuffer(ts_bytes.tobytes(), dtype=np.uint8).reshape(-1, 20).astype(np.int64) - 48
    y = digit[:, 0] * 1000 + digit[:, 1] * 100 + digit[:, 2] * 10 + digit[:, 3]
    mo, d, hh, mi, ss = (digit[:, i] * 10 + digit[:, i + 1] for i in (5, 8, 11, 14, 17))
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    dim = DAYS_IN_MONTH[np.clip(mo, 0, 12)] + (leap & (mo == 2))
    bad_ts = ~(ts_ok & (y >= 1970) & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= dim)
               & (hh <= 23) & (mi <= 59) & (ss <= 59))

    customer = f["customer"].str.translate(ASCII_LOWER)
    bad_customer = (customer == "").to_numpy()
    country = f["country"].str.translate(ASCII_UPPER)
    bad_country = ~country.str.fullmatch("[A-Z]{2}").to_numpy()

    amount_ok = f["amount"].str.fullmatch(AMOUNT_RE).to_numpy()
    amount = f["amount"].where(amount_ok, "0").str.partition(".")
    whole = digits_value(amount[0], 7)
    frac = amount[2].str.ljust(2, "0").astype("int64").to_numpy()
    cents = np.where(whole < 0, -1, whole * 100 + frac)
    bad_amount = ~amount_ok | (cents < 0) | (cents > 100000000)

    currency = f["currency"].str.translate(ASCII_UPPER)
    rate = currency.map(RATES).fillna(0).astype("int64").to_numpy()
    bad_currency = rate == 0

    qty_ok = f["qty"].str.fullmatch("[0-9]+").to_numpy()
    qty = digits_value(f["qty"].where(qty_ok, "0"), 4)
    bad_qty = ~qty_ok | (qty < 1) | (qty > 1000)

    reason = np.select(
        [nfields != 9, bad_order_id, bad_ts, bad_customer, bad_country, bad_amount,
         bad_currency, bad_qty],
        ["bad_field_count", "bad_order_id", "bad_ts", "bad_customer", "bad_country",
         "bad_amount", "bad_currency", "bad_qty"], default="")
    ok = reason == ""

    usd = (cents * rate + 500000) // 1000000
    total = usd * qty
    orders = pd.DataFrame({
        "order_id": order_id,
        "record_no": record_no,
        "ts": days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss,
        "day": f["ts"].str[:10],
        "hour": hh,
        "customer": customer,
        "country": country,
        "currency": currency,
        "qty": qty,
        "amount_cents": cents,
        "amount_usd_cents": usd,
        "total_usd_cents": total,
        "tier": np.select([total >= 100000, total >= 10000], ["high", "mid"], default="low"),
        "sku": f["sku"],
        "note": f["note"],
    })[ok]
    rejects = pd.DataFrame({"record_no": record_no[~ok], "reason": reason[~ok]})
    return orders, rejects


def main(argv):
    p = argparse.ArgumentParser(description="The orders job in pandas.")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--chunk-rows", type=int, default=200000)
    args = p.parse_args(argv[1:])
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(args.output + suffix):
            os.remove(args.output + suffix)
    con = sqlite3.connect(args.output)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(SCHEMA)

    kept = np.empty(0, dtype=np.int64)  # order ids stored so far, sorted
    for first, nfields, raw in read_chunks(args.input, args.chunk_rows):
        orders, rejects = process_chunk(first, nfields, raw)
        # De-duplication: first wins, within the chunk and against earlier chunks.
        dup = orders["order_id"].duplicated(keep="first").to_numpy()
        dup |= np.isin(orders["order_id"].to_numpy(), kept, assume_unique=False)
        rejects = pd.concat([rejects, pd.DataFrame(
            {"record_no": orders["record_no"][dup], "reason": "duplicate"})])
        orders = orders[~dup]
        kept = np.union1d(kept, orders["order_id"].to_numpy())
        orders[ORDER_COLUMNS].to_sql("orders", con, if_exists="append", index=False)
        rejects.sort_values("record_no").to_sql("rejects", con, if_exists="append",
                                                 index=False)
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
