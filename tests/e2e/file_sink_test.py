#!/usr/bin/env python3
"""The CSV and JSON Lines stores: every record exactly once, with the store killed mid-run.

Runs orders into a CSV (and a JSON Lines) store without de-duplication, once undisturbed and
once while the store worker is SIGKILLed again and again, and checks that both runs wrote the
same rows and rejects, and that every source position is in exactly one of the two files.

usage: file_sink_test.py BIN_DIR SOURCE_DIR
"""
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

BIN = SRC = None
SEED = int(os.environ.get("MILLRACE_SEED", random.randrange(1 << 31)))
ROWS = 40_000


class FileSinks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="millrace-files-")
        cls.config = os.path.join(SRC, "configs", "orders.ini")
        cls.input = os.path.join(cls.tmp, "in.csv")
        print(f"seed={SEED} (replay: MILLRACE_SEED={SEED})", flush=True)
        subprocess.run([os.path.join(BIN, "millrace-gen"), "--rows", str(ROWS), "--seed", str(SEED),
                        "--out", cls.input, "--gen-from", cls.config, "--section", "load"], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_store(self, kind, name, kill_store=False):
        out = os.path.join(self.tmp, f"{name}.{kind}")
        run_dir = os.path.join(self.tmp, "run-" + name)
        cmd = [os.path.join(BIN, "millrace"), "run", self.config, "--set", "load.path=" + self.input,
               "--set", "store.kind=" + kind, "--set", "store.path=" + out, "--set", "store.dedup_key=",
               "--set", "pipeline.run_dir=" + run_dir, "--set", "store.batch_rows=500"]
        if kill_store:
            cmd += ["--set", "load.rate_limit=20000", "--set", "store.max_restarts=1000"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        kills = 0
        rng = random.Random(SEED)
        while kill_store and p.poll() is None:
            stats = subprocess.run([os.path.join(BIN, "millrace"), "stats", self.config, "--json",
                                    "--set", "pipeline.run_dir=" + run_dir, "--set",
                                    "load.path=" + self.input], capture_output=True, text=True)
            if stats.returncode == 0:
                s = json.loads(stats.stdout)
                pid = [w["pid"] for st in s["stages"] if st["name"] == "store" for w in st["workers"]][0]
                if pid > 0 and s["stored"] < ROWS * 0.8:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
            time.sleep(rng.uniform(0.05, 0.3))  # the gap between faults, not a synchronisation
        stdout, stderr = p.communicate(timeout=300)
        self.assertEqual(p.returncode, 0, stdout + stderr)
        self.assertIn("accounting   ok", stdout)
        if kill_store:
            self.assertGreater(kills, 2, "the store was never killed mid-run")
        return out

    def read(self, kind, path):
        if kind == "csv":
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            return rows[0], [tuple(r) for r in rows[1:]]
        with open(path) as f:
            rows = [json.loads(line) for line in f]
        return None, [tuple(sorted(r.items())) for r in rows]

    def check(self, kind):
        clean = self.run_store(kind, kind + "-clean")
        killed = self.run_store(kind, kind + "-killed", kill_store=True)
        _, rows_a = self.read(kind, clean)
        _, rows_b = self.read(kind, killed)
        _, rej_a = self.read(kind, clean + ".rejects." + kind)
        _, rej_b = self.read(kind, killed + ".rejects." + kind)
        self.assertEqual(sorted(rows_a), sorted(rows_b))
        self.assertEqual(sorted(rej_a), sorted(rej_b))
        self.assertEqual(len(rows_b) + len(rej_b), ROWS)
        self.assertEqual(len(set(rows_b)), len(rows_b), "a row was written twice")

    def test_csv_store_writes_every_record_once_despite_kills(self):
        self.check("csv")

    def test_jsonl_store_writes_every_record_once_despite_kills(self):
        self.check("jsonl")


if __name__ == "__main__":
    BIN, SRC = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
