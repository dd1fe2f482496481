#!/usr/bin/env bash
# The `orders` job with Miller and the sqlite3 shell, for the benchmark comparison.
#
#   miller_orders.sh IN.csv OUT.db
#
# One `mlr put` pass checks and transforms every record and writes two CSV files (orders,
# rejects); the sqlite3 shell then creates the tables and `.import`s both. Lower-casing of
# `customer` is done by SQLite's lower(), which, like the job, changes ASCII letters only
# (Miller's tolower changes every letter). Dates are checked and converted with integer
# arithmetic: Miller's strptime returns wrong values for years after 2262.
#
# What it does not do exactly (Miller 6 reads CSV its own way):
# - A record with fewer than 9 fields is padded with empty fields by
#   --allow-ragged-csv-input (without it, Miller stops at the first such record), so it is
#   rejected for the first check its missing fields fail rather than as bad_field_count, and
#   is even stored when only empty trailing fields are missing. An empty line counts as a
#   record of 9 empty fields (bad_order_id). Records with more than 9 fields are detected.
# - A `"` inside an unquoted field (`ab"c`) silently drops the rest of the line; characters
#   after a closing quote (`"ab"cd`) and a quote never closed stop Miller with an error.
# - A lone CR does not end a record (it stays in the field).
# - Fields are CSV-quoted again on the way to SQLite; a lone CR at the end of a field that
#   Miller leaves unquoted is dropped by the sqlite3 shell's .import.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: miller_orders.sh IN.csv OUT.db" >&2
  exit 2
fi
in=$1
out=$2
[[ -f $in ]] || { echo "miller_orders.sh: $in: no such file" >&2; exit 1; }
command -v mlr >/dev/null || { echo "miller_orders.sh: mlr not found (apt-get install miller)" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "miller_orders.sh: sqlite3 not found (apt-get install sqlite3)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/miller-orders.XXXXXX")
trap 'rm -rf "$work"' EXIT
orders_csv=$work/orders.csv
rejects_csv=$work/rejects.csv

# shellcheck disable=SC2016 # the $ of the Miller program are Miller's, not the shell's
mlr --icsv --ocsv --allow-ragged-csv-input --infer-none put -q \
  -s orders_csv="$orders_csv" -s rejects_csv="$rejects_csv" '
begin {
  @rates = {"USD": 1000000, "EUR": 1080000, "GBP": 1270000, "JPY": 6700, "CNY": 138000};
  @month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  @seen = {};
}

# int() reads "010" as octal: strip leading zeros first. (No "\1" here: after a successful
# =~, Miller replaces "\1" in every string literal with the capture of that match.)
func decimal(str s): int {
  t = sub(s, "^0+", "");
  return t == "" ? 0 : int(t);
}

func days_from_civil(int y, int m, int d): int {
  yy = m <= 2 ? y - 1 : y;
  era = yy // 400;
  yoe = yy - era * 400;
  doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) // 5 + d - 1;
  doe = yoe * 365 + yoe // 4 - yoe // 100 + doy;
  return era * 146097 + doe - 719468;
}

record_no = NR;
reason = "";
if (length($*) != 9) {
  reason = "bad_field_count";
} else {
  # strip() removes spaces and tabs only, as the job wants.
  order_id = strip($order_id);
  ts = strip($ts);
  customer = strip($customer);
  country = strip($country);
  amount = strip($amount);
  currency = strip($currency);
  qty = strip($qty);
  oid = sub(order_id, "^0+", "");
  if (!(order_id =~ "^[0-9]+$") || oid == "" || strlen(oid) > 19
      || (strlen(oid) == 19 && oid > "9223372036854775807")) {
    reason = "bad_order_id";
  } elif (!(ts =~ "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")) {
    reason = "bad_ts";
  } else {
    y = decimal(substr0(ts, 0, 3));
    mo = decimal(substr0(ts, 5, 6));
    d = decimal(substr0(ts, 8, 9));
    h = decimal(substr0(ts, 11, 12));
    mi = decimal(substr0(ts, 14, 15));
    s = decimal(substr0(ts, 17, 18));
    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59
        || d > @month_days[mo] + (mo == 2 && leap ? 1 : 0)) {
      reason = "bad_ts";
    } elif (customer == "") {
      reason = "bad_customer";
    } elif (!(country =~ "^[A-Za-z]{2}$")) {
      reason = "bad_country";
    } elif (!(amount =~ "^([0-9]+)(\.([0-9]{1,2}))?$")) {
      reason = "bad_amount";
    } else {
      whole = sub("\1", "^0+", "");
      frac = "\3";
      cents = strlen(whole) > 7 ? 100000001
        : decimal(whole) * 100 + (frac == "" ? 0 : decimal(frac) * (strlen(frac) == 1 ? 10 : 1));
      if (cents > 100000000) {
        reason = "bad_amount";
      } elif (!(currency =~ "^[A-Za-z]{3}$") || !haskey(@rates, toupper(currency))) {
        reason = "bad_currency";
      } elif (!(qty =~ "^[0-9]+$") || strlen(sub(qty, "^0+", "")) > 4
              || decimal(qty) < 1 || decimal(qty) > 1000) {
        reason = "bad_qty";
      } elif (haskey(@seen, oid)) {
        reason = "duplicate";
      } else {
        @seen[oid] = 1;
        currency = toupper(currency);
        n = decimal(qty);
        usd = (cents * @rates[currency] + 500000) // 1000000;
        total = usd * n;
        $* = {
          "order_id": oid,
          "record_no": record_no,
          "ts": days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s,
          "day": substr0(ts, 0, 9),
          "hour": h,
          "customer": customer,
          "country": toupper(country),
          "currency": currency,
          "qty": n,
          "amount_cents": cents,
          "amount_usd_cents": usd,
          "total_usd_cents": total,
          "tier": total >= 100000 ? "high" : total >= 10000 ? "mid" : "low",
          "sku": strip($sku),
          "note": strip($note),
        };
        tee > @orders_csv, $*;
      }
    }
  }
}
if (reason != "") {
  $* = {"record_no": record_no, "reason": reason};
  tee > @rejects_csv, $*;
}
' "$in"

# An input without any order (or reject) leaves no file behind.
touch "$orders_csv" "$rejects_csv"
rm -f "$out" "$out-wal" "$out-shm" "$out-journal"
sqlite3 "$out" >/dev/null <<SQL
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE orders(order_id INTEGER PRIMARY KEY, record_no INTEGER, ts INTEGER, day TEXT,
  hour INTEGER, customer TEXT, country TEXT, currency TEXT, qty INTEGER, amount_cents INTEGER,
  amount_usd_cents INTEGER, total_usd_cents INTEGER, tier TEXT, sku TEXT, note TEXT);
CREATE TABLE rejects(record_no INTEGER PRIMARY KEY, reason TEXT);
BEGIN;
.import --csv --skip 1 $orders_csv orders
.import --csv --skip 1 $rejects_csv rejects
UPDATE orders SET customer = lower(customer);
COMMIT;
SQL
