#!/usr/bin/env bash
# End-to-end suite for egress-proxy (issue 4): real skopeo (and podman where it runs) pull through
# the REAL proxy jar from the local registry world (e2e/world.sh), and every scenario asserts on
# what the client printed AND on what the proxy reported (/metrics, /denied, access log).
#
#   e2e/run.sh [--keep] [--no-netns] [JAR]
#
#   JAR          the proxy jar; default $EGRESS_PROXY_JAR, else proxy/target/egress-proxy.jar
#                under the repository root (build it first: mvn -B package -DskipTests)
#   --keep       keep the temporary run directory (it is also kept when a check fails)
#   --no-netns   run in the current network namespace instead of a private one
#
# Installs nothing: the Debian packages come from `e2e/world.sh deps` (needs root). Prints
# PASS/FAIL/SKIP per check and last "N passed, N failed"; exits 1 on any failure, 2 when a
# prerequisite is missing. docs/e2e.md describes what each scenario proves.
#
# Scenarios: 1 full preset (skopeo + podman pull both images, digests verified)
#            2 cdn02.quay.io not allowlisted (403, fails fast)
#            3 cdn02.quay.io allowed, its server down (502 connection refused)
#            4 cdn02.quay.io blackholed (504 after the proxy's connect timeout; also iptables DROP)
#            5 plain HTTP through HTTP_PROXY (302 and the CDN GET pass through the proxy)
#            6 strace: every TCP connect() of the client went to the proxy
#            7 fast-fail with the shipped defaults: cdn02.quay.io blackholed, then back
#            8 egress-proxy check image / check hosts: all allowed, cdn02 missing, cdn02 blackholed
#            9 corporate edge: HAProxy (PROXY v2) -> TLS + proxy auth + policy -> CDN via a parent Squid
#           10 proxy auth on the plain listener: HTTPS_PROXY=http://user:pass@host:port
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PY=/usr/bin/python3

CONNECT_TIMEOUT_S=3   # the proxy's timeouts.connect in every scenario
FAST_FAIL_MAX_S=15    # "fails fast": a direct client behind a dropping firewall waits 30 s per dial
CLIENT_TIMEOUT_S=120  # hard bound on any single client run
DIRECT_DIAL_TIMEOUT_S=30

USE_NETNS=1 KEEP=0 JAR=
while [[ $# -gt 0 ]]; do
    case $1 in
        --keep) KEEP=1 ;;
        --no-netns) USE_NETNS=0 ;;
        -h | --help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [[ -z $JAR ]] || { echo "run.sh: only one JAR argument" >&2; exit 2; }; JAR=$1 ;;
    esac
    shift
done
JAR=${JAR:-${EGRESS_PROXY_JAR:-$ROOT/proxy/target/egress-proxy.jar}}

now_ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((t / 1000)); }
START_MS=$(now_ms)

# ---------------------------------------------------------------------------------------------
# reporting

PASS=0 FAIL=0 SKIPPED=0
SCENARIO_TIMES=()
pass() { PASS=$((PASS + 1)); printf 'PASS  %s\n' "$*"; }
fail() { FAIL=$((FAIL + 1)); printf 'FAIL  %s\n' "$*"; }
skip() { SKIPPED=$((SKIPPED + 1)); printf 'SKIP  %s\n' "$*"; }
# skip_missing TEXT: a check that cannot run because a program is not installed. SKIP, but FAIL
# with CI=true (.ci/run exports it), where the install step has just installed every one of them.
skip_missing() { if [[ ${CI:-} == true ]]; then fail "$* (CI=true: a missing program fails)"; else skip "$*"; fi; }
note() { printf '      %s\n' "$*"; }
die_prereq() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }

# check DESCRIPTION CMD...: PASS if CMD succeeds. CMD's output lines starting with "evidence:"
# are shown under a PASS; on FAIL the last lines of its output are shown.
check() {
    local what=$1 log
    shift
    log=$RUN/check.log
    if "$@" >"$log" 2>&1; then
        pass "$what"
        sed -n 's/^evidence: /      /p' "$log" | cut -c1-300
    else
        fail "$what"
        tail -n 12 "$log" | cut -c1-300 | sed 's/^/      | /'
    fi
}

# eventually DESCRIPTION CMD...: like check, but retries CMD for up to 5 s (the proxy writes an
# access-log line or bumps a counter when a tunnel ends, a moment after the client has exited)
eventually() {
    local what=$1 i
    shift
    for ((i = 0; i < 50; i++)); do
        if "$@" >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
    check "$what" "$@"
}

scenario() {
    SCEN_NAME=$1
    SCEN_T0=$(now_ms)
    printf '\n== scenario %s\n' "$*"
}
scenario_end() {
    local ms=$(($(now_ms) - SCEN_T0))
    SCENARIO_TIMES+=("scenario ${SCEN_NAME}: $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s")
}

# ---------------------------------------------------------------------------------------------
# prerequisites (nothing is installed here)

need=()
for t in java curl skopeo strace tar sha256sum timeout setsid nginx docker-registry openssl; do
    PATH=$CLEAN_PATH command -v "$t" >/dev/null 2>&1 || need+=("$t")
done
[[ -x $PY ]] || need+=(python3)
[[ ${#need[@]} == 0 ]] ||
    die_prereq "missing tools: ${need[*]} (install the packages with: sudo $HERE/world.sh deps; java comes with the JDK 17 the Maven build uses)"
[[ -f $JAR ]] || die_prereq "no proxy jar at $JAR (build it: mvn -B package -DskipTests, or pass the path: $0 JAR)"
JAR=$(cd "$(dirname "$JAR")" && pwd)/$(basename "$JAR")
JAVA_VERSION=$(PATH=$CLEAN_PATH java -version 2>&1 || true)
[[ $JAVA_VERSION =~ version\ \"([0-9]+) ]] && JAVA_VERSION=${BASH_REMATCH[1]} || JAVA_VERSION=
[[ ${JAVA_VERSION:-0} -ge 17 ]] || die_prereq "java on PATH is version '${JAVA_VERSION:-?}', need 17 or newer"
[[ $(id -u) == 0 ]] || die_prereq "run as root (docker-registry/nginx/podman --root and ip netns need it)"

RUN=$(mktemp -d /tmp/egress-e2e.XXXXXX)
OUT=$RUN/out
mkdir -p "$OUT" "$RUN/home"
# The proxies run a private copy of the jar: a JVM reads classes from its jar as it needs them, and
# a jar rewritten under it (mvn package during the run) can crash it. Removed at the end.
BUILT_JAR=$JAR
JAR=$RUN/egress-proxy.jar
cp "$BUILT_JAR" "$JAR"
NS=
PROXY_PID=
P=
HELPER_PIDS=()   # scenario 7's blackhole and relay, scenario 9's Squid and HAProxy
SQUID_DIR=       # scenario 9: Squid's directory (outside $RUN, which the proxy user cannot enter)
S9_NAT_RULE=()   # scenario 9: the iptables nat rule in the namespace, removed in cleanup

# ---------------------------------------------------------------------------------------------
# teardown

stop_proxy() {
    [[ -n $PROXY_PID ]] || return 0
    local pid=$PROXY_PID i st
    PROXY_PID=
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo gone)
        [[ $st == gone || $st == Z ]] && break
        sleep 0.1
    done
    if [[ $st != gone && $st != Z ]]; then
        note "proxy pid $pid ignored SIGTERM for 10 s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_helpers() {
    local pid
    for pid in "${HELPER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    HELPER_PIDS=()
}

cleanup() {
    local rc=$?
    set +e
    stop_proxy
    stop_helpers
    if [[ ${#S9_NAT_RULE[@]} -gt 0 ]]; then ip netns exec "$NS" iptables -t nat -D "${S9_NAT_RULE[@]}" 2>/dev/null; fi
    if [[ -n $SQUID_DIR ]]; then rm -rf "$SQUID_DIR"; fi
    if [[ -d $RUN/world ]]; then "$HERE/world.sh" down "$RUN/world" >>"$RUN/world-down.log" 2>&1; fi
    if [[ -n $NS ]]; then ip netns del "$NS" 2>/dev/null; fi
    rm -f "$JAR"
    if [[ $KEEP == 1 || $FAIL != 0 || $rc != 0 ]]; then
        echo "run.sh: kept $RUN (proxy logs in $RUN/s*/, client output in $OUT)" >&2
    else
        rm -rf "$RUN"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# network namespace: the world, the proxy and the clients share a namespace that has nothing but
# its own loopback, so a name some client failed to send through the proxy cannot become a DNS
# query that leaves the machine.

in_ns() { if [[ -n $NS ]]; then ip netns exec "$NS" "$@"; else "$@"; fi; }

echo "# egress-proxy e2e: jar $BUILT_JAR (run from a copy), run dir $RUN"
if [[ $USE_NETNS == 1 ]]; then
    if ! PATH=$CLEAN_PATH command -v ip >/dev/null 2>&1; then
        echo "# no 'ip' (iproute2): running in the current network namespace"
    else
        NS=egress-e2e-$$
        if ip netns add "$NS" 2>"$RUN/netns.log" && ip netns exec "$NS" ip link set lo up 2>>"$RUN/netns.log"; then
            echo "# network namespace $NS (loopback only)"
        else
            echo "# ip netns add failed ($(tr '\n' ' ' <"$RUN/netns.log")): running in the current network namespace"
            ip netns del "$NS" 2>/dev/null || true
            NS=
        fi
    fi
fi
[[ -n $NS ]] || echo "# without a private namespace every name still reaches only the proxy (HTTPS_PROXY/HTTP_PROXY, connect-to for all six names, proxy DNS pinned to 127.0.0.1:1)"

# ---------------------------------------------------------------------------------------------
# the world

WORLD_T0=$(now_ms)
if ! in_ns "$HERE/world.sh" up "$RUN/world" >"$RUN/world-up.log" 2>&1; then
    tail -n 25 "$RUN/world-up.log" >&2
    fail "world.sh up (log: $RUN/world-up.log)"
    echo "$PASS passed, $FAIL failed"
    exit 1
fi
# shellcheck disable=SC1091
. "$RUN/world/world.env"
for v in WORLD_CA WORLD_HOME WORLD_POLICY WORLD_REGISTRIES_CONF WORLD_CONNECT_TO_CONF WORLD_NGINX_ACCESS_LOG \
    WORLD_REFUSED_PORT WORLD_BLACKHOLE_PORT WORLD_ORIGIN WORLD_BLOB_CDN_HOSTS; do
    [[ -n ${!v:-} ]] || { fail "world.env lacks $v"; exit 1; }
done
WORLD_MS=$(($(now_ms) - WORLD_T0))
echo "# world up in $WORLD_MS ms: $(sed -n 's/^world.sh: \(up in .*\)/\1/p' "$RUN/world-up.log")"

OI_REF=$WORLD_OPERATOR_INDEX_REPO:$WORLD_OPERATOR_INDEX_TAG
UBI_REF=$WORLD_UBI_REPO:$WORLD_UBI_TAG
OI_CONFIG_FILE=$WORLD_RUNDIR/image/operator-index/${WORLD_OPERATOR_INDEX_CONFIG_DIGEST#sha256:}
UBI_CONFIG_FILE=$WORLD_RUNDIR/image/ubi-minimal/${WORLD_UBI_CONFIG_DIGEST#sha256:}

free_ports() { # N -> N free loopback TCP ports (in the namespace), one a line
    in_ns "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

# ---------------------------------------------------------------------------------------------
# the proxy

# start_proxy NAME ALLOWLIST_BODY [EXTRA_HOCON]: a fresh egress-proxy for one scenario; its
# config, access log (stdout) and application log (stderr) are in $RUN/NAME/. Sets P,
# PROXY_PORT, ADMIN_PORT, PROXY_URL, ACCESS_LOG. CONNECT_TO_CONF (optional) replaces the world's
# connect-to file (scenario 9 pins only some names).
start_proxy() {
    local name=$1 allow=$2 extra=${3:-} ports i
    stop_proxy
    P=$RUN/$name
    mkdir -p "$P"
    mapfile -t ports < <(free_ports 2)
    PROXY_PORT=${ports[0]} ADMIN_PORT=${ports[1]}
    PROXY_URL=http://127.0.0.1:$PROXY_PORT
    ACCESS_LOG=$P/access.log
    cat >"$P/proxy.conf" <<EOF
# generated by e2e/run.sh for scenario $name
egress-proxy {
  listen { host = "127.0.0.1", port = $PROXY_PORT }
  admin  { host = "127.0.0.1", port = $ADMIN_PORT }
  allowlist { $allow }
  $([[ ${SHIPPED_TIMEOUTS:-0} == 1 ]] && echo "# timeouts and upstream.fast-fail: the shipped defaults" || echo "timeouts { connect = ${CONNECT_TIMEOUT_S}s }")
  # The hardened setting: a tunnel whose ClientHello names another host than its CONNECT is
  # closed before a byte reaches the origin. Every pull below must pass it untouched.
  tunnels { sni-check = "enforce" }
  # Never ask the machine's resolver: every name the clients use is mapped by connect-to.
  dns { servers = ["127.0.0.1:1"], query-timeout = 1s }
  shutdown { grace = 1s }
  reload { watch = false }
}
# the registry world's names -> its loopback ports
include file("${CONNECT_TO_CONF:-$WORLD_CONNECT_TO_CONF}")
$extra
EOF
    # not through in_ns (a function): "$!" must be the JVM's pid (ip netns exec and env exec it)
    if [[ -n $NS ]]; then
        ip netns exec "$NS" env -i PATH="$CLEAN_PATH" HOME="$RUN/home" LANG=C.UTF-8 \
            java -jar "$JAR" --config "$P/proxy.conf" >"$ACCESS_LOG" 2>"$P/app.log" </dev/null &
    else
        env -i PATH="$CLEAN_PATH" HOME="$RUN/home" LANG=C.UTF-8 \
            java -jar "$JAR" --config "$P/proxy.conf" >"$ACCESS_LOG" 2>"$P/app.log" </dev/null &
    fi
    PROXY_PID=$!
    for ((i = 0; i < 300; i++)); do
        if [[ $(admin_get /readyz 2>/dev/null) == ready* ]]; then
            note "egress-proxy ($name) ready on $PROXY_URL, admin :$ADMIN_PORT, pid $PROXY_PID, after $((i / 10)).$((i % 10)) s"
            return 0
        fi
        if ! kill -0 "$PROXY_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    fail "egress-proxy ($name) did not become ready within 30 s (config $P/proxy.conf)"
    tail -n 20 "$P/app.log" | sed 's/^/      | /'
    return 1
}

admin_get() { # PATH
    in_ns env -i PATH="$CLEAN_PATH" curl -sS --max-time 5 --noproxy '*' "http://127.0.0.1:$ADMIN_PORT$1"
}

# metric_value NAME 'label="value"'...: the sum over the series of NAME carrying every label given
metric_value() {
    local name=$1
    shift
    admin_get /metrics | awk -v name="$name" -v filt="$*" '
        BEGIN { nf = split(filt, f, " ") }
        /^#/ { next }
        {
            series = $1; base = series; sub(/\{.*/, "", base)
            if (base != name) next
            for (i = 1; i <= nf; i++) if (index(series, f[i]) == 0) next
            sum += $2
        }
        END { printf "%g\n", sum + 0 }'
}
metric_cmp() { # NAME OP(ge|eq) N LABELS...
    local name=$1 op=$2 want=$3 v
    shift 3
    v=$(metric_value "$name" "$@")
    echo "evidence: $name{$(echo "$*" | tr ' ' ',')} = $v (want $op $want)"
    awk -v v="$v" -v w="$want" -v op="$op" 'BEGIN { exit !((op == "ge" && v >= w) || (op == "eq" && v == w)) }'
}

# denied_lists DESTINATION TYPE REASON: /denied has an entry for DESTINATION of TYPE with REASON
denied_lists() {
    admin_get /denied | "$PY" -c '
import json, sys
dest, typ, reason = sys.argv[1:4]
doc = json.load(sys.stdin)
for e in doc.get("entries", []):
    if e.get("destination") == dest and e.get("type") == typ and e.get("reason") == reason and e.get("count", 0) >= 1:
        print("evidence: /denied " + json.dumps(e, sort_keys=True))
        sys.exit(0)
print("no entry for", dest, typ, reason, "in:", json.dumps(doc))
sys.exit(1)' "$1" "$2" "$3"
}
denied_empty() {
    admin_get /denied | "$PY" -c '
import json, sys
doc = json.load(sys.stdin)
print("evidence: /denied entries:", len(doc.get("entries", [])))
sys.exit(1 if doc.get("entries") else 0)'
}

# Note: no "grep -m 1" or "head" at the end of a pipe here: with pipefail, the writer's SIGPIPE
# would turn a match into a failure.

# log_has FILE FROM_LINE ERE: a line after FROM_LINE matches ERE; prints the first
log_has() {
    local line
    line=$(awk -v from="$2" 'NR > from' "$1" | grep -E -- "$3") || { echo "no line matching: $3"; tail -n 5 "$1"; return 1; }
    echo "evidence: access log: ${line%%$'\n'*}"
}
log_lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }
log_count() { awk -v from="$2" 'NR > from' "$1" | grep -cE -- "$3" || true; }

# log_order FILE FROM_LINE ERE1 ERE2: after FROM_LINE, a line matching ERE1 comes before one
# matching ERE2
log_order() {
    local seg a b
    seg=$(tail -n +"$(($2 + 1))" "$1")
    a=$(grep -nE -m 1 -- "$3" <<<"$seg" | cut -d: -f1) || { echo "no line matching: $3"; return 1; }
    b=$(awk -v from="$a" 'NR > from' <<<"$seg" | grep -E -- "$4") || { echo "no line after line $a matching: $4"; return 1; }
    echo "evidence: access log: $(sed -n "${a}p" <<<"$seg" | cut -c1-240)"
    echo "evidence: then:       $(cut -c1-240 <<<"${b%%$'\n'*}")"
}

# log_both FILE FROM_LINE ERE1 ERE2: after FROM_LINE, a line matches ERE1 and a line matches ERE2,
# in either order. For exchanges on different connections: each line is written when its exchange
# completes, on its connection's event loop, so a redirect's line can come after the line of the
# request it led to (seen in CI: skopeo's CDN GET logged before the 302 that sent it there).
log_both() {
    local seg a b
    seg=$(tail -n +"$(($2 + 1))" "$1")
    a=$(grep -E -- "$3" <<<"$seg") || { echo "no line matching: $3"; return 1; }
    b=$(grep -E -- "$4" <<<"$seg") || { echo "no line matching: $4"; return 1; }
    echo "evidence: access log: $(cut -c1-240 <<<"${a%%$'\n'*}")"
    echo "evidence: and:        $(cut -c1-240 <<<"${b%%$'\n'*}")"
}

# ---------------------------------------------------------------------------------------------
# clients: clean environment (the machine exports SSL_CERT_FILE, SSL_CERT_DIR, CURL_CA_BUNDLE...),
# trusting only the world's CA, never with TLS verification off

CLIENT_WRAP=()
# shellcheck disable=SC2153 # WORLD_* come from world.env
client() {
    in_ns "${CLIENT_WRAP[@]}" timeout -k 5 "$CLIENT_TIMEOUT_S" env -i PATH="$CLEAN_PATH" HOME="$WORLD_HOME" LANG=C.UTF-8 \
        SSL_CERT_FILE="$WORLD_CA" CONTAINERS_REGISTRIES_CONF="$WORLD_REGISTRIES_CONF" "$@"
}

# run_client TAG CMD...: runs CMD through `client`; output in $OUT/TAG.out; sets RC, MS, CO
run_client() {
    local tag=$1 t0
    shift
    CO=$OUT/$tag.out
    t0=$(now_ms)
    RC=0
    client "$@" >"$CO" 2>&1 || RC=$?
    MS=$(($(now_ms) - t0))
    note "$tag: exit $RC after $MS ms: $(grep -v '^\s*$' "$CO" | tail -n 1 | cut -c1-260)"
}

SKOPEO=(skopeo --policy "$WORLD_POLICY")
podman_cmd() { # STORE -> PODMAN array: podman with its own vfs store under $RUN/podman/STORE
    PODMAN=(podman --storage-driver vfs --root "$RUN/podman/$1/root" --runroot "$RUN/podman/$1/runroot"
        --cgroup-manager cgroupfs --events-backend file)
}

exits_zero() { echo "evidence: exit $RC in $MS ms"; [[ $RC == 0 ]]; }
exits_one() { echo "evidence: exit $RC in $MS ms"; [[ $RC == 1 ]]; }
exits_nonzero() { echo "evidence: exit $RC in $MS ms"; [[ $RC != 0 && $RC != 124 && $RC != 137 ]]; }
within_ms() { echo "evidence: wall time $MS ms (limit $1 ms)"; [[ $MS -le $1 ]]; }
at_least_ms() { echo "evidence: wall time $MS ms (at least $1 ms)"; [[ $MS -ge $1 ]]; }
says() { # TEXT...: the client output contains every TEXT
    local t line
    for t in "$@"; do grep -qF -- "$t" "$CO" || { echo "client output lacks: $t"; tail -n 5 "$CO"; return 1; }; done
    line=$(grep -F -- "$1" "$CO" | tail -n 1)
    echo "evidence: client said: ${line:0:400}"
}

# verify_dir DIR MANIFEST_DIGEST CONFIG_DIGEST "LAYER_DIGESTS": a skopeo dir: copy holds exactly
# the expected manifest, and every blob file's sha256 is its digest (and its size the manifest's)
verify_dir() {
    "$PY" - "$@" <<'EOF'
import hashlib, json, os, sys
d, mdigest, cdigest, layers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
ok = True
m = os.path.join(d, "manifest.json")
if sha(m) != mdigest:
    print(f"manifest.json sha256 {sha(m)} != {mdigest}"); ok = False
man = json.load(open(m))
if man["config"]["digest"] != cdigest:
    print(f"config digest {man['config']['digest']} != {cdigest}"); ok = False
got_layers = [l["digest"] for l in man["layers"]]
if got_layers != layers:
    print(f"layers {got_layers} != {layers}"); ok = False
for desc in [man["config"]] + man["layers"]:
    p = os.path.join(d, desc["digest"].split(":", 1)[1])
    if not os.path.isfile(p):
        print(f"missing blob file {p}"); ok = False; continue
    s = sha(p)
    if s != desc["digest"] or os.path.getsize(p) != desc["size"]:
        print(f"{p}: sha256 {s}, {os.path.getsize(p)} bytes; manifest says {desc['digest']}, {desc['size']}"); ok = False
if ok:
    print(f"evidence: manifest {mdigest[:19]}..., config {cdigest[:19]}... and {len(layers)} layers: "
          "sha256sum of every file = its digest in the manifest/world.env")
sys.exit(0 if ok else 1)
EOF
}

# podman_verify STORE REF EXPECTED_DIGEST CONFIG_DIGEST CONFIG_FILE: the image podman stored has the
# expected digest, its ID is the config digest, and its layers are the config's diff_ids (podman
# checks each layer against them while pulling)
podman_verify() {
    local store=$1 ref=$2 digest=$3 cdigest=$4 cfile=$5 got want
    podman_cmd "$store"
    got=$(client "${PODMAN[@]}" image inspect --format '{{.Id}} {{.Digest}} {{range .RootFS.Layers}}{{.}} {{end}}' "$ref") || {
        echo "podman image inspect $ref failed: $got"; return 1; }
    want="${cdigest#sha256:} $digest $("$PY" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["rootfs"]["diff_ids"]))' "$cfile")"
    got=$(echo "$got" | xargs)
    [[ $got == "$want" ]] || { echo "podman image inspect: '$got'"; echo "expected:             '$want'"; return 1; }
    echo "evidence: podman image $ref: ID ${cdigest:7:12} = config digest, digest ${digest:0:19}..., layers = config diff_ids"
}

# nginx access log between two line counts
nginx_seg() { awk -v a="$1" -v b="$2" 'NR > a && NR <= b' "$WORLD_NGINX_ACCESS_LOG"; }

ALL_NAMES="$WORLD_REGISTRY_NAMES $WORLD_CDN_NAMES"
# shellcheck disable=SC2016 # the $ is a character to escape
re() { printf '%s' "$1" | sed 's/[.[\*^$()+?{|]/\\&/g'; } # ERE-quote

# ---------------------------------------------------------------------------------------------
# podman: can it run here?

PODMAN_OK=0 PODMAN_WHY='' PODMAN_MISSING=0
if ! PATH=$CLEAN_PATH command -v podman >/dev/null 2>&1; then
    PODMAN_WHY="podman is not installed (e2e/world.sh deps installs it)" PODMAN_MISSING=1
else
    podman_cmd probe
    if client "${PODMAN[@]}" info --format '{{.Version.Version}} {{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}' >"$OUT/podman-info.out" 2>&1; then
        PODMAN_OK=1
        echo "# podman $(tail -n 1 "$OUT/podman-info.out") (vfs store per check, cgroupfs, file events)"
    else
        PODMAN_WHY="podman info fails here: $(grep -v '^\s*$' "$OUT/podman-info.out" | tail -n 1)"
    fi
fi
podman_skip() { if [[ $PODMAN_MISSING == 1 ]]; then skip_missing "$1: $PODMAN_WHY"; else skip "$1: $PODMAN_WHY"; fi; }

# verified_pulls N PROXY_URL HOW SKIP_WHAT: scenario N's skopeo copy of the operator index and
# podman pull of ubi-minimal with HTTPS_PROXY=PROXY_URL, each checked to succeed ("... HOW
# succeeds") and its digests verified; without a working podman, its pull is SKIPped ("N podman
# pull SKIP_WHAT").
verified_pulls() {
    local n=$1 proxy=$2 how=$3 skip_what=$4
    run_client "s$n-skopeo" HTTPS_PROXY="$proxy" "${SKOPEO[@]}" copy "docker://registry.redhat.io/$OI_REF" "dir:$P/oi"
    check "$n skopeo copy $how succeeds" exits_zero
    check "$n skopeo: operator-index digests verified (sha256sum of the files)" \
        verify_dir "$P/oi" "$WORLD_OPERATOR_INDEX_MANIFEST_DIGEST" "$WORLD_OPERATOR_INDEX_CONFIG_DIGEST" "$WORLD_OPERATOR_INDEX_LAYERS"
    if [[ $PODMAN_OK == 1 ]]; then
        podman_cmd "s$n-ubi"
        run_client "s$n-podman" HTTPS_PROXY="$proxy" "${PODMAN[@]}" pull "registry.access.redhat.com/$UBI_REF"
        check "$n podman pull $how succeeds" exits_zero
        check "$n podman: ubi-minimal digest, ID and layers verified" podman_verify "s$n-ubi" "registry.access.redhat.com/$UBI_REF" \
            "$WORLD_UBI_DIGEST" "$WORLD_UBI_CONFIG_DIGEST" "$UBI_CONFIG_FILE"
    else
        podman_skip "$n podman pull $skip_what"
    fi
}

ALLOW_FULL='presets = ["redhat-registry"], hosts = []'
ALLOW_NO_CDN02='presets = [], hosts = ["registry.redhat.io", "registry.access.redhat.com", "cdn.quay.io", "cdn01.quay.io", "cdn03.quay.io"]'
ALLOW_HTTP_ONLY='presets = [], hosts = ['
for n in $ALL_NAMES; do ALLOW_HTTP_ONLY+="\"$n:80\", "; done
ALLOW_HTTP_ONLY="${ALLOW_HTTP_ONLY%, }]"

# =============================================================================================
scenario 1 "full preset: skopeo and podman pull both images through HTTPS_PROXY"
if start_proxy s1-full "$ALLOW_FULL"; then
    A0=$(log_lines "$ACCESS_LOG")
    N0=$(log_lines "$WORLD_NGINX_ACCESS_LOG")
    run_client s1-skopeo-oi HTTPS_PROXY="$PROXY_URL" "${SKOPEO[@]}" copy \
        "docker://registry.redhat.io/$OI_REF" "dir:$RUN/s1-full/oi"
    check "1 skopeo copy docker://registry.redhat.io/$OI_REF dir: succeeds" exits_zero
    check "1 operator-index layer digests verified (sha256sum of the files)" \
        verify_dir "$RUN/s1-full/oi" "$WORLD_OPERATOR_INDEX_MANIFEST_DIGEST" "$WORLD_OPERATOR_INDEX_CONFIG_DIGEST" "$WORLD_OPERATOR_INDEX_LAYERS"
    run_client s1-skopeo-ubi HTTPS_PROXY="$PROXY_URL" "${SKOPEO[@]}" copy \
        "docker://registry.access.redhat.com/$UBI_REF" "dir:$RUN/s1-full/ubi"
    check "1 skopeo copy docker://registry.access.redhat.com/$UBI_REF dir: succeeds" exits_zero
    check "1 ubi-minimal layer digests verified (sha256sum of the files)" \
        verify_dir "$RUN/s1-full/ubi" "$WORLD_UBI_DIGEST" "$WORLD_UBI_CONFIG_DIGEST" "$WORLD_UBI_LAYERS"
    N1=$(log_lines "$WORLD_NGINX_ACCESS_LOG")
    redirect_flow() {
        local seg r c
        seg=$(nginx_seg "$N0" "$N1")
        r=$(grep -cE '^127\.0\.0\.1 \[[^]]*\] https [0-9]+ host="registry\.(access\.)?redhat\.(io|com)" "GET /v2/[^ ]*/blobs/sha256:[0-9a-f]{64} HTTP/1\.1" 302 ' <<<"$seg" || true)
        c=$(grep -cE '^127\.0\.0\.1 \[[^]]*\] https [0-9]+ host="cdn0?[0-9]*\.quay\.io" "GET /sha256/[0-9a-f]{64}\?grant=[^ ]* HTTP/1\.1" 200 ' <<<"$seg" || true)
        echo "evidence: the world's nginx saw $r registry blob GETs answered 302 and $c CDN blob GETs answered 200 (https)"
        [[ $r -ge 7 && $c -ge 7 ]]
    }
    check "1 the blobs came through the registry's 302 from the CDN hosts (world's nginx log)" redirect_flow
    for n in $ALL_NAMES; do
        eventually "1 access log: CONNECT $n:443 allowed, status 200, SNI $n checked ok" \
            log_has "$ACCESS_LOG" "$A0" "method=CONNECT target=$(re "$n"):443 decision=allowed reason=host_allowlisted .*status=200 .*error=- sni=$(re "$n") sni_check=ok "
    done
    not_denied_anywhere() {
        local bad
        bad=$(tail -n +"$((A0 + 1))" "$ACCESS_LOG" | grep -v 'decision=allowed .*status=200 ' || true)
        echo "evidence: $(log_count "$ACCESS_LOG" "$A0" .) access-log lines, all decision=allowed status=200"
        [[ -z $bad ]] || { echo "$bad"; return 1; }
    }
    check "1 access log: nothing denied or failed" not_denied_anywhere
    check "1 /metrics: egress_proxy_denied_total = 0" metric_cmp egress_proxy_denied_total eq 0
    check "1 /metrics: egress_proxy_upstream_failures_total = 0" metric_cmp egress_proxy_upstream_failures_total eq 0
    check "1 /metrics: egress_proxy_sni_mismatch_total = 0 (sni-check = enforce)" metric_cmp egress_proxy_sni_mismatch_total eq 0
    sni_checked_everywhere() {
        local unchecked
        unchecked=$(tail -n +"$((A0 + 1))" "$ACCESS_LOG" | grep 'method=CONNECT ' | grep -v ' sni_check=ok ' || true)
        echo "evidence: $(log_count "$ACCESS_LOG" "$A0" 'method=CONNECT .* sni_check=ok ') tunnels, each with sni_check=ok"
        [[ -z $unchecked ]] || { echo "$unchecked"; return 1; }
    }
    check "1 access log: every tunnel's ClientHello named its CONNECT host (sni_check=ok)" sni_checked_everywhere
    check "1 /metrics: connect requests allowed >= tunnels logged" metric_cmp egress_proxy_requests_total ge \
        "$(log_count "$ACCESS_LOG" "$A0" 'method=CONNECT ')" 'kind="connect"' 'decision="allowed"'
    check "1 /denied is empty" denied_empty

    if [[ $PODMAN_OK == 1 ]]; then
        podman_cmd s1-oi
        run_client s1-podman-oi HTTPS_PROXY="$PROXY_URL" "${PODMAN[@]}" pull "registry.redhat.io/$OI_REF"
        check "1 podman pull registry.redhat.io/$OI_REF succeeds" exits_zero
        check "1 podman: operator-index digest, ID and layers verified" podman_verify s1-oi "registry.redhat.io/$OI_REF" \
            "$WORLD_OPERATOR_INDEX_DIGEST" "$WORLD_OPERATOR_INDEX_CONFIG_DIGEST" "$OI_CONFIG_FILE"
        podman_cmd s1-ubi
        run_client s1-podman-ubi HTTPS_PROXY="$PROXY_URL" "${PODMAN[@]}" pull "registry.access.redhat.com/$UBI_REF"
        check "1 podman pull registry.access.redhat.com/$UBI_REF succeeds" exits_zero
        check "1 podman: ubi-minimal digest, ID and layers verified" podman_verify s1-ubi "registry.access.redhat.com/$UBI_REF" \
            "$WORLD_UBI_DIGEST" "$WORLD_UBI_CONFIG_DIGEST" "$UBI_CONFIG_FILE"
        check "1 /metrics after podman: still nothing denied or failed" metric_cmp egress_proxy_denied_total eq 0
        check "1 /metrics after podman: no SNI mismatch (sni-check = enforce)" metric_cmp egress_proxy_sni_mismatch_total eq 0
        check "1 access log after podman: every tunnel's ClientHello named its CONNECT host" sni_checked_everywhere
    else
        podman_skip "1 podman pull of both images"
    fi
fi
scenario_end

# =============================================================================================
# shared by 2-4: pull with skopeo (and podman), expect a fast failure that names cdn02.quay.io
# and the proxy's phrase; TAG MAX_MS PHRASE [skopeo-only]
failing_pulls() {
    local tag=$1 max_ms=$2 phrase=$3 only=${4:-}
    local url_re='https://cdn02.quay.io/sha256/'"${WORLD_OPERATOR_INDEX_CONFIG_DIGEST#sha256:}"
    run_client "$tag-skopeo" HTTPS_PROXY="$PROXY_URL" "${SKOPEO[@]}" copy \
        "docker://registry.redhat.io/$OI_REF" "dir:$P/skopeo-out"
    check "$SCEN_NAME skopeo copy fails (non-zero exit, not killed by the harness)" exits_nonzero
    check "$SCEN_NAME skopeo failed within $((max_ms / 1000)) s" within_ms "$max_ms"
    check "$SCEN_NAME skopeo error names cdn02.quay.io and the proxy's '$phrase'" says "$phrase" "$url_re"
    SKOPEO_MS=$MS
    PODMAN_MS=
    if [[ $only == skopeo-only ]]; then
        return 0
    elif [[ $PODMAN_OK == 1 ]]; then
        podman_cmd "$tag"
        run_client "$tag-podman" HTTPS_PROXY="$PROXY_URL" "${PODMAN[@]}" pull "registry.redhat.io/$OI_REF"
        check "$SCEN_NAME podman pull fails (non-zero exit)" exits_nonzero
        check "$SCEN_NAME podman failed within $((max_ms / 1000)) s" within_ms "$max_ms"
        check "$SCEN_NAME podman error is the notice's, with the proxy's reason instead of a dial error" \
            says "$phrase" "parsing image configuration: Get \"$url_re"
        PODMAN_MS=$MS
    else
        podman_skip "$SCEN_NAME podman pull"
    fi
}

scenario 2 "allowlist without cdn02.quay.io: refused at once (403)"
if start_proxy s2-no-cdn02 "$ALLOW_NO_CDN02"; then
    failing_pulls s2 $((FAST_FAIL_MAX_S * 1000)) "cdn02.quay.io:443 is not in the egress allowlist"
    eventually "2 /metrics: egress_proxy_denied_total{host=\"cdn02.quay.io\"} >= 1" \
        metric_cmp egress_proxy_denied_total ge 1 'host="cdn02.quay.io"' 'reason="host_not_allowlisted"'
    check "2 /denied lists cdn02.quay.io:443 (denied, host_not_allowlisted)" \
        denied_lists cdn02.quay.io:443 denied host_not_allowlisted
    check "2 access log: CONNECT cdn02.quay.io:443 denied, 403" \
        log_has "$ACCESS_LOG" 0 'method=CONNECT target=cdn02\.quay\.io:443 decision=denied reason=host_not_allowlisted .*status=403 '
    only_cdn02_denied() {
        local others
        others=$(grep 'decision=denied' "$ACCESS_LOG" | grep -v 'target=cdn02\.quay\.io:443 ' || true)
        echo "evidence: $(log_count "$ACCESS_LOG" 0 'decision=denied') denied lines, all for cdn02.quay.io:443"
        [[ -z $others ]] || { echo "$others"; return 1; }
    }
    check "2 access log: only cdn02.quay.io was denied" only_cdn02_denied
fi
scenario_end

scenario 3 "cdn02.quay.io allowed, its server down (connect refused): 502"
if start_proxy s3-cdn02-refused "$ALLOW_FULL" \
    "egress-proxy.destinations.connect-to { \"cdn02.quay.io:443\" = \"127.0.0.1:$WORLD_REFUSED_PORT\" }"; then
    failing_pulls s3 $((FAST_FAIL_MAX_S * 1000)) "cdn02.quay.io:443 is unreachable: connection refused"
    eventually "3 /metrics: egress_proxy_upstream_failures_total{cause=\"refused\",host=\"cdn02.quay.io\"} >= 1" \
        metric_cmp egress_proxy_upstream_failures_total ge 1 'cause="refused"' 'host="cdn02.quay.io"'
    check "3 /denied lists cdn02.quay.io:443 (upstream_failure, refused)" \
        denied_lists cdn02.quay.io:443 upstream_failure refused
    check "3 access log: CONNECT cdn02.quay.io:443 allowed, 502 upstream_refused" \
        log_has "$ACCESS_LOG" 0 'method=CONNECT target=cdn02\.quay\.io:443 decision=allowed .*status=502 .*error=upstream_refused '
fi
scenario_end

# blackhole_checks TAG: the timeout assertions of scenario 4 (after failing_pulls)
blackhole_checks() {
    local attempts limit
    eventually "$SCEN_NAME /metrics: egress_proxy_upstream_failures_total{cause=\"timeout\",host=\"cdn02.quay.io\"} >= 1" \
        metric_cmp egress_proxy_upstream_failures_total ge 1 'cause="timeout"' 'host="cdn02.quay.io"'
    attempts=$(log_count "$ACCESS_LOG" 0 'target=cdn02\.quay\.io:443 .*status=504 .*error=upstream_timeout ')
    check "$SCEN_NAME access log: CONNECT cdn02.quay.io:443 allowed, 504 upstream_timeout after ~${CONNECT_TIMEOUT_S} s" \
        log_has "$ACCESS_LOG" 0 "method=CONNECT target=cdn02\.quay\.io:443 decision=allowed .*status=504 .*error=upstream_timeout .*duration_ms=${CONNECT_TIMEOUT_S}[0-9]{3}"
    check "$SCEN_NAME /denied lists cdn02.quay.io:443 (upstream_failure, timeout)" \
        denied_lists cdn02.quay.io:443 upstream_failure timeout
    # every client attempt costs one connect timeout; the clients' total must fit in
    # attempts x connect timeout (+ slack), far below the 30 s per dial of a direct client
    limit=$((attempts * CONNECT_TIMEOUT_S * 1000 + 4000))
    timing() {
        local total=$((SKOPEO_MS + ${PODMAN_MS:-0}))
        echo "evidence: $attempts timed-out CONNECT(s) in the access log, i.e. one per client; skopeo took $SKOPEO_MS ms${PODMAN_MS:+, podman $PODMAN_MS ms}"
        echo "evidence: limit $attempts x ${CONNECT_TIMEOUT_S} s + 4 s = $limit ms; a direct client would wait $attempts x ${DIRECT_DIAL_TIMEOUT_S} s x its retries"
        [[ $attempts -ge 1 && $total -le $limit && $SKOPEO_MS -ge $((CONNECT_TIMEOUT_S * 1000 - 100)) ]]
    }
    check "$SCEN_NAME pulls failed within connect timeout x attempts (and did wait for the timeout)" timing
}

scenario 4 "cdn02.quay.io blackholed (SYNs dropped): 504 after the proxy's ${CONNECT_TIMEOUT_S} s connect timeout"
# The timeout path alone: with fast-fail on, podman (after skopeo) would be answered at once
# (scenario 7 shows that).
if start_proxy s4-cdn02-blackhole "$ALLOW_FULL" \
    "egress-proxy.destinations.connect-to { \"cdn02.quay.io:443\" = \"127.0.0.1:$WORLD_BLACKHOLE_PORT\" }
egress-proxy.upstream.fast-fail.enabled = false"; then
    failing_pulls s4 $((FAST_FAIL_MAX_S * 1000)) "cdn02.quay.io:443 did not answer within ${CONNECT_TIMEOUT_S}s (connect timeout)"
    blackhole_checks
fi
scenario_end

scenario 4b "cdn02.quay.io behind an iptables DROP rule (the firewall of the vendor notice): 504"
if [[ -z $NS ]]; then
    skip "4b iptables DROP: no private network namespace, and this suite never touches the machine's own firewall"
elif ! PATH=$CLEAN_PATH command -v iptables >/dev/null 2>&1; then
    skip_missing "4b iptables DROP: iptables is not installed (e2e/world.sh deps installs it)"
else
    DROP_PORT=$(free_ports 1)
    if in_ns iptables -w 5 -A INPUT -i lo -p tcp --dport "$DROP_PORT" -j DROP 2>"$OUT/iptables.out"; then
        note "iptables -A INPUT -i lo -p tcp --dport $DROP_PORT -j DROP (inside $NS)"
        if start_proxy s4b-cdn02-dropped "$ALLOW_FULL" \
            "egress-proxy.destinations.connect-to { \"cdn02.quay.io:443\" = \"127.0.0.1:$DROP_PORT\" }
egress-proxy.upstream.fast-fail.enabled = false"; then
            failing_pulls s4b $((FAST_FAIL_MAX_S * 1000)) \
                "cdn02.quay.io:443 did not answer within ${CONNECT_TIMEOUT_S}s (connect timeout)" skopeo-only
            blackhole_checks
        fi
        in_ns iptables -w 5 -D INPUT -i lo -p tcp --dport "$DROP_PORT" -j DROP || true
    else
        skip "4b iptables DROP: iptables fails in the namespace: $(tail -n 1 "$OUT/iptables.out")"
    fi
fi
scenario_end

# =============================================================================================
scenario 5 "plain HTTP through HTTP_PROXY: the 302 and the CDN GET pass through the proxy"
# The allowlist names the six hosts on port 80 only: a CONNECT to :443 is refused, so no TLS is
# spoken at all in this scenario and every request is a plain-HTTP proxy request we can log.
if start_proxy s5-http "$ALLOW_HTTP_ONLY"; then
    # 5a: curl -x walks the redirect of every blob by hand
    for e in $WORLD_BLOB_CDN_HOSTS; do
        d=${e%%=*} h=${e#*=} repo=$WORLD_OPERATOR_INDEX_REPO
        [[ $d != "$WORLD_UBI_CONFIG_DIGEST" ]] || repo=$WORLD_UBI_REPO
        A0=$(log_lines "$ACCESS_LOG")
        run_client "s5-curl-${d:7:12}" curl -sS --max-time 20 -x "$PROXY_URL" -L -D "$P/h-${d:7:12}" -o "$P/b-${d:7:12}" \
            -w '%{http_code} %{num_redirects} %{url_effective}\n' "http://registry.redhat.io/v2/$repo/blobs/$d"
        curl_walk() {
            local first
            first=$(tr -d '\r' <"$P/h-${d:7:12}" | sed -n 1p)
            grep -qE "^200 1 http://$(re "$h")/sha256/${d#sha256:}\?grant=" "$CO" || { echo "curl: $(cat "$CO")"; return 1; }
            [[ $first == "HTTP/1.1 302"* ]] || { echo "first answer: $first"; return 1; }
            tr -d '\r' <"$P/h-${d:7:12}" | grep -qiE "^location: http://$(re "$h")/sha256/${d#sha256:}\?grant=" || { echo "no Location to $h"; return 1; }
            tr -d '\r' <"$P/h-${d:7:12}" | grep -qi '^via: .*egress-proxy' || { echo "no Via: egress-proxy on the 302"; return 1; }
            [[ sha256:$(sha256sum <"$P/b-${d:7:12}" | cut -c1-64) == "$d" ]] || { echo "blob sha256 mismatch"; return 1; }
            echo "evidence: $first (Via egress-proxy) -> $(cut -c1-90 <"$CO")... sha256 ok"
        }
        check "5 curl -x: http://registry.redhat.io blob ${d:7:12} -> 302 -> http://$h -> 200, sha256 ok" curl_walk
        eventually "5 access log: GET registry.redhat.io blob ${d:7:12} 302, then GET $h 200" \
            log_order "$ACCESS_LOG" "$A0" \
            "method=GET target=registry\.redhat\.io:80 url=http://registry\.redhat\.io/v2/$(re "$repo")/blobs/$d decision=allowed .*status=302 " \
            "method=GET target=$(re "$h"):80 url=http://$(re "$h")/sha256/${d#sha256:} decision=allowed .*status=200 "
    done

    # 5b: skopeo. containers/image tries https first even for a registry marked insecure and
    # falls back to http when that fails; the proxy refuses the CONNECT (:443 is not allowlisted),
    # so the fallback happens and nothing is left to an unverified TLS connection.
    cat >"$P/registries.conf" <<'EOF'
# e2e/run.sh scenario 5: registry.redhat.io may be reached over plain HTTP
unqualified-search-registries = []
[[registry]]
location = "registry.redhat.io"
insecure = true
EOF
    A0=$(log_lines "$ACCESS_LOG")
    N0=$(log_lines "$WORLD_NGINX_ACCESS_LOG")
    run_client s5-skopeo HTTP_PROXY="$PROXY_URL" HTTPS_PROXY="$PROXY_URL" "${SKOPEO[@]}" \
        --registries-conf "$P/registries.conf" copy "docker://registry.redhat.io/$OI_REF" "dir:$P/skopeo-out"
    N1=$(log_lines "$WORLD_NGINX_ACCESS_LOG")
    check "5 skopeo copy over plain HTTP (registries.conf insecure=true, HTTP_PROXY) succeeds" exits_zero
    check "5 skopeo: layer digests verified" verify_dir "$P/skopeo-out" \
        "$WORLD_OPERATOR_INDEX_MANIFEST_DIGEST" "$WORLD_OPERATOR_INDEX_CONFIG_DIGEST" "$WORLD_OPERATOR_INDEX_LAYERS"
    eventually "5 access log: skopeo's https attempt (CONNECT registry.redhat.io:443) was refused" \
        log_has "$ACCESS_LOG" "$A0" 'method=CONNECT target=registry\.redhat\.io:443 decision=denied .*status=403 '
    no_tunnel() {
        local n
        n=$(log_count "$ACCESS_LOG" "$A0" 'method=CONNECT .*decision=allowed')
        echo "evidence: $n CONNECT tunnels allowed; $(nginx_seg "$N0" "$N1" | awk '$3 == "https"' | wc -l) https requests at the world's nginx"
        [[ $n == 0 ]] && ! nginx_seg "$N0" "$N1" | awk '$3 == "https" { f = 1 } END { exit !f }'
    }
    check "5 no TLS at all: no tunnel opened, the world's nginx saw only plain HTTP" no_tunnel
    for e in $WORLD_BLOB_CDN_HOSTS; do
        d=${e%%=*} h=${e#*=}
        [[ $d != "$WORLD_UBI_CONFIG_DIGEST" ]] || continue
        check "5 access log (skopeo): blob ${d:7:12} 302 from registry.redhat.io, and GET http://$h 200" \
            log_both "$ACCESS_LOG" "$A0" \
            "method=GET target=registry\.redhat\.io:80 url=http://registry\.redhat\.io/v2/$(re "$WORLD_OPERATOR_INDEX_REPO")/blobs/$d .*status=302 " \
            "method=GET target=$(re "$h"):80 url=http://$(re "$h")/sha256/${d#sha256:} decision=allowed .*status=200 "
    done
    check "5 /metrics: plain-HTTP requests allowed >= 10" metric_cmp egress_proxy_requests_total ge 10 'kind="http"' 'decision="allowed"'
fi
scenario_end

# =============================================================================================
scenario 6 "strace: every TCP connect() the client made went to the proxy"
# inet_connects FILE ADDR PORT: every AF_INET/AF_INET6 connect() in the strace output went to
# ADDR:PORT (AF_UNIX and other families are ignored); at least one was made
inet_connects() {
    "$PY" - "$@" <<'EOF'
import re, sys
path, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
inet = []; other = 0; bad = []
for line in open(path, errors="replace"):
    if "connect(" not in line or "resumed>" in line.split("connect(")[0]:
        continue
    m = re.search(r"connect\(\d+, \{sa_family=(AF_\w+)(.*)", line)
    if not m:
        continue
    fam, rest = m.groups()
    if fam == "AF_INET":
        a = re.search(r'sin_addr=inet_addr\("([^"]+)"\)', rest); p = re.search(r"sin_port=htons\((\d+)\)", rest)
    elif fam == "AF_INET6":
        a = re.search(r'inet_pton\(AF_INET6, "([^"]+)"', rest); p = re.search(r"sin6_port=htons\((\d+)\)", rest)
    else:
        other += 1
        continue
    dest = (a.group(1) if a else "?", int(p.group(1)) if p else -1)
    inet.append(dest)
    if dest != (addr, port):
        bad.append(f"{fam} {dest[0]}:{dest[1]}: {line.strip()[:200]}")
print(f"evidence: {len(inet)} AF_INET/AF_INET6 connect() calls, {len(inet) - len(bad)} to {addr}:{port}; "
      f"{other} of other families (AF_UNIX, ...) ignored")
for b in bad[:10]:
    print("not to the proxy:", b)
sys.exit(0 if inet and not bad else 1)
EOF
}
if start_proxy s6-strace "$ALLOW_FULL"; then
    A0=$(log_lines "$ACCESS_LOG")
    CLIENT_WRAP=(strace -f -qq -e trace=connect -e signal=none -o "$P/strace-skopeo.txt")
    run_client s6-skopeo HTTPS_PROXY="$PROXY_URL" "${SKOPEO[@]}" copy "docker://registry.redhat.io/$OI_REF" "dir:$P/skopeo-out"
    CLIENT_WRAP=()
    check "6 skopeo copy under strace succeeds" exits_zero
    check "6 every AF_INET/AF_INET6 connect() of skopeo went to the proxy 127.0.0.1:$PROXY_PORT" \
        inet_connects "$P/strace-skopeo.txt" 127.0.0.1 "$PROXY_PORT"
    tunnels_vs_connects() {
        local t c
        t=$(log_count "$ACCESS_LOG" "$A0" 'method=CONNECT .*decision=allowed .*status=200 ')
        c=$(grep -cE 'connect\([0-9]+, \{sa_family=AF_INET6?, ' "$P/strace-skopeo.txt" || true)
        echo "evidence: $t tunnels in the proxy's access log, $c inet connect() calls by the client"
        [[ $t -ge 5 && $c -ge $t ]]
    }
    eventually "6 the proxy logged a tunnel for each of the client's connections (registry + 4 CDN hosts at least)" tunnels_vs_connects
    if [[ $PODMAN_OK == 1 ]]; then
        podman_cmd s6
        CLIENT_WRAP=(strace -f -qq -e trace=connect -e signal=none -o "$P/strace-podman.txt")
        run_client s6-podman HTTPS_PROXY="$PROXY_URL" "${PODMAN[@]}" pull "registry.access.redhat.com/$UBI_REF"
        CLIENT_WRAP=()
        check "6 podman pull under strace succeeds" exits_zero
        check "6 every AF_INET/AF_INET6 connect() of podman went to the proxy 127.0.0.1:$PROXY_PORT" \
            inet_connects "$P/strace-podman.txt" 127.0.0.1 "$PROXY_PORT"
    else
        podman_skip "6 podman under strace"
    fi
    check "6 /metrics: egress_proxy_sni_mismatch_total = 0 (sni-check = enforce)" metric_cmp egress_proxy_sni_mismatch_total eq 0
    # negative control: a client that does not use the proxy must be caught by the same check
    CLIENT_WRAP=(strace -f -qq -e trace=connect -e signal=none -o "$P/strace-direct.txt")
    run_client s6-direct "${SKOPEO[@]}" copy --src-cert-dir "$WORLD_CERT_DIR" \
        "docker://$WORLD_ORIGIN/$UBI_REF" "dir:$P/direct-out"
    CLIENT_WRAP=()
    caught() {
        [[ $RC == 0 ]] || { echo "the direct pull itself failed (exit $RC)"; return 1; }
        if inet_connects "$P/strace-direct.txt" 127.0.0.1 "$PROXY_PORT" >"$P/direct-check.txt"; then
            cat "$P/direct-check.txt"; echo "the check did not notice a direct connection"; return 1
        fi
        echo "evidence: $(grep -m 1 '^not to the proxy' "$P/direct-check.txt" | cut -c1-120)"
        grep -q "^not to the proxy: AF_INET 127.0.0.1:$WORLD_ORIGIN_PORT:" "$P/direct-check.txt"
    }
    check "6 negative control: a direct pull from $WORLD_ORIGIN (no proxy) is flagged by the same check" caught
fi
scenario_end

# =============================================================================================
# 7: fast-fail with the shipped defaults (timeouts.connect = 10s, upstream.fast-fail: 1 timeout,
# 15 s cool-down). cdn02.quay.io is pinned to a blackhole of its own; the pull is attempted three
# times in a row (a client or CI job that retries; neither skopeo nor podman retries a proxy's
# 504 by itself, see scenario 4), then podman pulls; then the CDN host comes back on the same
# address and port, and a pull must succeed within one cool-down.
SHIPPED_CONNECT_S=10
SHIPPED_COOL_DOWN_S=15
SKOPEO_3_MAX_S=12
scenario 7 "fast-fail, shipped defaults: cdn02.quay.io blackholed (3 skopeo attempts <= ${SKOPEO_3_MAX_S} s, podman <= ${SHIPPED_CONNECT_S} s), then back within one cool-down"
BH7_PORT=$(free_ports 1)
start_helper() { # LOG CMD...: a background helper in the namespace, stopped by stop_helpers
    local log=$1
    shift
    if [[ -n $NS ]]; then
        ip netns exec "$NS" setsid "$@" >"$log" 2>&1 &
    else
        setsid "$@" >"$log" 2>&1 &
    fi
    HELPER_PIDS+=($!)
}
wait_ready() { # LOG: until the helper printed "ready"
    local i
    for ((i = 0; i < 100; i++)); do grep -q '^ready' "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
start_helper "$RUN/s7-blackhole.log" "$PY" "$HERE/blackhole.py" 127.0.0.1 "$BH7_PORT" "$RUN" </dev/null
if ! wait_ready "$RUN/s7-blackhole.log"; then
    fail "7 blackhole on 127.0.0.1:$BH7_PORT did not start: $(tail -n 1 "$RUN/s7-blackhole.log")"
elif SHIPPED_TIMEOUTS=1 start_proxy s7-fast-fail "$ALLOW_FULL" \
    "egress-proxy.destinations.connect-to { \"cdn02.quay.io:443\" = \"127.0.0.1:$BH7_PORT\" }"; then
    note "blackhole for cdn02.quay.io:443 on 127.0.0.1:$BH7_PORT; no timeouts or upstream keys in $P/proxy.conf: the shipped defaults"
    t0=$(now_ms)
    attempt_ms=()
    for i in 1 2 3; do
        run_client "s7-skopeo-$i" HTTPS_PROXY="$PROXY_URL" "${SKOPEO[@]}" copy --retry-times 3 \
            "docker://registry.redhat.io/$OI_REF" "dir:$P/skopeo-out-$i"
        attempt_ms+=("$MS")
    done
    SKOPEO3_MS=$(($(now_ms) - t0))
    three_attempts() {
        echo "evidence: 3 skopeo attempts took $SKOPEO3_MS ms in all (${attempt_ms[*]} ms each; limit ${SKOPEO_3_MAX_S} s; without fast-fail 3 x ${SHIPPED_CONNECT_S} s)"
        grep -qF "cdn02.quay.io:443 did not answer within ${SHIPPED_CONNECT_S}s (connect timeout)" "$OUT/s7-skopeo-1.out" ||
            { echo "attempt 1 lacks the connect timeout: $(tail -n 1 "$OUT/s7-skopeo-1.out")"; return 1; }
        for i in 2 3; do
            grep -qE "cdn02\.quay\.io:443 timed out [0-9.]+s ago; not retried for another [0-9]+s \(fast-fail\)" "$OUT/s7-skopeo-$i.out" ||
                { echo "attempt $i was not fast-failed: $(tail -n 1 "$OUT/s7-skopeo-$i.out")"; return 1; }
        done
        echo "evidence: attempt 2 said: $(grep -oE 'cdn02\.quay\.io:443 timed out [^"]*\(fast-fail\)' "$OUT/s7-skopeo-2.out" | tail -n 1)"
        [[ ${attempt_ms[0]} -ge $((SHIPPED_CONNECT_S * 1000 - 100)) && $SKOPEO3_MS -le $((SKOPEO_3_MAX_S * 1000)) ]]
    }
    check "7 three skopeo attempts failed within ${SKOPEO_3_MAX_S} s: the first waited the connect timeout, the others were fast-failed" three_attempts
    if [[ $PODMAN_OK == 1 ]]; then
        podman_cmd s7
        run_client s7-podman HTTPS_PROXY="$PROXY_URL" "${PODMAN[@]}" pull "registry.redhat.io/$OI_REF"
        check "7 podman pull fails (non-zero exit)" exits_nonzero
        check "7 podman failed within the connect timeout (${SHIPPED_CONNECT_S} s)" within_ms $((SHIPPED_CONNECT_S * 1000))
        check "7 podman error is the notice's, with the fast-fail reason" \
            says "(fast-fail)" "parsing image configuration: Get \"https://cdn02.quay.io/sha256/"
    else
        podman_skip "7 podman pull"
    fi
    check "7 /metrics: egress_proxy_upstream_fast_fail{host=\"cdn02.quay.io\"} = 1" \
        metric_cmp egress_proxy_upstream_fast_fail eq 1 'host="cdn02.quay.io"'
    eventually "7 /metrics: egress_proxy_upstream_failures_total{cause=\"unreachable_recently\",host=\"cdn02.quay.io\"} >= 2" \
        metric_cmp egress_proxy_upstream_failures_total ge 2 'cause="unreachable_recently"' 'host="cdn02.quay.io"'
    check "7 /metrics: exactly one connect timeout to cdn02.quay.io (the other attempts did not dial)" \
        metric_cmp egress_proxy_upstream_failures_total eq 1 'cause="timeout"' 'host="cdn02.quay.io"'
    check "7 /denied lists cdn02.quay.io:443 (upstream_failure, unreachable_recently)" \
        denied_lists cdn02.quay.io:443 upstream_failure unreachable_recently
    check "7 access log: CONNECT cdn02.quay.io:443 allowed, 504 upstream_unreachable_recently" \
        log_has "$ACCESS_LOG" 0 'method=CONNECT target=cdn02\.quay\.io:443 decision=allowed .*status=504 .*error=upstream_unreachable_recently'

    # The CDN host comes back on the same address and port: the blackhole goes, and a relay to
    # the world's nginx (which serves cdn02.quay.io) takes its port.
    stop_helpers
    cat >"$RUN/s7-relay.py" <<'RELAY'
import socket, sys, threading
listen_port, to_port = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(64)
print("ready", flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    u = socket.create_connection(("127.0.0.1", to_port))
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
RELAY
    start_helper "$RUN/s7-relay.log" "$PY" "$RUN/s7-relay.py" "$BH7_PORT" "$WORLD_TLS_PORT" </dev/null
    if ! wait_ready "$RUN/s7-relay.log"; then
        fail "7 relay on 127.0.0.1:$BH7_PORT did not start: $(tail -n 3 "$RUN/s7-relay.log")"
    else
        back_ms=$(now_ms)
        tries=0
        while :; do
            tries=$((tries + 1))
            run_client "s7-back-skopeo-$tries" HTTPS_PROXY="$PROXY_URL" "${SKOPEO[@]}" copy \
                "docker://registry.redhat.io/$OI_REF" "dir:$P/skopeo-back-$tries"
            [[ $RC == 0 ]] && break
            [[ $(($(now_ms) - back_ms)) -gt $(((SHIPPED_COOL_DOWN_S + SHIPPED_CONNECT_S + 5) * 1000)) ]] && break
            sleep 1
        done
        BACK_MS=$(($(now_ms) - back_ms))
        came_back() {
            echo "evidence: the pull succeeded $BACK_MS ms after cdn02.quay.io came back (attempt $tries, one a second; limit one cool-down, ${SHIPPED_COOL_DOWN_S} s, + 3 s for the pull)"
            [[ $RC == 0 && $BACK_MS -le $(((SHIPPED_COOL_DOWN_S + 3) * 1000)) ]]
        }
        check "7 a pull succeeds within one cool-down of cdn02.quay.io coming back" came_back
        check "7 that pull's image is the expected one (digests verified)" \
            verify_dir "$P/skopeo-back-$tries" "$WORLD_OPERATOR_INDEX_MANIFEST_DIGEST" "$WORLD_OPERATOR_INDEX_CONFIG_DIGEST" "$WORLD_OPERATOR_INDEX_LAYERS"
        check "7 /metrics: egress_proxy_upstream_fast_fail{host=\"cdn02.quay.io\"} = 0 again" \
            metric_cmp egress_proxy_upstream_fast_fail eq 0 'host="cdn02.quay.io"'
    fi
fi
stop_helpers
scenario_end

scenario 8 "egress-proxy check image and check hosts: the gap named before anyone pulls"
CHECK=(java -jar "$JAR" check)
if start_proxy s8-full "$ALLOW_FULL"; then
    N0=$(log_lines "$WORLD_NGINX_ACCESS_LOG")
    run_client s8-image-full "${CHECK[@]}" image "registry.redhat.io/$OI_REF" --proxy "$PROXY_URL" --ca-file "$WORLD_CA"
    N1=$(log_lines "$WORLD_NGINX_ACCESS_LOG")
    check "8 check image, every CDN host allowed: exit 0" exits_zero
    check "8 check image lists the registry and every CDN host the pull touches, each admitted" says \
        "PASS: a pull of registry.redhat.io/$OI_REF" "registry.redhat.io:443  registry" \
        "cdn.quay.io:443" "cdn01.quay.io:443" "cdn02.quay.io:443" "cdn03.quay.io:443"
    one_byte_each() { # the CDN served each of the 4 blobs as a 206 of 1 byte (Range: bytes=0-0), nothing more
        local seg n all
        seg=$(nginx_seg "$N0" "$N1" | grep -E 'host="cdn[0-9]*\.quay\.io" "GET /sha256/') || { echo "no CDN GET in the nginx log"; return 1; }
        all=$(wc -l <<<"$seg")
        n=$(grep -cE '" 206 1 ' <<<"$seg" || true)
        echo "evidence: $n of $all CDN blob GETs answered 206 with 1 byte"
        [[ $n == 4 && $all == 4 ]]
    }
    check "8 check image downloaded no blob: one byte from the CDN per blob" one_byte_each
    run_client s8-hosts-full "${CHECK[@]}" hosts --config "$P/proxy.conf" --ca-file "$WORLD_CA"
    check "8 check hosts with the full preset: every host PASS through connect-to, exit 0" exits_zero
    check "8 check hosts names each host with its certificate" says "cdn02.quay.io:443" "6 passed, 0 failed"
fi
if start_proxy s8-no-cdn02 "$ALLOW_NO_CDN02"; then
    run_client s8-image-no-cdn02 "${CHECK[@]}" image "registry.redhat.io/$OI_REF" --proxy "$PROXY_URL" --ca-file "$WORLD_CA"
    check "8 check image without cdn02.quay.io in the allowlist: exit 1" exits_one
    check "8 check image names the host to add" says "pull needs cdn02.quay.io:443, not in the allowlist"
    needs_json() { # the --json document says the pull fails and needs exactly cdn02.quay.io:443
        client "${CHECK[@]}" image "registry.redhat.io/$UBI_REF" --proxy "$PROXY_URL" --ca-file "$WORLD_CA" --json \
            >"$OUT/s8-image-no-cdn02.json" 2>&1 || true
        "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("evidence: pull_works", d["pull_works"], "needs", d["needs"])
sys.exit(0 if d["pull_works"] is False and d["needs"] == ["pull needs cdn02.quay.io:443, not in the allowlist"] else 1)' "$OUT/s8-image-no-cdn02.json"
    }
    check "8 check image --json: pull_works false, needs exactly cdn02.quay.io:443" needs_json
fi
if start_proxy s8-cdn02-blackhole "$ALLOW_FULL" \
    "egress-proxy.destinations.connect-to { \"cdn02.quay.io:443\" = \"127.0.0.1:$WORLD_BLACKHOLE_PORT\" }"; then
    run_client s8-image-blackhole "${CHECK[@]}" image "registry.redhat.io/$OI_REF" --proxy "$PROXY_URL" --ca-file "$WORLD_CA"
    check "8 check image with cdn02.quay.io blackholed: exit 1" exits_one
    check "8 check image names the host and the proxy's connect timeout" says \
        "pull needs cdn02.quay.io:443, which the proxy could not reach: 504 cdn02.quay.io:443 did not answer within ${CONNECT_TIMEOUT_S}s (connect timeout)"
    check "8 check image asked the blackholed host once (one connect timeout, not one per blob)" within_ms $(((CONNECT_TIMEOUT_S + 5) * 1000))
    run_client s8-hosts-blackhole "${CHECK[@]}" hosts --config "$P/proxy.conf" --ca-file "$WORLD_CA"
    check "8 check hosts with cdn02.quay.io blackholed: exit 1" exits_one
    check "8 check hosts: cdn02.quay.io FAIL, timed out" says "connect timed out after ${CONNECT_TIMEOUT_S}s" "5 passed, 1 failed"
fi
scenario_end

# =============================================================================================
# 9: the corporate edge (issue 19): the new features together. skopeo and podman reach the proxy
# through HAProxy (mode tcp, send-proxy-v2), over TLS (HTTPS_PROXY=https://user:pass@...), as an
# authenticated user whose policy admits the registry and CDN names; the registry names go
# direct (connect-to), the CDN names through a real parent Squid with Basic auth of its own.
# Squid has no connect-to: it resolves the CDN names through its hosts_file to 127.0.0.1, and an
# iptables nat rule in the namespace redirects 127.0.0.1:443 to the world's TLS port.
S9_USER=corp-ci S9_PASS=ci-s3cret S9_POLICY=corp-edge
S9_PARENT_USER=egress-parent S9_PARENT_PASS=parent-s3cret
S9_HAPROXY_SRC=127.0.0.3   # HAProxy's own address towards the proxy; the clients come from 127.0.0.1
S9_DENIED_HOST=registry.connect.redhat.com
NCSA=/usr/lib/squid/basic_ncsa_auth
scenario 9 "corporate edge: HAProxy (PROXY v2) -> TLS listener + proxy auth + policy -> CDN hosts via a parent Squid with auth"
scenario9() {
    local missing=() t
    for t in squid haproxy htpasswd iptables; do PATH=$CLEAN_PATH command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    [[ -x $NCSA ]] || missing+=("$NCSA")
    if [[ ${#missing[@]} -gt 0 ]]; then
        skip_missing "9 corporate edge: not installed: ${missing[*]} (scripts/install-test-deps.sh installs squid, haproxy and apache2-utils)"
        return 0
    fi
    if [[ -z $NS ]]; then
        skip "9 corporate edge: needs the private network namespace (Squid reaches the world through an iptables nat rule on 127.0.0.1:443, which must not touch this machine's firewall)"
        return 0
    fi
    local d=$RUN/s9-setup ports squid_port ha_port
    mkdir -p "$d"
    mapfile -t ports < <(free_ports 2)
    squid_port=${ports[0]} ha_port=${ports[1]}

    # --- the parent: Squid with basic_ncsa_auth, names from its hosts_file ---
    # Squid started as root runs as "proxy", which cannot enter $RUN (mode 0700): a directory of its own.
    SQUID_DIR=$(mktemp -d /tmp/egress-e2e-squid.XXXXXX)
    chmod 777 "$SQUID_DIR"
    htpasswd -b -c -m "$SQUID_DIR/htpasswd" "$S9_PARENT_USER" "$S9_PARENT_PASS" 2>"$d/htpasswd-squid.log"
    chmod 644 "$SQUID_DIR/htpasswd"
    echo "127.0.0.1 $WORLD_CDN_NAMES" >"$SQUID_DIR/hosts"
    cat >"$SQUID_DIR/squid.conf" <<EOF
# generated by e2e/run.sh for scenario 9: the corporate parent proxy
http_port 127.0.0.1:$squid_port
visible_hostname corp-parent-squid
pid_filename $SQUID_DIR/squid.pid
cache_log $SQUID_DIR/cache.log
access_log stdio:$SQUID_DIR/access.log squid
hosts_file $SQUID_DIR/hosts
dns_nameservers 127.0.0.1
cache deny all
cache_effective_user proxy
coredump_dir $SQUID_DIR
shutdown_lifetime 0 seconds
connect_timeout 5 seconds
auth_param basic program $NCSA $SQUID_DIR/htpasswd
auth_param basic realm corp-parent
acl SSL_ports port 443
acl CONNECT method CONNECT
acl authenticated proxy_auth REQUIRED
http_access deny CONNECT !SSL_ports
http_access allow authenticated
http_access deny all
EOF
    S9_NAT_RULE=(OUTPUT -o lo -p tcp -d 127.0.0.1 --dport 443 -j REDIRECT --to-ports "$WORLD_TLS_PORT")
    if ! ip netns exec "$NS" iptables -t nat -A "${S9_NAT_RULE[@]}" 2>"$d/iptables.log"; then
        S9_NAT_RULE=()
        fail "9 iptables nat rule in the namespace (127.0.0.1:443 -> :$WORLD_TLS_PORT): $(tr '\n' ' ' <"$d/iptables.log")"
        return 0
    fi
    start_helper "$d/squid.out" squid -N -f "$SQUID_DIR/squid.conf" </dev/null
    port_open() { in_ns "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1"; }
    local i
    for ((i = 0; i < 150; i++)); do port_open "$squid_port" 2>/dev/null && break; sleep 0.1; done
    if ! port_open "$squid_port" 2>/dev/null; then
        fail "9 Squid did not listen on 127.0.0.1:$squid_port within 15 s"
        cat "$d/squid.out" "$SQUID_DIR/cache.log" 2>/dev/null | tail -n 8 | sed 's/^/      | /'
        return 0
    fi
    note "parent Squid $(squid -v | sed -n 's/^Squid Cache: //p') on 127.0.0.1:$squid_port (basic auth, hosts_file; 127.0.0.1:443 -> :$WORLD_TLS_PORT by iptables nat in $NS)"

    # --- the proxy: TLS listener (a certificate for 127.0.0.1 from the world's CA, which the
    # clients trust), PROXY v2 from HAProxy's address only, bcrypt users, the user's policy, the
    # parent for *.quay.io. Only the registry names are pinned: a pinned name always goes direct.
    if ! { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/tls.key" -out "$d/tls.csr" \
        -subj "/O=egress-proxy e2e/CN=127.0.0.1" 2>"$d/openssl.log" &&
        openssl x509 -req -sha256 -days 2 -in "$d/tls.csr" -CA "$WORLD_RUNDIR/ca/ca.pem" -CAkey "$WORLD_RUNDIR/ca/ca.key" \
            -set_serial "0x$(openssl rand -hex 12)" -out "$d/tls.crt" \
            -extfile <(printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n') \
            2>>"$d/openssl.log"; }; then
        fail "9 proxy certificate for 127.0.0.1: $(tail -n 2 "$d/openssl.log")"
        return 0
    fi
    htpasswd -b -c -B -C 10 "$d/users" "$S9_USER" "$S9_PASS" 2>"$d/htpasswd-users.log"
    printf '%s\n' "$S9_PARENT_PASS" >"$d/parent.password"
    chmod 600 "$d/parent.password"
    local n hosts=
    {
        echo "# generated by e2e/run.sh for scenario 9: only the registry names are pinned"
        echo "egress-proxy.destinations.connect-to {"
        for n in $WORLD_REGISTRY_NAMES; do printf '  "%s:443" = "127.0.0.1:%s"\n' "$n" "$WORLD_TLS_PORT"; done
        echo "}"
    } >"$d/connect-to.conf"
    for n in $ALL_NAMES; do hosts+="\"$n\", "; done
    local extra
    extra=$(cat <<EOF
egress-proxy {
  listen {
    tls { certificate = "$d/tls.crt", private-key = "$d/tls.key" }
    proxy-protocol = "v2"
    proxy-protocol-from = ["$S9_HAPROXY_SRC/32"]   # HAProxy only
  }
  auth.basic.users-file = "$d/users"
  # the pull's names are admitted by the user's policy alone: the top-level allowlist has none of them
  policies = [
    { name = "$S9_POLICY", users = ["$S9_USER"], allowlist { hosts = [${hosts%, }] } }
  ]
  upstream-proxy {
    url = "http://127.0.0.1:$squid_port"
    user = "$S9_PARENT_USER"
    password-file = "$d/parent.password"
    hosts = ["*.quay.io"]
  }
  destinations.allow-private = ["127.0.0.1/32"]   # the parent's address
}
EOF
)
    CONNECT_TO_CONF=$d/connect-to.conf start_proxy s9-corporate-edge 'presets = [], hosts = ["nothing-here.invalid"]' "$extra" ||
        return 0
    local proxy_port=$PROXY_PORT

    # --- HAProxy in front: mode tcp, send-proxy-v2, from its own address ---
    cat >"$P/haproxy.cfg" <<EOF
# generated by e2e/run.sh for scenario 9: the L4 load balancer in front of the proxy
global
    log stdout format raw local0 info
    pidfile $P/haproxy.pid
defaults
    mode tcp
    log global
    log-format "haproxy client=%ci:%cp frontend=%fi:%fp backend_src=%bi:%bp server=%si:%sp bytes_down=%B duration_ms=%Tt term=%ts"
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend corp_edge
    bind 127.0.0.1:$ha_port
    default_backend egress_proxy
backend egress_proxy
    server proxy 127.0.0.1:$proxy_port send-proxy-v2 source $S9_HAPROXY_SRC
EOF
    start_helper "$P/haproxy.log" haproxy -db -f "$P/haproxy.cfg" </dev/null
    for ((i = 0; i < 100; i++)); do port_open "$ha_port" 2>/dev/null && break; sleep 0.1; done
    port_open "$ha_port" 2>/dev/null || { fail "9 HAProxy did not listen on 127.0.0.1:$ha_port: $(tail -n 3 "$P/haproxy.log")"; return 0; }
    note "$(haproxy -v | head -n 1 | cut -d' ' -f1-3) on 127.0.0.1:$ha_port -> proxy (TLS) 127.0.0.1:$proxy_port, send-proxy-v2, source $S9_HAPROXY_SRC"
    local edge="https://$S9_USER:$S9_PASS@127.0.0.1:$ha_port"

    # --- the pulls ---
    local A0
    A0=$(log_lines "$ACCESS_LOG")
    verified_pulls 9 "$edge" "through HAProxy, TLS and proxy auth" "through the corporate edge"
    # The checks below read the access log from A0 to its end: they run before the hostile clients
    # below, so it holds the two pulls only (tunnel lines are written when a tunnel closes).
    local uq pq
    uq=$(re "$S9_USER") pq=$(re "$S9_POLICY")
    local cdn_re='cdn0?[0-9]*\.quay\.io' reg_re='registry\.(access\.)?redhat\.(io|com)'
    eventually "9 access log: CDN tunnels by $S9_USER under policy $S9_POLICY went via the parent Squid" \
        log_has "$ACCESS_LOG" "$A0" "user=$uq method=CONNECT target=$cdn_re:443 decision=allowed reason=host_allowlisted .* policy=$pq status=200 upstream=127\.0\.0\.1:$squid_port via=parent error=- sni=$cdn_re sni_check=ok "
    check "9 access log: registry tunnels by $S9_USER under policy $S9_POLICY went direct (connect-to)" \
        log_has "$ACCESS_LOG" "$A0" "user=$uq method=CONNECT target=$reg_re:443 decision=allowed reason=host_allowlisted .* policy=$pq status=200 upstream=127\.0\.0\.1:$WORLD_TLS_PORT error=- sni=$reg_re sni_check=ok "
    routed_right() { # every CDN tunnel via the parent, every registry tunnel direct, nothing else
        local seg bad cdn reg
        seg=$(tail -n +"$((A0 + 1))" "$ACCESS_LOG")
        cdn=$(grep -cE "target=$cdn_re:443 .* upstream=127\.0\.0\.1:$squid_port via=parent " <<<"$seg" || true)
        reg=$(grep -cE "target=$reg_re:443 .* upstream=127\.0\.0\.1:$WORLD_TLS_PORT error=" <<<"$seg" || true)
        bad=$(grep -vE "user=$uq method=CONNECT target=(($cdn_re:443 .* status=200 upstream=127\.0\.0\.1:$squid_port via=parent )|($reg_re:443 .* status=200 upstream=127\.0\.0\.1:$WORLD_TLS_PORT error=-))" <<<"$seg" || true)
        echo "evidence: $cdn CDN tunnels via=parent (Squid 127.0.0.1:$squid_port), $reg registry tunnels direct, $(wc -l <<<"$seg") lines in all"
        [[ -z $bad ]] || { echo "unexpected: $bad"; return 1; }
        [[ $cdn -ge 2 && $reg -ge 2 ]]
    }
    eventually "9 access log: each tunnel took its route (CDN via the parent, registry direct), all by $S9_USER, all 200" routed_right
    client_from_header() { # the client is the address in HAProxy's PROXY header (127.0.0.1:port), not HAProxy's own
        local seg ports p bad=0 n=0
        seg=$(tail -n +"$((A0 + 1))" "$ACCESS_LOG")
        if grep -q "client=$(re "$S9_HAPROXY_SRC"):" <<<"$seg"; then echo "HAProxy's own address $S9_HAPROXY_SRC logged as the client"; return 1; fi
        ports=$(grep -oE ' client=127\.0\.0\.1:[0-9]+ ' <<<"$seg" | cut -d: -f2 | tr -d ' ')
        for p in $ports; do
            n=$((n + 1))
            grep -qE "^haproxy client=127\.0\.0\.1:$p frontend=127\.0\.0\.1:$ha_port backend_src=$(re "$S9_HAPROXY_SRC"):[0-9]+ " "$P/haproxy.log" ||
                { echo "client port $p is not a client of HAProxy"; bad=1; }
        done
        echo "evidence: $n access-log clients, each 127.0.0.1:<port> = a client HAProxy logged; HAProxy dialled the proxy from $S9_HAPROXY_SRC"
        echo "evidence: haproxy: $(grep -m 1 "^haproxy client=127\.0\.0\.1:${ports%%[[:space:]]*} " "$P/haproxy.log" | cut -c1-200)"
        [[ $n -ge 4 && $bad == 0 ]]
    }
    eventually "9 the access log's client is the PROXY header's address (the client HAProxy saw), not HAProxy's $S9_HAPROXY_SRC" client_from_header
    squid_saw() { # Squid tunnelled every CDN host the proxy sent it, as its user; no registry name
        local want got h absent=
        want=$(tail -n +"$((A0 + 1))" "$ACCESS_LOG" | grep ' via=parent ' |
            grep -oE "target=$cdn_re:443" | cut -d= -f2 | sort -u)
        for h in $want; do
            grep -qE "TCP_TUNNEL/200 [0-9]+ CONNECT $(re "$h") $(re "$S9_PARENT_USER") HIER_DIRECT/127\.0\.0\.1 " "$SQUID_DIR/access.log" ||
                absent+="$h "
        done
        got=$(grep -cE "CONNECT $cdn_re:443 $(re "$S9_PARENT_USER") " "$SQUID_DIR/access.log" || true)
        echo "evidence: Squid: $(grep -E "CONNECT cdn02\.quay\.io:443 " "$SQUID_DIR/access.log" | tail -n 1 | tr -s ' ' | cut -c1-200)"
        echo "evidence: Squid tunnelled $got CDN CONNECTs as $S9_PARENT_USER; hosts ${want//$'\n'/ }"
        [[ -z $absent ]] || { echo "Squid has no tunnel for: $absent"; return 1; }
        if grep -qE "CONNECT $reg_re" "$SQUID_DIR/access.log"; then echo "a registry name went through Squid"; return 1; fi
        [[ -n $want ]] && grep -q cdn02.quay.io <<<"$want"
    }
    eventually "9 Squid's access log: the CDN CONNECTs with its user $S9_PARENT_USER (TCP_TUNNEL/200), no registry name" squid_saw
    check "9 /metrics: egress_proxy_parent_failures_total = 0" metric_cmp egress_proxy_parent_failures_total eq 0
    check "9 /metrics: egress_proxy_sni_mismatch_total = 0 (sni-check = enforce, through the parent too)" metric_cmp egress_proxy_sni_mismatch_total eq 0

    # --- hostile and refused ---
    local B0
    B0=$(log_lines "$ACCESS_LOG")
    run_client s9-wrong-password HTTPS_PROXY="https://$S9_USER:not-the-password@127.0.0.1:$ha_port" "${SKOPEO[@]}" \
        copy "docker://registry.redhat.io/$OI_REF" "dir:$P/wrong"
    check "9 wrong password: skopeo fails (non-zero exit)" exits_nonzero
    check "9 wrong password: failed fast (within ${FAST_FAIL_MAX_S} s)" within_ms $((FAST_FAIL_MAX_S * 1000))
    # Go prints only the reason phrase of a refused CONNECT; the proxy's is "proxy authentication required"
    check "9 wrong password: the client names the proxy's 407" says "registry.redhat.io/v2/\\\": proxy authentication required"
    eventually "9 access log: the wrong password got 407, nothing was dialled" \
        log_has "$ACCESS_LOG" "$B0" "method=CONNECT target=registry\.redhat\.io:443 .*status=407 upstream=- error=bad_password "
    check "9 /metrics: egress_proxy_auth_failures_total >= 1" metric_cmp egress_proxy_auth_failures_total ge 1

    run_client s9-refused HTTPS_PROXY="$edge" "${SKOPEO[@]}" inspect "docker://$S9_DENIED_HOST/corp/tool:latest"
    check "9 a host outside the policy: skopeo fails fast" within_ms $((FAST_FAIL_MAX_S * 1000))
    check "9 a host outside the policy: the client gives the proxy's reason" says "$S9_DENIED_HOST:443 is not in the egress allowlist"
    eventually "9 access log: $S9_DENIED_HOST refused under policy $S9_POLICY (403)" \
        log_has "$ACCESS_LOG" "$B0" "user=$uq method=CONNECT target=$(re "$S9_DENIED_HOST"):443 decision=denied reason=host_not_allowlisted .* policy=$pq status=403 "
    denied_with_policy() {
        admin_get /denied | "$PY" -c '
import json, sys
dest, policy = sys.argv[1:3]
for e in json.load(sys.stdin).get("entries", []):
    if e.get("destination") == dest and e.get("type") == "denied" and e.get("policy") == policy:
        print("evidence: /denied " + json.dumps(e, sort_keys=True)[:280])
        sys.exit(0)
print("no /denied entry for", dest, "with policy", policy)
sys.exit(1)' "$S9_DENIED_HOST:443" "$S9_POLICY"
    }
    check "9 /denied: $S9_DENIED_HOST:443 with \"policy\": \"$S9_POLICY\"" denied_with_policy
    check "9 /metrics: egress_proxy_denied_total{policy=\"$S9_POLICY\",host=\"$S9_DENIED_HOST\"} >= 1" \
        metric_cmp egress_proxy_denied_total ge 1 "policy=\"$S9_POLICY\"" "host=\"$S9_DENIED_HOST\""

    # a client that skips HAProxy is not a trusted PROXY-protocol peer: closed at accept
    run_client s9-bypass curl -sS --max-time 10 --proxy "https://127.0.0.1:$proxy_port" --proxy-user "$S9_USER:$S9_PASS" \
        -o /dev/null "https://registry.redhat.io/v2/"
    check "9 a client that bypasses HAProxy is closed without an answer (curl fails)" exits_nonzero
    eventually "9 /metrics: egress_proxy_rejected_total{reason=\"proxy_protocol_untrusted\"} >= 1" \
        metric_cmp egress_proxy_rejected_total ge 1 'reason="proxy_protocol_untrusted"'
}
scenario9
stop_proxy
stop_helpers
if [[ ${#S9_NAT_RULE[@]} -gt 0 ]]; then
    ip netns exec "$NS" iptables -t nat -D "${S9_NAT_RULE[@]}" 2>/dev/null || true
    S9_NAT_RULE=()
fi
if [[ -n $SQUID_DIR ]]; then
    cp "$SQUID_DIR/access.log" "$RUN/s9-corporate-edge/squid-access.log" 2>/dev/null || true
    cp "$SQUID_DIR/cache.log" "$RUN/s9-corporate-edge/squid-cache.log" 2>/dev/null || true
    rm -rf "$SQUID_DIR"
    SQUID_DIR=
fi
scenario_end

# =============================================================================================
# 10: proxy authentication on the plain listener (issue 19): HTTPS_PROXY=http://user:pass@host:port,
# the form CI variables and most proxy settings take. Go clients send the URL's credentials with
# the first CONNECT, in clear text on this hop (scenario 9 has the TLS listener for that).
S10_USER=plain-ci S10_PASS=pl4in-s3cret
scenario 10 "proxy auth on the plain listener: HTTPS_PROXY=http://user:pass@127.0.0.1:port"
scenario10() {
    local d=$RUN/s10-setup hash
    mkdir -p "$d"
    # SHA-512-crypt by openssl, which the whole suite needs anyway: this scenario needs no other tool.
    if ! hash=$(openssl passwd -6 -stdin <<<"$S10_PASS" 2>"$d/openssl.log"); then
        fail "10 openssl passwd -6: $(tail -n 1 "$d/openssl.log")"
        return 0
    fi
    printf '%s:%s\n' "$S10_USER" "$hash" >"$d/users"
    start_proxy s10-plain-auth "$ALLOW_FULL" "egress-proxy.auth.basic.users-file = \"$d/users\"" || return 0
    local with_user="http://$S10_USER:$S10_PASS@127.0.0.1:$PROXY_PORT"
    local wrong="http://$S10_USER:not-the-password@127.0.0.1:$PROXY_PORT"
    local uq A0 B0 N0 N1
    uq=$(re "$S10_USER")

    A0=$(log_lines "$ACCESS_LOG")
    verified_pulls 10 "$with_user" "with HTTPS_PROXY=http://$S10_USER:...@" "with credentials in HTTPS_PROXY"
    every_tunnel_by_user() { # every line of the pulls: a CONNECT by the user, allowed, 200, to the registries and cdn02
        local seg bad n lacking='' hosts="registry.redhat.io cdn02.quay.io"
        [[ $PODMAN_OK == 1 ]] && hosts+=" registry.access.redhat.com"
        seg=$(tail -n +"$((A0 + 1))" "$ACCESS_LOG")
        bad=$(grep -vE " user=$uq method=CONNECT target=[^ ]+:443 decision=allowed .* status=200 " <<<"$seg" || true)
        for n in $hosts; do
            grep -qE " user=$uq method=CONNECT target=$(re "$n"):443 " <<<"$seg" || lacking+="$n "
        done
        echo "evidence: access log: $(grep -m 1 'target=cdn02' <<<"$seg" | cut -c1-240)"
        echo "evidence: $(wc -l <<<"$seg") lines, each a CONNECT by user=$S10_USER, allowed, status=200"
        [[ -z $bad ]] || { echo "unexpected: $bad"; return 1; }
        [[ -z $lacking ]] || { echo "no tunnel by $S10_USER to: $lacking"; return 1; }
    }
    eventually "10 access log: every tunnel names user=$S10_USER (registries and CDN hosts), allowed, 200" every_tunnel_by_user
    check "10 /metrics: egress_proxy_auth_failures_total = 0 (Go sent the URL's credentials with the first CONNECT)" \
        metric_cmp egress_proxy_auth_failures_total eq 0

    B0=$(log_lines "$ACCESS_LOG")
    N0=$(log_lines "$WORLD_NGINX_ACCESS_LOG")
    run_client s10-wrong-skopeo HTTPS_PROXY="$wrong" "${SKOPEO[@]}" copy "docker://registry.redhat.io/$OI_REF" "dir:$P/wrong"
    check "10 wrong password: skopeo fails (non-zero exit)" exits_nonzero
    check "10 wrong password: skopeo failed fast (within ${FAST_FAIL_MAX_S} s)" within_ms $((FAST_FAIL_MAX_S * 1000))
    # Go prints only the reason phrase of a refused CONNECT: the proxy's 407 phrase
    check "10 wrong password: skopeo names the proxy's 407 (Proxy Authentication Required)" \
        says "registry.redhat.io/v2/\\\": proxy authentication required"
    if [[ $PODMAN_OK == 1 ]]; then
        podman_cmd s10-wrong
        run_client s10-wrong-podman HTTPS_PROXY="$wrong" "${PODMAN[@]}" pull "registry.access.redhat.com/$UBI_REF"
        check "10 wrong password: podman fails (non-zero exit)" exits_nonzero
        check "10 wrong password: podman failed fast (within ${FAST_FAIL_MAX_S} s)" within_ms $((FAST_FAIL_MAX_S * 1000))
        check "10 wrong password: podman names the proxy's 407 (Proxy Authentication Required)" says "proxy authentication required"
    else
        podman_skip "10 podman pull with a wrong password"
    fi
    run_client s10-wrong-curl curl -sS --max-time 10 --proxy "$wrong" -o /dev/null -w 'proxy answered %{http_connect}\n' \
        "https://registry.redhat.io/v2/"
    check "10 wrong password: curl fails with the proxy's status, 407" says "proxy answered 407" "CONNECT tunnel failed, response 407"
    N1=$(log_lines "$WORLD_NGINX_ACCESS_LOG")
    nothing_reached_the_world() {
        echo "evidence: the world's nginx log grew by $((N1 - N0)) lines during the wrong-password runs"
        [[ $N1 == "$N0" ]]
    }
    check "10 wrong password: nothing reached the registry or the CDN" nothing_reached_the_world
    eventually "10 access log: the wrong password got 407 with no user, nothing dialled" \
        log_has "$ACCESS_LOG" "$B0" " user=- method=CONNECT target=registry\.redhat\.io:443 decision=denied reason=auth_required .*status=407 upstream=- error=bad_password "
    check "10 /metrics: egress_proxy_auth_failures_total{reason=\"bad_password\"} >= 2" \
        metric_cmp egress_proxy_auth_failures_total ge 2 'reason="bad_password"'
}
scenario10
stop_proxy
scenario_end

# =============================================================================================
echo
echo "# timings: world up $((WORLD_MS / 1000)).$(printf '%03d' $((WORLD_MS % 1000))) s; ${SCENARIO_TIMES[*]/%/;}"
TOTAL_MS=$(($(now_ms) - START_MS))
echo "# total $((TOTAL_MS / 1000)).$(printf '%03d' $((TOTAL_MS % 1000))) s; $SKIPPED skipped"
echo "$PASS passed, $FAIL failed"
[[ $FAIL == 0 ]]
