#!/usr/bin/env bash
# Proves the registry world works, independently of any proxy:
#   world.sh up -> curl checks (--connect-to, CA via --cacert) -> skopeo/podman pulls from the
#   origin (CA via cert dir) -> blackhole / refused ports -> iptables DROP -> world.sh down.
# The pulls of the real names through egress-proxy (HTTPS_PROXY/HTTP_PROXY) are e2e/run.sh's.
#
#   check-world.sh [--no-netns] [--keep]
#
# By default everything runs inside a network namespace made for the run (only its own
# loopback), so a name that some client failed to map can never turn into a DNS query that
# leaves the machine. Prints "N passed, N failed" last; exits non-zero on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USE_NETNS=1 KEEP=0
for a in "$@"; do
    case $a in
        --no-netns) USE_NETNS=0 ;;
        --keep) KEEP=1 ;;
        *) echo "usage: $0 [--no-netns] [--keep]" >&2; exit 2 ;;
    esac
done

RUN=$(mktemp -d /tmp/egress-e2e-check.XXXXXX)
NS=
PASS=0 FAIL=0

in_ns() { if [[ -n $NS ]]; then ip netns exec "$NS" "$@"; else "$@"; fi; }

cleanup() {
    set +e
    "$HERE/world.sh" down "$RUN/world" >/dev/null 2>&1
    [[ -n $NS ]] && ip netns del "$NS" 2>/dev/null
    if [[ $KEEP == 0 ]]; then rm -rf "$RUN"; else echo "kept $RUN" >&2; fi
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
fails() { ! "$@"; }
exit_is() { local want=$1 rc=0; shift; "$@" || rc=$?; echo "exit code $rc"; [[ $rc == "$want" ]]; }
digest_of() { [[ sha256:$(sha256sum <"$1" | cut -c1-64) == "$2" ]]; }
outputs() { local want=$1 got; shift; got=$("$@"); echo "$got"; [[ $got == "$want" ]]; }
check() { # DESCRIPTION CMD... (CMD's output goes to $RUN/last.log)
    local what=$1
    shift
    if "$@" >"$RUN/last.log" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/       /' "$RUN/last.log" | tail -n 15; fi
}

if [[ $USE_NETNS == 1 ]]; then
    NS=egress-e2e-$$
    if ip netns add "$NS" 2>"$RUN/netns.log" && ip netns exec "$NS" ip link set lo up; then
        echo "# running inside network namespace $NS"
    else
        echo "# ip netns add failed ($(cat "$RUN/netns.log")); running in the current namespace"
        NS=
    fi
fi

in_ns "$HERE/world.sh" up "$RUN/world"
# shellcheck disable=SC1091
. "$RUN/world/world.env"
W=$WORLD_RUNDIR

client() { in_ns env -i PATH="$CLEAN_PATH" HOME="$WORLD_HOME" CONTAINERS_REGISTRIES_CONF="$WORLD_REGISTRIES_CONF" "$@"; }

# ---- curl: the names mapped like the proxy will map them ------------------------------------
CT=()
for n in $WORLD_REGISTRY_NAMES $WORLD_CDN_NAMES; do
    CT+=(--connect-to "$n:443:127.0.0.1:$WORLD_TLS_PORT" --connect-to "$n:80:127.0.0.1:$WORLD_HTTP_PORT")
done
blob_via() { # SCHEME REGISTRY REPO DIGEST EXPECTED_CDN_HOST
    local out
    out=$(client curl -sS --max-time 10 --cacert "$WORLD_CA" "${CT[@]}" -L -o "$RUN/blob" \
        -w '%{http_code} %{num_redirects} %{url_effective}' "$1://$2/v2/$3/blobs/$4")
    echo "$out"
    [[ $out == "200 1 $1://$5/sha256/${4#sha256:}?grant="* ]] || return 1
    [[ sha256:$(sha256sum <"$RUN/blob" | cut -c1-64) == "$4" ]]
}
for name in $WORLD_REGISTRY_NAMES; do
    check "curl https://$name/v2/ -> 200" \
        client curl -sSf --max-time 10 --cacert "$WORLD_CA" "${CT[@]}" "https://$name/v2/"
done
check "curl without the CA is refused (verification stays on)" \
    fails client curl -sS --max-time 10 "${CT[@]}" "https://registry.redhat.io/v2/"
for e in $WORLD_BLOB_CDN_HOSTS; do
    d=${e%%=*} h=${e#*=} repo=$WORLD_OPERATOR_INDEX_REPO
    [[ $d != "$WORLD_UBI_CONFIG_DIGEST" ]] || repo=$WORLD_UBI_REPO
    for s in https http; do
        check "$s blob ${d:7:12} -> 302 $s://$h/... -> sha256 matches" blob_via "$s" registry.redhat.io "$repo" "$d" "$h"
    done
done
check "CDN URL without a grant -> 403" outputs 403 \
    client curl -sS --max-time 10 --cacert "$WORLD_CA" "${CT[@]}" -o /dev/null -w '%{http_code}' \
    "https://cdn02.quay.io/sha256/${WORLD_OPERATOR_INDEX_CONFIG_DIGEST#sha256:}"

# ---- direct pulls from the origin (127.0.0.1, CA in a cert dir) ------------------------------
check "skopeo copy docker://$WORLD_ORIGIN/$WORLD_OPERATOR_INDEX_REPO:$WORLD_OPERATOR_INDEX_TAG dir: (--src-cert-dir)" \
    client skopeo --policy "$WORLD_POLICY" copy --src-cert-dir "$WORLD_CERT_DIR" \
    "docker://$WORLD_ORIGIN/$WORLD_OPERATOR_INDEX_REPO:$WORLD_OPERATOR_INDEX_TAG" "dir:$RUN/pull-origin"
check "pulled manifest digest = $WORLD_OPERATOR_INDEX_MANIFEST_DIGEST" \
    digest_of "$RUN/pull-origin/manifest.json" "$WORLD_OPERATOR_INDEX_MANIFEST_DIGEST"

HAVE_PODMAN=0
PATH=$CLEAN_PATH command -v podman >/dev/null 2>&1 && HAVE_PODMAN=1
podman_() { # STORE ARGS...
    local store=$1
    shift
    client podman --storage-driver vfs --root "$RUN/$store/root" --runroot "$RUN/$store/runroot" \
        --cgroup-manager cgroupfs --events-backend file "$@"
}
if [[ $HAVE_PODMAN == 1 ]]; then
    check "podman pull $WORLD_ORIGIN/$WORLD_OPERATOR_INDEX_REPO:$WORLD_OPERATOR_INDEX_TAG (--cert-dir)" \
        podman_ podman-origin pull --cert-dir "$WORLD_CERT_DIR" "$WORLD_ORIGIN/$WORLD_OPERATOR_INDEX_REPO:$WORLD_OPERATOR_INDEX_TAG"
else
    echo "# podman not installed: podman checks skipped"
fi

# ---- failure targets ----------------------------------------------------------------------
check "blackhole 127.0.0.1:$WORLD_BLACKHOLE_PORT: connect times out (curl exit 28)" \
    exit_is 28 client curl -sS --max-time 1 "http://127.0.0.1:$WORLD_BLACKHOLE_PORT/"
check "refused 127.0.0.1:$WORLD_REFUSED_PORT: connection refused (curl exit 7)" \
    exit_is 7 client curl -sS --max-time 1 "http://127.0.0.1:$WORLD_REFUSED_PORT/"
if [[ -n $NS ]]; then
    DROP_PORT=$WORLD_REFUSED_PORT
    if in_ns iptables -A INPUT -i lo -p tcp --dport "$DROP_PORT" -j DROP 2>"$RUN/iptables.log"; then
        check "iptables DROP inside the netns: connect to :$DROP_PORT times out (curl exit 28)" \
            exit_is 28 client curl -sS --max-time 1 "http://127.0.0.1:$DROP_PORT/"
    else
        bad "iptables in the netns: $(cat "$RUN/iptables.log")"
    fi
fi

"$HERE/world.sh" down "$W" >/dev/null 2>&1
check "world.sh down stopped every process" fails "$HERE/world.sh" status "$W"

echo "$PASS passed, $FAIL failed"
[[ $FAIL == 0 ]]
