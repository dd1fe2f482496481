#!/usr/bin/env python3
"""The launcher with real processes: restarts, limits, watchdog, hard kills, drains, control.

Every test runs the orders job on a small generated input, slowed by the load stage's rate limit
so that faults land mid-run, and checks the stored tables against the reference
implementation. Waiting is always for an observed state (`millrace stats --json`), with a
deadline, never a fixed sleep.

usage: launcher_integration.py BIN_DIR SOURCE_DIR [unittest args]
"""
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
ROWS = 60_000


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def wait_for(what, predicate, timeout=60.0):
    """Polls `predicate` until it returns a true value; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # polling interval of an observed condition
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Launcher(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="millrace-launcher-")
        cls.config = os.path.join(SRC, "configs", "orders.ini")
        cls.input = os.path.join(cls.tmp, "in.csv")
        print(f"seed={SEED} (replay: MILLRACE_SEED={SEED})", flush=True)
        gen = run([os.path.join(BIN, "millrace-gen"), "--rows", str(ROWS), "--seed", str(SEED),
                   "--out", cls.input, "--gen-from", cls.config, "--section", "load"])
        assert gen.returncode == 0, gen.stderr
        cls.reference = os.path.join(cls.tmp, "reference.db")
        ref = run([sys.executable, os.path.join(SRC, "tests", "e2e", "reference_orders.py"),
                   cls.input, cls.reference])
        assert ref.returncode == 0, ref.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.case = os.path.join(self.tmp, self.id().split(".")[-1])
        os.makedirs(self.case)
        self.run_dir = os.path.join(self.case, "run")
        self.db = os.path.join(self.case, "out.db")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        # Nothing of the run may survive it: processes, segments.
        stats = self.stats()
        self.assertIsNone(stats, "the run's stats segment outlived the run")
        leftovers = [l for l in run(["pgrep", "-af", self.run_dir]).stdout.splitlines()
                     if "pgrep" not in l]
        self.assertEqual(leftovers, [], "processes of the run are left")

    def sets(self, extra=()):
        out = ["--set", "load.path=" + self.input, "--set", "store.path=" + self.db,
               "--set", "pipeline.run_dir=" + self.run_dir]
        for s in extra:
            out += ["--set", s]
        return out

    def millrace(self, command, *args, extra=()):
        return [os.path.join(BIN, "millrace"), command, self.config, *args, *self.sets(extra)]

    def start(self, extra=()):
        p = subprocess.Popen(self.millrace("run", extra=extra), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def stats(self):
        r = run(self.millrace("stats", "--json"))
        return json.loads(r.stdout) if r.returncode == 0 else None

    def worker(self, stats, stage, index=0):
        for s in stats["stages"]:
            if s["name"] == stage:
                return s["workers"][index]
        raise KeyError(stage)

    def wait_running(self, min_stored=1):
        return wait_for(f"{min_stored} records stored",
                        lambda: (s := self.stats()) and s["stored"] >= min_stored
                        and all(w["pid"] > 0 for st in s["stages"] for w in st["workers"]) and s)

    def finish(self, p, timeout=120):
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err

    def assert_exact(self):
        cmp = run([sys.executable, os.path.join(SRC, "tests", "e2e", "compare_db.py"), self.db,
                   self.reference, "--expect-records", str(ROWS)])
        self.assertEqual(cmp.returncode, 0, cmp.stdout + cmp.stderr)

    # ------------------------------------------------------------------------------------------

    def test_killed_worker_is_restarted_and_the_result_is_exact(self):
        p = self.start(["load.rate_limit=20000"])
        s = self.wait_running(2000)
        pid = self.worker(s, "transform")["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for("transform restarted",
                 lambda: (w := self.worker(self.stats(), "transform"))["restarts"] >= 1
                 and w["pid"] > 0 and w["pid"] != pid)
        rc, out, err = self.finish(p)
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"transform .* restarts 1")
        self.assertIn("accounting   ok", out)
        self.assert_exact()

    def test_stage_that_always_crashes_fails_the_run_naming_it(self):
        crasher = os.path.join(self.case, "crasher.sh")
        with open(crasher, "w") as f:
            f.write("#!/bin/sh\necho 'cannot parse the frobnicator' >&2\nexit 3\n")
        os.chmod(crasher, 0o755)
        p = self.start(["clean.exec=" + crasher, "clean.max_restarts=2",
                        "clean.backoff=10ms", "clean.backoff_max=20ms"])
        rc, out, err = self.finish(p, timeout=60)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("stage 'clean'", err)
        self.assertIn("exit status 3", err)
        self.assertIn("max_restarts = 2", err)
        self.assertIn("cannot parse the frobnicator", err)  # the last lines of its log

    def test_stopped_worker_is_restarted_by_the_watchdog(self):
        p = self.start(["load.rate_limit=20000", "clean.watchdog=1s"])
        s = self.wait_running(2000)
        pid = self.worker(s, "clean")["pid"]
        os.kill(pid, signal.SIGSTOP)
        wait_for("clean restarted by the watchdog",
                 lambda: (w := self.worker(self.stats(), "clean"))["restarts"] >= 1
                 and w["pid"] not in (0, pid), timeout=30)
        self.assertFalse(alive(pid))
        rc, out, err = self.finish(p)
        self.assertEqual(rc, 0, out + err)
        self.assert_exact()

    def test_killing_the_launcher_leaves_nothing_and_the_next_run_resumes(self):
        p = self.start(["load.rate_limit=20000"])
        try:
            s = self.wait_running(5000)
        except AssertionError:
            p.kill()
            print(p.communicate())
            raise
        pids = [w["pid"] for st in s["stages"] for w in st["workers"]]
        p.kill()
        p.wait()
        wait_for("every worker to die with the launcher",
                 lambda: not any(alive(pid) for pid in pids), timeout=10)
        again = self.start()
        rc, out, err = self.finish(again)
        self.assertEqual(rc, 0, out + err)
        self.assert_exact()

    def test_stop_drains_then_the_next_run_resumes(self):
        p = self.start(["load.rate_limit=20000"])
        self.wait_running(3000)
        r = run(self.millrace("stop"))
        self.assertEqual(r.returncode, 0, r.stderr)
        rc, out, err = self.finish(p)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("stopped (run again to resume)", out)
        self.assertIn("accounting   ok", out)
        again = self.start()
        rc, out, err = self.finish(again)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("done", out)
        self.assert_exact()

    def test_sigint_drains_and_second_sigint_stops_at_once(self):
        p = self.start(["load.rate_limit=5000"])
        self.wait_running(1000)
        p.send_signal(signal.SIGINT)
        wait_for("draining", lambda: (s := self.stats()) is None or s["state"] != "running")
        p.send_signal(signal.SIGINT)
        rc, out, err = self.finish(p)
        self.assertIn(rc, (0, 1), out + err)  # drained already, or stopped at once
        again = self.start()
        rc, out, err = self.finish(again)
        self.assertEqual(rc, 0, out + err)
        self.assert_exact()

    def test_second_launcher_on_the_same_run_is_refused(self):
        p = self.start(["load.rate_limit=20000"])
        self.wait_running(1)
        r = run(self.millrace("run"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("another launcher (pid", r.stderr)
        self.assertIn(str(p.pid), r.stderr)
        run(self.millrace("stop"))
        rc, out, err = self.finish(p)
        self.assertEqual(rc, 0, out + err)

    def test_kill_and_restart_commands_reach_the_running_pipeline(self):
        p = self.start(["load.rate_limit=20000", "clean.workers=2"])
        s = self.wait_running(2000)
        old = self.worker(s, "clean", 1)["pid"]
        r = run(self.millrace("kill", "clean", "--worker", "1", "--signal", "KILL"))
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for("clean.1 restarted", lambda: self.worker(self.stats(), "clean", 1)["pid"] not in (0, old))
        r = run(self.millrace("restart", "store"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(self.millrace("kill", "nosuchstage"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no stage 'nosuchstage'", r.stderr)
        rc, out, err = self.finish(p)
        self.assertEqual(rc, 0, out + err)
        self.assert_exact()

    def test_stats_json_has_the_documented_fields(self):
        p = self.start(["load.rate_limit=20000"])
        s = self.wait_running(1)
        for key in ("pipeline", "pid", "state", "stages", "links", "manager"):
            self.assertIn(key, s)
        self.assertEqual(s["pid"], p.pid)
        self.assertEqual([st["name"] for st in s["stages"]], ["load", "clean", "transform", "store"])
        for st in s["stages"]:
            for key in ("in", "out", "rejected", "workers"):
                self.assertIn(key, st)
            for w in st["workers"]:
                for key in ("index", "pid", "state", "restarts"):
                    self.assertIn(key, w)
        self.assertEqual(len(s["links"]), 3)
        run(self.millrace("stop"))
        self.finish(p)

    def test_live_view_draws_stages_and_link_bars_in_a_terminal(self):
        p = self.start(["load.rate_limit=10000"])
        self.wait_running(1)
        session = f"millrace-test-{os.getpid()}"
        view = " ".join(self.millrace("stats", "--watch"))
        r = run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", view])
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            screen = wait_for("the live view on screen", lambda: (
                t := run(["tmux", "capture-pane", "-p", "-t", session]).stdout)
                and "rejects:" in t and "transform" in t and t)
            self.assertIn("pipeline orders", screen)
            self.assertRegex(screen, r"load\.0\s+->\s+clean\.0")
            self.assertRegex(screen, r"[#.]{12}")  # a fill bar
            self.assertTrue(all(len(line) <= 80 for line in screen.splitlines()))
        finally:
            run(["tmux", "kill-session", "-t", session])
        run(self.millrace("stop"))
        self.finish(p)


if __name__ == "__main__":
    BIN, SRC = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
