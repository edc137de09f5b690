#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real: curl (a real proxy client),
# prometheus (promtool, and a real Prometheus that scrapes the proxy), and the JDK and Maven
# if a machine lacks them. Run as root (CI runs as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(curl openssl ca-certificates prometheus)
command -v java >/dev/null || packages+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || packages+=(maven)
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
