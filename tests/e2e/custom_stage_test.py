#!/usr/bin/env python3
"""A user's own stage program (stages/examples/shout.cpp) in a pipeline, named by `exec =`.

usage: custom_stage_test.py BIN_DIR
"""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import unittest

BIN = None

CONFIG = """
[pipeline]
name = shouting
stages = load, shout, store
run_dir = {tmp}/run

[load]
path = {tmp}/in.csv
columns = id, name, city

[shout]
exec = {bin}/millrace-example-shout
fields = name, city
workers = 2

[store]
path = {tmp}/out.db
table = people
columns = id INTEGER PRIMARY KEY, name TEXT, city TEXT
"""


class CustomStage(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="millrace-custom-")
        with open(os.path.join(self.tmp, "in.csv"), "w") as f:
            f.write("id,name,city\n")
            for i in range(1, 5001):
                f.write(f"{i},{'' if i % 100 == 0 else 'ann' + str(i)},paris\n")
        self.config = os.path.join(self.tmp, "pipeline.ini")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(tmp=self.tmp, bin=BIN))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_user_stage_runs_with_the_runtime_and_its_rejects_are_stored(self):
        r = subprocess.run([os.path.join(BIN, "millrace"), "run", self.config],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        db = sqlite3.connect(os.path.join(self.tmp, "out.db"))
        self.assertEqual(db.execute("select count(*) from people").fetchone()[0], 4950)
        self.assertEqual(db.execute("select name, city from people where id = 7").fetchone(),
                         ("ANN7", "PARIS"))
        self.assertEqual(db.execute("select count(*) from rejects where reason = 'nothing_to_shout'")
                         .fetchone()[0], 50)
        self.assertIn("accounting   ok", r.stdout)

    def test_user_stage_config_errors_are_reported_by_the_stage(self):
        with open(self.config, "a") as f:
            f.write("")
        r = subprocess.run([os.path.join(BIN, "millrace"), "run", self.config, "--set",
                            "shout.fields=nosuchfield", "--set", "shout.max_restarts=0"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("no field named 'nosuchfield'", r.stderr)


if __name__ == "__main__":
    BIN = sys.argv[1]
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
