#!/usr/bin/env bash
# The end-to-end "registry world" for egress-proxy (issue 4): a local stand-in for
# registry.redhat.io / registry.access.redhat.com and the Quay CDN (cdn.quay.io, cdn01-03.quay.io),
# built only from Debian packages and reachable only on loopback.
#
#   world.sh up <rundir>      build CA/certs + test image, start docker-registry x2, nginx and a
#                             blackhole listener, push the images, write <rundir>/world.env and
#                             <rundir>/connect-to.conf
#   world.sh down <rundir>    stop everything that up started (by pid); keeps the files
#   world.sh status <rundir>  show which of the world's processes are alive
#   world.sh deps             apt-get install the Debian packages the world and e2e/run.sh need
#                             (adds podman, strace, iproute2, iptables), if missing
#
# See e2e/README.md for the layout, the variables in world.env and what was verified.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PY=/usr/bin/python3

REGISTRY_NAMES=(registry.redhat.io registry.access.redhat.com)
CDN_NAMES=(cdn.quay.io cdn01.quay.io cdn02.quay.io cdn03.quay.io)
OPERATOR_INDEX_REPO=redhat/redhat-operator-index
OPERATOR_INDEX_TAG=v4.12
UBI_REPO=ubi9/ubi-minimal
UBI_TAG=latest

MT_LIST=application/vnd.docker.distribution.manifest.list.v2+json
MT_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
MT_CONFIG=application/vnd.docker.container.image.v1+json
MT_LAYER=application/vnd.docker.image.rootfs.diff.tar.gzip

log() { printf 'world.sh: %s\n' "$*" >&2; }
die() { printf 'world.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Runs a client with a clean environment: the machine exports SSL_CERT_FILE/SSL_CERT_DIR and
# friends globally, which must not leak into what the world's checks trust.
clean() {
    env -i PATH="$CLEAN_PATH" HOME="$R/home" LANG=C.UTF-8 \
        CONTAINERS_REGISTRIES_CONF="$R/registries.conf" "$@"
}

# ---------------------------------------------------------------------------------------------
# dependencies

PKG_FOR_TOOL=(openssl:openssl curl:curl nginx:nginx docker-registry:docker-registry
              skopeo:skopeo tar:tar gzip:gzip sha256sum:coreutils setsid:util-linux
              python3:python3)

# Not needed by "up" itself, but installed by "deps" for e2e/run.sh and check-world.sh: podman
# (scenario 1-4 pulls; SKIPped where it cannot run), strace (scenario 6), ip (the network
# namespace), iptables (the DROP variant of scenario 4), java (runs egress-proxy; the JDK comes
# with the Maven build, so "deps" only checks it).
EXTRA_PKG_FOR_TOOL=(podman:podman strace:strace ip:iproute2 iptables:iptables)

missing_packages() { # [--all]: with --all, EXTRA_PKG_FOR_TOOL too
    local pair tool pkg out=() pairs=("${PKG_FOR_TOOL[@]}")
    [[ ${1:-} != --all ]] || pairs+=("${EXTRA_PKG_FOR_TOOL[@]}")
    for pair in "${pairs[@]}"; do
        tool=${pair%%:*} pkg=${pair#*:}
        PATH=$CLEAN_PATH command -v "$tool" >/dev/null 2>&1 || out+=("$pkg")
    done
    [[ -x $PY ]] || out+=(python3)
    # space-separated, no duplicates
    printf '%s\n' "${out[@]}" | sort -u | grep -v '^$' | paste -sd' ' - || true
}

cmd_deps() {
    local pkgs
    pkgs=$(missing_packages --all)
    PATH=$CLEAN_PATH command -v java >/dev/null 2>&1 ||
        log "note: no java on PATH; e2e/run.sh needs a JDK 17 (the one the Maven build uses)"
    if [[ -z $pkgs ]]; then log "all packages present"; return 0; fi
    log "installing: $pkgs"
    # shellcheck disable=SC2086
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; then
        apt-get update
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs
    fi
}

check_tools() {
    local pkgs
    pkgs=$(missing_packages)
    [[ -z $pkgs ]] || die "missing Debian packages: $pkgs (run: $0 deps, or apt-get install -y $pkgs)"
}

# ---------------------------------------------------------------------------------------------
# processes

pid_file() { echo "$R/pids/$1.pid"; }

# alive NAME: true if the recorded pid runs and its command line mentions the run dir (so a
# recycled pid of some unrelated process is never taken for ours).
alive() {
    local f pid
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$R" || return 1
}

# start NAME LOGFILE CMD...: starts CMD detached (own session, stdin /dev/null, output to LOGFILE)
start() {
    local name=$1 logf=$2
    shift 2
    setsid "$@" </dev/null >"$logf" 2>&1 &
    echo $! >"$(pid_file "$name")"
}

stop_one() {
    local name=$1 f pid i
    f=$(pid_file "$name")
    [[ -f $f ]] || return 0
    pid=$(<"$f")
    if alive "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$name" || break
            sleep 0.05
        done
        if alive "$name"; then
            log "$name (pid $pid) ignored SIGTERM for 5s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 40; i++)); do alive "$name" || break; sleep 0.05; done
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$f"
}

tail_log() { [[ -f $1 ]] && { echo "---- last lines of $1:" >&2; tail -n 20 "$1" >&2; }; return 0; }

# wait_until NAME LOGFILE DESCRIPTION CMD...: polls CMD every 0.1s for at most 15s, failing early
# if process NAME died.
wait_until() {
    local name=$1 logf=$2 what=$3 i
    shift 3
    for ((i = 0; i < 150; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if ! alive "$name"; then
            tail_log "$logf"
            die "$name exited while waiting for: $what"
        fi
        sleep 0.1
    done
    tail_log "$logf"
    die "timed out after 15s waiting for: $what"
}

free_ports() { # N -> N distinct free loopback TCP ports, one a line
    "$PY" - "$1" <<'EOF'
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
# CA and server certificate

ALL_SAN="DNS:${REGISTRY_NAMES[0]},DNS:${REGISTRY_NAMES[1]}"
for n in "${CDN_NAMES[@]}"; do ALL_SAN+=",DNS:$n"; done
ALL_SAN+=",DNS:localhost,IP:127.0.0.1,IP:::1"

certs_ok() {
    local d=$R/ca
    [[ -s $d/ca.pem && -s $d/ca.key && -s $d/server.pem && -s $d/server.key ]] || return 1
    openssl verify -CAfile "$d/ca.pem" "$d/server.pem" >/dev/null 2>&1 || return 1
    openssl x509 -in "$d/server.pem" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    openssl x509 -in "$d/ca.pem" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    # the SAN list must be the current one
    openssl x509 -in "$d/server.pem" -noout -ext subjectAltName 2>/dev/null | grep -q 'cdn03.quay.io' || return 1
}

make_certs() {
    local d=$R/ca
    if certs_ok; then
        log "reusing CA and server certificate in $d"
    else
        log "generating test CA and server certificate in $d"
        rm -rf "$d"
        mkdir -p "$d"
        (
            umask 077
            openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
                -keyout "$d/ca.key" -out "$d/ca.pem" \
                -subj "/O=egress-proxy e2e/CN=egress-proxy e2e test CA" \
                -addext "basicConstraints=critical,CA:TRUE" \
                -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$d/openssl.log"
            openssl req -newkey rsa:2048 -nodes -sha256 \
                -keyout "$d/server.key" -out "$d/server.csr" \
                -subj "/O=egress-proxy e2e/CN=${REGISTRY_NAMES[0]}" 2>>"$d/openssl.log"
            cat >"$d/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
subjectAltName=$ALL_SAN
EOF
            openssl x509 -req -sha256 -days 825 -in "$d/server.csr" \
                -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial "0x$(openssl rand -hex 12)" \
                -extfile "$d/server.ext" -out "$d/server.pem" 2>>"$d/openssl.log"
        ) || { tail_log "$d/openssl.log"; die "openssl failed"; }
        chmod 644 "$d/ca.pem" "$d/server.pem"
        certs_ok || die "generated certificate does not verify against the CA"
    fi
    # --cert-dir / --src-cert-dir / --dest-cert-dir style directory (containers/image reads *.crt)
    mkdir -p "$R/certdir"
    cp "$d/ca.pem" "$R/certdir/ca.crt"
    # a Java trust store (JVMs ignore SSL_CERT_FILE), if a JDK's keytool is at hand
    rm -f "$d/truststore.p12"
    if PATH=$CLEAN_PATH command -v keytool >/dev/null 2>&1; then
        PATH=$CLEAN_PATH keytool -importcert -noprompt -alias egress-proxy-e2e-ca -file "$d/ca.pem" \
            -keystore "$d/truststore.p12" -storetype PKCS12 -storepass changeit >"$d/keytool.log" 2>&1 ||
            { tail_log "$d/keytool.log"; die "keytool could not build $d/truststore.p12"; }
        TRUSTSTORE=$d/truststore.p12
    else
        TRUSTSTORE=
    fi
}

# ---------------------------------------------------------------------------------------------
# test image, built by hand as a containers/image "dir:" layout (raw bytes, so the digests we
# compute here are exactly the ones the registry serves)

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# gen KEY BYTES FILE: deterministic pseudo-random bytes (AES-128-CTR keystream keyed by KEY)
gen() {
    local key
    key=$(printf '%s' "$1" | sha256sum | cut -c1-32)
    head -c "$2" /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 >"$3"
}

# make_layer N DIR: tars DIR (deterministically) into $W/layerN.tar(.gz); sets LAYER_DIGEST[N],
# LAYER_SIZE[N], LAYER_DIFFID[N]
declare -A LAYER_DIGEST LAYER_SIZE LAYER_DIFFID
make_layer() {
    local n=$1 dir=$2
    find "$dir" -type d -exec chmod 0755 {} +
    find "$dir" -type f -exec chmod 0644 {} +
    (cd "$dir" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort) >"$W/layer$n.list"
    tar --sort=name --mtime=@1672531200 --owner=0 --group=0 --numeric-owner --format=gnu \
        -C "$dir" -cf "$W/layer$n.tar" -T "$W/layer$n.list"
    gzip -n -9 -c "$W/layer$n.tar" >"$W/layer$n.tar.gz"
    LAYER_DIFFID[$n]=sha256:$(sha "$W/layer$n.tar")
    LAYER_DIGEST[$n]=sha256:$(sha "$W/layer$n.tar.gz")
    LAYER_SIZE[$n]=$(size "$W/layer$n.tar.gz")
}

# write_config FILE NAME LAYER_NUMBERS...
write_config() {
    local f=$1 name=$2 n diffids="" hist=""
    shift 2
    for n in "$@"; do
        diffids+="${diffids:+,}\"${LAYER_DIFFID[$n]}\""
        hist+="${hist:+,}{\"created\":\"2023-01-01T00:00:00Z\",\"created_by\":\"e2e/world.sh layer $n\"}"
    done
    printf '{"architecture":"amd64","os":"linux","created":"2023-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"Labels":{"name":"%s","io.egress-proxy.e2e":"true"}},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
        "$name" "$diffids" "$hist" >"$f"
}

# write_manifest FILE CONFIG_FILE LAYER_NUMBERS...
write_manifest() {
    local f=$1 cfg=$2 n layers=""
    shift 2
    for n in "$@"; do
        layers+="${layers:+,}{\"mediaType\":\"$MT_LAYER\",\"size\":${LAYER_SIZE[$n]},\"digest\":\"${LAYER_DIGEST[$n]}\"}"
    done
    printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","size":%s,"digest":"sha256:%s"},"layers":[%s]}' \
        "$MT_MANIFEST" "$MT_CONFIG" "$(size "$cfg")" "$(sha "$cfg")" "$layers" >"$f"
}

# dir_layout DIR MANIFEST_FILE BLOB_FILES...: a containers/image dir: transport directory
dir_layout() {
    local d=$1 m=$2 b
    shift 2
    rm -rf "$d"
    mkdir -p "$d"
    printf 'Directory Transport Version: 1.1\n' >"$d/version"
    cp "$m" "$d/manifest.json"
    for b in "$@"; do cp "$b" "$d/$(sha "$b")"; done
}

build_image() {
    W=$R/image/work
    rm -rf "$R/image"
    mkdir -p "$W"
    log "building the test image in $R/image"

    # layer 1: "base" files
    mkdir -p "$W/l1/etc/e2e"
    printf 'NAME="egress-proxy e2e test image"\nID=e2e\n' >"$W/l1/etc/os-release"
    gen layer1 4096 "$W/l1/etc/e2e/random-1.bin"
    make_layer 1 "$W/l1"
    # layer 2: more files
    mkdir -p "$W/l2/usr/share/e2e"
    printf 'layer two of the egress-proxy e2e test image\n' >"$W/l2/usr/share/e2e/README"
    gen layer2 6144 "$W/l2/usr/share/e2e/random-2.bin"
    make_layer 2 "$W/l2"
    # layer 3: only in the operator index image
    mkdir -p "$W/l3/database"
    gen layer3 8192 "$W/l3/database/index.db"
    make_layer 3 "$W/l3"

    # redhat/redhat-operator-index:v4.12 -- a schema 2 manifest list (like the real one) with one
    # linux/amd64 image of layers 1,2,3
    write_config "$W/config-oi.json" "redhat-operator-index" 1 2 3
    write_manifest "$W/manifest-oi.json" "$W/config-oi.json" 1 2 3
    printf '{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"%s","size":%s,"digest":"sha256:%s","platform":{"architecture":"amd64","os":"linux"}}]}' \
        "$MT_LIST" "$MT_MANIFEST" "$(size "$W/manifest-oi.json")" "$(sha "$W/manifest-oi.json")" >"$W/list-oi.json"
    dir_layout "$R/image/operator-index" "$W/list-oi.json" \
        "$W/config-oi.json" "$W/layer1.tar.gz" "$W/layer2.tar.gz" "$W/layer3.tar.gz"
    cp "$W/manifest-oi.json" "$R/image/operator-index/$(sha "$W/manifest-oi.json").manifest.json"

    # ubi9/ubi-minimal:latest -- a plain schema 2 manifest of layers 1,2 (shared with the index)
    write_config "$W/config-ubi.json" "ubi9-minimal" 1 2
    write_manifest "$W/manifest-ubi.json" "$W/config-ubi.json" 1 2
    dir_layout "$R/image/ubi-minimal" "$W/manifest-ubi.json" \
        "$W/config-ubi.json" "$W/layer1.tar.gz" "$W/layer2.tar.gz"

    OI_LIST_DIGEST=sha256:$(sha "$W/list-oi.json")
    OI_MANIFEST_DIGEST=sha256:$(sha "$W/manifest-oi.json")
    OI_CONFIG_DIGEST=sha256:$(sha "$W/config-oi.json")
    OI_LAYERS="${LAYER_DIGEST[1]} ${LAYER_DIGEST[2]} ${LAYER_DIGEST[3]}"
    UBI_MANIFEST_DIGEST=sha256:$(sha "$W/manifest-ubi.json")
    UBI_CONFIG_DIGEST=sha256:$(sha "$W/config-ubi.json")
    UBI_LAYERS="${LAYER_DIGEST[1]} ${LAYER_DIGEST[2]}"

    # Which CDN host each blob is redirected to: both config blobs go to cdn02.quay.io (as in
    # the vendor notice: "parsing image configuration: Get https://cdn02.quay.io/..."), so
    # dropping cdn02 from an allowlist breaks both pulls; layers go to the other three hosts.
    BLOB_CDN=(
        "$OI_CONFIG_DIGEST=cdn02.quay.io"
        "$UBI_CONFIG_DIGEST=cdn02.quay.io"
        "${LAYER_DIGEST[1]}=cdn.quay.io"
        "${LAYER_DIGEST[2]}=cdn01.quay.io"
        "${LAYER_DIGEST[3]}=cdn03.quay.io"
    )
}

# ---------------------------------------------------------------------------------------------
# configuration files

write_registry_config() { # FILE PORT MODE(redirect|origin)
    local f=$1 port=$2 mode=$3
    {
        cat <<EOF
# generated by e2e/world.sh ($mode registry)
version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry-$mode
storage:
  filesystem:
    rootdirectory: $R/registry/storage
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: egress-proxy-e2e-not-secret
  relativeurls: true
  headers:
    X-Content-Type-Options: [nosniff]
EOF
        if [[ $mode == origin ]]; then
            cat <<EOF
  tls:
    certificate: $R/ca/server.pem
    key: $R/ca/server.key
EOF
        else
            # Blob GET/HEAD answer "307 Location: http://blob-origin.invalid/docker/registry/v2/
            # blobs/sha256/xx/<hex>/data"; nginx turns that into the CDN-style 302.
            cat <<EOF
middleware:
  storage:
    - name: redirect
      options:
        baseurl: http://blob-origin.invalid/
EOF
        fi
    } >"$f"
}

write_nginx_config() {
    local f=$R/nginx/nginx.conf e host
    local storage=$R/registry/storage/docker/registry/v2/blobs/sha256
    {
        cat <<EOF
# generated by e2e/world.sh
daemon off;
master_process on;
worker_processes 1;
user root root;
pid $R/nginx/nginx.pid;
error_log $R/nginx/logs/error.log info;

events { worker_connections 1024; }

http {
    default_type application/octet-stream;
    server_tokens off;
    sendfile on;
    keepalive_timeout 65s;
    client_body_temp_path $R/nginx/tmp/client_body;
    proxy_temp_path $R/nginx/tmp/proxy;
    fastcgi_temp_path $R/nginx/tmp/fastcgi;
    uwsgi_temp_path $R/nginx/tmp/uwsgi;
    scgi_temp_path $R/nginx/tmp/scgi;

    log_format world '\$remote_addr [\$time_iso8601] \$scheme \$server_port host="\$host" '
                     '"\$request" \$status \$body_bytes_sent upstream=\$upstream_status '
                     'location="\$sent_http_location"';
    access_log $R/nginx/logs/access.log world;

    ssl_certificate $R/ca/server.pem;
    ssl_certificate_key $R/ca/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    map_hash_bucket_size 128;

    # hex digest of the blob the registry redirected to (see the redirect middleware's baseurl)
    map \$upstream_http_location \$blob_hex {
        "~/docker/registry/v2/blobs/sha256/[0-9a-f]{2}/(?<bh>[0-9a-f]{64})/data\$" \$bh;
        default "";
    }
    # CDN host per blob: fixed for the test image's blobs, by first hex digit for any other
    map \$blob_hex \$cdn_host {
EOF
        for e in "${BLOB_CDN[@]}"; do
            host=${e#*=}
            printf '        %s %s;\n' "${e%%=*}" "$host" | sed 's/ sha256:/ /'
        done
        cat <<EOF
        "~^[0-3]" cdn.quay.io;
        "~^[4-7]" cdn01.quay.io;
        "~^[89ab]" cdn02.quay.io;
        default cdn03.quay.io;
    }

    upstream registry_redirecting {
        server 127.0.0.1:$REG_PORT;
        keepalive 8;
    }
EOF
        local listen
        for listen in "$TLS_PORT ssl" "$HTTP_PORT"; do
            cat <<EOF

    # ---- registry names (also the default server for any other Host) ----
    server {
        listen 127.0.0.1:$listen default_server;
        server_name ${REGISTRY_NAMES[*]};

        location /v2/ {
            proxy_pass http://registry_redirecting;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_buffering off;
            proxy_request_buffering off;
            client_max_body_size 0;
            proxy_read_timeout 300s;
            # distribution's redirect middleware answers 307; the real registry answers 302
            proxy_intercept_errors on;
            error_page 307 = @cdn_redirect;
        }
        location @cdn_redirect {
            if (\$blob_hex = "") { return 502 "world: unexpected 307 from the registry\n"; }
            return 302 \$scheme://\$cdn_host/sha256/\$blob_hex?grant=e2e-\$request_id&expires=600;
        }
        location / { return 404 "not a registry path\n"; }
    }

    # ---- Quay CDN names: serve blobs straight from the registry's filesystem storage ----
    server {
        listen 127.0.0.1:$listen;
        server_name ${CDN_NAMES[*]};

        location ~ "^/sha256/(?<cdn_hex>(?<cdn_pfx>[0-9a-f]{2})[0-9a-f]{62})\$" {
            # like the real CDN, refuse a blob URL that carries no grant from the registry
            if (\$arg_grant = "") { return 403 "world: no grant\n"; }
            alias $storage/\$cdn_pfx/\$cdn_hex/data;
            types { }
            default_type application/octet-stream;
        }
        location / { return 404 "world: not a blob path\n"; }
    }
EOF
        done
        echo "}"
    } >"$f"
}

write_client_files() {
    mkdir -p "$R/home"
    cat >"$R/policy.json" <<'EOF'
{ "default": [ { "type": "insecureAcceptAnything" } ] }
EOF
    # no search registries, no mirrors: only what the test names
    printf '# generated by e2e/world.sh\nunqualified-search-registries = []\n' >"$R/registries.conf"
}

write_outputs() {
    local n
    {
        echo "# egress-proxy e2e registry world -- generated by e2e/world.sh up; source me"
        echo "# HOCON snippet for the proxy: \$WORLD_CONNECT_TO_CONF"
        for v in \
            WORLD_RUNDIR="$R" \
            WORLD_CA="$R/ca/ca.pem" \
            WORLD_CERT_DIR="$R/certdir" \
            WORLD_TRUSTSTORE="$TRUSTSTORE" \
            WORLD_TRUSTSTORE_PASSWORD=changeit \
            WORLD_SERVER_CERT="$R/ca/server.pem" \
            WORLD_SERVER_KEY="$R/ca/server.key" \
            WORLD_TLS_PORT="$TLS_PORT" \
            WORLD_HTTP_PORT="$HTTP_PORT" \
            WORLD_REGISTRY_PORT="$REG_PORT" \
            WORLD_ORIGIN_PORT="$ORIGIN_PORT" \
            WORLD_ORIGIN="127.0.0.1:$ORIGIN_PORT" \
            WORLD_BLACKHOLE_PORT="$BLACKHOLE_PORT" \
            WORLD_REFUSED_PORT="$REFUSED_PORT" \
            WORLD_CONNECT_TO_CONF="$R/connect-to.conf" \
            WORLD_PROPERTIES="$R/world.properties" \
            WORLD_POLICY="$R/policy.json" \
            WORLD_REGISTRIES_CONF="$R/registries.conf" \
            WORLD_HOME="$R/home" \
            WORLD_NGINX_ACCESS_LOG="$R/nginx/logs/access.log" \
            WORLD_NGINX_ERROR_LOG="$R/nginx/logs/error.log" \
            WORLD_REGISTRY_LOG="$R/registry/redirect.log" \
            WORLD_REGISTRY_NAMES="${REGISTRY_NAMES[*]}" \
            WORLD_CDN_NAMES="${CDN_NAMES[*]}" \
            WORLD_OPERATOR_INDEX_REPO="$OPERATOR_INDEX_REPO" \
            WORLD_OPERATOR_INDEX_TAG="$OPERATOR_INDEX_TAG" \
            WORLD_OPERATOR_INDEX_DIGEST="$OI_LIST_DIGEST" \
            WORLD_OPERATOR_INDEX_MANIFEST_DIGEST="$OI_MANIFEST_DIGEST" \
            WORLD_OPERATOR_INDEX_CONFIG_DIGEST="$OI_CONFIG_DIGEST" \
            WORLD_OPERATOR_INDEX_LAYERS="$OI_LAYERS" \
            WORLD_UBI_REPO="$UBI_REPO" \
            WORLD_UBI_TAG="$UBI_TAG" \
            WORLD_UBI_DIGEST="$UBI_MANIFEST_DIGEST" \
            WORLD_UBI_CONFIG_DIGEST="$UBI_CONFIG_DIGEST" \
            WORLD_UBI_LAYERS="$UBI_LAYERS" \
            WORLD_BLOB_CDN_HOSTS="${BLOB_CDN[*]}"; do
            [[ $v != *"'"* ]] || die "internal: quote in $v"
            printf "%s='%s'\n" "${v%%=*}" "${v#*=}"
        done
    } >"$R/world.env.tmp"
    # the same keys as Java properties (for a JUnit-driven e2e test), without the quotes
    { echo "# generated by e2e/world.sh up; same keys as world.env"
      sed -n "s/^\(WORLD_[A-Z0-9_]*\)='\(.*\)'\$/\1=\2/p" "$R/world.env.tmp"; } >"$R/world.properties"
    mv "$R/world.env.tmp" "$R/world.env"

    {
        echo "# generated by e2e/world.sh up $R -- include or append to the proxy's config"
        echo "egress-proxy.destinations.connect-to {"
        for n in "${REGISTRY_NAMES[@]}" "${CDN_NAMES[@]}"; do
            printf '  "%s:443" = "127.0.0.1:%s"\n' "$n" "$TLS_PORT"
        done
        for n in "${REGISTRY_NAMES[@]}" "${CDN_NAMES[@]}"; do
            printf '  "%s:80" = "127.0.0.1:%s"\n' "$n" "$HTTP_PORT"
        done
        echo "}"
    } >"$R/connect-to.conf"
}

# ---------------------------------------------------------------------------------------------
# self-check after up: the redirect flow, as a client that maps the names with curl --resolve

curl_w() { clean curl -sS --max-time 10 "$@"; }

self_check() {
    local scheme port name e digest host repo loc got opts
    for scheme in https http; do
        if [[ $scheme == https ]]; then port=$TLS_PORT; opts=(--cacert "$R/ca/ca.pem"); else port=$HTTP_PORT; opts=(); fi
        local resolve=()
        for name in "${REGISTRY_NAMES[@]}" "${CDN_NAMES[@]}"; do resolve+=(--resolve "$name:$port:127.0.0.1"); done
        for name in "${REGISTRY_NAMES[@]}"; do
            got=$(curl_w "${opts[@]}" "${resolve[@]}" -o /dev/null -w '%{http_code}' "$scheme://$name:$port/v2/") ||
                die "self-check: $scheme://$name/v2/ failed"
            [[ $got == 200 ]] || die "self-check: $scheme://$name/v2/ answered $got, not 200"
            got=$(curl_w "${opts[@]}" "${resolve[@]}" -I -H "Accept: $MT_LIST" \
                "$scheme://$name:$port/v2/$OPERATOR_INDEX_REPO/manifests/$OPERATOR_INDEX_TAG" |
                tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
            [[ $got == "$OI_LIST_DIGEST" ]] || die "self-check: $name manifest digest '$got' != $OI_LIST_DIGEST"
            got=$(curl_w "${opts[@]}" "${resolve[@]}" -I -H "Accept: $MT_MANIFEST" \
                "$scheme://$name:$port/v2/$UBI_REPO/manifests/$UBI_TAG" |
                tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
            [[ $got == "$UBI_MANIFEST_DIGEST" ]] || die "self-check: $name manifest digest '$got' != $UBI_MANIFEST_DIGEST"
        done
        for e in "${BLOB_CDN[@]}"; do
            digest=${e%%=*} host=${e#*=} repo=$OPERATOR_INDEX_REPO
            [[ $digest != "$UBI_CONFIG_DIGEST" ]] || repo=$UBI_REPO
            loc=$(curl_w "${opts[@]}" "${resolve[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' \
                "$scheme://${REGISTRY_NAMES[0]}:$port/v2/$repo/blobs/$digest")
            [[ $loc == "302 $scheme://$host/sha256/${digest#sha256:}?grant="* ]] ||
                die "self-check: blob $digest answered '$loc', expected 302 to $scheme://$host/sha256/..."
            loc=${loc#302 }
            # the Location has no port; reach it on ours
            got=$(curl_w "${opts[@]}" "${resolve[@]}" "${loc/:\/\/$host\//://$host:$port/}" | sha256sum | cut -d' ' -f1)
            [[ sha256:$got == "$digest" ]] || die "self-check: $loc served content with sha256 $got"
        done
    done
    log "self-check passed: /v2/, manifest digests, 302s to the CDN names and blob contents (https and http)"
}

# ---------------------------------------------------------------------------------------------
# up / down / status

NAMES=(blackhole nginx registry-redirect registry-origin)

cmd_down() {
    local n
    if [[ ! -d $R/pids ]]; then log "nothing to stop in $R"; return 0; fi
    for n in "${NAMES[@]}"; do stop_one "$n"; done
    log "down: $R"
}

cmd_status() {
    local n rc=0
    for n in "${NAMES[@]}"; do
        if alive "$n"; then echo "$n: running (pid $(<"$(pid_file "$n")"))"; else echo "$n: stopped"; rc=1; fi
    done
    return $rc
}

UP_OK=0
on_up_exit() {
    if [[ $UP_OK != 1 ]]; then
        log "up failed; stopping what was started (files kept in $R for inspection)"
        cmd_down || true
    fi
}

cmd_up() {
    local t0=$SECONDS
    check_tools
    cmd_down >/dev/null 2>&1 || true # idempotent: a second up restarts the world
    trap on_up_exit EXIT
    mkdir -p "$R/pids" "$R/registry" "$R/nginx/logs" "$R/nginx/tmp"
    rm -f "$R/world.env" "$R/connect-to.conf"
    rm -rf "$R/registry/storage"
    mkdir -p "$R/registry/storage"
    : >"$R/nginx/logs/access.log"
    : >"$R/nginx/logs/error.log"

    make_certs
    build_image
    write_client_files

    local ports
    mapfile -t ports < <(free_ports 5)
    REG_PORT=${ports[0]} ORIGIN_PORT=${ports[1]} TLS_PORT=${ports[2]} HTTP_PORT=${ports[3]} REFUSED_PORT=${ports[4]}

    # origin registry: TLS, no redirects; used to push and for direct pulls by 127.0.0.1
    write_registry_config "$R/registry/origin.yml" "$ORIGIN_PORT" origin
    start registry-origin "$R/registry/origin.log" docker-registry serve "$R/registry/origin.yml"
    # redirecting registry: plain HTTP on loopback, only nginx talks to it
    write_registry_config "$R/registry/redirect.yml" "$REG_PORT" redirect
    start registry-redirect "$R/registry/redirect.log" docker-registry serve "$R/registry/redirect.yml"

    write_nginx_config
    nginx -t -q -e "$R/nginx/logs/error.log" -p "$R/nginx" -c "$R/nginx/nginx.conf" 2>"$R/nginx/logs/nginx-t.log" ||
        { tail_log "$R/nginx/logs/nginx-t.log"; die "nginx rejected $R/nginx/nginx.conf"; }
    start nginx "$R/nginx/logs/stderr.log" nginx -e "$R/nginx/logs/error.log" -p "$R/nginx" -c "$R/nginx/nginx.conf"

    start blackhole "$R/blackhole.log" "$PY" "$HERE/blackhole.py" 127.0.0.1 0 "$R"

    wait_until registry-origin "$R/registry/origin.log" "origin registry on 127.0.0.1:$ORIGIN_PORT" \
        clean curl -sf --max-time 2 --cacert "$R/ca/ca.pem" "https://127.0.0.1:$ORIGIN_PORT/v2/"
    wait_until registry-redirect "$R/registry/redirect.log" "redirecting registry on 127.0.0.1:$REG_PORT" \
        clean curl -sf --max-time 2 "http://127.0.0.1:$REG_PORT/v2/"
    wait_until nginx "$R/nginx/logs/error.log" "nginx TLS on 127.0.0.1:$TLS_PORT" \
        clean curl -sf --max-time 2 --cacert "$R/ca/ca.pem" --resolve "${REGISTRY_NAMES[0]}:$TLS_PORT:127.0.0.1" \
        "https://${REGISTRY_NAMES[0]}:$TLS_PORT/v2/"
    wait_until nginx "$R/nginx/logs/error.log" "nginx HTTP on 127.0.0.1:$HTTP_PORT" \
        clean curl -sf --max-time 2 -H "Host: ${REGISTRY_NAMES[0]}" "http://127.0.0.1:$HTTP_PORT/v2/"
    wait_until blackhole "$R/blackhole.log" "blackhole listener" grep -q '^ready ' "$R/blackhole.log"
    BLACKHOLE_PORT=$(sed -n 's/^ready //p' "$R/blackhole.log")

    log "pushing the test images to 127.0.0.1:$ORIGIN_PORT"
    clean skopeo --policy "$R/policy.json" copy --all --quiet --dest-cert-dir "$R/certdir" \
        "dir:$R/image/operator-index" "docker://127.0.0.1:$ORIGIN_PORT/$OPERATOR_INDEX_REPO:$OPERATOR_INDEX_TAG" ||
        die "skopeo copy of $OPERATOR_INDEX_REPO failed"
    clean skopeo --policy "$R/policy.json" copy --quiet --dest-cert-dir "$R/certdir" \
        "dir:$R/image/ubi-minimal" "docker://127.0.0.1:$ORIGIN_PORT/$UBI_REPO:$UBI_TAG" ||
        die "skopeo copy of $UBI_REPO failed"

    self_check
    write_outputs
    UP_OK=1
    trap - EXIT
    log "up in $((SECONDS - t0))s: https on 127.0.0.1:$TLS_PORT, http on 127.0.0.1:$HTTP_PORT," \
        "origin 127.0.0.1:$ORIGIN_PORT, blackhole 127.0.0.1:$BLACKHOLE_PORT"
    log "wrote $R/world.env and $R/connect-to.conf"
}

main() {
    [[ $# -ge 1 ]] || usage
    local cmd=$1
    shift
    case $cmd in
        deps) cmd_deps ;;
        up | down | status)
            [[ $# -eq 1 ]] || usage
            if [[ $cmd == up ]]; then mkdir -p "$1"; fi
            if [[ $cmd != up && ! -d $1 ]]; then
                [[ $cmd == down ]] && { log "no run dir $1; nothing to stop"; return 0; }
                die "no run dir $1"
            fi
            R=$(cd "$1" && pwd)
            [[ $R != / ]] || die "refusing / as run dir"
            [[ $R != *[[:space:]\'\"\;]* ]] || die "run dir path must not contain spaces, quotes or ';': $R"
            "cmd_$cmd"
            ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
