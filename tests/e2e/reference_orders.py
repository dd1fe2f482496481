#!/usr/bin/env python3
"""Reference implementation of the `orders` workload (see WORKLOAD.md), written from the
specification alone: plain, single process, no shared code with the pipeline.

    reference_orders.py IN.csv OUT.db     run the job; OUT.db is replaced
    reference_orders.py --self-test       check the rules on small inline cases

The end-to-end tests compare millrace's output database with this one, row for row.

Decisions where the specification leaves room (kept deliberately literal):
- A byte order mark is not special: at the start of the file it is part of the header's
  first field (and so harmless); anywhere else it is an ordinary character (not a space or
  tab, so `order_id` = BOM + digits is `bad_order_id`).
- A field is quoted only when its very first character is `"`; ` "a"` (space first) is an
  unquoted field whose quotes are literal, and trimming happens after unquoting.
- After a closing quote, everything up to the next separator or line end is literal,
  further `"` included (`"a"b"c` is `ab"c`).
- Fields are bytes; TEXT columns receive those bytes unchanged (CAST(blob AS TEXT)), so even
  invalid UTF-8 is stored exactly as it appeared.
"""

import os
import re
import sqlite3
import sys

HEADER_FIELDS = 9

SCHEMA = """
CREATE TABLE orders(order_id INTEGER PRIMARY KEY, record_no INTEGER, ts INTEGER, day TEXT,
  hour INTEGER, customer TEXT, country TEXT, currency TEXT, qty INTEGER, amount_cents INTEGER,
  amount_usd_cents INTEGER, total_usd_cents INTEGER, tier TEXT, sku TEXT, note TEXT);
CREATE TABLE rejects(record_no INTEGER PRIMARY KEY, reason TEXT);
"""

INSERT_ORDER = (
    "INSERT INTO orders VALUES(?,?,?,?,?,CAST(? AS TEXT),CAST(? AS TEXT),CAST(? AS TEXT),"
    "?,?,?,?,?,CAST(? AS TEXT),CAST(? AS TEXT))"
)
INSERT_REJECT = "INSERT INTO rejects VALUES(?,?)"

# Millionths of a US dollar per unit of the currency.
RATES = {b"USD": 1000000, b"EUR": 1080000, b"GBP": 1270000, b"JPY": 6700, b"CNY": 138000}

INT64_MAX = 2**63 - 1
MAX_AMOUNT_CENTS = 100000000  # 1000000.00
MAX_QTY = 1000

RE_DIGITS = re.compile(rb"[0-9]+")
RE_TS = re.compile(rb"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
RE_COUNTRY = re.compile(rb"[A-Z]{2}")
RE_AMOUNT = re.compile(rb"([0-9]+)(?:\.([0-9]{1,2}))?")

# ---------------------------------------------------------------------------------------
# CSV

# The inside of a quoted field: runs of non-quotes and doubled quotes. It stops at the
# closing quote or at the end of the buffer (an unclosed quote, or more input needed).
RE_QUOTED = re.compile(rb'"([^"]*(?:""[^"]*)*)')
RE_PLAIN = re.compile(rb"[^,\r\n]*")

COMMA, CR, LF, QUOTE = 0x2C, 0x0D, 0x0A, 0x22


def _parse_record(buf, pos, eof):
    """Parses one record starting at buf[pos] with the full rules.

    Returns (fields, next_pos), or None when the record may continue past the end of buf
    and more input exists. Every field is bytes."""
    n = len(buf)
    fields = []
    while True:
        if pos < n and buf[pos] == QUOTE:
            m = RE_QUOTED.match(buf, pos)
            value = m.group(1).replace(b'""', b'"')
            p = m.end()
            if p >= n:
                if not eof:
                    return None
                # A quote never closed runs to the end of the input.
                fields.append(value)
                return fields, n
            # buf[p] is the closing quote; what follows it up to a separator is literal.
            t = RE_PLAIN.match(buf, p + 1)
            value += t.group(0)
            p = t.end()
        else:
            m = RE_PLAIN.match(buf, pos)
            value = m.group(0)
            p = m.end()
        fields.append(value)
        if p >= n:
            return (fields, n) if eof else None
        c = buf[p]
        if c == COMMA:
            pos = p + 1
            continue
        if c == LF:
            return fields, p + 1
        # CR: alone or as part of CRLF.
        if p + 1 < n:
            return fields, (p + 2 if buf[p + 1] == LF else p + 1)
        return (fields, p + 1) if eof else None


def iter_records(stream, chunk_size=1 << 22):
    """Yields the records of a binary stream as lists of bytes fields, streaming.

    Lines without a quote or a CR take a fast path (split on commas); any other record is
    parsed by _parse_record, which implements every rule."""
    buf = b""
    pos = 0
    eof = False
    want = chunk_size
    while True:
        if not eof:
            chunk = stream.read(want)
            if chunk:
                buf = buf[pos:] + chunk
            else:
                eof = True
                buf = buf[pos:]
            pos = 0
        n = len(buf)
        start = pos
        while pos < n:
            nl = buf.find(b"\n", pos)
            if nl >= 0:
                line = buf[pos:nl]
                if b'"' not in line and b"\r" not in line:
                    yield line.split(b",")
                    pos = nl + 1
                    continue
            elif eof:
                line = buf[pos:]
                if b'"' not in line and b"\r" not in line:
                    yield line.split(b",")
                    pos = n
                    continue
            else:
                break
            r = _parse_record(buf, pos, eof)
            if r is None:
                break
            fields, pos = r
            yield fields
        if eof:
            return
        # A record longer than what is buffered: read more at once, so that a huge quoted
        # field costs linear, not quadratic, time.
        want = chunk_size if pos > start else want * 2


# ---------------------------------------------------------------------------------------
# Checks and transform


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def days_in_month(y, m):
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    return 30 if m in (4, 6, 9, 11) else 31


_days_of_date = {}  # (b"YYYY", b"MM", b"DD") -> days since the epoch, or None when not a real date


def days_of_date(y, mo, d):
    key = (y, mo, d)
    days = _days_of_date.get(key, False)
    if days is False:
        y, mo, d = int(y), int(mo), int(d)
        valid = y >= 1970 and 1 <= mo <= 12 and 1 <= d <= days_in_month(y, mo)
        days = days_from_civil(y, mo, d) if valid else None
        _days_of_date[key] = days
    return days


def parse_ts(s):
    """Returns (epoch_seconds, day_str, hour) or None."""
    m = RE_TS.fullmatch(s)
    if m is None:
        return None
    y, mo, d, h, mi, se = m.groups()
    days = days_of_date(y, mo, d)
    h, mi, se = int(h), int(mi), int(se)
    if days is None or h > 23 or mi > 59 or se > 59:
        return None
    return days * 86400 + h * 3600 + mi * 60 + se, s[:10].decode("ascii"), h


def amount_to_cents(s):
    m = RE_AMOUNT.fullmatch(s)
    if m is None:
        return None
    whole, frac = m.groups()
    cents = int(whole) * 100
    if frac is not None:
        cents += int(frac) * (10 if len(frac) == 1 else 1)
    return cents if cents <= MAX_AMOUNT_CENTS else None


def tier_of(total_usd_cents):
    if total_usd_cents >= 100000:
        return "high"
    if total_usd_cents >= 10000:
        return "mid"
    return "low"


def clean_and_transform(record_no, raw):
    """Returns ("order", row) or ("reject", reason), duplicates not considered."""
    if len(raw) != HEADER_FIELDS:
        return "reject", "bad_field_count"
    f = [x.strip(b" \t") for x in raw]
    order_id_s, ts_s, customer, country, amount_s, currency, qty_s, sku, note = f

    if RE_DIGITS.fullmatch(order_id_s) is None:
        return "reject", "bad_order_id"
    order_id = int(order_id_s)
    if order_id < 1 or order_id > INT64_MAX:
        return "reject", "bad_order_id"

    ts = parse_ts(ts_s)
    if ts is None:
        return "reject", "bad_ts"

    customer = customer.lower()  # bytes.lower changes ASCII letters only
    if not customer:
        return "reject", "bad_customer"

    country = country.upper()
    if RE_COUNTRY.fullmatch(country) is None:
        return "reject", "bad_country"

    amount_cents = amount_to_cents(amount_s)
    if amount_cents is None:
        return "reject", "bad_amount"

    currency = currency.upper()
    rate = RATES.get(currency)
    if rate is None:
        return "reject", "bad_currency"

    if RE_DIGITS.fullmatch(qty_s) is None:
        return "reject", "bad_qty"
    qty = int(qty_s)
    if not 1 <= qty <= MAX_QTY:
        return "reject", "bad_qty"

    epoch, day, hour = ts
    amount_usd_cents = (amount_cents * rate + 500000) // 1000000
    total_usd_cents = amount_usd_cents * qty
    row = (
        order_id, record_no, epoch, day, hour, customer, country, currency,
        qty, amount_cents, amount_usd_cents, total_usd_cents, tier_of(total_usd_cents),
        sku, note,
    )
    return "order", row


def process(stream):
    """Yields ("order", row) and ("reject", (record_no, reason)) for every data record."""
    seen = set()
    records = iter_records(stream)
    if next(records, None) is None:  # the header
        return
    for record_no, raw in enumerate(records, start=1):
        kind, value = clean_and_transform(record_no, raw)
        if kind == "reject":
            yield "reject", (record_no, value)
        elif value[0] in seen:
            yield "reject", (record_no, "duplicate")
        else:
            seen.add(value[0])
            yield "order", value


def run(in_path, out_path, batch=20000):
    for suffix in ("", "-journal", "-wal", "-shm"):
        try:
            os.remove(out_path + suffix)
        except FileNotFoundError:
            pass
    db = sqlite3.connect(out_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.executescript(SCHEMA)
    orders, rejects = [], []
    counts = {"orders": 0, "rejects": 0}

    def flush():
        db.execute("BEGIN")
        db.executemany(INSERT_ORDER, orders)
        db.executemany(INSERT_REJECT, rejects)
        db.execute("COMMIT")
        counts["orders"] += len(orders)
        counts["rejects"] += len(rejects)
        orders.clear()
        rejects.clear()

    with open(in_path, "rb") as stream:
        for kind, value in process(stream):
            (orders if kind == "order" else rejects).append(value)
            if len(orders) + len(rejects) >= batch:
                flush()
    flush()
    db.close()
    return counts


# ---------------------------------------------------------------------------------------
# Self-test

HEADER = b"order_id,ts,customer,country,amount,currency,qty,sku,note\n"
GOOD_TS = b"2024-03-01T12:34:56Z"
GOOD_EPOCH = 1709296496


def good(order_id=b"1", ts=GOOD_TS, customer=b"Alice", country=b"us", amount=b"12.3",
         currency=b"usd", qty=b"2", sku=b"SKU-1", note=b"n"):
    return b",".join([order_id, ts, customer, country, amount, currency, qty, sku, note])


def parse_all(data, chunk_size=1 << 22):
    import io
    return list(iter_records(io.BytesIO(data), chunk_size))


def outcome(data):
    """Runs the job on in-memory input: returns (orders by record_no, rejects by record_no)."""
    import io
    orders, rejects = {}, {}
    for kind, value in process(io.BytesIO(data)):
        if kind == "order":
            orders[value[1]] = value
        else:
            rejects[value[0]] = value[1]
    return orders, rejects


def reason_of(line):
    orders, rejects = outcome(HEADER + line + b"\n")
    assert len(orders) + len(rejects) == 1, (line, orders, rejects)
    return rejects.get(1, "ok")


def row_of(line):
    orders, rejects = outcome(HEADER + line + b"\n")
    assert 1 in orders, (line, rejects)
    return orders[1]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def self_test_csv():
    # Records and fields, each input also parsed with tiny chunks to exercise resumption.
    cases = [
        (b"", []),
        (b"a", [[b"a"]]),
        (b"a\n", [[b"a"]]),
        (b"a\n\n", [[b"a"], [b""]]),
        (b"\n", [[b""]]),
        (b"a,b\r\nc\rd\ne", [[b"a", b"b"], [b"c"], [b"d"], [b"e"]]),
        (b"a\r\r\nb\r", [[b"a"], [b""], [b"b"]]),
        (b"a\r\rb", [[b"a"], [b""], [b"b"]]),
        (b'"x,y","l1\nl2\r\nl3\rl4",z\n', [[b"x,y", b"l1\nl2\r\nl3\rl4", b"z"]]),
        (b'"say ""hi""",""\n', [[b'say "hi"', b""]]),
        (b'"ab"cd,e\n', [[b"abcd", b"e"]]),
        (b'"a"b"c,d\n', [[b'ab"c', b"d"]]),
        (b'ab"cd,e"\n', [[b'ab"cd', b'e"']]),
        (b' "a,b"\n', [[b' "a', b'b"']]),
        (b'a,"unclosed\nnext,line\n', [[b"a", b"unclosed\nnext,line\n"]]),
        (b'a,"unclosed ""q""\r\n', [[b"a", b'unclosed "q"\r\n']]),
        (b'"x"\n"', [[b"x"], [b""]]),
        (b"a,,\n,", [[b"a", b"", b""], [b"", b""]]),
        (b'"a"\r', [[b"a"]]),
        (b'"a"""', [[b'a"']]),
        (b"\xef\xbb\xbfa,b\n", [[b"\xef\xbb\xbfa", b"b"]]),
        (b"\xff\xfe,\xc3\xa9\n", [[b"\xff\xfe", b"\xc3\xa9"]]),
    ]
    for data, want in cases:
        for chunk in (1 << 22, 1, 2, 3, 5):
            got = parse_all(data, chunk)
            check(got == want, f"parse {data!r} chunk={chunk}: got {got!r}, want {want!r}")


def self_test_records():
    # Empty input: no records at all; header only: no data.
    check(outcome(b"") == ({}, {}), "empty input")
    check(outcome(HEADER) == ({}, {}), "header only")
    check(outcome(HEADER.rstrip(b"\n")) == ({}, {}), "header without line break")

    # record_no: quoted newlines, empty lines, CR-only lines, no final line break.
    data = (HEADER + good(b"1") + b"\n" + good(b"2", note=b'"multi\nline"') + b"\n\n"
            + good(b"3") + b"\r" + good(b"4") + b"\r\n" + good(b"5"))
    orders, rejects = outcome(data)
    check(sorted(orders) == [1, 2, 4, 5, 6] and rejects == {3: "bad_field_count"},
          f"record numbering: {sorted(orders)} {rejects}")
    check(orders[2][14] == b"multi\nline", "quoted newline kept")
    check(orders[6][0] == 5 and orders[5][0] == 4 and orders[4][0] == 3, "ids follow records")

    # BOM: part of the header at the start of the file; a data field elsewhere.
    orders, rejects = outcome(b"\xef\xbb\xbf" + HEADER + good(b"1") + b"\n")
    check(list(orders) == [1] and not rejects, "BOM before the header")
    check(reason_of(b"\xef\xbb\xbf" + good(b"1")) == "bad_order_id", "BOM on a data line")

    # Unclosed quote: the rest of the input, final line break included, is one field.
    orders, rejects = outcome(HEADER + good(b"1", note=b'"open') + b"\n" + good(b"2") + b"\n")
    check(list(orders) == [1] and not rejects, f"unclosed quote: {orders} {rejects}")
    check(orders[1][14] == b"open\n" + good(b"2") + b"\n", "unclosed quote content")

    # `"ab"cd` and trimming after unquoting; only spaces and tabs are trimmed.
    row = row_of(good(b'" 7 "', customer=b'"Bob"by', sku=b' \t"S" ', note=b"\x0bn\xc2\xa0"))
    check(row[0] == 7 and row[5] == b"bobby" and row[13] == b'"S"', f"trim/quote: {row}")
    check(row[14] == b"\x0bn\xc2\xa0", "only spaces and tabs are trimmed")


def self_test_checks():
    check(reason_of(good()) == "ok", "good record")
    check(reason_of(good() + b",extra") == "bad_field_count", "10 fields")
    check(reason_of(b"1,2") == "bad_field_count", "2 fields")
    check(reason_of(b"") == "bad_field_count", "empty line")

    for v, want in [(b"0", "bad_order_id"), (b"000", "bad_order_id"), (b"-1", "bad_order_id"),
                    (b"+1", "bad_order_id"), (b"1.0", "bad_order_id"), (b"", "bad_order_id"),
                    (b"\xd9\xa1", "bad_order_id"),  # an Arabic-Indic digit
                    (b"9223372036854775807", "ok"), (b"09223372036854775807", "ok"),
                    (b"9223372036854775808", "bad_order_id"), (b" 0042\t", "ok")]:
        check(reason_of(good(order_id=v)) == want, f"order_id {v!r}")
    check(row_of(good(order_id=b"0042"))[0] == 42, "order_id with leading zeros")

    for v, want in [(b"2024-02-29T00:00:00Z", "ok"), (b"2023-02-29T00:00:00Z", "bad_ts"),
                    (b"2000-02-29T00:00:00Z", "ok"), (b"1900-02-28T00:00:00Z", "bad_ts"),
                    (b"2100-02-29T00:00:00Z", "bad_ts"), (b"1970-01-01T00:00:00Z", "ok"),
                    (b"1969-12-31T23:59:59Z", "bad_ts"), (b"2024-04-31T00:00:00Z", "bad_ts"),
                    (b"2024-12-31T23:59:59Z", "ok"), (b"2024-13-01T00:00:00Z", "bad_ts"),
                    (b"2024-00-10T00:00:00Z", "bad_ts"), (b"2024-01-00T00:00:00Z", "bad_ts"),
                    (b"2024-01-01T24:00:00Z", "bad_ts"), (b"2024-01-01T00:60:00Z", "bad_ts"),
                    (b"2024-01-01T00:00:60Z", "bad_ts"), (b"2024-01-01 00:00:00Z", "bad_ts"),
                    (b"2024-01-01T00:00:00z", "bad_ts"), (b"2024-01-01T00:00:00", "bad_ts"),
                    (b"2024-1-01T00:00:00Z", "bad_ts"), (b"9999-12-31T23:59:59Z", "ok"),
                    (b'"2024-01-01T00:00:00Z\n"', "bad_ts"), (b"", "bad_ts")]:
        check(reason_of(good(ts=v)) == want, f"ts {v!r}")
    import calendar
    for v in [b"1970-01-01T00:00:00Z", b"2000-02-29T23:59:59Z", b"2024-03-01T12:34:56Z",
              b"2100-03-01T00:00:01Z", b"9999-12-31T23:59:59Z"]:
        row = row_of(good(ts=v))
        y, mo, d, h, mi, se = (int(x) for x in RE_TS.fullmatch(v).groups())
        want = calendar.timegm((y, mo, d, h, mi, se, 0, 0, 0))
        check(row[2] == want and row[3] == v[:10].decode() and row[4] == h, f"epoch {v!r}")
    check(row_of(good())[2:5] == (GOOD_EPOCH, "2024-03-01", 12), "epoch of the sample")

    for v, want in [(b"", "bad_customer"), (b" \t ", "bad_customer"), (b"x", "ok")]:
        check(reason_of(good(customer=v)) == want, f"customer {v!r}")
    check(row_of(good(customer=b"\xc3\x89LODIE Dupont"))[5] == b"\xc3\x89lodie dupont",
          "lower-casing changes ASCII only")

    for v, want in [(b"us", "ok"), (b"Us", "ok"), (b"USA", "bad_country"), (b"U", "bad_country"),
                    (b"U1", "bad_country"), (b"", "bad_country"), (b"\xc3\xa9s", "bad_country")]:
        check(reason_of(good(country=v)) == want, f"country {v!r}")

    for v, want in [(b"0", "ok"), (b"0.5", "ok"), (b"7", "ok"), (b"1000000.00", "ok"),
                    (b"1000000", "ok"), (b"1000000.01", "bad_amount"),
                    (b"1000001", "bad_amount"), (b"00001000000.0", "ok"),
                    (b"1.", "bad_amount"), (b".5", "bad_amount"), (b"1.234", "bad_amount"),
                    (b"-1", "bad_amount"), (b"1e3", "bad_amount"), (b"1,5", "bad_field_count"),
                    (b"", "bad_amount"), (b"12.3 4", "bad_amount")]:
        check(reason_of(good(amount=v)) == want, f"amount {v!r}")
    for v, cents in [(b"0.5", 50), (b"12.3", 1230), (b"7", 700), (b"0.05", 5),
                     (b"1000000.00", 100000000), (b"19.99", 1999)]:
        check(row_of(good(amount=v))[9] == cents, f"cents of {v!r}")

    for v, want in [(b"usd", "ok"), (b"EuR", "ok"), (b"gbp", "ok"), (b"JPY", "ok"),
                    (b"cny", "ok"), (b"CHF", "bad_currency"), (b"", "bad_currency"),
                    (b"US D", "bad_currency")]:
        check(reason_of(good(currency=v)) == want, f"currency {v!r}")

    for v, want in [(b"1", "ok"), (b"1000", "ok"), (b"0001000", "ok"), (b"0", "bad_qty"),
                    (b"1001", "bad_qty"), (b"-1", "bad_qty"), (b"1.0", "bad_qty"),
                    (b"", "bad_qty")]:
        check(reason_of(good(qty=v)) == want, f"qty {v!r}")

    # Order of the checks: the first failing one names the reason.
    check(reason_of(good(order_id=b"x", ts=b"x", qty=b"x")) == "bad_order_id", "order 2<3")
    check(reason_of(good(ts=b"x", customer=b"")) == "bad_ts", "order 3<4")
    check(reason_of(good(customer=b"", country=b"x")) == "bad_customer", "order 4<5")
    check(reason_of(good(country=b"x", amount=b"x")) == "bad_country", "order 5<6")
    check(reason_of(good(amount=b"x", currency=b"x")) == "bad_amount", "order 6<7")
    check(reason_of(good(currency=b"x", qty=b"x")) == "bad_currency", "order 7<8")


def self_test_transform():
    # Rounding half up: EUR 0.05 -> 5 * 1.08 = 5.4 -> 5; GBP 0.02 -> 2.54 -> 3;
    # JPY 0.75 -> 75 * 0.0067 = 0.5025 -> 1; CNY 0.5 -> 50 * 0.138 = 6.9 -> 7;
    # EUR 0.5 -> 50 * 1.08 = 54.0; JPY 1.5 -> 150 * 0.0067 = 1.005 -> 1; JPY 74.63 -> 50.0021 -> 50.
    for amount, cur, want in [(b"0.05", b"EUR", 5), (b"0.02", b"GBP", 3), (b"0.75", b"JPY", 1),
                              (b"0.5", b"CNY", 7), (b"0.5", b"EUR", 54), (b"1.5", b"JPY", 1),
                              (b"74.63", b"JPY", 50), (b"1000000.00", b"GBP", 127000000),
                              (b"1000000.00", b"JPY", 670000), (b"12.3", b"USD", 1230)]:
        row = row_of(good(amount=amount, currency=cur, qty=b"1"))
        check(row[10] == want, f"usd cents of {amount!r} {cur!r}: {row[10]} != {want}")
    # Exactly half a cent rounds up: GBP 0.50 -> 50 * 1270000 = 63500000 -> 63.5 -> 64.
    check(row_of(good(amount=b"0.50", currency=b"GBP", qty=b"1"))[10] == 64, "half up")
    check(row_of(good(amount=b"1000000.00", currency=b"GBP", qty=b"1000"))[11] == 127000000000,
          "largest total")

    # Tiers at their exact thresholds.
    for amount, qty, tier in [(b"1000", b"1", "high"), (b"999.99", b"1", "mid"),
                              (b"100", b"1", "mid"), (b"99.99", b"1", "low"),
                              (b"10", b"100", "high"), (b"1", b"100", "mid"),
                              (b"0", b"1", "low"), (b"0.1", b"1000", "mid"),
                              (b"0.01", b"1000", "low")]:
        row = row_of(good(amount=amount, currency=b"USD", qty=qty))
        check(row[12] == tier, f"tier of {amount!r} x {qty!r}: {row[12]}")

    row = row_of(good())
    check(row == (1, 1, GOOD_EPOCH, "2024-03-01", 12, b"alice", b"US", b"USD", 2, 1230, 1230,
                  2460, "low", b"SKU-1", b"n"), f"full row: {row}")


def self_test_duplicates():
    data = (HEADER + good(b"5") + b"\n" + good(b"5", customer=b"second") + b"\n"
            + good(b"6", qty=b"0") + b"\n" + good(b"6") + b"\n" + good(b"005") + b"\n"
            + good(b"6") + b"\n")
    orders, rejects = outcome(data)
    check(sorted(orders) == [1, 4], f"first valid wins: {sorted(orders)}")
    check(orders[1][5] == b"alice", "first of a duplicate is kept")
    check(rejects == {2: "duplicate", 3: "bad_qty", 5: "duplicate", 6: "duplicate"},
          f"duplicates: {rejects}")


def self_test_db():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.csv")
        out = os.path.join(d, "out.db")
        with open(src, "wb") as f:
            f.write(HEADER + good(b"1", customer=b"\xff\xfeX") + b"\n" + b"bad\n")
        counts = run(src, out)
        check(counts == {"orders": 1, "rejects": 1}, f"counts {counts}")
        db = sqlite3.connect(out)
        db.text_factory = bytes
        got = db.execute("SELECT typeof(customer), customer, typeof(day), day, typeof(ts) "
                         "FROM orders").fetchall()
        check(got == [(b"text", b"\xff\xfex", b"text", b"2024-03-01", b"integer")],
              f"stored types: {got}")
        got = db.execute("SELECT record_no, reason FROM rejects").fetchall()
        check(got == [(2, b"bad_field_count")], f"rejects: {got}")
        db.close()


def self_test():
    tests = [self_test_csv, self_test_records, self_test_checks, self_test_transform,
             self_test_duplicates, self_test_db]
    for t in tests:
        t()
        print(f"ok   {t.__name__}")
    print(f"self-test passed ({len(tests)} groups)")
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        return self_test()
    if len(argv) != 3:
        print("usage: reference_orders.py IN.csv OUT.db | --self-test", file=sys.stderr)
        return 2
    try:
        counts = run(argv[1], argv[2])
    except OSError as e:
        print(f"reference_orders: {e}", file=sys.stderr)
        return 1
    print(f"orders {counts['orders']} rejects {counts['rejects']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
