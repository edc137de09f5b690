#!/usr/bin/env bash
# Runs every test: the Maven build (unit tests, fuzz regression inputs, integration tests over
# real sockets with real curl, promtool, Prometheus, systemd-analyze, kubectl), the end-to-end
# suite (a real registry behind 302s to CDN names, real skopeo and podman pulling through the
# built jar), a smoke run of the benchmark, then a bounded coverage-guided fuzzing run of each
# parser. Needs what
# scripts/install-test-deps.sh installs; the end-to-end suite needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
# Failsafe adds to the summary files it finds, so a failure left from an earlier run in this tree
# would fail this one: start from fresh reports (a clean clone has none).
rm -rf proxy/target/failsafe-reports*
mvn -B verify
e2e/run.sh proxy/target/egress-proxy.jar
# A short smoke run of the benchmark (egress-proxy and direct only; asserts nothing about speed).
bench/run.sh --quick --jar proxy/target/egress-proxy.jar
# Coverage-guided fuzzing for a bounded time (Jazzer fuzzes one target per JVM): the CONNECT
# authority, the request head, the TLS ClientHello of the SNI check, and plain-HTTP forwarding
# (one request in, at most one request out at the origin, framed as the proxy decided).
for target in ParserFuzzTest#connectAuthorityParsesOrRefusesCleanly \
    ParserFuzzTest#requestHeadIsAnsweredOrPassedOnWithoutLeaksOrUnsafeStatusLines \
    ParserFuzzTest#clientHelloParsesOrRefusesCleanly \
    ForwardingFuzzTest#oneRequestReachesTheOriginAtMostOnceAsTheProxyFramedIt; do
  JAZZER_FUZZ=1 mvn -B -q -pl proxy surefire:test@fuzz -Dtest="${target}"
done
rm -rf proxy/.cifuzz-corpus
