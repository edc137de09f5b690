#!/usr/bin/env python3
"""Where a JVM's CPU goes, second by second: samples the newest egress-proxy JVM's threads from /proc.

    bench/threads.py SECONDS OUT

Waits (up to SECONDS) for a process whose command line runs egress-proxy.jar with --config (not a
--cds-training run), then once a second writes to OUT one line: seconds since it was found, and the
CPU ticks (1/100 s; 100 is one core fully busy) each group of its threads used in that second (the
first line: since the JVM started):
C1 and C2 (the JIT's compiler threads), io (egress-io-*, the event loops), gc+vm (the collector and
the VM thread) and other. Run it beside a curve (docs/performance.md, "Where the cold time goes"):

    bench/threads.py 90 /tmp/threads.txt & bench/run.sh --curves --curve-seconds 30 --proxies egress
"""
import collections
import os
import sys
import time


def find(deadline):
    while time.time() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ")
            except OSError:
                continue
            if b"egress-proxy.jar" in cmd and b"--config" in cmd and b"--cds-training" not in cmd:
                return pid
        time.sleep(0.005)
    return None


def group(name):
    if name.startswith("C2 Compiler"):
        return "C2"
    if name.startswith("C1 Compiler"):
        return "C1"
    if name.startswith("egress-io"):
        return "io"
    if "GC" in name or name.startswith("VM Thread"):
        return "gc+vm"
    return "other"


def main():
    seconds, out = float(sys.argv[1]), sys.argv[2]
    deadline = time.time() + seconds
    pid = find(deadline)
    if pid is None:
        sys.exit("threads.py: no egress-proxy JVM appeared")
    start = time.time()
    seen = {}
    with open(out, "w") as f:
        while time.time() < deadline:
            used = collections.Counter()
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except FileNotFoundError:
                break
            for t in tasks:
                try:
                    with open(f"/proc/{pid}/task/{t}/comm") as c:
                        name = c.read().strip()
                    with open(f"/proc/{pid}/task/{t}/stat") as s:
                        fields = s.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                ticks = int(fields[11]) + int(fields[12])  # utime + stime
                used[group(name)] += ticks - seen.get(t, 0)
                seen[t] = ticks
            f.write("%.1f %s\n" % (time.time() - start, " ".join(f"{k}={v}" for k, v in sorted(used.items()))))
            f.flush()
            time.sleep(1)


if __name__ == "__main__":
    main()
