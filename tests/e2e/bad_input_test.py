#!/usr/bin/env python3
"""Bad input never crashes, hangs, or passes a partial table off as success.

Each case either stores rejects with a reason, or fails with a clear error naming the file
(and the record or line where it applies) and a non-zero exit.

usage: bad_input_test.py BIN_DIR SOURCE_DIR
"""
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import unittest

BIN = SRC = None
HEADER = "order_id,ts,customer,country,amount,currency,qty,sku,note\n"
GOOD = "{id},2024-02-29T23:59:59Z,ann,us,12.30,usd,2,SKU-1,fine\n"


class BadInput(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="millrace-bad-")
        self.config = os.path.join(SRC, "configs", "orders.ini")

    def tearDown(self):
        for root, dirs, _ in os.walk(self.tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return path

    def run_job(self, input_path, db=None, *extra):
        db = db or os.path.join(self.tmp, "out.db")
        cmd = [os.path.join(BIN, "millrace"), "run", self.config, "--set", "load.path=" + input_path,
               "--set", "store.path=" + db, "--set", "pipeline.run_dir=" + os.path.join(self.tmp, "run"),
               "--set", "load.max_restarts=1", "--set", "store.max_restarts=1",
               "--set", "load.backoff=10ms", "--set", "store.backoff=10ms", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return r, db

    def tables(self, db):
        c = sqlite3.connect(db)
        return (c.execute("select count(*) from orders").fetchone()[0],
                dict(c.execute("select reason, count(*) from rejects group by reason").fetchall()))

    def test_missing_input_file_is_a_config_error_naming_it(self):
        r, _ = self.run_job(os.path.join(self.tmp, "nope.csv"))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("nope.csv", r.stderr)
        self.assertIn("path", r.stderr)

    def test_directory_instead_of_file_is_a_config_error(self):
        r, _ = self.run_job(self.tmp)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(self.tmp, r.stderr)

    def test_empty_file_stores_nothing_and_succeeds(self):
        r, db = self.run_job(self.write("empty.csv", b""))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.tables(db), (0, {}))

    def test_header_that_does_not_match_fails_naming_file_and_column(self):
        r, _ = self.run_job(self.write("h.csv", "id,when,who\n1,2,3\n"))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("h.csv", r.stderr)
        self.assertIn("order_id", r.stderr)

    def test_binary_garbage_becomes_rejects(self):
        rng = random.Random(7)
        garbage = bytes(rng.randrange(256) for _ in range(200_000))
        r, db = self.run_job(self.write("g.csv", HEADER.encode() + garbage))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rows, rejects = self.tables(db)
        self.assertEqual(rows, 0)
        self.assertGreater(sum(rejects.values()), 0)
        self.assertIn("accounting   ok", r.stdout)

    def test_invalid_utf8_is_rejected_with_its_reason(self):
        data = HEADER + GOOD.format(id=1)
        r, db = self.run_job(self.write("u.csv", data.encode() + b"2,x,\xff\xfe,us,1,usd,1,s,n\n"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.tables(db), (1, {"invalid_utf8": 1}))

    def test_one_mebibyte_field_is_stored_or_rejected_never_a_crash(self):
        big = "x" * (1 << 20)
        data = HEADER + GOOD.format(id=1) + f"2,2024-01-01T00:00:00Z,bo,de,1,eur,1,s,{big}\n"
        r, db = self.run_job(self.write("big.csv", data))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rows, rejects = self.tables(db)
        self.assertEqual(rows + sum(rejects.values()), 2)
        # With 4 MiB rings a 1 MiB record fits: stored intact.
        r2, db2 = self.run_job(self.write("big2.csv", data), os.path.join(self.tmp, "o2.db"),
                               "--set", "link:clean->transform.capacity=4MiB")
        self.assertEqual(r2.returncode, 0, r2.stdout + r2.stderr)
        note = sqlite3.connect(db2).execute("select note from orders where order_id=2").fetchone()[0]
        self.assertEqual(len(note), 1 << 20)

    def test_store_in_a_missing_directory_fails_naming_it(self):
        r, _ = self.run_job(self.write("ok.csv", HEADER + GOOD.format(id=1)),
                            os.path.join(self.tmp, "no", "such", "dir", "out.db"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no/such/dir", r.stderr)

    @unittest.skipIf(os.geteuid() == 0 and not shutil.which("setpriv"), "root ignores permissions")
    def test_store_in_a_read_only_directory_fails_naming_it(self):
        ro = os.path.join(self.tmp, "ro")
        os.mkdir(ro)
        os.chmod(ro, stat.S_IRUSR | stat.S_IXUSR)
        input_path = self.write("ok.csv", HEADER + GOOD.format(id=1))
        if os.geteuid() == 0:
            # Root writes anywhere: run the job as nobody, who can read but not write here.
            for p in (self.tmp, ro):
                os.chmod(p, 0o755 if p == self.tmp else 0o555)
            os.chmod(input_path, 0o644)
            run_dir = os.path.join(self.tmp, "run-nobody")
            os.mkdir(run_dir)
            os.chown(run_dir, 65534, 65534)
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   os.path.join(BIN, "millrace"), "run", self.config, "--set", "load.path=" + input_path,
                   "--set", "store.path=" + os.path.join(ro, "out.db"),
                   "--set", "pipeline.run_dir=" + run_dir, "--set", "store.max_restarts=1",
                   "--set", "store.backoff=10ms"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        else:
            r, _ = self.run_job(input_path, os.path.join(ro, "out.db"))
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("not writable", r.stderr)


if __name__ == "__main__":
    BIN, SRC = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
