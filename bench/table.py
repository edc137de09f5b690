"""Prints the benchmark table from bench/run.sh's results: per scenario and proxy the median and
the spread (min-max) over the runs, the ratio of egress-proxy to Squid, and the targets of issue 7
with whether this run met them. Only ratios within one run mean anything on a noisy machine."""
import statistics
import sys
from collections import defaultdict

results_path, quick = sys.argv[1], sys.argv[2] == "1"
values = defaultdict(list)  # (scenario, metric, proxy) -> [value per run]
for line in open(results_path):
    proxy, run, scenario, metric, value = line.rstrip("\n").split("\t")
    values[(scenario, metric, proxy)].append(float(value))

proxies = ["direct", "egress", "squid", "tinyproxy"]
rows = []
seen = []
for (scenario, metric, _proxy) in values:
    if (scenario, metric) not in seen:
        seen.append((scenario, metric))


def med(scenario, metric, proxy):
    v = values.get((scenario, metric, proxy))
    return statistics.median(v) if v else None


def cell(scenario, metric, proxy):
    v = values.get((scenario, metric, proxy))
    if not v:
        return "-"
    m = statistics.median(v)
    fmt = "{:.0f}" if m >= 100 else "{:.2f}" if m >= 1 else "{:.3f}"
    if len(v) == 1:
        return fmt.format(m)
    return (fmt + " ({}-{})").format(m, fmt.format(min(v)), fmt.format(max(v)))


header = ["scenario", "metric"] + proxies + ["egress/squid", "egress/direct"]
table = [header]
for scenario, metric in seen:
    e, s, d = med(scenario, metric, "egress"), med(scenario, metric, "squid"), med(scenario, metric, "direct")
    vs_squid = "{:.2f}x".format(e / s) if e is not None and s else "-"
    vs_direct = "{:.2f}x".format(e / d) if e is not None and d else "-"
    table.append([scenario, metric] + [cell(scenario, metric, p) for p in proxies] + [vs_squid, vs_direct])

widths = [max(len(r[i]) for r in table) for i in range(len(header))]
for i, r in enumerate(table):
    print("  ".join(c.ljust(widths[j]) for j, c in enumerate(r)))
    if i == 0:
        print("  ".join("-" * w for w in widths))


def target(name, ok):
    if ok is None:
        print("  n/a   " + name)
    else:
        print(("  MET   " if ok else "  MISSED") + " " + name)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


print()
print("targets (issue 7), from the medians of this run:")
if quick:
    print("  (quick run: egress-proxy and direct only, not a measurement)")
cr = med("connect-rate", "tunnels_per_s", "egress")
target("new tunnels/s >= 1.5x Squid", None if ratio(cr, med("connect-rate", "tunnels_per_s", "squid")) is None
       else ratio(cr, med("connect-rate", "tunnels_per_s", "squid")) >= 1.5)
target("new tunnels/s >= 0.75x direct", None if ratio(cr, med("connect-rate", "tunnels_per_s", "direct")) is None
       else ratio(cr, med("connect-rate", "tunnels_per_s", "direct")) >= 0.75)
p99 = med("connect-rate", "setup_p99_ms", "egress")
sq99 = med("connect-rate", "setup_p99_ms", "squid")
target("p99 setup latency <= Squid's", None if p99 is None or sq99 is None else p99 <= sq99)
rr = ratio(med("rr", "ops_per_s", "egress"), med("rr", "ops_per_s", "direct"))
target("round trips over 64 tunnels >= 0.95x direct", None if rr is None else rr >= 0.95)
rr99 = ratio(med("rr", "p99_ms", "egress"), med("rr", "p99_ms", "direct"))
target("round-trip p99 <= 1.2x direct", None if rr99 is None else rr99 <= 1.2)
for n in ("1", "4"):
    b = ratio(med("bulk" + n, "mb_per_s", "egress"), med("bulk" + n, "mb_per_s", "direct"))
    target("bulk through " + n + " tunnel(s) >= 0.8x direct", None if b is None else b >= 0.8)
h = ratio(med("http", "req_per_s", "egress"), med("http", "req_per_s", "squid"))
target("plain-HTTP req/s >= 1.5x Squid", None if h is None else h >= 1.5)
for n in ("4000", "8000"):
    i = ratio(med("idle" + n, "rss_kb_per_tunnel", "egress"), med("idle" + n, "rss_kb_per_tunnel", "squid"))
    target("RSS per idle tunnel at " + n + " <= 0.25x Squid", None if i is None else i <= 0.25)
held = med("idle8000", "rss_mb_total", "egress")
target("8,000 idle tunnels held with a 256 MiB heap", None if held is None else True)
st = med("startup", "first_connect_ms", "egress")
target("start-up to first accepted CONNECT < 1 s", None if st is None else st < 1000)
