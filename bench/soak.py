"""The soak's report (bench/run.sh --soak): from the load generator's CSV per proxy
(bench/src/Soak.java, one row per 10 s sample), a table per proxy, a verdict per proxy and a
plot of RSS, direct memory, open files and the kernel memory of the proxy's sockets over time
(gnuplot), plus all rows in one CSV.

  soak.py [--png FILE] [--csv FILE] [--every SECONDS] [--log PROXY=FILE ...] PROXY=CSV ...

Verdict: PASS when memory is flat (the median RSS of the last quarter of the hold is within
max(5%, 4 MiB) of the second quarter's) and nothing failed: no failed or refused CONNECT, no
tunnel closed by the far side, no stall. The proxy's own log is summarised (warnings and errors,
the most frequent first) when --log names it."""
import argparse
import csv
import re
import statistics
import subprocess
import sys
import tempfile
from collections import Counter

MIB = 1024 * 1024
MARGIN_SHARE = 0.05
MARGIN_MIB = 4.0


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(row, key):
    v = row.get(key, "")
    return float(v) if v not in ("", None) else None


def errors_of(row):
    return int(num(row, "connect_failed") + num(row, "refused") + num(row, "closed") + num(row, "stalls"))


def fmt(v, digits=0):
    return "-" if v is None else ("{:,.%df}" % digits).format(v)


def table(name, rows, every):
    """Rows every `every` seconds (and the first of the hold and the last), as aligned text."""
    head = ["t_s", "phase", "rss_MiB", "fds", "threads", "tunnels", "idle/slow/bulk", "opened",
            "conn_fail", "refused", "closed", "stalls", "MB_moved", "MB/s", "sock_MiB", "tcp_MiB"]
    tcp = any(r.get("pressure_ms") for r in rows)
    if tcp:
        head += ["pressure_s", "rcvq_drops", "rto"]
    egress = any(r.get("held_bytes") for r in rows)
    if egress:
        head += ["held/budget_MiB", "jvm_direct_MiB", "heap_MiB", "splices", "pauses"]
    out = [head]
    prev = None
    first_hold = next((r for r in rows if r["phase"] == "hold"), None)
    for i, r in enumerate(rows):
        t = num(r, "t_s")
        show = r is first_hold or i == len(rows) - 1 or i == 0 or round(t) % every < 10
        if show:
            rate = None
            if prev is not None and num(r, "t_s") > num(prev, "t_s"):
                rate = (num(r, "bytes") - num(prev, "bytes")) / (num(r, "t_s") - num(prev, "t_s")) / 1e6
            line = [fmt(t), r["phase"], fmt(num(r, "rss_kb") / 1024, 1), fmt(num(r, "fds")), r["threads"] or "-",
                    fmt(num(r, "tunnels")), "{}/{}/{}".format(r["idle"], r["slow"], r["bulk"]), fmt(num(r, "opened")),
                    fmt(num(r, "connect_failed")), fmt(num(r, "refused")), fmt(num(r, "closed")),
                    fmt(num(r, "stalls")), fmt(num(r, "bytes") / 1e6), fmt(rate, 1),
                    fmt(num(r, "proxy_sock_kb") / 1024, 1), fmt(num(r, "tcp_mem_kb") / 1024, 1)]
            if tcp:
                line += [fmt(since(rows, r, "pressure_ms") / 1000), fmt(since(rows, r, "rcvq_drops")),
                         fmt(since(rows, r, "rto_timeouts"))]
            if egress:
                held, budget = num(r, "held_bytes"), num(r, "budget_bytes")
                line += ["-" if held is None else "{:.1f}/{:.0f}".format(held / MIB, budget / MIB),
                         fmt(None if num(r, "jvm_direct_bytes") is None else num(r, "jvm_direct_bytes") / MIB, 1),
                         fmt(None if num(r, "heap_used_bytes") is None else num(r, "heap_used_bytes") / MIB, 1),
                         fmt(num(r, "proxy_splices")), fmt(num(r, "proxy_pauses"))]
            out.append(line)
        prev = r
    widths = [max(len(row[i]) for row in out) for i in range(len(head))]
    lines = ["  ".join(c.rjust(widths[j]) if j != 1 else c.ljust(widths[j]) for j, c in enumerate(row)).rstrip()
             for row in out]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def since(rows, row, key):
    """A counter of the network namespace, counted from this proxy's first sample."""
    return num(row, key) - num(rows[0], key)


def quarter_median(rows, lo, hi, key):
    vals = [num(r, key) for r in rows if lo <= num(r, "t_s") <= hi and num(r, key) is not None]
    return statistics.median(vals) if vals else None


def verdict(rows):
    """(passed, text): memory flat between the hold's second and last quarters, and no errors."""
    hold = [r for r in rows if r["phase"] == "hold"]
    if len(hold) < 4:
        return False, "FAIL: fewer than 4 samples in the hold ({}): nothing to judge".format(len(hold))
    t0, t1 = num(hold[0], "t_s"), num(hold[-1], "t_s")
    d = t1 - t0
    q2 = quarter_median(hold, t0 + d / 4, t0 + d / 2, "rss_kb")
    q4 = quarter_median(hold, t0 + 3 * d / 4, t1, "rss_kb")
    q2, q4 = q2 / 1024, q4 / 1024
    margin = max(MARGIN_SHARE * q2, MARGIN_MIB)
    flat = q4 <= q2 + margin
    last = rows[-1]
    errs = errors_of(last)
    held_min = min(int(num(r, "tunnels")) for r in hold)
    notes = []
    notes.append("RSS median {:.1f} MiB in the second quarter of the hold, {:.1f} MiB in the last ({:+.1f} MiB, "
                 "margin {:.1f}): {}".format(q2, q4, q4 - q2, margin, "flat" if flat else "GREW"))
    held2 = quarter_median(hold, t0 + d / 4, t0 + d / 2, "held_bytes")
    held4 = quarter_median(hold, t0 + 3 * d / 4, t1, "held_bytes")
    if held2 is not None and held4 is not None:
        notes.append("direct memory held {:.1f} -> {:.1f} MiB".format(held2 / MIB, held4 / MIB))
    if last.get("pressure_ms"):
        notes.append("TCP in memory pressure {:.0f} s, {:,.0f} segments dropped at a full receive queue, {:,.0f} "
                     "retransmission timeouts (the namespace's counters)".format(
                         since(rows, last, "pressure_ms") / 1000, since(rows, last, "rcvq_drops"),
                         since(rows, last, "rto_timeouts")))
    if errs:
        detail = last["errors"].replace(";", ", ")
        notes.append("{} error(s): {}".format(errs, detail))
    else:
        notes.append("no errors")
    notes.append("tunnels up during the hold: {} to {}".format(held_min, max(int(num(r, "tunnels")) for r in hold)))
    ok = flat and errs == 0
    return ok, ("PASS" if ok else "FAIL") + ": " + "; ".join(notes)


def log_summary(path):
    """Warning and error lines of a proxy's log, grouped with digits masked, most frequent first."""
    try:
        text = open(path, errors="replace").read().splitlines()
    except OSError as e:
        return ["  (log not readable: {})".format(e)]
    pattern = re.compile(r"\b(WARN|WARNING|ERROR|FATAL|Exception|OutOfMemoryError|Too many open files)\b")
    hits = Counter()
    for line in text:
        if pattern.search(line):
            masked = re.sub(r"\d+", "#", line)
            masked = re.sub(r"^[#:.\-/ T]+", "", masked)  # leading timestamps
            hits[masked[:160]] += 1
    if not hits:
        return ["  log: no warning or error lines ({} lines)".format(len(text))]
    out = ["  log: {} warning/error line(s) of {}; most frequent:".format(sum(hits.values()), len(text))]
    for line, n in hits.most_common(5):
        out.append("    {:>6} x {}".format(n, line))
    return out


def plot(png, series):
    """RSS, direct memory (egress-proxy), open files and the kernel memory of the proxy's sockets
    against minutes since the soak's start."""
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, rows in series.items():
            path = "{}/{}.dat".format(tmp, name)
            with open(path, "w") as f:
                for r in rows:
                    held = num(r, "held_bytes")
                    jvm = num(r, "jvm_direct_bytes")
                    sock = num(r, "proxy_sock_kb")
                    f.write("{:.3f} {:.1f} {} {} {} {}\n".format(
                        num(r, "t_s") / 60, num(r, "rss_kb") / 1024, int(num(r, "fds")),
                        "NaN" if held is None else "{:.1f}".format(held / MIB),
                        "NaN" if jvm is None else "{:.1f}".format(jvm / MIB),
                        "NaN" if sock is None or sock < 0 else "{:.1f}".format(sock / 1024)))
            files[name] = path
        rss = ", ".join("'{}' using 1:2 with lines lw 2 title '{}'".format(p, n) for n, p in files.items())
        fds = ", ".join("'{}' using 1:3 with lines lw 2 title '{}'".format(p, n) for n, p in files.items())
        sock = ", ".join("'{}' using 1:6 with lines lw 2 title '{}'".format(p, n) for n, p in files.items())
        direct = ", ".join(
            "'{0}' using 1:4 with lines lw 2 title '{1} held (budget)', '{0}' using 1:5 with lines lw 1 dt 2 "
            "title '{1} JVM direct pool'".format(p, n)
            for n, p in files.items() if any(num(r, "held_bytes") is not None for r in series[n]))
        script = "\n".join([
            "set terminal pngcairo size 1000,1400 font 'sans,10'",
            "set output '{}'".format(png),
            "set multiplot layout 4,1 title 'soak: {}'".format(", ".join(series)),
            "set grid", "set key outside right", "set offsets 0, 0, graph 0.08, 0",
            "set xlabel 'minutes since the first tunnel'",
            "set ylabel 'RSS (MiB)'", "set yrange [0:*]", "plot " + rss,
            "set ylabel 'direct memory (MiB)'",
            ("plot " + direct) if direct else "unset key; plot NaN notitle",
            "set key outside right", "set ylabel 'open files'", "plot " + fds,
            "set ylabel \"kernel memory of the\\nproxy's sockets (MiB)\"", "plot " + sock,
            "unset multiplot"])
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--png")
    ap.add_argument("--csv")
    ap.add_argument("--every", type=int, default=60, help="table row every SECONDS (default 60)")
    ap.add_argument("--log", action="append", default=[], help="PROXY=FILE, the proxy's log")
    ap.add_argument("series", nargs="+", help="PROXY=CSV")
    args = ap.parse_args()
    series = {}
    for s in args.series:
        name, path = s.split("=", 1)
        try:
            rows = load(path)
        except OSError as e:
            print("{}: no samples ({})".format(name, e))
            continue
        if rows:
            series[name] = rows
        else:
            print("{}: no samples".format(name))
    logs = dict(s.split("=", 1) for s in args.log)
    passed = True
    for name, rows in series.items():
        print()
        print("== {} (samples every 10 s; rows every {} s, the first of the hold and the last)".format(name, args.every))
        print(table(name, rows, args.every))
        ok, text = verdict(rows)
        passed &= ok
        print(name + ": " + text)
        if name in logs:
            print("\n".join(log_summary(logs[name])))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = None
            for name, rows in series.items():
                for r in rows:
                    if w is None:
                        w = csv.DictWriter(f, fieldnames=["proxy"] + list(r.keys()))
                        w.writeheader()
                    w.writerow(dict(proxy=name, **r))
    if args.png and series:
        plot(args.png, series)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
