#!/usr/bin/env bash
# The egress-proxy benchmark: egress-proxy, Squid, tinyproxy and a direct connection measured in one
# run on loopback, printed as one table with ratios against Squid. See docs/performance.md.
# Two more egress-proxy columns show what proxy authentication and TLS on the proxy port cost to set
# up a tunnel (connect-rate and http only; other rows "-"):
#   egress-auth  auth.basic.users-file = a one-user htpasswd file (bcrypt, htpasswd -B -C 10, made
#                in the run's directory), and Proxy-Authorization: Basic on every CONNECT and GET
#   egress-tls   listen.tls with an EC P-256 certificate made in the run's directory (openssl), and
#                the load generator speaking TLS to the proxy port, a full handshake per connection
#
#   bench/run.sh [--quick] [--runs N] [--jar PATH] [--no-netns] [--profile] [--variant NAME:VAR=VALUE...]
#                [--scenarios LIST] [--proxies LIST]
#   bench/run.sh --soak [--soak-minutes M] [--soak-tunnels N] [--soak-mix I:S:B] [--soak-out DIR]
#                [--proxies LIST] [--jar PATH] [--no-netns] [--variant NAME:VAR=VALUE...]
#   bench/run.sh --curves [--curve-seconds S] [--curves-out DIR] [--runs N] [--proxies LIST]
#                [--jar PATH] [--no-netns] [--variant NAME:VAR=VALUE...]
#   bench/run.sh --with-curves [table options] [--curve-seconds S] [--curve-runs N] [--curves-out DIR]
#
# --quick   smoke version for CI: egress-proxy and direct only, ~1 s per scenario, 200 idle tunnels;
#           asserts nothing about speed, fails if a scenario fails.
# --runs N  repetitions of every scenario (default 3; the table shows median and min-max).
# --no-netns  stay in the machine's network namespace (see below).
# --variant NAME:VAR=VALUE[,VAR=VALUE]  (repeatable) egress-proxy once more per variant, as column
#            egress-NAME, started with those environment variables (the launcher's and the
#            config's EGRESS_PROXY_* ones), e.g. --variant c1:EGRESS_PROXY_JAVA_OPTS=-XX:TieredStopAtLevel=1
#            or --variant uring:EGRESS_PROXY_TRANSPORT=io_uring: a setting measured against the
#            shipped one in the same run. Values may not contain commas or spaces (several JVM
#            flags: EGRESS_PROXY_JAVA_OPTS=@FILE, a java argument file holding them).
# --scenarios LIST  only these of startup,connect-rate,rr,bulk,http,idle (default: all; bulk is
#            both bulk1 and bulk4). Without http, connect-rate and rr, the warm-up is bulk through one
#            tunnel instead of plain HTTP and connect-rate. E.g. --scenarios bulk for splice on/off.
# --proxies LIST  (table) only these of direct,egress,egress-auth,egress-tls,egress-NAME,squid,tinyproxy
#            (default: all, with each --variant; with --quick: direct, egress and each --variant);
#            for --soak, see below.
# --profile  after the last run's scenarios, profile each proxy: under the connect-rate load, where
#            the proxy core's time goes (perf record -C, by thread and library), system calls per
#            tunnel (strace -c) and how busy each core is (/proc/stat); under bulk, how busy each
#            core is. Printed after the table. Needs perf (apt-get install -y linux-perf) and strace.
# --soak   instead of the table: each proxy in turn holds N tunnels (--soak-tunnels, default 8000)
#          for M minutes (--soak-minutes, default 10) once they are all up: idle tunnels with a ping
#          a minute, slow readers (an endless download read at 4 KiB/s) and bulk (16 MiB downloads
#          as fast as they come, four per tunnel), in the weights I:S:B (--soak-mix, default
#          95:4:1), from bench/src/Soak.java. Every 10 s it samples the proxy's RSS, open files,
#          threads, the tunnels up, errors and bytes (and egress-proxy's memory budget and direct
#          memory from its admin port), then prints a table and a verdict per proxy and draws
#          soak.png (gnuplot). Results in --soak-out DIR (default /tmp/egress-soak-DATE). Not in
#          CI; docs/performance.md, "Soak". --proxies egress,squid,tinyproxy[,egress-NAME] picks
#          the proxies (default: all, with each --variant).
# --curves  instead of the table: how fast each proxy is from the first second. Two curves per proxy,
#          each from a fresh start of the proxy (as the table starts it), counted in 2 s windows from
#          the moment its port accepts: cold start (connect-rate, 64 workers, for S seconds) and load
#          switch (plain HTTP, 32 keep-alive connections, for the first third of S, then at once
#          connect-rate for the rest). Prints tunnels/s (requests/s) and setup (request) p99 per
#          window, exec to the port accepting and to the first CONNECT answered, and the targets of
#          issue 21 against Squid; draws curves.png (gnuplot). --curve-seconds S (default 60, even,
#          at least 4; the 10 s and 20 s spans of the targets scale with it), --curves-out DIR
#          (default /tmp/egress-curves-DATE: each curve's load-generator output, curves.png),
#          --runs N (default 1 here; the median per window), --proxies as for the table (default:
#          egress, each --variant, squid, tinyproxy; direct is the harness's reference). Not in CI;
#          docs/performance.md, "Cold start and change of load".
# --with-curves  the table, then the curves, in one run: the same proxies (less egress-auth and
#          egress-tls, which the curves do not drive) and variants; --curve-runs N (default 1) curves
#          per proxy, --curve-seconds and --curves-out as for --curves. What issue 21 asks for: the
#          start-up, the steady table and the two curves from one run (docs/performance.md).
# Needs: java 17, taskset (util-linux), squid and tinyproxy (apt-get install -y squid tinyproxy)
# unless --quick, htpasswd (apt-get install -y apache2-utils) and openssl for egress-auth and egress-tls, gnuplot for --soak and --curves (apt-get install -y gnuplot-nox), and the built jar
# (mvn -B -q package -DskipTests). The proxies run a private copy of the jar (in the run's temporary
# directory, removed at the end), so that a rebuild during a run cannot crash them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
original_args=("$@")
quick=0
runs=3
runs_given=0
profile=0
jar="$root/proxy/target/egress-proxy.jar"
variants=()
soak=0
soak_minutes=10
soak_tunnels=8000
soak_mix=95:4:1
soak_out=""
proxies_opt=""
scenarios_opt=startup,connect-rate,rr,bulk,http,idle
curves=0
with_curves=0
curve_runs=1
curve_seconds=60
curves_out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1; runs=1 ;;
    --runs) runs="$2"; runs_given=1; shift ;;
    --jar) jar="$2"; shift ;;
    --no-netns) ;;
    --profile) profile=1 ;;
    --variant)
      [[ "${2:-}" =~ ^[a-z0-9]+:[A-Z_]+=[^,\ ]*(,[A-Z_]+=[^,\ ]*)*$ ]] || { echo "bench: --variant NAME:VAR=VALUE[,VAR=VALUE], got '${2:-}'" >&2; exit 64; }
      [[ "${2%%:*}" != auth && "${2%%:*}" != tls ]] || { echo "bench: --variant ${2%%:*} is taken by the column egress-${2%%:*}; name it otherwise" >&2; exit 64; }
      variants+=("$2"); shift ;;
    --soak) soak=1 ;;
    --soak-minutes)
      [[ "${2:-}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "bench: --soak-minutes takes a number, got '${2:-}'" >&2; exit 64; }
      soak_minutes="$2"; shift ;;
    --soak-tunnels)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "bench: --soak-tunnels takes a count, got '${2:-}'" >&2; exit 64; }
      soak_tunnels="$2"; shift ;;
    --soak-mix)
      [[ "${2:-}" =~ ^[0-9]+:[0-9]+:[0-9]+$ ]] || { echo "bench: --soak-mix IDLE:SLOW:BULK weights, got '${2:-}'" >&2; exit 64; }
      soak_mix="$2"; shift ;;
    --soak-out) soak_out="$2"; shift ;;
    --curves) curves=1 ;;
    --with-curves) with_curves=1 ;;
    --curve-runs)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "bench: --curve-runs takes a count, got '${2:-}'" >&2; exit 64; }
      curve_runs="$2"; shift ;;
    --curve-seconds)
      if ! [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || (( $2 % 2 != 0 || $2 < 4 )); then
        echo "bench: --curve-seconds takes an even number of seconds, at least 4; got '${2:-}'" >&2
        exit 64
      fi
      curve_seconds="$2"; shift ;;
    --curves-out) curves_out="$2"; shift ;;
    --proxies) proxies_opt="$2"; shift ;;
    --scenarios)
      [[ "${2:-}" =~ ^(startup|connect-rate|rr|bulk|http|idle)(,(startup|connect-rate|rr|bulk|http|idle))*$ ]] \
        || { echo "bench: --scenarios takes a list of startup,connect-rate,rr,bulk,http,idle; got '${2:-}'" >&2; exit 64; }
      scenarios_opt="$2"; shift ;;
    *) echo "usage: bench/run.sh [--quick] [--runs N] [--jar PATH] [--no-netns] [--profile] [--variant NAME:VAR=VALUE...] [--scenarios LIST] [--proxies LIST]" >&2
       echo "       bench/run.sh --soak [--soak-minutes M] [--soak-tunnels N] [--soak-mix I:S:B] [--soak-out DIR] [--proxies LIST] [--jar PATH] [--variant ...]" >&2
       echo "       bench/run.sh --curves [--curve-seconds S] [--curves-out DIR] [--runs N] [--proxies LIST] [--jar PATH] [--variant ...]" >&2
       echo "       bench/run.sh --with-curves [table options] [--curve-seconds S] [--curve-runs N] [--curves-out DIR]" >&2
       exit 64 ;;
  esac
  shift
done

need() { command -v "$1" >/dev/null 2>&1 || { echo "bench: $1 not found; $2" >&2; exit 2; }; }
need java "install a JDK 17"
need javac "install a JDK 17"
need taskset "apt-get install -y util-linux"
need python3 "apt-get install -y python3"
[[ -f "$jar" ]] || { echo "bench: no jar at $jar; run: mvn -B -q package -DskipTests" >&2; exit 2; }
if [[ $profile -eq 1 ]]; then
  need perf "apt-get install -y linux-perf"
  need strace "apt-get install -y strace"
fi
if (( curves && (soak || quick || with_curves) )); then
  echo "bench: --curves is a run of its own; it does not go with --soak, --quick or --with-curves" >&2
  exit 64
fi
if (( with_curves && (soak || quick) )); then
  echo "bench: --with-curves is the full table and the curves; it does not go with --soak or --quick" >&2
  exit 64
fi
soak_proxies=()
if [[ $soak -eq 1 ]]; then
  if [[ -n "$proxies_opt" ]]; then
    IFS=, read -r -a soak_proxies <<< "$proxies_opt"
  else
    soak_proxies=(egress)
    for v in "${variants[@]}"; do soak_proxies+=("egress-${v%%:*}"); done
    soak_proxies+=(squid tinyproxy)
  fi
  for p in "${soak_proxies[@]}"; do
    case "$p" in
      egress | squid | tinyproxy) ;;
      egress-auth | egress-tls) echo "bench: $p is a column of the table, not of the soak" >&2; exit 64 ;;
      egress-*)
        printf '%s\n' "${variants[@]}" | grep -q "^${p#egress-}:" \
          || { echo "bench: --proxies names $p, but no --variant ${p#egress-}:VAR=VALUE" >&2; exit 64; } ;;
      *) echo "bench: --proxies takes egress, squid, tinyproxy and egress-NAME for a --variant; got '$p'" >&2; exit 64 ;;
    esac
  done
  need gnuplot "apt-get install -y gnuplot-nox"
  if [[ " ${soak_proxies[*]} " == *" squid "* ]]; then need squid "apt-get install -y squid"; fi
  if [[ " ${soak_proxies[*]} " == *" tinyproxy "* ]]; then need tinyproxy "apt-get install -y tinyproxy"; fi
else
  table_proxies=()
  if [[ -n "$proxies_opt" ]]; then
    IFS=, read -r -a table_proxies <<< "$proxies_opt"
    for p in "${table_proxies[@]}"; do
      case "$p" in
        direct | egress | egress-auth | egress-tls | squid | tinyproxy) ;;
        egress-*)
          printf '%s\n' "${variants[@]}" | grep -q "^${p#egress-}:" \
            || { echo "bench: --proxies names $p, but no --variant ${p#egress-}:VAR=VALUE" >&2; exit 64; } ;;
        *) echo "bench: --proxies takes direct, egress, egress-auth, egress-tls, squid, tinyproxy and egress-NAME for a --variant; got '$p'" >&2; exit 64 ;;
      esac
    done
  fi
  # --quick without --proxies runs direct, egress and the variants only.
  if [[ $quick -eq 0 || -n "$proxies_opt" ]]; then
    if [[ -z "$proxies_opt" || ",$proxies_opt," == *",squid,"* ]]; then need squid "apt-get install -y squid"; fi
    if [[ -z "$proxies_opt" || ",$proxies_opt," == *",tinyproxy,"* ]]; then need tinyproxy "apt-get install -y tinyproxy"; fi
    # (the curves' default set has neither egress-auth nor egress-tls)
    if [[ ( -z "$proxies_opt" && $curves -eq 0 ) || ",$proxies_opt," == *",egress-auth,"* ]]; then need htpasswd "apt-get install -y apache2-utils"; fi
    if [[ ( -z "$proxies_opt" && $curves -eq 0 ) || ",$proxies_opt," == *",egress-tls,"* ]]; then need openssl "apt-get install -y openssl"; fi
  fi
  if (( curves || with_curves )); then need gnuplot "apt-get install -y gnuplot-nox"; fi
fi
# Whether scenario $1 is among --scenarios.
want() { [[ ",$scenarios_opt," == *",$1,"* ]]; }

# Two descriptors per tunnel in the proxy: 8,000 idle tunnels need 16,000 and more.
ulimit -n "$(ulimit -Hn)"

# A network namespace of its own (when root and unshare can make one): a private loopback where no
# other program holds the bench ports, and TCP settings that keep the connect-rate scenario from
# measuring the kernel's hunt for a free port. Every closed connection leaves a TIME_WAIT socket on
# the side that closed first; at thousands of tunnels a second (two connections each through a
# proxy, one direct) the 28,000 ports of the default range are all in TIME_WAIT within seconds,
# and every later connect() then searches the range, which slows whichever proxy runs later in
# the run. In the namespace the range is widened and at most 2,048 TIME_WAIT sockets are kept
# (the rest are dropped, harmless on loopback), and the bench's own listening ports are reserved so
# that no outgoing connection takes one as its source port (a proxy started later could not bind
# it); these settings are per namespace and leave the machine's own untouched. --no-netns, or not root, runs on the machine's loopback as it is.
if [[ "${EGRESS_BENCH_IN_NETNS:-}" != 1 && " $* " != *" --no-netns "* && $(id -u) == 0 ]] \
  && command -v unshare >/dev/null && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  # shellcheck disable=SC2016  # the inner script's $0 and $@ are its own
  # The soak sets the loopback's MTU to Ethernet's 1,500 as well (see run_soak).
  exec env EGRESS_BENCH_IN_NETNS=1 EGRESS_BENCH_LO_MTU="$( ((soak)) && echo 1500)" unshare -n bash -c '
    ip link set lo up &&
    { [ -z "$EGRESS_BENCH_LO_MTU" ] || ip link set lo mtu "$EGRESS_BENCH_LO_MTU"; } &&
    echo "1024 65535" > /proc/sys/net/ipv4/ip_local_port_range &&
    echo "13128-13130,18080-18082,19128" > /proc/sys/net/ipv4/ip_local_reserved_ports &&
    echo 2048 > /proc/sys/net/ipv4/tcp_max_tw_buckets &&
    echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse &&
    exec bash "$0" "$@"' "${BASH_SOURCE[0]}" "${original_args[@]}"
fi
if [[ "${EGRESS_BENCH_IN_NETNS:-}" == 1 ]]; then
  netns="own network namespace (port range 1024-65535 less the bench ports, tcp_max_tw_buckets 2048)"
else
  netns="the machine's network namespace"
fi

# egress-proxy runs as installed: through its launcher (deploy/bin/egress-proxy), with the
# launcher's JVM flags (docs/performance.md says which and why) and its class-data-sharing archive,
# built once below as the launcher builds it on a first start or at image build. The jar is a
# private copy (below).
export EGRESS_PROXY_HEAP=256m EGRESS_PROXY_DIRECT_MEMORY=256m EGRESS_PROXY_GC=serial
PROXY_CPU=1
LOAD_CPU=0
# Bench reports each core's busy time per unit of work from /proc/stat (the *_core_us_per_* rows).
export BENCH_LOAD_CPU=$LOAD_CPU BENCH_PROXY_CPU=$PROXY_CPU

work="$(mktemp -d /tmp/egress-bench.XXXXXX)"
chmod 0777 "$work"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do
    if [[ -n "$p" ]]; then kill "$p" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# A JVM reads classes from its jar as it needs them: a jar rewritten under a running proxy (an
# "mvn package" during the run) crashed one (SIGBUS in libzip). The proxies run this copy instead.
cp "$jar" "$work/egress-proxy.jar"
export EGRESS_PROXY_JAR="$work/egress-proxy.jar"

javac -d "$work/classes" "$here/src/Bench.java" "$here/src/Soak.java"
export EGRESS_PROXY_CDS_ARCHIVE="$work/egress-proxy.jsa"
taskset -c "$PROXY_CPU" "$root/deploy/bin/egress-proxy" --build-cds-archive >&2
loadgen() { taskset -c "$LOAD_CPU" java -Xms512m -Xmx1g -XX:+UseParallelGC -cp "$work/classes" Bench "$@"; }

wait_port() { # port, seconds
  local deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    if (( SECONDS > deadline )); then echo "bench: nothing listens on $1 after $2 s" >&2; return 1; fi
    sleep 0.05
  done
}

# The upstream: echo on 18080, keep-alive HTTP responder on 18081, on the load generator's core.
# (The soak has an origin of its own, below.)
if [[ $soak -eq 0 ]]; then
  taskset -c "$LOAD_CPU" java -Xms256m -Xmx1g -XX:+ExitOnOutOfMemoryError -cp "$work/classes" Bench upstream 18080 18081 > "$work/upstream.log" 2>&1 &
  pids+=($!)
  wait_port 18080 30
  wait_port 18081 30
fi

sed "s#BENCH_DIR#$work#g" "$here/config/squid.conf" > "$work/squid.conf"
sed "s#BENCH_DIR#$work#g" "$here/config/tinyproxy.conf" > "$work/tinyproxy.conf"
cp "$here/config/tinyproxy-filter" "$work/tinyproxy-filter"

# egress-auth: one user in an htpasswd file, bcrypt at cost 10 (htpasswd's default cost; some 50-100
# ms of CPU per check, paid once a cache-ttl per client: every later CONNECT with the same header
# value is a cache hit). egress-tls: a self-signed EC P-256 certificate for 127.0.0.1, its key in
# PKCS#8 (what listen.tls takes); the load generator trusts exactly this certificate.
bench_user=bench
bench_password=bench-password
if [[ $soak -eq 0 ]] && command -v htpasswd >/dev/null; then
  htpasswd -bcB -C 10 "$work/users" "$bench_user" "$bench_password" 2>/dev/null
fi
if [[ $soak -eq 0 ]] && command -v openssl >/dev/null; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/proxy.key" -out "$work/proxy.crt" 2>/dev/null
fi

proxy_cmd() {
  # shellcheck disable=SC2046  # a variant's VAR=VALUE words (variant_env), split on purpose
  case "$1" in
    egress) echo taskset -c "$PROXY_CPU" "$root/deploy/bin/egress-proxy" --config "$here/config/egress-proxy.conf" ;;
    egress-no-cds) echo taskset -c "$PROXY_CPU" env EGRESS_PROXY_CDS=off "$root/deploy/bin/egress-proxy" --config "$here/config/egress-proxy.conf" ;;
    egress-auth) echo taskset -c "$PROXY_CPU" env EGRESS_BENCH_AUTH_USERS_FILE="$work/users" "$root/deploy/bin/egress-proxy" --config "$here/config/egress-proxy.conf" ;;
    egress-tls) echo taskset -c "$PROXY_CPU" env EGRESS_BENCH_TLS_CERTIFICATE="$work/proxy.crt" EGRESS_BENCH_TLS_PRIVATE_KEY="$work/proxy.key" "$root/deploy/bin/egress-proxy" --config "$here/config/egress-proxy.conf" ;;
    egress-*) echo taskset -c "$PROXY_CPU" env $(variant_env "${1#egress-}") EGRESS_PROXY_CDS_ARCHIVE="$(variant_archive "${1#egress-}")" "$root/deploy/bin/egress-proxy" --config "$here/config/egress-proxy.conf" ;;
    squid) echo taskset -c "$PROXY_CPU" squid -N -f "$work/squid.conf" ;;
    tinyproxy) echo taskset -c "$PROXY_CPU" tinyproxy -d -c "$work/tinyproxy.conf" ;;
  esac
}
# The environment of variant $1, as VAR=VALUE words.
variant_env() {
  local v
  for v in "${variants[@]}"; do
    if [[ "${v%%:*}" == "$1" ]]; then echo "${v#*:}" | tr ',' ' '; fi
  done
}
variant_archive() { echo "$work/egress-$1.archive"; }
# Each --variant gets an archive of its own, built here with its environment: one that runs another
# JVM (JAVA_HOME, a JDK 25 AOT cache) or other JVM flags cannot use the shipped one, and a start
# that had to build its own would count the build in its start-up.
for v in "${variants[@]}"; do
  # shellcheck disable=SC2046  # the variant's VAR=VALUE words, split on purpose
  taskset -c "$PROXY_CPU" env $(variant_env "${v%%:*}") EGRESS_PROXY_CDS_ARCHIVE="$(variant_archive "${v%%:*}")" \
    "$root/deploy/bin/egress-proxy" --build-cds-archive >&2 || true
done
proxy_port() { case "$1" in egress*) echo 13128 ;; squid) echo 13129 ;; tinyproxy) echo 13130 ;; esac; }

proxy_pid=""
start_proxy() {
  # shellcheck disable=SC2046,SC2091  # proxy_cmd prints the command line to run
  $(proxy_cmd "$1") > "$work/$1.out" 2> "$work/$1.err" &
  proxy_pid=$!
  pids+=("$proxy_pid")
  wait_port "$(proxy_port "$1")" 60
  # taskset execs the proxy, so the pid is the proxy's own (Squid -N stays in the foreground).
}
stop_proxy() {
  kill "$proxy_pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$proxy_pid" 2>/dev/null; do
    if (( SECONDS > deadline )); then kill -9 "$proxy_pid" 2>/dev/null || true; break; fi
    sleep 0.1
  done
  wait "$proxy_pid" 2>/dev/null || true
}

extra=()
for v in "${variants[@]}"; do extra+=("egress-${v%%:*}"); done
if [[ $quick -eq 1 ]]; then
  proxies=(direct egress "${extra[@]}")
  if [[ -n "$proxies_opt" ]]; then proxies=("${table_proxies[@]}"); fi
  secs=1
  warm=1
  again=0
  idle_counts=(200)
else
  proxies=(direct egress egress-auth egress-tls "${extra[@]}" squid tinyproxy)
  if [[ -n "$proxies_opt" && $soak -eq 0 ]]; then proxies=("${table_proxies[@]}"); fi
  secs=5
  warm=15
  again=3
  idle_counts=(4000 8000)
fi

results="$work/results.tsv"
: > "$results"
record() { # proxy run < lines
  while read -r tag scenario metric value; do
    [[ "$tag" == RESULT ]] && printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$scenario" "$metric${suffix:-}" "$value" >> "$results"
  done
}
scenario() { # proxy run args...
  local proxy="$1" run="$2"
  shift 2
  local out
  if ! out="$(loadgen "$@" 2>&1)"; then
    echo "bench: scenario '$*' failed against $proxy:" >&2
    echo "$out" >&2
    exit 1
  fi
  record "$proxy" "$run" <<< "$out"
}

# A load scenario: the same load for $again seconds first (discarded), then measured for $secs. A
# JVM recompiles when the load changes (connect-rate after plain HTTP, say: new hot paths, some
# deoptimisation), and on the proxy's one core its compiler competes with the event loop; the
# short repeat measures every proxy in the steady state of the load at hand. Same for all.
measured() { # proxy run scenario target n
  if (( again > 0 )); then
    loadgen "$3" "$4" "$again" "$5" > /dev/null
  fi
  scenario "$1" "$2" "$3" "$4" "$secs" "$5"
}

target() {
  case "$1" in
    direct) echo "echo=127.0.0.1:18080,http=127.0.0.1:18081" ;;
    egress-auth) echo "proxy=127.0.0.1:$(proxy_port "$1"),echo=127.0.0.1:18080,http=127.0.0.1:18081,auth=$bench_user:$bench_password" ;;
    egress-tls) echo "proxy=127.0.0.1:$(proxy_port "$1"),echo=127.0.0.1:18080,http=127.0.0.1:18081,tls=$work/proxy.crt" ;;
    *) echo "proxy=127.0.0.1:$(proxy_port "$1"),echo=127.0.0.1:18080,http=127.0.0.1:18081" ;;
  esac
}
# Whether proxy $1 runs scenario $2: egress-auth and egress-tls measure tunnel set-up (connect-rate)
# and plain HTTP only. Once a tunnel is up, egress-auth relays exactly as egress does; egress-tls
# would need a TLS client in the rr, bulk and idle loads, which the load generator does not have.
runs_on() {
  want "$2" || return 1
  case "$1" in
    egress-auth | egress-tls) [[ "$2" == connect-rate || "$2" == http ]] ;;
  esac
}

# The profile of one proxy (its pid in $proxy_pid) under connect-rate, and where both cores' time
# goes under bulk, into $work/profile-<proxy>.txt.
# The pauses give the load a second to reach its steady state before sampling starts.
profile_proxy() { # proxy target
  local lg
  {
    echo "== $1 under connect-rate, 64 workers: CPU use of both cores (/proc/stat over 4 s; the proxy is on CPU $PROXY_CPU)"
    loadgen connect-rate "$2" 6 64 > "$work/profile-$1.share" &
    lg=$!
    sleep 1
    cpu_sample 4
    wait "$lg"
    grep tunnels_per_s "$work/profile-$1.share" | sed 's/^RESULT /   /'
    echo "-- CPU $PROXY_CPU (the proxy's) by thread and library"
    echo "   (perf record -C $PROXY_CPU, 4 s; [JIT] is compiled Java code, libjvm.so the JVM itself)"
    loadgen connect-rate "$2" 6 64 > "$work/profile-$1.rate" &
    lg=$!
    sleep 1
    perf record -q -o "$work/perf-$1.data" -C "$PROXY_CPU" -- sleep 4 > /dev/null 2>&1
    wait "$lg"
    grep tunnels_per_s "$work/profile-$1.rate" | sed 's/^RESULT /   /'
    perf report -i "$work/perf-$1.data" --sort comm,dso --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -12
    echo "-- system calls per tunnel (strace -c -f on the proxy for 3 s of connect-rate, divided by its accepts)"
    loadgen connect-rate "$2" 5 64 > /dev/null &
    lg=$!
    sleep 1
    timeout -s INT 3 strace -c -f -p "$proxy_pid" -o "$work/strace-$1.txt" 2> /dev/null || true
    wait "$lg"
    awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { calls[$NF] = $4 }
         END {
           tunnels = calls["accept4"] + calls["accept"]
           if (tunnels == 0) { print "   no accept seen"; exit }
           total = 0
           for (c in calls) if (c != "futex") total += calls[c]
           printf "   %d tunnels, %.1f system calls per tunnel (futex not counted)\n", tunnels, total / tunnels
           fflush()
           for (c in calls) if (calls[c] / tunnels >= 0.5) printf "   %-16s %6.1f\n", c, calls[c] / tunnels | "sort -k2 -nr"
           close("sort -k2 -nr")
         }' "$work/strace-$1.txt"
    echo "-- CPU use of both cores under bulk, 1 tunnel both ways (/proc/stat over 4 s; the proxy is on CPU $PROXY_CPU)"
    if [[ "$1" == egress-tls ]]; then
      echo "   (not measured: the load generator has no TLS client for bulk)"
    else
      loadgen bulk "$2" 6 1 > "$work/profile-$1.bulk" &
      lg=$!
      sleep 1
      cpu_sample 4
      wait "$lg"
      grep mb_per_s "$work/profile-$1.bulk" | sed 's/^RESULT /   /'
    fi
  } > "$work/profile-$1.txt" 2>&1
}

# Busy shares of each CPU over $1 seconds, from /proc/stat (user, system, softirq; idle).
cpu_sample() {
  local before after
  before="$(grep '^cpu[0-9]' /proc/stat)"
  sleep "$1"
  after="$(grep '^cpu[0-9]' /proc/stat)"
  paste <(echo "$before") <(echo "$after") | awk '{
      t = 0
      for (i = 2; i <= 9; i++) { d[i] = $(i + 11) - $i; t += d[i] }
      if (t == 0) next
      printf "   %-5s user %3.0f%%  system %3.0f%%  softirq %3.0f%%  idle %3.0f%%\n", $1,
             100 * (d[2] + d[3]) / t, 100 * d[4] / t, 100 * (d[7] + d[8]) / t, 100 * (d[5] + d[6]) / t
    }'
}

# The soak (--soak): the origin on 18082 and the load generator, each a process of its own on the
# load core (each holds a descriptor per tunnel: 8,000 and more, under a 20,000 open-file limit),
# and one proxy at a time on the proxy core, started as above. In its own network namespace the
# loopback's MTU is 1,500, as on an Ethernet link: at loopback's usual 65,536 the kernel sizes
# every socket's send buffer for ten 64 KiB segments from the start (about 1.3 MiB), and each slow
# reader pinned some 8 MiB of kernel socket memory across its four sockets (measured: 310 MiB for
# 38 slow readers), so that a few thousand slow readers would exhaust the machine's TCP memory
# (tcp_mem) and stall every proxy alike. The origin also caps the send buffer of its endless
# streams (Soak.java). Run with --no-netns, the loopback is left as it is (its MTU is printed).
run_soak() {
  local proxy admin csvs=() logs=()
  soak_out="${soak_out:-/tmp/egress-soak-$(date -u +%Y%m%d-%H%M%S)}"
  mkdir -p "$soak_out"
  taskset -c "$LOAD_CPU" java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -cp "$work/classes" \
    Soak origin 18082 > "$work/origin.log" 2>&1 &
  pids+=($!)
  wait_port 18082 30
  for proxy in "${soak_proxies[@]}"; do
    echo "== soak: $proxy, $soak_tunnels tunnels ($soak_mix idle:slow:bulk) for $soak_minutes min" >&2
    start_proxy "$proxy"
    admin=-
    if [[ "$proxy" == egress* ]]; then admin=http://127.0.0.1:19128/metrics; fi
    taskset -c "$LOAD_CPU" java -Xms256m -Xmx512m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -cp "$work/classes" \
      Soak load "127.0.0.1:$(proxy_port "$proxy")" 127.0.0.1:18082 "$soak_tunnels" "$soak_minutes" "$soak_mix" \
      "$proxy_pid" "$admin" "$soak_out/soak-$proxy.csv" 2>&1 | tee "$soak_out/load-$proxy.log" >&2 \
      || echo "bench: the soak's load generator failed against $proxy (its log: $soak_out/load-$proxy.log)" >&2
    stop_proxy
    case "$proxy" in
      egress*) cp "$work/$proxy.err" "$soak_out/$proxy.log" ;;
      squid) cp "$work/squid-cache.log" "$soak_out/squid.log" ;;
      tinyproxy) grep -Ev '^(CONNECT|INFO) ' "$work/tinyproxy.log" > "$soak_out/tinyproxy.log" || true ;;
    esac
    csvs+=("$proxy=$soak_out/soak-$proxy.csv")
    logs+=(--log "$proxy=$soak_out/$proxy.log")
  done
  echo
  echo "egress-proxy soak: $soak_tunnels tunnels ($soak_mix idle:slow:bulk), held $soak_minutes min per proxy, proxy on CPU $PROXY_CPU, load and origin on CPU $LOAD_CPU"
  echo "network: $netns"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(java -version 2>&1 | head -1), open-file limit $(ulimit -n), loopback MTU $(ip -o link show lo | sed -n "s/.* mtu \([0-9]*\).*/\1/p")"
  echo "egress-proxy: deploy/bin/egress-proxy, EGRESS_PROXY_HEAP=$EGRESS_PROXY_HEAP, EGRESS_PROXY_GC=$EGRESS_PROXY_GC, EGRESS_PROXY_DIRECT_MEMORY=$EGRESS_PROXY_DIRECT_MEMORY, bench/config/egress-proxy.conf"
  for v in "${variants[@]}"; do echo "variant egress-${v%%:*}: ${v#*:}"; done
  local status=0
  python3 "$here/soak.py" --png "$soak_out/soak.png" --csv "$soak_out/soak.csv" "${logs[@]}" "${csvs[@]}" || status=$?
  echo "results: $soak_out (soak.csv, soak.png, per-proxy CSV, load and proxy logs)"
  return "$status"
}
if [[ $soak -eq 1 ]]; then
  # The exit status is soak.py's: 1 when a proxy's verdict is FAIL.
  status=0
  run_soak || status=$?
  exit "$status"
fi

# The curves (--curves): per proxy two curves, each from a fresh start of the proxy, run by the
# load generator (Bench.java's curve mode), which launches the proxy itself so that it can count
# from the exec and from the moment the port accepts: see bench/src/Bench.java and
# docs/performance.md, "Cold start and change of load". The load switch changes load at a third
# of the curve (20 s of 60), rounded to whole windows; the targets' spans (the first 10 s, the
# last 20 s, at 60 s) scale with the curve's length, also to whole windows, at least one.
run_curves() {
  local window=2 proxy run curve t status=0 cmd=()
  local switch_w=$(((curve_seconds * 20 + 30 * window) / (60 * window)))
  local first_w=$(((curve_seconds * 10 + 30 * window) / (60 * window)))
  local steady_w=$(((curve_seconds * 20 + 30 * window) / (60 * window)))
  ((first_w >= 1)) || first_w=1
  ((steady_w >= 1)) || steady_w=1
  local switch_s=$((switch_w * window)) first_s=$((first_w * window)) steady_s=$((steady_w * window))
  ((first_s <= curve_seconds - switch_s)) || first_s=$((curve_seconds - switch_s))
  # The load generator warms its own code for this long per phase, straight to the upstream,
  # before it launches the proxy (5 s at 60 s, at least 1).
  local warm=$((curve_seconds / 12))
  ((warm >= 1)) || warm=1
  local cold_plan="connect-rate:64:$curve_seconds"
  local switch_plan="http:32:$switch_s,connect-rate:64:$((curve_seconds - switch_s))"
  local cold_spans="first:0:$first_s,steady:$((curve_seconds - steady_s)):$curve_seconds"
  local switch_spans="http:0:$switch_s,tunnels_first:$switch_s:$((switch_s + first_s))"
  curves_out="${curves_out:-/tmp/egress-curves-$(date -u +%Y%m%d-%H%M%S)}"
  mkdir -p "$curves_out"
  local started=$SECONDS
  for run in $(seq 1 "$curve_runs"); do
    for proxy in "${curve_proxies[@]}"; do
      t="$(target "$proxy")"
      cmd=()
      if [[ "$proxy" != direct ]]; then
        # shellcheck disable=SC2207  # proxy_cmd prints the command line, split on purpose
        cmd=("$work/curve-$proxy.log" -- $(proxy_cmd "$proxy"))
      fi
      for curve in cold switch; do
        echo "== curves, run $run/$curve_runs: $proxy, $curve" >&2
        local plan=$cold_plan spans=$cold_spans
        if [[ $curve == switch ]]; then plan=$switch_plan spans=$switch_spans; fi
        if ! loadgen curve "$t" "$plan" "$window" "$spans" "$warm" "${cmd[@]}" \
          > "$curves_out/$curve-$proxy-$run.out" 2> "$curves_out/$curve-$proxy-$run.err"; then
          echo "bench: the $curve curve failed against $proxy:" >&2
          cat "$curves_out/$curve-$proxy-$run.err" >&2
          status=1
        fi
        # The proxy's output holds its access log (some 30 MB a curve); the load generator printed
        # its last lines if the curve failed.
        rm -f "$work/curve-$proxy.log"
      done
    done
  done
  echo
  echo "egress-proxy curves: $curve_runs run(s), $curve_seconds s per curve in ${window} s windows, proxy on CPU $PROXY_CPU, load on CPU $LOAD_CPU; the load generator warmed ${warm} s per phase before each start"
  echo "network: $netns"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(java -version 2>&1 | head -1)"
  echo "egress-proxy: deploy/bin/egress-proxy, EGRESS_PROXY_HEAP=$EGRESS_PROXY_HEAP (-Xms=-Xmx), EGRESS_PROXY_GC=$EGRESS_PROXY_GC, EGRESS_PROXY_DIRECT_MEMORY=$EGRESS_PROXY_DIRECT_MEMORY, CDS archive; wall time $((SECONDS - started)) s"
  for v in "${variants[@]}"; do echo "variant egress-${v%%:*}: ${v#*:}"; done
  python3 "$here/curves.py" --png "$curves_out/curves.png" --proxies "$(IFS=,; echo "${curve_proxies[*]}")" \
    --runs "$curve_runs" --seconds "$curve_seconds" --window "$window" --switch "$switch_s" "$curves_out" || status=1
  echo "results: $curves_out (curves.png, each curve's load-generator output)"
  return "$status"
}
if [[ $curves -eq 1 ]]; then
  if [[ -n "$proxies_opt" ]]; then
    curve_proxies=("${table_proxies[@]}")
  else
    curve_proxies=(egress "${extra[@]}" squid tinyproxy)
  fi
  if [[ $runs_given -eq 1 ]]; then curve_runs=$runs; fi
  status=0
  run_curves || status=$?
  exit "$status"
fi

started=$SECONDS
for run in $(seq 1 "$runs"); do
  for proxy in "${proxies[@]}"; do
    echo "== run $run/$runs: $proxy" >&2
    t="$(target "$proxy")"
    if [[ "$proxy" != direct ]]; then
      if runs_on "$proxy" startup; then
        if [[ "$proxy" == egress ]]; then
          # The same start without the archive, for comparison (recorded as its own metric).
          # shellcheck disable=SC2046
          suffix=_no_cds scenario "$proxy" "$run" startup "$t" -- $(proxy_cmd egress-no-cds)
        fi
        # shellcheck disable=SC2046
        scenario "$proxy" "$run" startup "$t" -- $(proxy_cmd "$proxy")
      fi
      start_proxy "$proxy"
    fi
    # Warm-up, results discarded: the JVMs (load generator and egress-proxy) compile their hot
    # paths; every proxy gets the same. Plain HTTP first, so that connect-rate, measured next,
    # follows its own warm-up, twice as long: after the plain-HTTP load the JIT recompiles the
    # tunnel path for 20 s and more on the proxy's one core (docs/performance.md, "How to reproduce").
    # With --scenarios of bulk alone (no tunnel set-up or plain-HTTP load measured), bulk through
    # one tunnel warms the relay path instead, for as long as the plain-HTTP warm-up.
    if runs_on "$proxy" http || runs_on "$proxy" connect-rate || runs_on "$proxy" rr; then
      loadgen http "$t" "$warm" 32 > /dev/null
      loadgen connect-rate "$t" "$((warm * 2))" 64 > /dev/null
    elif runs_on "$proxy" bulk; then
      loadgen bulk "$t" "$warm" 1 > /dev/null
    fi
    if runs_on "$proxy" connect-rate; then measured "$proxy" "$run" connect-rate "$t" 64; fi
    if runs_on "$proxy" rr; then measured "$proxy" "$run" rr "$t" 64; fi
    if runs_on "$proxy" bulk; then
      measured "$proxy" "$run" bulk "$t" 1
      measured "$proxy" "$run" bulk "$t" 4
    fi
    if runs_on "$proxy" http; then measured "$proxy" "$run" http "$t" 32; fi
    if [[ "$proxy" != direct ]]; then
      if runs_on "$proxy" idle; then scenario "$proxy" "$run" idle "$t" "$(IFS=,; echo "${idle_counts[*]}")" "$proxy_pid"; fi
      if [[ $profile -eq 1 && $run -eq $runs ]]; then
        profile_proxy "$proxy" "$t"
      fi
      stop_proxy
    fi
  done
done

echo
echo "egress-proxy benchmark: $runs run(s), $secs s per scenario, proxy on CPU $PROXY_CPU, load on CPU $LOAD_CPU"
echo "network: $netns"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(java -version 2>&1 | head -1)"
echo "egress-proxy: deploy/bin/egress-proxy, EGRESS_PROXY_HEAP=$EGRESS_PROXY_HEAP (-Xms=-Xmx), EGRESS_PROXY_GC=$EGRESS_PROXY_GC, EGRESS_PROXY_DIRECT_MEMORY=$EGRESS_PROXY_DIRECT_MEMORY, CDS archive; wall time $((SECONDS - started)) s"
for v in "${variants[@]}"; do echo "variant egress-${v%%:*}: ${v#*:}"; done
if [[ " ${proxies[*]} " == *" egress-auth "* ]]; then
  echo "egress-auth: egress + auth.basic.users-file (one user, bcrypt cost 10, htpasswd -B -C 10; cache-ttl 60s as shipped);"
  echo "  Proxy-Authorization: Basic on every CONNECT and GET, the same value throughout, so after the first check each"
  echo "  is a cache hit. connect-rate and http only (\"-\" elsewhere: past the CONNECT a tunnel is egress's)."
fi
if [[ " ${proxies[*]} " == *" egress-tls "* ]]; then
  echo "egress-tls: egress + listen.tls (self-signed EC P-256 certificate, no client-ca); the load generator speaks TLS"
  echo "  (JDK 17 client: TLS 1.3, its default groups and ciphers) with a full handshake per connection, no session"
  echo "  resumption: in connect-rate the same NIO loop as the other columns plus an SSLEngine, in http SSLSockets over"
  echo "  the same sockets (one handshake per keep-alive connection). The load core pays its half of each handshake"
  echo "  (load_core_us_per_tunnel). connect-rate and http only (\"-\" elsewhere: no TLS client for rr, bulk, idle, startup)."
fi
echo "scenarios: $scenarios_opt; proxies: ${proxies[*]}"
printf '%s\n' "${variants[@]}" > "$work/variants.txt"
python3 "$here/table.py" "$results" "$quick" "$work/variants.txt"
if [[ $profile -eq 1 ]]; then
  echo
  cat "$work"/profile-*.txt
fi
if [[ $with_curves -eq 1 ]]; then
  # The same run goes on with the curves of the same proxies (egress-auth and egress-tls excepted).
  curve_proxies=()
  for p in "${proxies[@]}"; do
    case "$p" in egress-auth | egress-tls) ;; *) curve_proxies+=("$p") ;; esac
  done
  echo
  run_curves
fi
