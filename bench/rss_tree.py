#!/usr/bin/env python3
"""Runs a command and reports the peak total memory of its whole process tree.

    rss_tree.py [--interval S] [--exclude-root] [-o FILE] -- CMD [ARGS...]

Every S seconds (default 0.1) it finds the command's process and all its descendants
(through the parent links in /proc) and sums their resident set sizes (VmRSS) and their
proportional set sizes (Pss, which splits shared pages such as shared-memory rings among
the processes that map them, so a page is counted once). At the end it prints

    peak_total_rss_kib N
    peak_total_pss_kib N
    peak_processes N

to stderr (or to FILE) and exits with the command's exit status (128 + signal number when
the command was killed by a signal). `/usr/bin/time -f %M` reports only the largest single
process; this reports the sum, which is what a multi-process program costs. Peaks shorter
than the interval can be missed. --exclude-root leaves the command's own process out of the
sum: use it when the command is a wrapper such as /usr/bin/time.
"""

import argparse
import os
import select
import signal
import subprocess
import sys

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def parent_map():
    """{pid: ppid} of every process visible in /proc."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        # The command name is in parentheses and may contain spaces: split after it.
        rest = stat[stat.rfind(b")") + 2:].split()
        parents[int(name)] = int(rest[1])
    return parents


def descendants(root, parents):
    children = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def memory_kib(pid):
    """(rss_kib, pss_kib) of one process, (0, 0) when it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            rss = int(f.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0, 0
    pss = rss
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    pss = int(line.split()[1])
                    break
    except (OSError, IndexError, ValueError):
        pass  # no smaps_rollup (old kernel, or the process exited): fall back to RSS
    return rss, pss


class Peak:
    def __init__(self, root, exclude_root):
        self.root = root
        self.exclude_root = exclude_root
        self.rss = self.pss = self.processes = 0

    def sample(self):
        pids = descendants(self.root, parent_map())
        if self.exclude_root:
            pids = [p for p in pids if p != self.root]
        rss = pss = 0
        for pid in pids:
            r, p = memory_kib(pid)
            rss += r
            pss += p
        self.rss = max(self.rss, rss)
        self.pss = max(self.pss, pss)
        self.processes = max(self.processes, len(pids))


def wait_loop(proc, peak, interval):
    """Samples until the process exits; returns its status as a shell would."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    while True:
        peak.sample()
        if pidfd is not None:
            readable, _, _ = select.select([pidfd], [], [], interval)
            if readable:
                break
        else:
            try:
                proc.wait(timeout=interval)
                break
            except subprocess.TimeoutExpired:
                pass
    if pidfd is not None:
        os.close(pidfd)
    rc = proc.wait()
    return 128 - rc if rc < 0 else rc


def main(argv):
    if "--" not in argv:
        print("usage: rss_tree.py [--interval S] [--exclude-root] [-o FILE] -- CMD [ARGS...]",
              file=sys.stderr)
        return 2
    split = argv.index("--")
    p = argparse.ArgumentParser(prog="rss_tree.py")
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--exclude-root", action="store_true")
    p.add_argument("-o", "--output", help="write the result lines here instead of stderr")
    args = p.parse_args(argv[1:split])
    cmd = argv[split + 1:]
    if not cmd:
        p.error("no command after --")

    try:
        proc = subprocess.Popen(cmd)
    except OSError as e:
        print(f"rss_tree.py: cannot run {cmd[0]}: {e}", file=sys.stderr)
        return 127
    peak = Peak(proc.pid, args.exclude_root)
    # Ctrl-C reaches the command through the terminal's process group; wait for it to end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rc = wait_loop(proc, peak, args.interval)

    result = (f"peak_total_rss_kib {peak.rss}\npeak_total_pss_kib {peak.pss}\n"
              f"peak_processes {peak.processes}\n")
    if args.output:
        with open(args.output, "w") as f:
            f.write(result)
    else:
        sys.stderr.write(result)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
