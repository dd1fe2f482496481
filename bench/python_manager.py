#!/usr/bin/env python3
"""Python's multiprocessing.Manager on the workloads of bench/manager_bench.cpp.

    python_manager.py [--ops N] [--batch-ops N] [--clients 1,4]

Prints one line per measurement:  RESULT <workload> <clients> <ops/s>

  counter_add       a registered Counter whose add() runs under a lock in the manager: one
                    request per increment and atomic, like millrace's counter (a Value's
                    `v.value += 1` would take two requests and is not atomic)
  dict_set/get      d[key] = value / d[key] on a Manager().dict()
  dict_set_batch64  d.update() of 64 items per request (millrace: a WriteBatch of 64 sets)

Clients are forked processes that start together at a barrier; the time is from the barrier
to the last client's exit.
"""
import argparse
import multiprocessing as mp
import threading
import time
from multiprocessing.managers import SyncManager


class Counter:
    def __init__(self):
        self._n = 0
        self._lock = threading.Lock()  # the manager serves each client in its own thread

    def add(self, delta=1):
        with self._lock:
            self._n += delta
            return self._n

    def get(self):
        return self._n


class BenchManager(SyncManager):
    pass


BenchManager.register("Counter", Counter)


def counter_add(counter, d, client, ops):
    for _ in range(ops):
        counter.add(1)


def dict_set(counter, d, client, ops):
    prefix = "c%d-" % client
    for k in range(ops):
        d[prefix + str(k % 100)] = k


def dict_get(counter, d, client, ops):
    prefix = "c%d-" % client
    for k in range(ops):
        d[prefix + str(k % 100)]


def dict_set_batch64(counter, d, client, ops):
    prefix = "b%d-" % client
    for k in range(0, ops, 64):
        d.update({prefix + str((k + j) % 100): k + j for j in range(64)})


def child(work, counter, d, client, ops, barrier):
    barrier.wait()
    work(counter, d, client, ops)


def measure(work, counter, d, clients, ops):
    barrier = mp.Barrier(clients + 1)
    procs = [mp.Process(target=child, args=(work, counter, d, i, ops, barrier))
             for i in range(clients)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit("python_manager: a client failed")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20000, help="requests per client")
    parser.add_argument("--batch-ops", type=int, default=128000,
                        help="dict sets per client in the batch64 workload")
    parser.add_argument("--clients", default="1,4")
    args = parser.parse_args()
    mp.set_start_method("fork")
    with BenchManager() as manager:
        counter = manager.Counter()
        d = manager.dict()
        for clients in [int(c) for c in args.clients.split(",")]:
            for name, work, ops in (("counter_add", counter_add, args.ops),
                                    ("dict_set", dict_set, args.ops),
                                    ("dict_get", dict_get, args.ops),
                                    ("dict_set_batch64", dict_set_batch64, args.batch_ops)):
                seconds = measure(work, counter, d, clients, ops)
                print("RESULT %s %d %.0f" % (name, clients, ops * clients / seconds), flush=True)


if __name__ == "__main__":
    main()
