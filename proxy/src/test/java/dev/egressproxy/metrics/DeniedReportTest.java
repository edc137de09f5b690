package dev.egressproxy.metrics;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.params.provider.Arguments.argumentSet;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.policy.Allowlist;
import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.policy.AuthorityParser;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.Target;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

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

    @Test
    void marksWouldBeDenialsAsNotEnforcedAndKeepsThemApartFromDenials() {
        DeniedReport report = new DeniedReport(10);
        report.record(DeniedReport.Type.DENIED, false, "cdn02.quay.io:443", "host_not_allowlisted", "cdn02.quay.io", "default",
                "10.0.0.5:40000");
        report.record(DeniedReport.Type.DENIED, false, "cdn02.quay.io:443", "host_not_allowlisted", "cdn02.quay.io", "default",
                "10.0.0.5:40001");
        report.record(DeniedReport.Type.DENIED, true, "cdn02.quay.io:443", "host_not_allowlisted", "cdn02.quay.io", "default",
                "10.0.0.6:40000");
        report.record(DeniedReport.Type.UPSTREAM_FAILURE, "registry.redhat.io:443", "timeout", "10.0.0.7:40000");

        String json = report.toJson();

        assertThat(json).contains("\"reason\":\"host_not_allowlisted\",\"enforced\":false,\"entry\":\"cdn02.quay.io\","
                + "\"policy\":\"default\",\"count\":2,")
                .contains("\"reason\":\"host_not_allowlisted\",\"enforced\":true,\"entry\":\"cdn02.quay.io\","
                        + "\"policy\":\"default\",\"count\":1,")
                .contains("\"reason\":\"timeout\",\"count\":1,");
        // One entry per line, as the hand-built report had it.
        assertThat(json).startsWith("{\"capacity\":10,\"entries\":[\n  {").endsWith("}\n]}\n");
        assertThat(json.lines()).hasSize(5);
    }

    @Test
    void hoconGroupsTheEntriesToAddByPolicyTopLevelFirst() {
        DeniedReport report = new DeniedReport(10);
        report.record(DeniedReport.Type.DENIED, true, "github.com:443", "host_not_allowlisted", "github.com", "ci",
                "10.20.0.5:40000");
        report.record(DeniedReport.Type.DENIED, true, "cdn02.quay.io:443", "host_not_allowlisted", "cdn02.quay.io",
                "default", "10.0.0.5:40000");
        report.record(DeniedReport.Type.DENIED, true, "cdn02.quay.io:443", "host_not_allowlisted", "cdn02.quay.io",
                "ci", "10.20.0.6:40000");

        String hocon = report.toHocon();

        int topLevel = hocon.indexOf("\n\"cdn02.quay.io\"\n");
        int ciHeader = hocon.indexOf("# For policy \"ci\"");
        assertThat(topLevel).isPositive().isLessThan(ciHeader);
        String ci = hocon.substring(ciHeader);
        assertThat(ci).contains("\n\"cdn02.quay.io\"\n").contains("\n\"github.com\"\n");
        assertThat(report.toJson()).contains("\"entry\":\"github.com\",\"policy\":\"ci\"");
    }

    @Test
    void emptyReportIsAnEmptyList() {
        assertThat(new DeniedReport(3).toJson()).isEqualTo("{\"capacity\":3,\"entries\":[]}\n");
    }

    // ---------------------------------------------------------------- toHocon

    static Stream<Arguments> oddDestinations() {
        return Stream.of(
                argumentSet("name on the default port", "cdn02.quay.io:443", Kind.CONNECT, "\"cdn02.quay.io\""),
                argumentSet("name on another port", "mirror.example.com:5000", Kind.CONNECT,
                        "\"mirror.example.com:5000\""),
                argumentSet("plain HTTP on its default port", "http://mirror.example.com/v2/", Kind.HTTP,
                        "\"mirror.example.com\""),
                argumentSet("plain HTTP to 443", "http://mirror.example.com:443/", Kind.HTTP, "\"mirror.example.com:443\""),
                argumentSet("underscore and hyphens", "my_host-1.internal-x.example:443", Kind.CONNECT,
                        "\"my_host-1.internal-x.example\""),
                argumentSet("punycode, upper case and a trailing dot", "XN--Bcher-KVA.Example.:443", Kind.CONNECT,
                        "\"xn--bcher-kva.example\""),
                argumentSet("IPv4 literal", "203.0.113.9:443", Kind.CONNECT, "\"203.0.113.9/32\""),
                argumentSet("IPv4 literal on another port", "203.0.113.9:8443", Kind.CONNECT, "\"203.0.113.9/32:8443\""),
                argumentSet("IPv6 literal", "[2606:4700::1111]:443", Kind.CONNECT, "\"2606:4700::1111/128\""),
                argumentSet("IPv6 literal on another port", "[2606:4700::1111]:8443", Kind.CONNECT,
                        "\"[2606:4700::1111]/128:8443\""));
    }

    @ParameterizedTest(name = "hocon: {argumentSetName}")
    @MethodSource("oddDestinations")
    void hoconEntryPastedIntoTheAllowlistAdmitsTheDestination(String destination, Kind kind, String line)
            throws Exception {
        Target target = destination.startsWith("http://") ? AuthorityParser.parseAbsoluteUri(destination).target()
                : AuthorityParser.parseConnectAuthority(destination);
        DeniedReport report = new DeniedReport(10);
        report.record(DeniedReport.Type.DENIED, false, target.authority(), "host_not_allowlisted",
                AllowlistEntry.covering(target, kind), "default", "10.0.0.5:40000");

        String hocon = report.toHocon();

        assertThat(hocon.lines()).contains(line);
        ProxyConfig config = ConfigLoader.fromString("egress-proxy.allowlist.hosts = [\n" + hocon + "\n]\n");
        assertThat(new Allowlist(config.allowlist().entries()).decide(target, kind).allowed()).as(hocon).isTrue();
    }

    @Test
    void hoconMergesSightingsOfOneEntryAndSortsEntries() {
        DeniedReport report = new DeniedReport(10);
        report.record(DeniedReport.Type.DENIED, false, "zeta.example:443", "host_not_allowlisted", "zeta.example", "default",
                "10.0.0.5:40000");
        report.record(DeniedReport.Type.DENIED, true, "alpha.example:443", "host_not_allowlisted", "alpha.example", "default",
                "10.0.0.5:40000");
        report.record(DeniedReport.Type.DENIED, false, "alpha.example:443", "host_not_allowlisted", "alpha.example", "default",
                "10.0.0.9:40000");
        report.record(DeniedReport.Type.DENIED, false, "alpha.example:443", "host_not_allowlisted", "alpha.example", "default",
                "10.0.0.9:40000");

        List<String> lines = report.toHocon().lines().filter(l -> !l.isEmpty()).toList();

        List<String> entries = lines.stream().filter(l -> l.startsWith("\"")).toList();
        assertThat(entries).containsExactly("\"alpha.example\"", "\"zeta.example\"");
        String alphaComment = lines.get(lines.indexOf("\"alpha.example\"") - 1);
        assertThat(alphaComment).startsWith("# 3 requests, last seen ").contains(" from 10.0.0.9:40000 ")
                .endsWith("(denied host_not_allowlisted, would_deny host_not_allowlisted)");
        assertThat(lines.get(lines.indexOf("\"zeta.example\"") - 1)).startsWith("# 1 request, last seen ");
    }

    @Test
    void hoconListsAddressPolicyRefusalsAndUpstreamFailuresNotAsEntries() throws Exception {
        DeniedReport report = new DeniedReport(10);
        report.record(DeniedReport.Type.DENIED, "internal.example:443", "address_not_allowed", "10.0.0.5:40000");
        report.record(DeniedReport.Type.UPSTREAM_FAILURE, "cdn02.quay.io:443", "timeout", "10.0.0.5:40000");

        String hocon = report.toHocon();

        assertThat(hocon.lines().filter(l -> !l.isEmpty() && !l.startsWith("#"))).isEmpty();
        assertThat(hocon).contains("#   internal.example:443: 1 request, last seen ").doesNotContain("cdn02.quay.io");
        // Still valid inside the brackets: it holds only comments.
        assertThat(ConfigLoader.fromString("egress-proxy.allowlist.hosts = [\n" + hocon + "\n\"a.example\"]\n")
                .allowlist().entries()).hasSize(1);
    }
}
