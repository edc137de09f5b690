package dev.egressproxy.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.Reason;
import dev.egressproxy.tls.SniReason;
import dev.egressproxy.upstream.FailureCause;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

class ProxyMetricsTest {

    private final SimpleMeterRegistry registry = new SimpleMeterRegistry();

    @Test
    void tenThousandRefusedHostsLeaveAtMostCapPlusOneHostSeries() {
        int cap = 300;
        ProxyMetrics metrics = new ProxyMetrics(registry, cap, "test");
        for (int i = 0; i < 10_000; i++) {
            metrics.denied("host-" + i + ".example", Reason.HOST_NOT_ALLOWLISTED, "default");
        }
        List<String> hosts = registry.find(ProxyMetrics.DENIED).counters().stream()
                .map(c -> c.getId().getTag("host")).distinct().toList();
        assertThat(hosts).hasSize(cap + 1).contains(HostLabels.OTHER);
        double total = registry.find(ProxyMetrics.DENIED).counters().stream().mapToDouble(Counter::count).sum();
        assertThat(total).isEqualTo(10_000.0);
        assertThat(registry.get(ProxyMetrics.HOST_LABELS_OVERFLOW).tag("metric", "denied").counter().count())
                .isEqualTo(10_000.0 - cap);
    }

    @Test
    void sniMismatchHostsAreCappedLikeRefusedHostsWithTheirOwnOverflowSeries() {
        int cap = 3;
        ProxyMetrics metrics = new ProxyMetrics(registry, cap, "test");
        for (int i = 0; i < 10; i++) {
            metrics.sniMismatch("cdn" + i + ".quay.io", SniReason.SNI_MISMATCH);
        }
        metrics.sniMismatch("cdn0.quay.io", SniReason.NOT_TLS);
        metrics.sniMismatch("cdn0.quay.io", SniReason.NOT_TLS);

        List<String> hosts = registry.find(ProxyMetrics.SNI_MISMATCH).counters().stream()
                .map(c -> c.getId().getTag("host")).distinct().toList();
        assertThat(hosts).containsExactlyInAnyOrder("cdn0.quay.io", "cdn1.quay.io", "cdn2.quay.io", HostLabels.OTHER);
        assertThat(registry.get(ProxyMetrics.SNI_MISMATCH).tag("host", HostLabels.OTHER).tag("reason", "sni_mismatch")
                .counter().count()).isEqualTo(7.0);
        assertThat(registry.get(ProxyMetrics.SNI_MISMATCH).tag("host", "cdn0.quay.io").tag("reason", "not_tls")
                .counter().count()).isEqualTo(2.0);
        assertThat(registry.get(ProxyMetrics.HOST_LABELS_OVERFLOW).tag("metric", "sni_mismatch").counter().count())
                .isEqualTo(7.0);
        assertThat(registry.get(ProxyMetrics.HOST_LABELS_OVERFLOW).tag("metric", "denied").counter().count()).isZero();
    }

    @Test
    void allowlistedHostsHaveEveryFailureSeriesFromTheStartAtZero() {
        ProxyMetrics metrics = new ProxyMetrics(registry, 500, "test");
        metrics.registerAllowlistedHosts(List.of("registry.redhat.io", "cdn02.quay.io"));
        for (String host : List.of("registry.redhat.io", "cdn02.quay.io")) {
            for (FailureCause cause : FailureCause.values()) {
                assertThat(registry.get(ProxyMetrics.UPSTREAM_FAILURES).tag("host", host).tag("cause", cause.label())
                        .counter().count()).isZero();
            }
            assertThat(registry.get(ProxyMetrics.UPSTREAM_CONNECT).tag("host", host).timer().count()).isZero();
        }
    }

    @Test
    void everyKindDecisionAndReasonSeriesExistsAtZero() {
        new ProxyMetrics(registry, 500, "test");
        List<Meter.Id> ids = registry.find(ProxyMetrics.REQUESTS).counters().stream().map(Meter::getId).toList();
        long reportable = java.util.Arrays.stream(Reason.values()).filter(Reason::reportable).count();
        assertThat(ids).hasSize((int) (Kind.values().length * (Reason.values().length + reportable)));
        assertThat(ids.stream().map(id -> id.getTag("decision")).collect(Collectors.toSet()))
                .containsExactlyInAnyOrder("allowed", "denied", "would_deny");
        assertThat(ids.stream().filter(id -> "would_deny".equals(id.getTag("decision"))).map(id -> id.getTag("reason"))
                .collect(Collectors.toSet()))
                .containsExactlyInAnyOrder("host_not_allowlisted", "port_not_allowed", "ip_literal_not_allowed");
    }

    @Test
    void wouldDenyCountsUnderItsOwnDecisionAndCapsHostsLikeDenied() {
        ProxyMetrics metrics = new ProxyMetrics(registry, 1, "test");
        metrics.wouldDeny("a.example", Reason.HOST_NOT_ALLOWLISTED, "default");
        metrics.wouldDeny("b.example", Reason.HOST_NOT_ALLOWLISTED, "default");
        metrics.request(Kind.CONNECT, dev.egressproxy.policy.Decision.wouldDeny(Reason.HOST_NOT_ALLOWLISTED));

        assertThat(registry.get(ProxyMetrics.WOULD_DENY).tag("host", "a.example").tag("reason", "host_not_allowlisted")
                .counter().count()).isEqualTo(1.0);
        assertThat(registry.get(ProxyMetrics.WOULD_DENY).tag("host", HostLabels.OTHER).counter().count()).isEqualTo(1.0);
        assertThat(registry.get(ProxyMetrics.HOST_LABELS_OVERFLOW).tag("metric", "would_deny").counter().count())
                .isEqualTo(1.0);
        assertThat(registry.get(ProxyMetrics.REQUESTS).tag("kind", "connect").tag("decision", "would_deny")
                .tag("reason", "host_not_allowlisted").counter().count()).isEqualTo(1.0);
        assertThat(registry.get(ProxyMetrics.REQUESTS).tag("kind", "connect").tag("decision", "denied")
                .tag("reason", "host_not_allowlisted").counter().count()).isZero();
    }

    @Test
    void allowlistEnforcedGaugeFollowsTheMode() {
        ProxyMetrics metrics = new ProxyMetrics(registry, 500, "test");
        assertThat(registry.get(ProxyMetrics.ALLOWLIST_ENFORCED).gauge().value()).isEqualTo(1.0);
        metrics.setAllowlistEnforced(false);
        assertThat(registry.get(ProxyMetrics.ALLOWLIST_ENFORCED).gauge().value()).isZero();
    }

    @Test
    void upstreamFailureHostsShareTheCap() {
        ProxyMetrics metrics = new ProxyMetrics(registry, 2, "test");
        metrics.registerAllowlistedHosts(List.of("a.example", "b.example"));
        metrics.upstreamFailure("c.example", FailureCause.TIMEOUT);
        assertThat(registry.get(ProxyMetrics.UPSTREAM_FAILURES).tag("host", HostLabels.OTHER).tag("cause", "timeout")
                .counter().count()).isEqualTo(1.0);
        metrics.upstreamFailure("a.example", FailureCause.TIMEOUT);
        assertThat(registry.get(ProxyMetrics.UPSTREAM_FAILURES).tag("host", "a.example").tag("cause", "timeout")
                .counter().count()).isEqualTo(1.0);
    }
}
