package dev.egressproxy.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class DeniedReportTest {

    @Test
    void splitsAnIpv6DestinationIntoTheHostAsTheMetricsLabelItAndThePort() {
        DeniedReport report = new DeniedReport(10);
        report.record(DeniedReport.Type.DENIED, "[::1]:41443", "ip_literal_not_allowed", "[::1]:40000");

        assertThat(report.toJson()).contains("\"destination\":\"[::1]:41443\",\"host\":\"::1\",\"port\":41443,")
                .contains("\"last_client\":\"[::1]:40000\"");
    }

    @Test
    void splitsANameDestinationIntoHostAndPort() {
        DeniedReport report = new DeniedReport(10);
        report.record(DeniedReport.Type.DENIED, "cdn02.quay.io:443", "host_not_allowlisted", "10.0.0.5:40000");

        assertThat(report.toJson()).contains("\"destination\":\"cdn02.quay.io:443\",\"host\":\"cdn02.quay.io\",\"port\":443,")
                .contains("\"count\":1,");
    }
}
