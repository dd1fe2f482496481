#!/usr/bin/env python3
"""Chaos harness: the recovery proof of millrace.

Runs the `orders` job on seeded, generated dirty input and, while it runs, follows a seeded
schedule of faults:

  kill_worker     SIGKILL of a random worker of a random stage
  kill_store      SIGKILL of the store while it is busy (mid-transaction, most likely)
  kill_manager    SIGKILL of the manager (skipped when the run has none)
  stop_short      SIGSTOP, then SIGCONT before the watchdog fires
  stop_long       SIGSTOP longer than the watchdog: the watchdog must kill and restart it
  kill_all        SIGKILL of the launcher and all its children at once, then a fresh run;
                  in some, of the launcher only (its children must die with it)
  graceful_stop   `millrace stop`, then a fresh run; in some, a kill_all during the drain

Faults are timed against observed progress (records committed by the store, polled with
`millrace stats --json`), never against the clock alone; a quarter of the kills fire as soon
as the run is up again, while it still recovers from the previous fault. After each scenario:

  - the last run exits 0, its report says "done" and its accounting line says "ok";
  - `orders` and `rejects` equal those of an independent reference implementation row for row;
  - no process of the run is left (every pid seen, `pgrep -f RUN_DIR`, and any process whose
    environment names the run), no /dev/shm segment of the run, and the run dir lock is free;
  - one more run of the same command changes nothing and exits 0.

The matrix: link type shm and pipe; 1 and 2 workers for clean and transform; small rings
(64 KiB, constant backpressure) and large ones (4 MiB; 1 MiB for pipes, the unprivileged
pipe size limit). A scenario is one matrix cell and one seed; its schedule is a function of
both, so `chaos.py --seed S --scenario CELL` replays it (process timing aside).

Modes:
  chaos.py --bin BUILD/bin --source REPO                       one scenario per matrix cell
  chaos.py ... --budget-seconds 180 --min-faults 200            CI: until both are reached
  chaos.py ... --soak-minutes 10                                soak: prints faults per minute
  chaos.py ... --seed S --scenario shm-w2-small                 replay one scenario
  chaos.py ... --kinds kill_store,kill_all                      only these fault kinds

Exit: 0 all scenarios passed, 1 a scenario failed (its seed, schedule and replay command are
printed, its directory is kept), 2 usage error, 77 soak skipped (no minutes given).

Python 3 standard library only; Linux only (pidfd, /proc, /dev/shm).
"""

import argparse
import collections
import fcntl
import glob
import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

SKIP_EXIT = 77
STAGES = ("load", "clean", "transform", "store")
CELLS = [f"{link}-w{workers}-{ring}"
         for link in ("shm", "pipe") for workers in (1, 2) for ring in ("small", "large")]
RING_BYTES = {("shm", "small"): "64KiB", ("shm", "large"): "4MiB",
              ("pipe", "small"): "64KiB", ("pipe", "large"): "1MiB"}

# Relative weights of the fault kinds in a schedule.
FAULT_WEIGHTS = {
    "kill_worker": 42,
    "kill_store": 10,
    "kill_manager": 4,
    "stop_short": 12,
    "stop_long": 8,
    "kill_all": 12,
    "graceful_stop": 12,
}
WORKER_FAULTS = ("kill_worker", "stop_short", "stop_long")

# A run of DEFAULT_ROWS at DEFAULT_RATE lasts about 15 s undisturbed: long enough for most of a
# schedule of DEFAULT_FAULTS to land mid-run, short enough for many scenarios per budget.
DEFAULT_ROWS = 60000
DEFAULT_RATE = 4000
DEFAULT_FAULTS = 30

POLL_S = 0.05            # how often progress is observed
STALL_S = 60.0           # no progress for this long while running: a hang
SCENARIO_LIMIT_S = 300.0  # a scenario that takes longer than this: a hang
EXIT_WAIT_S = 60.0       # a launcher that does not exit this long after its last record: a hang


class ScenarioFailure(Exception):
    """A broken guarantee: lost or duplicated records, a leftover, a hang, a failed run."""


class Interrupted(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes

def pidfd_of(pid):
    """A pidfd for `pid` if it is a millrace process, else None (gone or a reused pid)."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"millrace" not in f.read():
                os.close(fd)
                return None
    except OSError:
        os.close(fd)
        return None
    return fd


def pidfd_alive(fd):
    """A pidfd becomes readable when its process exits (zombie or reaped)."""
    readable, _, _ = select.select([fd], [], [], 0)
    return not readable


def signal_pidfd(fd, sig):
    try:
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False


def processes_naming(run_id, run_dir):
    """Live (not zombie) processes, other than this harness, whose environment names the run
    id (every worker the launcher starts carries MILLRACE_RUN_ID) or whose command line names
    the run dir (the launcher): pid -> command line."""
    found = {}
    me = os.getpid()
    needle_env = f"MILLRACE_RUN_ID={run_id}".encode()
    needle_cmd = run_dir.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            if stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] == b"Z":
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            env = b""
            if b"millrace" in cmd:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read()
        except OSError:
            continue
        if needle_env in env.split(b"\0") or needle_cmd in cmd:
            found[pid] = cmd.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


# ---------------------------------------------------------------------------------------------
# The job

def run_id_of(run_dir):
    """The launcher's run id: FNV-1a 64 of the canonical run dir path, last 12 hex digits."""
    h = 0xcbf29ce484222325
    for b in os.path.realpath(run_dir).encode():
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"[-12:]


class Tools:
    def __init__(self, bin_dir, source_dir):
        self.bin_dir = os.path.abspath(bin_dir)
        self.source_dir = os.path.abspath(source_dir)
        self.millrace = os.path.join(self.bin_dir, "millrace")
        self.gen = os.path.join(self.bin_dir, "millrace-gen")
        self.config = os.path.join(self.source_dir, "configs", "orders.ini")
        self.reference = os.path.join(self.source_dir, "tests", "e2e", "reference_orders.py")
        self.compare = os.path.join(self.source_dir, "tests", "e2e", "compare_db.py")
        for path in (self.millrace, self.gen):
            if not os.access(path, os.X_OK):
                raise SystemExit(f"chaos: {path} is missing; build it first "
                                 f"(cmake --build BUILD --target millrace millrace-gen ...)")
        for stage in STAGES:
            path = os.path.join(self.bin_dir, f"millrace-{stage}")
            if not os.access(path, os.X_OK):
                raise SystemExit(f"chaos: {path} is missing; build the stage programs first")
        for path in (self.config, self.reference, self.compare):
            if not os.path.isfile(path):
                raise SystemExit(f"chaos: {path} not found; is --source the repository root?")


class Input:
    """Generated input and the reference tables, made once per (rows, seed)."""

    def __init__(self, tools, work_dir, rows, seed):
        self.rows = rows
        self.seed = seed
        base = os.path.join(work_dir, f"input-{rows}-{seed}")
        self.csv = base + ".csv"
        self.reference_db = base + "-reference.db"
        if not os.path.isfile(self.reference_db):
            t0 = time.monotonic()
            subprocess.run([tools.gen, "--rows", str(rows), "--seed", str(seed), "--out", self.csv,
                            "--gen-from", tools.config, "--section", "load"],
                           check=True, stdout=subprocess.DEVNULL)
            tmp = self.reference_db + ".tmp"
            if os.path.exists(tmp):
                os.unlink(tmp)
            subprocess.run([sys.executable, tools.reference, self.csv, tmp], check=True,
                           stdout=subprocess.DEVNULL)
            os.rename(tmp, self.reference_db)
            log(f"input: {rows} rows (seed {seed}) and its reference tables in "
                f"{time.monotonic() - t0:.1f} s")
        db = sqlite3.connect(f"file:{self.reference_db}?mode=ro", uri=True)
        try:
            self.records = sum(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                               for t in ("orders", "rejects"))
        finally:
            db.close()


# ---------------------------------------------------------------------------------------------
# Schedules

class Fault:
    def __init__(self, kind, advance, delay):
        self.kind = kind
        self.advance = advance      # records the store must commit since the previous fault
        self.delay = delay          # and at least this many seconds since it
        self.burst = False          # fire as soon as the run is up again: during its recovery
        self.stage = None
        self.worker = None
        self.duration = None        # SIGSTOP length
        self.variant = None         # kill_all: "launcher" only; graceful_stop: "kill" in the drain
        self.outcome = None         # what happened when it was applied
        self.at = None              # seconds into the scenario

    def describe(self):
        what = self.kind
        if self.stage is not None:
            what += f" {self.stage}.{self.worker}"
        if self.duration is not None:
            what += f" for {self.duration:.2f} s"
        if self.variant is not None:
            what += f" ({self.variant})"
        if self.burst:
            return f"{what:<34} at once, while the run recovers"
        return f"{what:<34} after +{self.advance} records and +{self.delay:.2f} s"


def workers_of(stage, workers):
    return workers if stage in ("clean", "transform") else 1


def make_schedule(seed, cell, records, faults, watchdog_s, kinds=None):
    """The seeded fault schedule of one scenario: a function of its arguments only."""
    rng = random.Random(f"{seed}:{cell}")
    workers = int(cell.split("-")[1][1:])
    kinds = kinds or list(FAULT_WEIGHTS)
    weights = [FAULT_WEIGHTS[k] for k in kinds]
    schedule = []
    # The progress asked between faults adds up to about half the records, so that with the
    # time the faults themselves take, most of the schedule lands mid-run.
    mean_advance = 0.5 * records / faults
    for i in range(faults):
        kind = rng.choices(kinds, weights)[0]
        advance = max(1, int(rng.uniform(0.25, 1.75) * mean_advance))
        delay = rng.uniform(0.05, 0.5)
        fault = Fault(kind, advance, delay)
        # Some faults hit a run that is still recovering from the previous one (restarting
        # workers, a launcher creating its segments, a store reading its positions back).
        fault.burst = i > 0 and kind in ("kill_worker", "kill_all") and rng.random() < 0.25
        if kind in WORKER_FAULTS:
            fault.stage = rng.choice(STAGES)
            fault.worker = rng.randrange(workers_of(fault.stage, workers))
        elif kind == "kill_store":
            fault.stage, fault.worker = "store", 0
        if kind == "stop_short":
            fault.duration = rng.uniform(0.1, 0.4) * watchdog_s
        elif kind == "stop_long":
            fault.duration = rng.uniform(1.6, 2.4) * watchdog_s
        elif kind == "kill_all":
            draw = rng.random()
            if draw < 0.3:
                fault.variant = "launcher only"  # its children must die with it
            elif draw < 0.45:
                fault.variant = "launcher mid-spawn"  # while a child is between fork and exec
        elif kind == "graceful_stop" and rng.random() < 0.25:
            fault.variant = "kill_all while draining"
            fault.duration = rng.uniform(0.0, 0.3)
        schedule.append(fault)
    return schedule


# ---------------------------------------------------------------------------------------------
# One scenario

class Scenario:
    def __init__(self, opts, tools, inp, cell, seed):
        self.opts = opts
        self.tools = tools
        self.input = inp
        self.cell = cell
        self.seed = seed
        self.link, workers, self.ring = cell.split("-")
        self.workers = int(workers[1:])
        self.dir = os.path.join(opts.work_dir, f"{cell}-{seed}")
        self.run_dir = os.path.join(self.dir, "run")
        self.db = os.path.join(self.dir, "out.db")
        self.run_id = run_id_of(self.run_dir)
        self.schedule = make_schedule(seed, cell, inp.records, opts.faults, opts.watchdog_s,
                                      opts.kinds)
        self.proc = None
        self.launches = 0
        self.pidfds = {}           # every millrace pid seen in this scenario -> pidfd
        self.launcher_pids = []
        self.applied = 0
        self.skipped = 0
        self.kinds = collections.Counter()
        self.watchdog_restarts = 0
        self.short_stop_restarts = 0
        self.started = None
        self.last_out = None

    # -- commands ---------------------------------------------------------------------------

    def sets(self):
        ring = RING_BYTES[(self.link, self.ring)]
        s = {
            "load.path": self.input.csv,
            "store.path": self.db,
            "pipeline.run_dir": self.run_dir,
            "link.type": self.link,
            "link.capacity": ring,
            "link:clean->transform.capacity": ring,
            "clean.workers": str(self.workers),
            "transform.workers": str(self.workers),
            "load.rate_limit": str(self.opts.rate),
        }
        for stage in STAGES:
            s[f"{stage}.watchdog"] = self.opts.watchdog
            # Every fault is a restart: allow as many as a scenario can inflict.
            s[f"{stage}.max_restarts"] = "1000"
            s[f"{stage}.backoff_max"] = "1s"
        return s

    def run_command(self):
        cmd = [self.tools.millrace, "run", self.tools.config]
        for k, v in self.sets().items():
            cmd += ["--set", f"{k}={v}"]
        return cmd

    def control(self, *args, timeout=30):
        cmd = [self.tools.millrace, *args, self.tools.config, "--set",
               f"pipeline.run_dir={self.run_dir}"]
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout)

    def stats(self):
        try:
            r = self.control("stats", "--json", timeout=10)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        try:
            st = json.loads(r.stdout)
        except ValueError:
            return None
        self.remember_pids(st)
        return st

    def remember_pids(self, st):
        pids = [st.get("pid", 0), st.get("manager", {}).get("pid", 0)]
        for stage in st.get("stages", []):
            pids += [w.get("pid", 0) for w in stage.get("workers", [])]
        for pid in pids:
            if pid and pid > 0 and pid not in self.pidfds:
                fd = pidfd_of(pid)
                if fd is not None:
                    self.pidfds[pid] = fd

    def launch(self):
        self.launches += 1
        n = self.launches
        self.last_out = os.path.join(self.dir, f"launch-{n}.out")
        self.last_err = os.path.join(self.dir, f"launch-{n}.err")
        with open(self.last_out, "w") as out, open(self.last_err, "w") as err:
            self.proc = subprocess.Popen(self.run_command(), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL)
        self.launcher_pids.append(self.proc.pid)
        fd = pidfd_of(self.proc.pid)
        if fd is not None:
            self.pidfds[self.proc.pid] = fd

    def output(self):
        with open(self.last_out, errors="replace") as f:
            return f.read()

    def error_tail(self, lines=15):
        """The last lines of the launch's stderr (progress lines end in CR, not LF)."""
        try:
            with open(self.last_err, errors="replace") as f:
                text = f.read()
        except OSError:
            return []
        return [l[:300] for l in text.replace("\r", "\n").splitlines() if l.strip()][-lines:]

    def now(self):
        return time.monotonic() - self.started

    def check_time(self):
        if self.now() > SCENARIO_LIMIT_S:
            raise ScenarioFailure(f"hang: the scenario did not finish in {SCENARIO_LIMIT_S:.0f} s")

    # -- waiting ----------------------------------------------------------------------------

    def lock_holders(self):
        """Processes with the run dir's lock file open, as 'pid (command line)'."""
        lock = os.path.realpath(os.path.join(self.run_dir, "lock"))
        holders = []
        me = str(os.getpid())
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or entry == me:
                continue
            try:
                for fd in os.listdir(f"/proc/{entry}/fd"):
                    if os.readlink(f"/proc/{entry}/fd/{fd}") == lock:
                        with open(f"/proc/{entry}/cmdline", "rb") as f:
                            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                        holders.append(f"{entry} ({cmd.strip()[:120]})")
                        break
            except OSError:
                continue
        return holders

    def finished_run(self, rc):
        """Judges a launcher that exited on its own: True when the job is complete."""
        out = self.output()
        if rc != 0:
            detail = ""
            if any("another launcher" in line for line in self.error_tail()):
                holders = self.lock_holders()
                detail = ("\n  the launchers of this scenario: " +
                          ", ".join(f"{p} ({'alive' if pidfd_alive(fd) else 'dead'})"
                                    for p, fd in self.pidfds.items()
                                    if p in self.launcher_pids) +
                          "\n  processes holding the lock file now: " +
                          (", ".join(holders) if holders else "none"))
            raise ScenarioFailure(f"launch {self.launches} exited {rc} on its own; stderr:\n    "
                                  + "\n    ".join(self.error_tail()) + detail)
        if re.search(r"^millrace: \S+ done in", out, re.M):
            return True
        if "stopped (run again to resume)" in out:
            raise ScenarioFailure(f"launch {self.launches} stopped without being asked to")
        raise ScenarioFailure(f"launch {self.launches} exited 0 without a report:\n{out[-2000:]}")

    def wait_trigger(self, fault, since, baseline):
        """Polls until the fault may fire: the run is running, the store committed `advance`
        records since the previous fault, `delay` passed, and the target worker runs.
        Returns the stats snapshot, or None when the job completed first."""
        ready_at = since + (0 if fault.burst else fault.delay)
        advance = 0 if fault.burst else fault.advance
        states = ("starting", "running") if fault.burst else ("running",)
        last_progress = None
        last_change = time.monotonic()
        target_missing_since = None
        while True:
            self.check_time()
            rc = self.proc.poll()
            if rc is not None:
                if self.finished_run(rc):
                    return None
            st = self.stats()
            now = time.monotonic()
            if st is not None and st.get("state") in states:
                progress = st.get("positions_done", 0)
                if baseline[0] is None:
                    baseline[0] = progress
                if progress != last_progress:
                    last_progress, last_change = progress, now
                if progress >= baseline[0] + advance and now >= ready_at:
                    if fault.stage is None:
                        return st
                    w = self.worker(st, fault.stage, fault.worker)
                    if w and w.get("pid", 0) > 0 and w.get("state") == "running":
                        return st
                    # A stage that finished its input has nothing left to kill.
                    target_missing_since = target_missing_since or now
                    if now - target_missing_since > 5.0:
                        fault.outcome = "skipped: target not running"
                        return st
            if now - last_change > STALL_S:
                raise ScenarioFailure(f"hang: no progress for {STALL_S:.0f} s "
                                      f"(stats: {json.dumps(st)[:1500] if st else 'unavailable'})")
            time.sleep(POLL_S)

    @staticmethod
    def worker(st, stage, index):
        for s in st.get("stages", []):
            if s.get("name") == stage:
                for w in s.get("workers", []):
                    if w.get("index") == index:
                        return w
        return None

    def wait_exit(self, timeout, why=""):
        """Waits for the launcher to exit; returns its exit code."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_time()
            rc = self.proc.poll()
            if rc is not None:
                return rc
            if time.monotonic() > deadline:
                st = self.stats()
                raise ScenarioFailure(
                    f"hang: launch {self.launches} did not exit in {timeout:.0f} s{why} "
                    f"(stats: {json.dumps(st)[:1500] if st else 'unavailable'})")
            time.sleep(POLL_S)

    def wait_gone(self, fds, timeout, what):
        deadline = time.monotonic() + timeout
        while any(pidfd_alive(fd) for fd in fds.values()):
            if time.monotonic() > deadline:
                alive = [pid for pid, fd in fds.items() if pidfd_alive(fd)]
                raise ScenarioFailure(f"{what}: pids {alive} still alive after {timeout:.0f} s")
            time.sleep(POLL_S)

    # -- faults -----------------------------------------------------------------------------

    def apply(self, fault, st):
        """Applies one fault; returns True when the run goes on, False when it completed."""
        fault.at = self.now()
        kind = fault.kind
        if kind in ("kill_worker", "kill_store", "stop_short", "stop_long"):
            if kind == "kill_store":
                st = self.wait_store_busy(st)
            w = self.worker(st, fault.stage, fault.worker)
            fd = pidfd_of(w["pid"]) if w and w.get("pid", 0) > 0 else None
            if fd is None:
                fault.outcome = "skipped: target gone"
                return True
            pid = w["pid"]
            try:
                if kind in ("kill_worker", "kill_store"):
                    signal_pidfd(fd, signal.SIGKILL)
                    fault.outcome = f"killed pid {pid}" + (
                        f" ({w.get('activity')})" if kind == "kill_store" else "")
                else:
                    self.stop_and_continue(fault, fd, pid)
            finally:
                os.close(fd)
            return True
        if kind == "kill_manager":
            pid = st.get("manager", {}).get("pid", 0)
            fd = pidfd_of(pid) if pid and pid > 0 else None
            if fd is None:
                fault.outcome = "skipped: the run has no manager"
                return True
            signal_pidfd(fd, signal.SIGKILL)
            os.close(fd)
            fault.outcome = f"killed manager pid {pid}"
            return True
        if kind == "kill_all":
            return self.kill_all(fault, st)
        if kind == "graceful_stop":
            return self.graceful_stop(fault)
        raise AssertionError(kind)

    def wait_store_busy(self, st):
        """Polls briefly for a moment when the store is writing, to kill it mid-transaction."""
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            w = self.worker(st, "store", 0)
            if w and w.get("activity") == "busy":
                return st
            time.sleep(0.01)
            st = self.stats() or st
        return st

    def stop_and_continue(self, fault, fd, pid):
        signal_pidfd(fd, signal.SIGSTOP)
        time.sleep(fault.duration)  # the fault itself: how long the process stays stopped
        signal_pidfd(fd, signal.SIGCONT)
        restarted = False
        if fault.kind == "stop_long":
            # The watchdog must have killed it: its slot shows another pid (or the run ended).
            deadline = time.monotonic() + 10 * self.opts.watchdog_s + 10
            while True:
                if not pidfd_alive(fd):
                    restarted = True
                    break
                if self.proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    raise ScenarioFailure(
                        f"watchdog: {fault.stage}.{fault.worker} (pid {pid}) stopped for "
                        f"{fault.duration:.2f} s with watchdog {self.opts.watchdog} was not "
                        f"killed within {10 * self.opts.watchdog_s + 10:.0f} s")
                time.sleep(POLL_S)
            if restarted:
                self.watchdog_restarts += 1
        else:
            restarted = not pidfd_alive(fd)
            if restarted:
                self.short_stop_restarts += 1
        fault.outcome = f"stopped pid {pid}; " + ("watchdog killed it" if restarted else
                                                  "it went on")

    def kill_all(self, fault, st):
        launcher = st.get("pid", 0)
        pids = [launcher, st.get("manager", {}).get("pid", 0)]
        for s in st.get("stages", []):
            pids += [w.get("pid", 0) for w in s.get("workers", [])]
        fds = {}
        for pid in pids:
            if pid and pid > 0:
                fd = pidfd_of(pid)
                if fd is not None:
                    fds[pid] = fd
        if launcher not in fds:
            fds[self.proc.pid] = os.pidfd_open(self.proc.pid)
            launcher = self.proc.pid
        launcher_only = fault.variant in ("launcher only", "launcher mid-spawn")
        spawning = None
        if fault.variant == "launcher mid-spawn":
            spawning = self.kill_store_then_wait_spawn(st, launcher)
        if not launcher_only:
            # All its children: also those that stats does not show yet (being spawned).
            for pid in processes_naming(self.run_id, self.run_dir):
                if pid not in fds:
                    fd = pidfd_of(pid)
                    if fd is not None:
                        fds[pid] = fd
        # At once: every signal is sent before any process has a chance to react. When only
        # the launcher is killed, its children must die by themselves (parent-death signal).
        for pid, fd in fds.items():
            if not launcher_only or pid == launcher:
                signal_pidfd(fd, signal.SIGKILL)
        rc = self.proc.wait(timeout=30)
        try:
            self.wait_gone(fds, 15, "kill_all")
        finally:
            for fd in fds.values():
                os.close(fd)
        if rc != -signal.SIGKILL:
            # It exited just before the kill: a drain that ended, or a completed run.
            if (fault.kind == "graceful_stop" and rc == 0 and
                    "stopped (run again to resume)" in self.output()):
                fault.outcome = "the drain ended before the kill; relaunched"
                self.launch()
                return True
            self.finished_run(rc)
            fault.outcome = f"too late: the run had completed (exit {rc})"
            return False
        if fault.variant == "launcher mid-spawn":
            fault.outcome = ("killed the store, then the launcher " +
                             (f"while its child {spawning} was between fork and exec"
                              if spawning else "(no spawn seen within 3 s)") +
                             "; relaunched at once")
        elif launcher_only:
            fault.outcome = (f"killed the launcher; its {len(fds) - 1} children died with it; "
                             "relaunched")
        else:
            fault.outcome = f"killed {len(fds)} processes; relaunched"
        self.launch()
        return True

    def kill_store_then_wait_spawn(self, st, launcher):
        """Kills the store, so that the launcher restarts workers, and returns as soon as one
        of the launcher's children is between fork and exec (its executable is still the
        launcher's): the pid of that child, or None after 3 s."""
        w = self.worker(st, "store", 0)
        fd = pidfd_of(w["pid"]) if w and w.get("pid", 0) > 0 else None
        if fd is not None:
            signal_pidfd(fd, signal.SIGKILL)
            os.close(fd)
        try:
            exe = os.readlink(f"/proc/{launcher}/exe")
        except OSError:
            return None
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # a spin: the window lasts about a millisecond
            try:
                with open(f"/proc/{launcher}/task/{launcher}/children") as f:
                    children = f.read().split()
            except OSError:
                return None
            for child in children:
                try:
                    if os.readlink(f"/proc/{child}/exe") == exe:
                        return int(child)
                except OSError:
                    continue
        return None

    def graceful_stop(self, fault):
        r = self.control("stop", timeout=60)
        if fault.variant:
            # While the records in flight drain, kill everything (unless the drain is over).
            time.sleep(fault.duration)  # the fault: how far into the drain the kill lands
            st = self.stats()
            if st is not None and self.proc.poll() is None:
                return self.kill_all(fault, st)
        rc = self.wait_exit(EXIT_WAIT_S, f" after `millrace stop` (exit {r.returncode}: "
                                         f"{r.stderr.strip()[:300]})")
        out = self.output()
        if rc != 0:
            raise ScenarioFailure(f"graceful stop: launch {self.launches} exited {rc}; "
                                  "stderr:\n    "
                                  + "\n    ".join(self.error_tail()))
        if "stopped (run again to resume)" in out:
            fault.outcome = "stopped; relaunched"
            self.launch()
            return True
        if re.search(r"^millrace: \S+ done in", out, re.M):
            fault.outcome = f"too late: the run had completed (stop said: {r.stderr.strip()[:80]})"
            return False
        raise ScenarioFailure(f"graceful stop: unexpected report:\n{out[-2000:]}")

    # -- checks -----------------------------------------------------------------------------

    def check_report(self):
        out = self.output()
        if not re.search(r"^millrace: \S+ done in", out, re.M):
            raise ScenarioFailure(f"the last run's report does not say done:\n{out[-2000:]}")
        m = re.search(r"^\s*accounting\s+(\S+)", out, re.M)
        if not m or m.group(1) != "ok":
            raise ScenarioFailure(f"the accounting check did not pass:\n{out[-2000:]}")

    def check_tables(self):
        r = subprocess.run([sys.executable, self.tools.compare, self.input.reference_db, self.db,
                            "--expect-records", str(self.input.records)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise ScenarioFailure("the stored tables differ from the reference "
                                  "(A = reference, B = millrace):\n" + r.stdout[-3000:])

    def check_leftovers(self):
        problems = []
        alive = [pid for pid, fd in self.pidfds.items() if pidfd_alive(fd)]
        if alive:
            problems.append(f"processes of the run still alive: {alive}")
        pattern = re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", self.run_dir)
        pg = subprocess.run(["pgrep", "-f", pattern], stdout=subprocess.PIPE, text=True)
        pg_pids = [int(p) for p in pg.stdout.split()]
        if pg_pids:
            problems.append(f"pgrep -f {self.run_dir}: {pg_pids}")
        named = processes_naming(self.run_id, self.run_dir)
        if named:
            problems.append("processes naming the run: " +
                            "; ".join(f"{p} {c}" for p, c in sorted(named.items())))
        segments = sorted(glob.glob(f"/dev/shm/millrace-{self.run_id}-*"))
        if segments:
            problems.append(f"shared-memory segments left: {segments}")
        lock = os.path.join(self.run_dir, "lock")
        if os.path.exists(lock):
            # Free for both kinds of lock a launcher may take: flock and POSIX record locks.
            with open(lock, "a") as f:
                for kind, take in (("flock", fcntl.flock), ("POSIX record lock", fcntl.lockf)):
                    try:
                        take(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        take(f, fcntl.LOCK_UN)
                    except OSError:
                        problems.append(f"the run dir lock {lock} is still held ({kind}; "
                                        f"open by: {', '.join(self.lock_holders()) or '?'})")
        if problems:
            raise ScenarioFailure("leftovers after the run:\n    " + "\n    ".join(problems))

    # -- the scenario -----------------------------------------------------------------------

    def run(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.started = time.monotonic()
        self.launch()
        since = time.monotonic()
        baseline = [None]
        complete = False
        for fault in self.schedule:
            st = self.wait_trigger(fault, since, baseline)
            if st is None:
                complete = True
                break
            if fault.outcome is None:
                going_on = self.apply(fault, st)
            else:
                going_on = True
            if fault.outcome.startswith("skipped") or fault.outcome.startswith("too late"):
                self.skipped += 1
            else:
                self.applied += 1
                self.kinds[fault.kind] += 1
            if not going_on:
                complete = True
                break
            since = time.monotonic()
            baseline = [None]
        if not complete:
            rc = self.wait_exit(SCENARIO_LIMIT_S)
            self.finished_run(rc)
        self.check_report()
        self.check_tables()
        self.check_leftovers()
        # Once more: a finished job stays finished, changes nothing, and exits 0.
        self.launch()
        rc = self.wait_exit(EXIT_WAIT_S)
        self.finished_run(rc)
        self.check_report()
        self.check_tables()
        self.check_leftovers()

    def close(self):
        for fd in self.pidfds.values():
            os.close(fd)
        self.pidfds.clear()

    def abort(self):
        """Kills what is left of the run (after a failure or an interrupt), best effort."""
        for pid, fd in self.pidfds.items():
            if pidfd_alive(fd):
                signal_pidfd(fd, signal.SIGKILL)
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in processes_naming(self.run_id, self.run_dir):
            fd = pidfd_of(pid)
            if fd is not None:
                signal_pidfd(fd, signal.SIGKILL)
                os.close(fd)
        # The failure report listed them; do not leave them to fill /dev/shm.
        for path in glob.glob(f"/dev/shm/millrace-{self.run_id}-*"):
            try:
                os.unlink(path)
            except OSError:
                pass

    def replay_command(self):
        o = self.opts
        cmd = [sys.executable, os.path.abspath(__file__), "--bin", self.tools.bin_dir,
               "--source", self.tools.source_dir, "--seed", str(self.seed),
               "--scenario", self.cell]
        defaults = {"rows": DEFAULT_ROWS, "input_seed": 1, "rate": DEFAULT_RATE,
                    "faults": DEFAULT_FAULTS, "watchdog": "1s"}
        for key, default in defaults.items():
            if getattr(o, key) != default:
                cmd += [f"--{key.replace('_', '-')}", str(getattr(o, key))]
        if o.kinds:
            cmd += ["--kinds", ",".join(o.kinds)]
        return shlex.join(cmd)

    def describe_schedule(self):
        lines = []
        for i, f in enumerate(self.schedule, 1):
            when = f"at {f.at:6.2f} s: {f.outcome}" if f.at is not None else (
                f.outcome or "not reached")
            lines.append(f"  {i:2}. {f.describe()}  -> {when}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Modes

class Totals:
    def __init__(self):
        self.lock = threading.Lock()
        self.faults = 0
        self.runs = 0
        self.launches = 0
        self.kinds = collections.Counter()
        self.cells = collections.Counter()
        self.watchdog_restarts = 0
        self.short_stop_restarts = 0

    def add(self, sc):
        with self.lock:
            self.faults += sc.applied
            self.runs += 1
            self.launches += sc.launches
            self.kinds.update(sc.kinds)
            self.cells[sc.cell] += 1
            self.watchdog_restarts += sc.watchdog_restarts
            self.short_stop_restarts += sc.short_stop_restarts


def run_scenario(opts, tools, inp, cell, seed, totals):
    sc = Scenario(opts, tools, inp, cell, seed)
    t0 = time.monotonic()
    try:
        sc.run()
    except (ScenarioFailure, subprocess.TimeoutExpired) as e:
        sc.abort()
        log(f"FAIL {cell} seed={seed}: {e}")
        log(f"  fault schedule (seed {seed}, {inp.records} records, rate {opts.rate}/s, "
            f"watchdog {opts.watchdog}):")
        log(sc.describe_schedule())
        log(f"  command: {shlex.join(sc.run_command())}")
        log(f"  scenario directory kept: {sc.dir}")
        log(f"  replay: {sc.replay_command()}")
        sc.close()
        return False
    except BaseException:
        sc.abort()
        sc.close()
        raise
    sc.close()
    totals.add(sc)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(sc.kinds.items()))
    log(f"ok   {cell:<15} seed={seed:<10} faults {sc.applied:2} ({kinds}); skipped {sc.skipped}; "
        f"launches {sc.launches}; {time.monotonic() - t0:.1f} s")
    if opts.verbose:
        log(sc.describe_schedule())
    if not opts.keep:
        shutil.rmtree(sc.dir, ignore_errors=True)
    return True


def summary(totals, elapsed, label):
    minutes = elapsed / 60.0
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(totals.kinds.items())) or "none"
    log(f"{label}: {totals.faults} faults survived in {totals.runs} runs "
        f"({totals.launches} launches) over {minutes:.1f} minutes, "
        f"{totals.faults / minutes if minutes > 0 else 0:.1f} faults/minute")
    log(f"  by kind: {kinds}")
    log(f"  by cell: " + ", ".join(f"{c} {n}" for c, n in sorted(totals.cells.items())))
    log(f"  long stops the watchdog restarted: {totals.watchdog_restarts}; "
        f"short stops that tripped it: {totals.short_stop_restarts}")


def scenario_seeds(base_seed):
    rng = random.Random(base_seed)
    while True:
        yield rng.randrange(1, 2**31)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--bin", required=True, help="directory of millrace and its stage programs")
    ap.add_argument("--source", default=os.path.join(os.path.dirname(__file__), "..", ".."),
                    help="repository root (configs/, tests/e2e/)")
    ap.add_argument("--seed", type=int, default=None,
                    help="with --scenario: that scenario's seed; else the seed of the seeds "
                         "(default: MILLRACE_SEED or random)")
    ap.add_argument("--scenario", choices=CELLS, help="run one matrix cell (replay)")
    ap.add_argument("--budget-seconds", type=float, help="CI mode: run scenarios this long")
    ap.add_argument("--min-faults", type=int, default=0,
                    help="budget mode: go on past the budget until this many faults survived")
    ap.add_argument("--soak-minutes", type=float, help="soak mode: run scenarios this long")
    ap.add_argument("--soak-minutes-from-env", metavar="VAR",
                    help="soak mode with the minutes from environment variable VAR; exit 77 "
                         "(skipped) when it is unset")
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                    help=f"input rows (default {DEFAULT_ROWS})")
    ap.add_argument("--input-seed", type=int, default=1, help="seed of the generated input")
    ap.add_argument("--rate", type=int, default=DEFAULT_RATE,
                    help=f"load.rate_limit in records/s, so faults land mid-run "
                         f"(default {DEFAULT_RATE})")
    ap.add_argument("--faults", type=int, default=DEFAULT_FAULTS,
                    help=f"faults per scenario (default {DEFAULT_FAULTS})")
    ap.add_argument("--watchdog", default="1s", help="watchdog of every stage (default 1s)")
    ap.add_argument("--kinds", help="only these fault kinds, comma-separated: " +
                    ", ".join(FAULT_WEIGHTS))
    ap.add_argument("--work-dir", help="where runs go (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the directories of passed runs")
    ap.add_argument("--keep-going", action="store_true", help="go on after a failed scenario")
    ap.add_argument("--verbose", action="store_true", help="print every schedule")
    opts = ap.parse_args()

    if opts.soak_minutes_from_env:
        value = os.environ.get(opts.soak_minutes_from_env, "").strip()
        if not value:
            log(f"chaos soak skipped: set {opts.soak_minutes_from_env}=MINUTES to run it")
            return SKIP_EXIT
        opts.soak_minutes = float(value)
    if opts.kinds:
        opts.kinds = [k.strip() for k in opts.kinds.split(",") if k.strip()]
        unknown = [k for k in opts.kinds if k not in FAULT_WEIGHTS]
        if unknown:
            ap.error(f"--kinds: unknown {unknown}; known: {', '.join(FAULT_WEIGHTS)}")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", opts.watchdog)
    if not m:
        ap.error("--watchdog takes e.g. 1s or 800ms")
    opts.watchdog_s = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)

    tools = Tools(opts.bin, opts.source)
    base_seed = opts.seed
    if base_seed is None:
        env = os.environ.get("MILLRACE_SEED")
        base_seed = int(env) if env else random.randrange(1, 2**31)
    own_work_dir = opts.work_dir is None
    opts.work_dir = os.path.abspath(opts.work_dir or tempfile.mkdtemp(prefix="millrace-chaos-"))
    os.makedirs(opts.work_dir, exist_ok=True)

    def on_term(signum, frame):
        raise Interrupted(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    totals = Totals()
    failures = 0
    t0 = time.monotonic()
    try:
        inp = Input(tools, opts.work_dir, opts.rows, opts.input_seed)
        log(f"chaos: seed {base_seed}, {inp.records} records per run, rate {opts.rate}/s, "
            f"{opts.faults} faults per scenario, watchdog {opts.watchdog}, "
            f"work dir {opts.work_dir}")

        if opts.scenario:
            ok = run_scenario(opts, tools, inp, opts.scenario, base_seed, totals)
            failures += 0 if ok else 1
        elif opts.budget_seconds is None and opts.soak_minutes is None:
            seeds = scenario_seeds(base_seed)
            for cell in CELLS:
                if not run_scenario(opts, tools, inp, cell, next(seeds), totals):
                    failures += 1
                    if not opts.keep_going:
                        break
        else:
            soak = opts.soak_minutes is not None
            budget = opts.soak_minutes * 60 if soak else opts.budget_seconds
            # Budget mode goes on until every cell ran and --min-faults survived, within 2x.
            hard_limit = budget if soak else 2 * budget
            stop_ticker = threading.Event()
            if soak:
                def ticker():
                    minute, last = 0, 0
                    while not stop_ticker.wait(60):
                        minute += 1
                        with totals.lock:
                            now, runs = totals.faults, totals.runs
                        log(f"soak minute {minute}: {now - last} faults survived this minute, "
                            f"{now} in total, {runs} runs")
                        last = now
                threading.Thread(target=ticker, daemon=True).start()
            seeds = scenario_seeds(base_seed)
            order = []
            while True:
                elapsed = time.monotonic() - t0
                covered = all(totals.cells[c] > 0 for c in CELLS)
                if elapsed >= budget and (soak or (covered and totals.faults >= opts.min_faults)):
                    break
                if elapsed >= hard_limit:
                    break
                if not order:
                    order = CELLS[:]
                    random.Random(base_seed + totals.runs).shuffle(order)
                cell = order.pop()
                if not run_scenario(opts, tools, inp, cell, next(seeds), totals):
                    failures += 1
                    if not opts.keep_going:
                        break
            stop_ticker.set()
            if not soak and failures == 0:
                if totals.faults < opts.min_faults:
                    log(f"FAIL only {totals.faults} faults survived in "
                        f"{time.monotonic() - t0:.0f} s; at least {opts.min_faults} were asked "
                        f"(machine too slow? raise --budget-seconds)")
                    failures += 1
                missing = [c for c in CELLS if totals.cells[c] == 0]
                if missing:
                    log(f"FAIL matrix cells never run within the time limit: {missing}")
                    failures += 1
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"chaos: interrupted ({e})")
        failures += 1
    summary(totals, time.monotonic() - t0,
            "soak" if opts.soak_minutes is not None else "chaos")
    log(f"chaos: {'FAILED' if failures else 'passed'} (seed {base_seed})")
    if own_work_dir and failures == 0 and not opts.keep:
        shutil.rmtree(opts.work_dir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
