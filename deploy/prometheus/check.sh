#!/usr/bin/env bash
# Checks the monitoring artefacts under deploy/: the Prometheus config, the alert rules and
# their unit tests (promtool), and that the Grafana dashboard is valid JSON.
#
# Usage: deploy/prometheus/check.sh        (from any directory; needs promtool and python3)
# Exits non-zero on the first failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
deploy="$(dirname "$here")"

for tool in promtool python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check.sh: $tool not found on PATH (Debian/Ubuntu: apt-get install prometheus python3)" >&2
    exit 2
  fi
done

echo "== $(promtool --version 2>&1 | head -n 1)"

echo "== promtool check config"
promtool check config "$here/prometheus.yml"

echo "== promtool check rules"
promtool check rules "$here/alerts.yml"

echo "== promtool test rules"
# promtool resolves rule_files relative to the test file, so the directory does not matter.
promtool test rules "$here/alerts_test.yml"

echo "== dashboard JSON"
python3 -m json.tool "$deploy/grafana/egress-proxy.json" >/dev/null
echo "  SUCCESS: $deploy/grafana/egress-proxy.json is valid JSON"

echo "== dashboard panels and queries"
# Unique panel ids, no two panels on the same grid cells, every query on the data source
# variable; then every query, with Grafana's variables replaced by values, becomes a recording
# rule so that promtool parses the PromQL.
tmp="$(mktemp -d "${TMPDIR:-/tmp}/egress-proxy-prometheus-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
python3 - "$deploy/grafana/egress-proxy.json" "$tmp/dashboard-rules.yml" <<'PY'
import json
import sys

dashboard, rules_out = sys.argv[1:3]
d = json.load(open(dashboard))
problems, cells, rules = [], {}, []
ids = [p["id"] for p in d["panels"]]
if len(ids) != len(set(ids)):
    problems.append(f"panel ids repeat: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
for p in d["panels"]:
    g = p["gridPos"]
    if g["x"] + g["w"] > 24:
        problems.append(f"panel {p['id']} ({p['title']}) is wider than the grid")
    for x in range(g["x"], g["x"] + g["w"]):
        for y in range(g["y"], g["y"] + g["h"]):
            if (x, y) in cells:
                problems.append(f"panel {p['id']} ({p['title']}) overlaps panel {cells[(x, y)]}")
                break
            cells[(x, y)] = p["id"]
        else:
            continue
        break
    for t in p.get("targets", []):
        if (p.get("datasource") or {}).get("uid") != "${DS_PROMETHEUS}" or t["datasource"]["uid"] != "${DS_PROMETHEUS}":
            problems.append(f"panel {p['id']} ({p['title']}) does not use the DS_PROMETHEUS variable")
        expr = t["expr"]
        if "$job" not in expr or "$instance" not in expr:
            problems.append(f"panel {p['id']} ({p['title']}) query {t['refId']} ignores $job or $instance")
        for var, value in (("$__rate_interval", "1m"), ("$__range", "6h"), ("$job", ".+"), ("$instance", ".+")):
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": expr})
with open(rules_out, "w") as f:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
for problem in problems:
    print("  FAILED: " + problem)
if problems:
    sys.exit(1)
print(f"  SUCCESS: {len(ids)} panels, {len(rules)} queries, no overlaps")
PY
promtool check rules "$tmp/dashboard-rules.yml"

echo "== all checks passed"
