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

# egress-proxy as shipped, its columns with proxy authentication and with TLS on the proxy port
# (bench/run.sh says what each is), then each --variant of bench/run.sh (NAME:VAR=VALUE,...) as
# egress-NAME.
COSTS = ("egress-auth", "egress-tls")
variants = [("egress", "as shipped"), ("egress-auth", "auth.basic"), ("egress-tls", "listen.tls")]
if len(sys.argv) > 3:
    for line in open(sys.argv[3]):
        if line.strip():
            name, settings = line.strip().split(":", 1)
            variants.append(("egress-" + name, settings.replace(",", " ")))
variants = [(v, what) for v, what in variants if any(p == v for (_s, _m, p) in values)]
proxies = ["direct"] + [v for v, _ in variants] + ["squid", "tinyproxy"]
seen = []
for (scenario, metric, _proxy) in values:
    if (scenario, metric) not in seen:
        seen.append((scenario, metric))
# Rows grouped by scenario, in the order scenarios first appear (the proxy-core rows, which direct
# lacks, next to their scenario's other rows).
scenarios = list(dict.fromkeys(s for s, _m in seen))
seen.sort(key=lambda sm: scenarios.index(sm[0]))


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


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def times(r):
    return "-" if r is None else "{:.2f}x".format(r)


# The ratio columns: each egress column against Squid and direct, but egress-auth and egress-tls
# against egress (what authentication or TLS costs is their difference from it).
def bases(v):
    return ["egress"] if v in COSTS else ["squid", "direct"]


header = ["scenario", "metric"] + proxies
for v, _ in variants:
    header += [v + "/" + b for b in bases(v)]
table = [header]
for scenario, metric in seen:
    row = [scenario, metric] + [cell(scenario, metric, p) for p in proxies]
    for v, _ in variants:
        e = med(scenario, metric, v)
        row += [times(ratio(e, med(scenario, metric, b))) for b in bases(v)]
    table.append(row)

widths = [max(len(r[i]) for r in table) for i in range(len(header))]
for i, r in enumerate(table):
    print("  ".join(c.ljust(widths[j]) for j, c in enumerate(r)).rstrip())
    if i == 0:
        print("  ".join("-" * w for w in widths))


# Each variant against egress-proxy as shipped, in the proxy core's time per unit of work (the
# *_core_us_per_* rows; proxy_core_us_per_mb in bulk1 and bulk4 is what decides whether
# relay.splice stays, docs/performance.md): how much less (or more) the shipped build uses.
core_rows = [(s, m) for s, m in seen if m.startswith("proxy_core_us_per_")]
for v, what in variants[1:]:
    if not core_rows:
        break
    print()
    print("egress (as shipped) against " + v + " (" + what + "), proxy core time per unit of work, medians:")
    for scenario, metric in core_rows:
        shipped, other = med(scenario, metric, "egress"), med(scenario, metric, v)
        if shipped is None or other is None or other == 0:
            continue
        saving = 1 - shipped / other
        print("  {:<14} {:<22} egress {:>8.0f}  {} {:>8.0f}  egress uses {:.0f}% {}".format(
            scenario, metric, shipped, v, other, abs(saving) * 100, "less" if saving >= 0 else "more"))


def target(name, ok, note=None):
    if ok is None:
        print("  n/a   " + name)
    else:
        print(("  MET   " if ok else "  MISSED") + " " + name + ("" if note is None else "  " + note))


def reached(r, scenario, unit, rate, proxy, against):
    """What a target line adds: the ratio reached and, from the load generator's core time per
    unit of work through this proxy (Bench.CoreTime), the most that core allows: once it is full,
    1e6 / us_per_unit units a second, whatever the proxy does."""
    if r is None:
        return None
    note = "({:.2f}x".format(r)
    us = med(scenario, "load_core_us_per_" + unit, proxy)
    bound = ratio(None if not us else 1e6 / us, med(scenario, rate, against))
    if bound is not None:
        note += "; the load core allows at most {:.2f}x".format(bound)
    return note + ")"


def at_least(r, bound):
    return None if r is None else r >= bound


def at_most(r, bound):
    return None if r is None else r <= bound


for v, what in variants:
    if v in COSTS:
        continue
    print()
    print("targets (issue 7) for " + v + " (" + what + "), from the medians of this run:")
    if quick:
        print("  (quick run: not a measurement)")
    cr_squid = ratio(med("connect-rate", "tunnels_per_s", v), med("connect-rate", "tunnels_per_s", "squid"))
    cr_direct = ratio(med("connect-rate", "tunnels_per_s", v), med("connect-rate", "tunnels_per_s", "direct"))
    target("new tunnels/s >= 1.5x Squid", at_least(cr_squid, 1.5),
           reached(cr_squid, "connect-rate", "tunnel", "tunnels_per_s", v, "squid"))
    target("new tunnels/s >= 0.75x direct", at_least(cr_direct, 0.75),
           reached(cr_direct, "connect-rate", "tunnel", "tunnels_per_s", v, "direct"))
    target("p99 setup latency <= Squid's",
           at_most(ratio(med("connect-rate", "setup_p99_ms", v), med("connect-rate", "setup_p99_ms", "squid")), 1.0))
    rr_direct = ratio(med("rr", "ops_per_s", v), med("rr", "ops_per_s", "direct"))
    target("round trips over 64 tunnels >= 0.95x direct", at_least(rr_direct, 0.95),
           reached(rr_direct, "rr", "op", "ops_per_s", v, "direct"))
    target("round-trip p99 <= 1.2x direct", at_most(ratio(med("rr", "p99_ms", v), med("rr", "p99_ms", "direct")), 1.2))
    for n in ("1", "4"):
        bulk_direct = ratio(med("bulk" + n, "mb_per_s", v), med("bulk" + n, "mb_per_s", "direct"))
        target("bulk through " + n + " tunnel(s) >= 0.8x direct", at_least(bulk_direct, 0.8),
               reached(bulk_direct, "bulk" + n, "mb", "mb_per_s", v, "direct"))
    target("plain-HTTP req/s >= 1.5x Squid", at_least(ratio(med("http", "req_per_s", v), med("http", "req_per_s", "squid")), 1.5))
    for n in ("4000", "8000"):
        target("RSS per idle tunnel at " + n + " <= 0.25x Squid",
               at_most(ratio(med("idle" + n, "rss_kb_per_tunnel", v), med("idle" + n, "rss_kb_per_tunnel", "squid")), 0.25))
    held = med("idle8000", "rss_mb_total", v)
    target("8,000 idle tunnels held with a 256 MiB heap", None if held is None else True)
    st = med("startup", "first_connect_ms", v)
    target("start-up to first accepted CONNECT < 1 s", at_most(st, 999.999))
