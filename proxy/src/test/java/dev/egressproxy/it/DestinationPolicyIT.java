package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestDnsServer;
import dev.egressproxy.testing.TestProxy;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Name resolution and the second policy stage, with a real DNS server on loopback: a name that does
 * not resolve answers 502, an allowed name that resolves to a private or metadata address is
 * refused without the address reaching the client, and {@code allow-private} lifts the guard for
 * the operator's own ranges, dialling exactly the address that was checked.
 */
class DestinationPolicyIT {

    static TestDnsServer dns;
    static TcpServer echo;
    static TestProxy proxy;

    @BeforeAll
    static void start() throws Exception {
        echo = TcpServer.echo();
        dns = new TestDnsServer()
                .add("metadata.test", "169.254.169.254")
                .add("internal.test", "10.1.2.3")
                .add("mapped.test", "::ffff:192.168.1.1")
                .add("loopback.test", "127.0.0.1");
        proxy = TestProxy.start("""
                allowlist.hosts = ["nxdomain.test", "metadata.test", "internal.test", "mapped.test",
                                   "loopback.test:%d", "127.0.0.0/8:%d"]
                destinations.allow-private = ["127.0.0.0/8"]
                dns { servers = ["%s"], query-timeout = 2s }
                """.formatted(echo.port(), echo.port(), dns.address()));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        dns.close();
        echo.close();
    }

    private static RawClient.Head connect(String authority) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT " + authority + " HTTP/1.1\r\n\r\n");
            return raw.readHead();
        }
    }

    @Test
    void nameThatDoesNotResolveAnswers502NamingTheHost() throws Exception {
        RawClient.Head head = connect("nxdomain.test:443");
        assertThat(head.statusLine()).isEqualTo("HTTP/1.1 502 nxdomain.test:443 could not be resolved (DNS: no such host)");
        assertThat(head.header("x-egress-proxy-reason")).isEqualTo("upstream_dns");
        assertThat(proxy.scrapeValue("egress_proxy_upstream_failures_total{cause=\"dns\",host=\"nxdomain.test\"}"))
                .isEqualTo(1.0);
    }

    @Test
    void allowedNameResolvingToTheMetadataAddressIsRefusedWithoutNamingTheAddress() throws Exception {
        RawClient.Head head = connect("metadata.test:443");
        assertThat(head.status()).isEqualTo(403);
        assertThat(head.reason()).isEqualTo("metadata.test:443 resolves to an address the egress policy does not allow");
        assertThat(head.statusLine()).doesNotContain("169.254");
        assertThat(head.header("x-egress-proxy-reason")).isEqualTo("address_not_allowed");
        assertThat(proxy.scrapeValue(
                "egress_proxy_requests_total{decision=\"denied\",kind=\"connect\",reason=\"address_not_allowed\"}"))
                .isGreaterThanOrEqualTo(1.0);
    }

    @Test
    void allowedNameResolvingToAPrivateAddressIsRefused() throws Exception {
        assertThat(connect("internal.test:443").status()).isEqualTo(403);
        assertThat(connect("mapped.test:443").header("x-egress-proxy-reason")).isEqualTo("address_not_allowed");
    }

    @Test
    void allowPrivateLetsTheOperatorsOwnRangeThroughAndTheCheckedAddressIsDialled() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT loopback.test:" + echo.port() + " HTTP/1.1\r\n\r\nping");
            assertThat(raw.readHead().status()).isEqualTo(200);
            assertThat(new String(raw.readExactly(4), StandardCharsets.US_ASCII)).isEqualTo("ping");
        }
    }

    @Test
    void ipLiteralNeedsACidrEntry() throws Exception {
        assertThat(connect("127.0.0.1:" + echo.port()).status()).isEqualTo(200);
        RawClient.Head refused = connect("192.0.2.10:443");
        assertThat(refused.statusLine()).isEqualTo("HTTP/1.1 403 192.0.2.10:443 is an IP address not in the egress allowlist");
        assertThat(refused.header("x-egress-proxy-reason")).isEqualTo("ip_literal_not_allowed");
        RawClient.Head shortForm = connect("127.1:" + echo.port());
        assertThat(shortForm.status()).isEqualTo(400);
        assertThat(shortForm.header("x-egress-proxy-reason")).isEqualTo("malformed_request");
    }
}
