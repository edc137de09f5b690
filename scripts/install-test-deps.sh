#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real: curl (a real proxy client), golang-go
# (SniCheckIT builds a Go net/http client, the HTTP stack of podman and skopeo),
# prometheus (promtool, and a real Prometheus that scrapes the proxy), systemd (systemd-analyze
# for the unit file), shellcheck and python3-yaml (deploy/check.sh), iproute2 and iptables (NetnsFaultsIT's
# lossy network namespace), gnuplot-nox (the plot of the soak, bench/run.sh --soak), chromium and
# chromium-driver (StatusPageIT drives the admin status page in headless Chromium), squid (a real parent
# proxy for the upstream-proxy tests), haproxy (a real L4 load balancer sending PROXY protocol), apache2-utils (htpasswd
# writes the bcrypt entries of ProxyAuthIT's users file), the registry world of the
# end-to-end suite (e2e/world.sh deps), and the JDK and Maven if a machine lacks them. kubectl is
# on these machines already. Run as root (CI runs as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(curl openssl ca-certificates prometheus systemd shellcheck python3 python3-yaml rsync golang-go iproute2 iptables gnuplot-nox chromium chromium-driver squid haproxy apache2-utils)
command -v java >/dev/null || packages+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || packages+=(maven)
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
# The registry world of the end-to-end suite: docker-registry, nginx, skopeo, podman, strace, ...
"$(dirname "$0")/../e2e/world.sh" deps
