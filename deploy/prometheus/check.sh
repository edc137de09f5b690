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

echo "== all checks passed"
