#!/usr/bin/env python3
"""End-to-end: the orders job on generated dirty data, against an independent reference.

Runs `millrace run configs/orders.ini` on 100k+ generated rows in every way that must not change
what is stored (one worker per stage, two workers for clean and transform, pipe links, small
rings) and compares both tables row for row with tests/e2e/reference_orders.py, a plain
single-process implementation of WORKLOAD.md written separately from the stages. Also checks
that a finished run is idempotent and that a database of another input is refused.

usage: orders_e2e.py BIN_DIR SOURCE_DIR [--rows N] [--seed S]
"""
import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unittest

ARGS = None


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


class OrdersEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="millrace-e2e-")
        cls.bin = ARGS.bin_dir
        cls.src = ARGS.source_dir
        cls.config = os.path.join(cls.src, "configs", "orders.ini")
        cls.input = os.path.join(cls.tmp, "in.csv")
        print(f"seed={ARGS.seed} rows={ARGS.rows} (replay: --seed {ARGS.seed})", flush=True)
        gen = run([os.path.join(cls.bin, "millrace-gen"), "--rows", str(ARGS.rows), "--seed",
                   str(ARGS.seed), "--out", cls.input, "--gen-from", cls.config, "--section", "load"])
        assert gen.returncode == 0, gen.stderr
        cls.reference = os.path.join(cls.tmp, "reference.db")
        ref = run([sys.executable, os.path.join(cls.src, "tests", "e2e", "reference_orders.py"),
                   cls.input, cls.reference])
        assert ref.returncode == 0, ref.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def millrace(self, name, *sets, db=None, input_path=None):
        db = db or os.path.join(self.tmp, name + ".db")
        cmd = [os.path.join(self.bin, "millrace"), "run", self.config,
               "--set", "load.path=" + (input_path or self.input),
               "--set", "store.path=" + db,
               "--set", "pipeline.run_dir=" + os.path.join(self.tmp, "run-" + name)]
        for s in sets:
            cmd += ["--set", s]
        return run(cmd, timeout=300), db

    def assert_same_as_reference(self, db):
        cmp = run([sys.executable, os.path.join(self.src, "tests", "e2e", "compare_db.py"), db,
                   self.reference, "--expect-records", str(ARGS.rows)])
        self.assertEqual(cmp.returncode, 0, cmp.stdout + cmp.stderr)

    def check_variant(self, name, *sets):
        result, db = self.millrace(name, *sets)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("accounting   ok", result.stdout)
        self.assert_same_as_reference(db)
        return db

    def test_one_worker_per_stage_matches_reference(self):
        self.check_variant("w1")

    def test_two_workers_for_clean_and_transform_match_reference(self):
        self.check_variant("w2", "clean.workers=2", "transform.workers=2")

    def test_uneven_worker_counts_match_reference(self):
        self.check_variant("w23", "clean.workers=2", "transform.workers=3")

    def test_pipe_links_match_reference(self):
        self.check_variant("pipe", "link.type=pipe", "link.capacity=1MiB")

    def test_small_rings_under_constant_backpressure_match_reference(self):
        self.check_variant("small", "link.capacity=64KiB", "clean.workers=2", "transform.workers=2")

    def test_finished_run_run_again_changes_nothing_and_exits_0(self):
        db = self.check_variant("again")
        before = sqlite3.connect(db).execute(
            "select count(*), sum(order_id), sum(total_usd_cents) from orders").fetchone()
        result, _ = self.millrace("again")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        after = sqlite3.connect(db).execute(
            "select count(*), sum(order_id), sum(total_usd_cents) from orders").fetchone()
        self.assertEqual(before, after)
        self.assert_same_as_reference(db)

    def test_database_of_another_input_is_refused(self):
        db = self.check_variant("other")
        other = os.path.join(self.tmp, "other.csv")
        with open(self.input, "rb") as f, open(other, "wb") as g:
            data = f.read()
            g.write(data[: len(data) // 2])
        result, _ = self.millrace("other", db=db, input_path=other)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("different input or config", result.stdout + result.stderr)
        self.assert_same_as_reference(db)  # untouched


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("bin_dir")
    parser.add_argument("source_dir")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int,
                        default=int(os.environ.get("MILLRACE_SEED", random.randrange(1 << 31))))
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
