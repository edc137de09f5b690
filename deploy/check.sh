#!/usr/bin/env bash
# Checks every deployment artefact under deploy/ with the real tool where one exists, and runs
# the launcher against the real jar:
#
#   kubernetes   `kubectl kustomize deploy/kubernetes` renders; the rendered objects have the
#                fields issue 6 requires (replicas, probes, security context, drain timing,
#                ConfigMap mount, PDB, HPA, NetworkPolicy, ServiceMonitor, PrometheusRule);
#                the PrometheusRule's groups pass `promtool check rules` and equal
#                deploy/prometheus/alerts.yml; the allowlist file passes --check-config
#   systemd      `systemd-analyze verify` and `systemd-analyze security --offline` on the unit,
#                the unit's drain and reload settings, `systemd-sysusers --dry-run`, the env file
#   container    hadolint if installed (Debian has no package: SKIP otherwise), and a structural
#                check of the Containerfile (stages, numeric USER, ports, HEALTHCHECK, STOPSIGNAL)
#   openshift    the Proxy object's fields, --check-config on its allowlist
#   launcher     `bash -n`, shellcheck; then it starts the jar on free loopback ports until
#                /readyz answers 200 (building the class-data-sharing archive first, which the
#                JVM must then have mapped), runs the Containerfile's HEALTHCHECK command against it,
#                reloads on SIGHUP, and on SIGTERM with a tunnel open drains (/readyz 503, no
#                new connections, the tunnel still relays) and exits 0 within the grace
#
# Usage: deploy/check.sh     (from any directory)
# Needs: kubectl, promtool, python3 with PyYAML (python3-yaml), systemd-analyze, shellcheck,
# java 17, and the jar: EGRESS_PROXY_JAR, default proxy/target/egress-proxy.jar
# (mvn -B -q package -DskipTests). Prints one line per check and ends with "N passed, N failed";
# exits 1 if any check failed.
set -euo pipefail

deploy="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$deploy")"
jar="${EGRESS_PROXY_JAR:-$root/proxy/target/egress-proxy.jar}"
launcher="$deploy/bin/egress-proxy"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/egress-proxy-deploy-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
skipped=0

pass() {
  echo "PASS  $1"
  passed=$((passed + 1))
}

fail() {
  echo "FAIL  $1"
  failed=$((failed + 1))
  if [[ -n "${2:-}" && -s "$2" ]]; then
    sed -e 's/^/      | /' "$2" | head -n 40
  fi
}

skip() {
  echo "SKIP  $1"
  skipped=$((skipped + 1))
}

# check NAME COMMAND...: PASS if COMMAND exits 0, else FAIL with its output.
check() {
  local name="$1" log="$tmp/log"
  shift
  if "$@" >"$log" 2>&1; then
    pass "$name"
  else
    fail "$name (exit $?)" "$log"
  fi
}

# Reads PASS/FAIL/SKIP lines that a helper printed and counts them like our own.
count_lines() {
  local line
  while IFS= read -r line; do
    case "$line" in
      "PASS  "*) pass "${line#PASS  }" ;;
      "FAIL  "*) fail "${line#FAIL  }" ;;
      "SKIP  "*) skip "${line#SKIP  }" ;;
      *) echo "      | $line" ;;
    esac
  done
}

have() {
  command -v "$1" >/dev/null 2>&1
}

# helper NAME COMMAND...: runs a helper that prints PASS/FAIL/SKIP lines, and counts a crash of
# the helper itself (a traceback, a missing file) as a failure too.
helper() {
  local name="$1" out="$tmp/helper.out" rc=0
  shift
  "$@" >"$out" 2>&1 || rc=$?
  count_lines <"$out"
  if ((rc != 0)); then
    fail "$name: helper exited $rc"
  fi
}

# --- tools -------------------------------------------------------------------------------------
have_yaml=false
if have python3 && python3 -c 'import yaml' 2>/dev/null; then
  have_yaml=true
  pass "python3 with PyYAML"
else
  fail "python3 with PyYAML missing (Debian: apt-get install python3-yaml); the YAML checks cannot run"
fi
have_jar=false
if [[ -f "$jar" ]] && have java; then
  have_jar=true
  pass "jar $jar"
else
  fail "jar $jar missing or no java (build: mvn -B -q package -DskipTests, or set EGRESS_PROXY_JAR)"
fi

# --- kubernetes --------------------------------------------------------------------------------
rendered="$tmp/rendered.yaml"
rules="$tmp/prometheusrule-rules.yml"
if ! have kubectl; then
  fail "kubectl kustomize deploy/kubernetes: kubectl not found"
elif kubectl kustomize "$deploy/kubernetes" >"$rendered" 2>"$tmp/log"; then
  pass "kubectl kustomize deploy/kubernetes renders ($(grep -c '^kind:' "$rendered") objects)"
  if [[ "$have_yaml" == true ]]; then
    cat >"$tmp/manifests.py" <<'PY'
"""Asserts the fields issue 6 requires on the rendered manifests; prints PASS/FAIL lines."""
import re
import sys

import yaml

rendered, alerts_path, rules_out = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)


def report(ok, what, why=""):
    print(("PASS  " if ok else "FAIL  ") + what + ("" if ok or not why else ": " + why))


def one(kind):
    objs = by_kind.get(kind, [])
    report(len(objs) == 1, f"rendered {kind}", f"found {len(objs)}")
    return objs[0] if objs else None


def duration_seconds(text):
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2) or "ms"  # HOCON: a bare number is milliseconds
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


dep = one("Deployment")
svc = one("Service")
cm = one("ConfigMap")
pod_labels = {}
if dep:
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    c = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    report(spec.get("replicas", 1) >= 2, "Deployment replicas >= 2", f"replicas={spec.get('replicas')}")
    report(matches(spec["selector"]["matchLabels"], pod_labels), "Deployment selector matches its pod labels")
    report(set(ports.values()) >= {3128, 9128}, "container ports 3128 and 9128", str(ports))

    def probe(name, path):
        p = c.get(name) or {}
        get = p.get("httpGet") or {}
        port = ports.get(get.get("port"), get.get("port"))
        report(port == 9128 and get.get("path") == path, f"{name} GET {path} on 9128",
               f"path={get.get('path')} port={get.get('port')}")

    probe("readinessProbe", "/readyz")
    probe("livenessProbe", "/healthz")
    if "startupProbe" in c:
        probe("startupProbe", "/healthz")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    report(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, "runAsNonRoot")
    report(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    report(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    report("ALL" in (csc.get("capabilities", {}).get("drop") or []), "capabilities drop ALL")
    seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    report(seccomp == "RuntimeDefault", "seccompProfile RuntimeDefault", str(seccomp))
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    tmp_mount = mounts.get("/tmp")
    report(bool(tmp_mount) and "emptyDir" in vols.get(tmp_mount["name"], {}), "/tmp is an emptyDir")
    res = c.get("resources", {})
    report(all(res.get(k, {}).get(r) for k in ("requests", "limits") for r in ("cpu", "memory")),
           "resources requests and limits for cpu and memory")
    report(bool(pod.get("topologySpreadConstraints")) or "podAntiAffinity" in pod.get("affinity", {}),
           "topologySpreadConstraints or podAntiAffinity")
    image = c.get("image", "")
    report(":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), "image has a pinned tag", image)

    # The ConfigMap as a directory: no subPath, and --config points into it.
    cm_mounts = [m for m in c.get("volumeMounts", []) if "configMap" in vols.get(m["name"], {})]
    report(len(cm_mounts) == 1 and "subPath" not in cm_mounts[0] and "subPathExpr" not in cm_mounts[0],
           "ConfigMap mounted as a directory (no subPath)", str(cm_mounts))
    args = c.get("args", []) + c.get("command", [])
    cfg = args[args.index("--config") + 1] if "--config" in args else None
    if cm_mounts and cfg:
        mdir = cm_mounts[0]["mountPath"].rstrip("/")
        cm_name = vols[cm_mounts[0]["name"]]["configMap"]["name"]
        key = cfg[len(mdir) + 1:] if cfg.startswith(mdir + "/") else None
        report(key is not None, f"--config {cfg} is inside the ConfigMap mount {mdir}")
        report(bool(cm) and cm["metadata"]["name"] == cm_name and key in cm.get("data", {}),
               f"ConfigMap {cm_name} holds {key}")
        report(bool(cm) and "allowlist" in cm.get("data", {}).get(key or "", ""), "ConfigMap holds the allowlist")
    else:
        report(False, "--config points into the ConfigMap mount", f"args={args}")

    # Drain timing: the kubelet's grace must cover the preStop sleep plus the proxy's drain.
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    grace = duration_seconds(env.get("EGRESS_PROXY_SHUTDOWN_GRACE", "30s"))
    pre = (c.get("lifecycle") or {}).get("preStop") or {}
    report(bool(pre), "preStop hook present")
    sleep = 0
    cmd = (pre.get("exec") or {}).get("command") or []
    if cmd and cmd[0].endswith("sleep") and len(cmd) > 1:
        sleep = int(cmd[1])
    elif "sleep" in pre:
        sleep = int(pre["sleep"]["seconds"])
    tgp = pod.get("terminationGracePeriodSeconds", 30)
    report(tgp > 30, "terminationGracePeriodSeconds > 30", f"{tgp}")
    report(grace is not None and tgp > sleep + grace,
           f"terminationGracePeriodSeconds {tgp} > preStop {sleep}s + shutdown grace {grace}s")

if svc:
    sp = {p["port"]: p for p in svc["spec"]["ports"]}
    report(set(sp) >= {3128, 9128}, "Service ports 3128 and 9128", str(sorted(sp)))
    report(matches(svc["spec"].get("selector"), pod_labels), "Service selects the pods")

pdb = one("PodDisruptionBudget")
if pdb:
    report(matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)
           and ("maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]), "PodDisruptionBudget selects the pods")

hpa = one("HorizontalPodAutoscaler")
if hpa:
    hs = hpa["spec"]
    report(hpa["apiVersion"] == "autoscaling/v2" and hs["scaleTargetRef"]["kind"] == "Deployment"
           and bool(dep) and hs["scaleTargetRef"]["name"] == dep["metadata"]["name"],
           "HPA autoscaling/v2 targets the Deployment")
    report(hs.get("minReplicas", 1) >= 2, "HPA minReplicas >= 2")
    report(any(m.get("resource", {}).get("name") == "cpu" for m in hs.get("metrics", [])), "HPA scales on CPU")

np = one("NetworkPolicy")
if np:
    ns = np["spec"]
    report(matches(ns["podSelector"].get("matchLabels"), pod_labels), "NetworkPolicy selects the pods")
    report(set(ns.get("policyTypes", [])) == {"Ingress", "Egress"}, "NetworkPolicy covers Ingress and Egress")
    ingress_ports = {}
    for rule in ns.get("ingress", []):
        for p in rule.get("ports", []):
            ingress_ports.setdefault(p["port"], []).append(rule.get("from"))
    report(3128 in ingress_ports and all(ingress_ports[3128]), "NetworkPolicy ingress 3128 from selected peers only")
    report(9128 in ingress_ports and all(ingress_ports[9128]), "NetworkPolicy ingress 9128 from selected peers only")
    report(not any(ingress_ports.get(9128, [[]])[0] == f for f in ingress_ports.get(3128, [])),
           "NetworkPolicy: 9128 peers differ from the 3128 clients")
    egress_ports = {p["port"] for r in ns.get("egress", []) for p in r.get("ports", [])}
    report(egress_ports >= {443, 80, 53}, "NetworkPolicy egress 443, 80 and DNS", str(sorted(egress_ports)))

sm = one("ServiceMonitor")
if sm and svc:
    names = {p.get("name"): p["port"] for p in svc["spec"]["ports"]}
    ep = sm["spec"]["endpoints"][0]
    report(sm["apiVersion"] == "monitoring.coreos.com/v1" and names.get(ep.get("port")) == 9128
           and ep.get("path", "/metrics") == "/metrics", "ServiceMonitor scrapes /metrics on 9128")
    report(matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})),
           "ServiceMonitor selects the Service")
    job_label = sm["spec"].get("jobLabel")
    job = svc["metadata"].get("labels", {}).get(job_label) if job_label else svc["metadata"]["name"]
    report(job == "egress-proxy", 'scrape job is "egress-proxy" (alert EgressProxyDown expects it)', str(job))

pr = one("PrometheusRule")
if pr:
    groups = pr["spec"]["groups"]
    with open(rules_out, "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False, allow_unicode=True)
    alerts = yaml.safe_load(open(alerts_path))
    report(pr["apiVersion"] == "monitoring.coreos.com/v1" and groups == alerts["groups"],
           "PrometheusRule groups identical to deploy/prometheus/alerts.yml",
           "run deploy/kubernetes/generate-prometheusrule.sh")
PY
    helper "rendered manifests" python3 "$tmp/manifests.py" "$rendered" "$deploy/prometheus/alerts.yml" "$rules"
    if [[ -s "$rules" ]]; then
      if have promtool; then
        check "promtool check rules on the PrometheusRule's groups" promtool check rules "$rules"
      else
        fail "promtool check rules: promtool not found (Debian: apt-get install prometheus)"
      fi
    fi
  fi
else
  fail "kubectl kustomize deploy/kubernetes" "$tmp/log"
fi
# shellcheck disable=SC2016  # the inner script's $1..$3 are its own arguments
check "prometheusrule.yaml is what generate-prometheusrule.sh makes of alerts.yml" \
  bash -c '"$1" "$2" && diff -u "$3" "$2"' _ "$deploy/kubernetes/generate-prometheusrule.sh" \
  "$tmp/prometheusrule.yaml" "$deploy/kubernetes/prometheusrule.yaml"
if [[ "$have_jar" == true ]]; then
  check "--check-config deploy/kubernetes/egress-proxy.conf" \
    env EGRESS_PROXY_JAR="$jar" "$launcher" --check-config "$deploy/kubernetes/egress-proxy.conf"
fi

# --- systemd -----------------------------------------------------------------------------------
unit="$deploy/systemd/egress-proxy.service"
if have systemd-analyze; then
  # systemd-analyze verify needs no running systemd (it loads the unit into an offline manager),
  # but it does check that every Exec*= binary exists. /usr/bin/egress-proxy is where the unit
  # expects the installed launcher; verify a copy pointing at the launcher in this tree.
  mkdir -p "$tmp/systemd"
  sed -e "s#/usr/bin/egress-proxy#$launcher#g" "$unit" >"$tmp/systemd/egress-proxy.service"
  # Any output (an unknown key, a bad value) counts as a failure, not only a non-zero exit.
  # shellcheck disable=SC2016  # the inner script's $1 is its own argument
  check "systemd-analyze verify egress-proxy.service" \
    bash -c 'out="$(systemd-analyze verify "$1" 2>&1)"; rc=$?; printf "%s" "$out"; [[ $rc == 0 && -z "$out" ]]' \
    _ "$tmp/systemd/egress-proxy.service"
  check "systemd-analyze security --offline: exposure <= 2.0" \
    systemd-analyze security --offline=yes --threshold=20 "$tmp/systemd/egress-proxy.service"
else
  fail "systemd-analyze not found (Debian: apt-get install systemd)"
fi
if [[ "$have_yaml" == true ]]; then
  cat >"$tmp/unit.py" <<'PY'
"""Asserts the unit's drain, reload and hardening settings; prints PASS/FAIL lines."""
import re
import sys

unit, env_file = sys.argv[1:3]
keys = {}
for line in open(unit):
    line = line.strip()
    if line and not line.startswith(("#", ";", "[")) and "=" in line:
        k, v = line.split("=", 1)
        keys.setdefault(k.strip(), []).append(v.strip())


def report(ok, what, why=""):
    print(("PASS  " if ok else "FAIL  ") + what + ("" if ok or not why else ": " + why))


def one(k):
    return (keys.get(k) or [None])[-1]


grace = 30
for line in open(env_file):
    m = re.fullmatch(r"\s*#?\s*EGRESS_PROXY_SHUTDOWN_GRACE=(\d+)s\s*", line)
    if m and not line.lstrip().startswith("#"):
        grace = int(m.group(1))
stop = one("TimeoutStopSec") or "90"
report(int(stop.rstrip("s")) > grace, f"unit TimeoutStopSec={stop} > shutdown grace {grace}s")
report(any("kill -HUP $MAINPID" in v for v in keys.get("ExecReload", [])), "unit ExecReload sends SIGHUP")
report(any("--check-config" in v for v in keys.get("ExecStartPre", [])), "unit ExecStartPre runs --check-config")
report("MemoryDenyWriteExecute" not in keys, "unit does not set MemoryDenyWriteExecute (the JIT needs W+X)")
report(keys.get("CapabilityBoundingSet") == [""], "unit CapabilityBoundingSet= empty")
report(one("LimitNOFILE") == "65536", "unit LimitNOFILE=65536")
report(one("User") not in (None, "root") or one("DynamicUser") == "yes", "unit runs as a dedicated user")
for k, v in [("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
             ("PrivateDevices", "yes"), ("NoNewPrivileges", "yes"), ("Restart", "on-failure"),
             ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX")]:
    report(one(k) == v, f"unit {k}={v}", f"is {one(k)}")
report("@system-service" in keys.get("SystemCallFilter", []), "unit SystemCallFilter=@system-service")
bad = [l.rstrip() for l in open(env_file)
       if l.strip() and not l.lstrip().startswith("#")
       and not re.fullmatch(r"(EGRESS_PROXY_[A-Z_]+|JAVA_HOME)=\S*\n?", l)]
report(not bad, "egress-proxy.env: only comments and KEY=value lines", str(bad))
PY
  helper "unit settings" python3 "$tmp/unit.py" "$unit" "$deploy/systemd/egress-proxy.env"
fi
if have systemd-sysusers; then
  mkdir -p "$tmp/sysroot/etc"
  : >"$tmp/sysroot/etc/passwd"
  : >"$tmp/sysroot/etc/group"
  check "systemd-sysusers --dry-run egress-proxy.sysusers" \
    systemd-sysusers --root="$tmp/sysroot" --dry-run "$deploy/systemd/egress-proxy.sysusers"
else
  skip "systemd-sysusers not installed"
fi

# --- container ---------------------------------------------------------------------------------
containerfile="$deploy/container/Containerfile"
if have hadolint; then
  check "hadolint deploy/container/Containerfile" hadolint "$containerfile"
else
  skip "hadolint: not installed, and Debian has no hadolint package (apt-cache policy hadolint: no candidate); only a static binary from GitHub provides it"
fi
if [[ "$have_yaml" == true ]]; then
  cat >"$tmp/containerfile.py" <<'PY'
"""Structural checks of the Containerfile that hadolint does not make; prints PASS/FAIL lines.
Also writes the HEALTHCHECK command (an exec-form JSON array) to argv[3] for the launcher test."""
import json
import os
import sys

path, root, healthcheck_out = sys.argv[1:4]
lines, buf = [], ""
for raw in open(path):
    s = raw.rstrip("\n")
    if not buf and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if s.endswith("\\"):
        buf += s[:-1] + " "
        continue
    lines.append((buf + s).strip())
    buf = ""
known = {"FROM", "ARG", "RUN", "COPY", "ADD", "ENV", "LABEL", "USER", "WORKDIR", "EXPOSE",
         "HEALTHCHECK", "STOPSIGNAL", "ENTRYPOINT", "CMD", "VOLUME", "SHELL", "ONBUILD"}
ins = [(l.split(None, 1)[0].upper(), (l.split(None, 1) + [""])[1]) for l in lines]


def report(ok, what, why=""):
    print(("PASS  " if ok else "FAIL  ") + what + ("" if ok or not why else ": " + why))


unknown = [i for i, _ in ins if i not in known]
report(not unknown, "Containerfile: only known instructions", str(unknown))
froms = [i for i, (k, _) in enumerate(ins) if k == "FROM"]
report(len(froms) >= 2, "Containerfile: multi-stage", f"{len(froms)} FROM")
final = ins[froms[-1]:] if froms else []
stages = [a.split()[-1] for k, a in ins if k == "FROM" and " AS " in a.upper()]
for k, a in ins:
    if k == "COPY" and "--from=" in a:
        src = a.split("--from=")[1].split()[0]
        report(src in stages, f"Containerfile: COPY --from={src} names a stage")
    elif k == "COPY":
        srcs = [w for w in a.split() if not w.startswith("--")][:-1]
        missing = [s for s in srcs if not os.path.exists(os.path.join(root, s))]
        report(not missing, f"Containerfile: COPY {' '.join(srcs)} exists in the build context", str(missing))
users = [a for k, a in final if k == "USER"]
report(bool(users) and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0",
       "Containerfile: final stage runs as a numeric non-root USER", str(users))
exposed = {p.split("/")[0] for k, a in final if k == "EXPOSE" for p in a.split()}
report(exposed >= {"3128", "9128"}, "Containerfile: EXPOSE 3128 9128", str(sorted(exposed)))
stop = [a for k, a in final if k == "STOPSIGNAL"]
report(stop == ["SIGTERM"], "Containerfile: STOPSIGNAL SIGTERM", str(stop))
report(any(k == "LABEL" and "org.opencontainers.image.title" in a for k, a in final), "Containerfile: OCI labels")
hc = [a for k, a in final if k == "HEALTHCHECK"]
cmd = None
if hc and "CMD" in hc[-1]:
    try:
        cmd = json.loads(hc[-1].split("CMD", 1)[1].strip())
    except ValueError:
        pass
report(isinstance(cmd, list) and any("9128" in c for c in cmd), "Containerfile: exec-form HEALTHCHECK on the admin port")
if isinstance(cmd, list):
    json.dump(cmd, open(healthcheck_out, "w"))
ep = [a for k, a in final if k == "ENTRYPOINT"]
report(bool(ep) and ep[-1].startswith("["), "Containerfile: exec-form ENTRYPOINT (signals reach the JVM)", str(ep))
PY
  helper "Containerfile" python3 "$tmp/containerfile.py" "$containerfile" "$root" "$tmp/healthcheck.json"
fi

# --- openshift ---------------------------------------------------------------------------------
if [[ "$have_yaml" == true ]]; then
  cat >"$tmp/openshift.py" <<'PY'
"""Checks the cluster-wide Proxy object; prints PASS/FAIL lines."""
import sys

import yaml

p = yaml.safe_load(open(sys.argv[1]))


def report(ok, what, why=""):
    print(("PASS  " if ok else "FAIL  ") + what + ("" if ok or not why else ": " + why))


report(p.get("apiVersion") == "config.openshift.io/v1" and p.get("kind") == "Proxy"
       and p["metadata"]["name"] == "cluster", "OpenShift Proxy object is config.openshift.io/v1 Proxy cluster")
spec = p.get("spec", {})
for k in ("httpProxy", "httpsProxy"):
    report(str(spec.get(k, "")).startswith("http://") and str(spec.get(k)).endswith(":3128"),
           f"OpenShift Proxy {k} is http://...:3128", str(spec.get(k)))
no_proxy = [e.strip() for e in str(spec.get("noProxy", "")).split(",")]
need = [".cluster.local", ".svc", "169.254.169.254"]
report(all(e in no_proxy for e in need) and any(e.startswith("api-int.") for e in no_proxy)
       and sum("cidr" in e for e in no_proxy) == 3,
       "OpenShift Proxy noProxy has .cluster.local, .svc, api-int, 169.254.169.254 and the three CIDRs", str(no_proxy))
PY
  helper "OpenShift Proxy" python3 "$tmp/openshift.py" "$deploy/openshift/proxy-cluster.yaml"
fi
if [[ "$have_jar" == true ]]; then
  check "--check-config deploy/openshift/egress-proxy-openshift.conf" \
    env EGRESS_PROXY_JAR="$jar" "$launcher" --check-config "$deploy/openshift/egress-proxy-openshift.conf"
fi

# --- launcher ----------------------------------------------------------------------------------
check "bash -n deploy/bin/egress-proxy" bash -n "$launcher"
if have shellcheck; then
  check "shellcheck deploy/bin/egress-proxy, deploy/check.sh, generate-prometheusrule.sh, bench/run.sh" \
    shellcheck "$launcher" "$deploy/check.sh" "$deploy/kubernetes/generate-prometheusrule.sh" "$root/bench/run.sh"
else
  fail "shellcheck not found (Debian: apt-get install shellcheck)"
fi

if [[ "$have_jar" == true ]] && have python3; then
  cat >"$tmp/launcher.py" <<'PY'
"""Starts the launcher on the real jar and drives it as systemd, Kubernetes and podman would:
readiness, the image's HEALTHCHECK, SIGHUP reload, SIGTERM drain with a tunnel open. Prints
PASS/FAIL lines."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

launcher, jar, workdir, healthcheck_json = sys.argv[1:5]
GRACE = 10


def report(ok, what, why=""):
    print(("PASS  " if ok else "FAIL  ") + what + ("" if ok or not why else ": " + why), flush=True)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


# An origin for the tunnel: echoes what it gets.
origin = socket.socket()
origin.bind(("127.0.0.1", 0))
origin.listen()


def echo():
    while True:
        try:
            conn, _ = origin.accept()
        except OSError:
            return

        def serve(c):
            with c:
                while data := c.recv(65536):
                    c.sendall(data)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


threading.Thread(target=echo, daemon=True).start()

proxy_port, admin_port = free_port(), free_port()
conf = os.path.join(workdir, "egress-proxy.conf")
with open(conf, "w") as f:
    f.write(f"""egress-proxy {{
  listen {{ host = "127.0.0.1", port = {proxy_port} }}
  admin {{ host = "127.0.0.1", port = {admin_port} }}
  allowlist {{ presets = [], hosts = ["tunnel.test"] }}
  destinations {{ connect-to {{ "tunnel.test:443" = "127.0.0.1:{origin.getsockname()[1]}" }} }}
  shutdown {{ grace = {GRACE}s }}
}}
""")
admin = f"http://127.0.0.1:{admin_port}"
archive = os.path.join(workdir, "egress-proxy.jsa")
env = dict(os.environ, EGRESS_PROXY_JAR=jar, EGRESS_PROXY_HEAP="64m", EGRESS_PROXY_DIRECT_MEMORY="64m",
           EGRESS_PROXY_CDS_ARCHIVE=archive)
for k in ("EGRESS_PROXY_CONFIG", "EGRESS_PROXY_PORT", "EGRESS_PROXY_ADMIN_PORT", "EGRESS_PROXY_SHUTDOWN_GRACE",
          "EGRESS_PROXY_CDS"):
    env.pop(k, None)
out = open(os.path.join(workdir, "stdout"), "w")
err = open(os.path.join(workdir, "stderr"), "w")
# A session of its own, so that cleanup can kill the whole group even if the launcher did not
# exec (a bash parent with a java child).
proc = subprocess.Popen([launcher, "--config", conf], env=env, stdout=out, stderr=err, start_new_session=True)
try:
    ready = wait_for(lambda: status(admin + "/readyz")[0] == 200, 60)
    report(ready, f"launcher starts the jar: /readyz 200 on 127.0.0.1:{admin_port}")
    if not ready:
        raise SystemExit
    exe = os.path.basename(os.readlink(f"/proc/{proc.pid}/exe"))
    report(exe == "java", "launcher exec's java (same PID, so signals reach the JVM)", f"PID {proc.pid} is {exe}")
    report(status(admin + "/healthz")[0] == 200, "/healthz 200")
    # The first start built the class-data-sharing archive; the JVM has it mapped (a JVM that
    # rejected it would run on without mapping it).
    with open(f"/proc/{proc.pid}/maps") as maps:
        mapped = archive in maps.read()
    report(os.path.getsize(archive) > 0 and mapped, "launcher built the CDS archive and the JVM maps it", archive)

    try:
        hc = json.load(open(healthcheck_json))
        r = subprocess.run(hc, env=dict(os.environ, EGRESS_PROXY_ADMIN_PORT=str(admin_port)), timeout=5,
                           capture_output=True, text=True)
        report(r.returncode == 0, "Containerfile HEALTHCHECK command succeeds against the proxy", r.stderr.strip())
        r = subprocess.run(hc, env=dict(os.environ, EGRESS_PROXY_ADMIN_PORT=str(free_port())), timeout=5,
                           capture_output=True, text=True)
        report(r.returncode != 0, "Containerfile HEALTHCHECK command fails with no admin listener")
    except (OSError, ValueError) as e:
        report(False, "Containerfile HEALTHCHECK command", str(e))

    def reloads():
        text = status(admin + "/metrics")[1]
        for line in text.splitlines():
            if line.startswith('egress_proxy_config_reloads_total{result="success"}'):
                return float(line.split()[-1])
        return 0.0

    before = reloads()
    proc.send_signal(signal.SIGHUP)
    report(wait_for(lambda: reloads() > before, 10), "SIGHUP reloads the config (config_reloads_total success +1)")

    # A tunnel held open through the drain.
    t = socket.create_connection(("127.0.0.1", proxy_port), timeout=5)
    t.sendall(b"CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = t.recv(4096)
        if not chunk:
            break
        head += chunk
    report(head.startswith(b"HTTP/1.1 200"), "CONNECT through the proxy opens a tunnel", head[:60].decode(errors="replace"))

    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    report(wait_for(lambda: status(admin + "/readyz")[0] == 503, 5), "after SIGTERM /readyz answers 503")

    def refused():
        try:
            socket.create_connection(("127.0.0.1", proxy_port), timeout=1).close()
            return False
        except OSError:
            return True

    report(wait_for(refused, 5), "after SIGTERM the proxy port refuses new connections")
    t.sendall(b"still relaying")
    got = b""
    while len(got) < 14:
        chunk = t.recv(64)
        if not chunk:
            break
        got += chunk
    report(got == b"still relaying", "the open tunnel keeps relaying during the drain", repr(got))
    report(proc.poll() is None, "the process waits for the open tunnel")
    t.close()
    try:
        rc = proc.wait(timeout=GRACE + 5)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.monotonic() - start
    report(rc == 0 and took < GRACE, f"exits 0 within the {GRACE}s grace once the tunnel closes",
           f"exit {rc} after {took:.1f}s")
finally:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    origin.close()
PY
  mkdir -p "$tmp/run"
  helper "launcher run" python3 "$tmp/launcher.py" "$launcher" "$jar" "$tmp/run" "$tmp/healthcheck.json"
  if ((failed > 0)) && [[ -s "$tmp/run/stderr" ]]; then
    echo "      proxy stderr (last lines):"
    tail -n 15 "$tmp/run/stderr" | sed -e 's/^/      | /'
  fi
else
  fail "launcher run: needs the jar, java and python3"
fi

echo
if ((skipped > 0)); then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
((failed == 0))
