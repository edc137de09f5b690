#!/usr/bin/env bash
# Start-up of egress-proxy builds or JVM options against each other: launch to the first answered
# CONNECT, alternating the candidates start by start so that the machine's drift hits them all
# alike, each through deploy/bin/egress-proxy with its own class-data-sharing archive, the proxy
# pinned to CPU 1 and the probe and upstream to CPU 0 (as in bench/run.sh's startup scenario).
#
#   bench/startup-ab.sh [--starts N] NAME:JAR[:[VAR=VALUE ...] JAVA_OPTS] ...
#
# NAME labels a candidate; JAR is an egress-proxy.jar (build another commit into its own tree and
# point here); JAVA_OPTS (optional, may contain spaces and colons) go into EGRESS_PROXY_JAVA_OPTS,
# after the launcher's own flags, so they override them. Leading VAR=VALUE words there, as in a
# shell's environment prefix, are set in that candidate's launcher's environment instead: JAVA_HOME
# picks the JVM, EGRESS_PROXY_CDS=off runs without an archive (none is built for it), or any other
# variable the launcher reads (values without spaces). Each candidate's archive (a CDS archive, or
# on JDK 25 an AOT cache) is built first, and the time that took is printed. Prints every start,
# then per candidate the median and the range. Each candidate runs a private copy of its jar
# (removed at the end), so that a rebuild during the run cannot crash a proxy. Examples, the
# shipped build (the launcher raises C1's compile thresholds tenfold) against itself with the
# JVM's usual C1 thresholds, then JDK 17 against JDK 25, each with and without its archive:
#
#   bench/startup-ab.sh shipped:proxy/target/egress-proxy.jar \
#       usual:proxy/target/egress-proxy.jar:"-XX:Tier3InvocationThreshold=200 -XX:Tier3MinInvocationThreshold=100 -XX:Tier3CompileThreshold=2000 -XX:Tier3BackEdgeThreshold=60000"
#   jar=proxy/target/egress-proxy.jar j25=JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64
#   bench/startup-ab.sh jdk17-cds:$jar jdk17-nocds:$jar:EGRESS_PROXY_CDS=off \
#       jdk25-nocache:$jar:"$j25 EGRESS_PROXY_CDS=off" jdk25-aot:$jar:$j25
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
starts=6
if [[ "${1:-}" == --starts ]]; then
  starts="$2"
  shift 2
fi
[[ $# -ge 1 ]] || { echo "usage: bench/startup-ab.sh [--starts N] NAME:JAR[:[VAR=VALUE ...] JAVA_OPTS] ..." >&2; exit 64; }
names=() jars=() opts=() envs=()
for c in "$@"; do
  [[ "$c" =~ ^([a-z0-9_-]+):([^:]+)(:(.*))?$ ]] || { echo "startup-ab: expected NAME:JAR[:[VAR=VALUE ...] JAVA_OPTS], got '$c'" >&2; exit 64; }
  [[ -f "${BASH_REMATCH[2]}" ]] || { echo "startup-ab: no jar at ${BASH_REMATCH[2]}" >&2; exit 2; }
  names+=("${BASH_REMATCH[1]}")
  jars+=("$(readlink -f "${BASH_REMATCH[2]}")")
  rest="${BASH_REMATCH[4]}" vars=""
  while [[ "$rest" =~ ^[[:space:]]*([A-Z_][A-Z0-9_]*=[^[:space:]]*)[[:space:]]*(.*)$ ]]; do
    vars+="${BASH_REMATCH[1]} "
    rest="${BASH_REMATCH[2]}"
  done
  opts+=("$rest")
  envs+=("$vars")
done

work="$(mktemp -d /tmp/egress-startup-ab.XXXXXX)"
upstream=""
cleanup() {
  if [[ -n "$upstream" ]]; then kill "$upstream" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# A JVM reads classes from its jar as it needs them; a jar rewritten under it can crash it.
for i in "${!names[@]}"; do
  cp "${jars[$i]}" "$work/${names[$i]}.jar"
  jars[i]="$work/${names[$i]}.jar"
done

javac -d "$work/classes" "$here/src/Bench.java"
export EGRESS_PROXY_HEAP=256m EGRESS_PROXY_DIRECT_MEMORY=256m EGRESS_PROXY_GC=serial
# candidate_env I: the environment of candidate I's launcher, as arguments to env(1).
candidate_env() {
  local vars
  read -ra vars <<<"${envs[$1]}"
  printf '%s\0' EGRESS_PROXY_JAR="${jars[$1]}" EGRESS_PROXY_CDS_ARCHIVE="$work/${names[$1]}.archive" \
    EGRESS_PROXY_JAVA_OPTS="${opts[$1]}" "${vars[@]}"
}
for i in "${!names[@]}"; do
  [[ " ${envs[$i]}" != *" EGRESS_PROXY_CDS=off "* ]] || continue
  mapfile -d '' -t e < <(candidate_env "$i")
  t0="$(date +%s%N)"
  env "${e[@]}" taskset -c 1 "$root/deploy/bin/egress-proxy" --build-cds-archive > /dev/null
  echo "built ${names[$i]}'s archive in $(( ($(date +%s%N) - t0) / 1000000 )) ms (on CPU 1)"
done

taskset -c 0 java -cp "$work/classes" Bench upstream 18080 18081 > "$work/upstream.log" 2>&1 &
upstream=$!
deadline=$((SECONDS + 30))
until (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null; do
  (( SECONDS < deadline )) || { echo "startup-ab: the bench upstream did not listen on 18080" >&2; exit 1; }
  sleep 0.05
done

target=proxy=127.0.0.1:13128,echo=127.0.0.1:18080,http=127.0.0.1:18081
for n in $(seq 1 "$starts"); do
  for i in "${!names[@]}"; do
    mapfile -d '' -t e < <(candidate_env "$i")
    ms="$(env "${e[@]}" taskset -c 0 java -cp "$work/classes" Bench startup "$target" -- \
      taskset -c 1 "$root/deploy/bin/egress-proxy" --config "$here/config/egress-proxy.conf" \
      | awk '$1 == "RESULT" && $3 == "first_connect_ms" { printf "%d", $4 }')"
    echo "start $n ${names[$i]} $ms ms"
  done
done | tee "$work/starts.txt"
echo
echo "launch to first answered CONNECT, $starts starts each, alternating (proxy on CPU 1):"
for name in "${names[@]}"; do
  awk -v n="$name" '$3 == n { print $4 }' "$work/starts.txt" | sort -n | awk -v n="$name" '
    { v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "  %-18s median %5d ms  (%d-%d)\n", n, m, v[1], v[NR] }'
done
