package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestDnsServer;
import dev.egressproxy.testing.TestProxy;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code egress_proxy_dns_seconds{result}} times the name lookup alone and
 * {@code egress_proxy_upstream_connect_seconds} the TCP connect alone: a slow DNS answer (the test
 * DNS server holding it back) shows in the first and not in the second. Every test asks for a
 * name of its own, so no answer comes from the resolvers' cache.
 */
class DnsTimingIT {

    static TcpServer echo;
    static TestDnsServer dns;
    static TestProxy proxy;

    @BeforeAll
    static void start() throws Exception {
        echo = TcpServer.echo();
        dns = new TestDnsServer()
                .add("fast.test", "127.0.0.1")
                .add("slow.test", "127.0.0.1")
                .add("too-slow.test", "127.0.0.1");
        proxy = TestProxy.start("""
                allowlist.hosts = ["fast.test:%1$d", "slow.test:%1$d", "too-slow.test:%1$d", "nxdomain.test:%1$d"]
                destinations.allow-private = ["127.0.0.0/8"]
                dns { servers = ["%2$s"], query-timeout = 1s }
                """.formatted(echo.port(), dns.address()));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        dns.close();
        echo.close();
    }

    @AfterEach
    void answerAtOnce() {
        dns.delay(Duration.ZERO);
    }

    private static int connect(String host) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT " + host + ":" + echo.port() + " HTTP/1.1\r\n\r\n");
            return raw.readHead().status();
        }
    }

    private static double dns(String sample, String result) throws Exception {
        return Math.max(0, proxy.scrapeValue("egress_proxy_dns_seconds_" + sample + "{result=\"" + result + "\"}"));
    }

    @Test
    void aLookupIsCountedAsOkAndANameThatDoesNotExistAsNotFound() throws Exception {
        double ok = dns("count", "ok");
        double notFound = dns("count", "not_found");

        assertThat(connect("fast.test")).isEqualTo(200);
        assertThat(dns("count", "ok")).isEqualTo(ok + 1);

        assertThat(connect("nxdomain.test")).isEqualTo(502);
        assertThat(dns("count", "not_found")).isEqualTo(notFound + 1);
        assertThat(dns("count", "ok")).isEqualTo(ok + 1);
    }

    @Test
    void aSlowAnswerShowsInDnsSecondsAndNotInUpstreamConnectSeconds() throws Exception {
        double okSum = dns("sum", "ok");
        dns.delay(Duration.ofMillis(600));

        assertThat(connect("slow.test")).isEqualTo(200);

        assertThat(dns("sum", "ok") - okSum).isGreaterThanOrEqualTo(0.6);
        assertThat(proxy.scrapeValue("egress_proxy_upstream_connect_seconds_count{host=\"slow.test\"}")).isEqualTo(1.0);
        // A loopback connect: milliseconds at most, nowhere near the 600 ms the lookup took.
        assertThat(proxy.scrapeValue("egress_proxy_upstream_connect_seconds_sum{host=\"slow.test\"}")).isLessThan(0.3);
    }

    @Test
    void aLookupPastTheQueryTimeoutIsCountedAsTimeout() throws Exception {
        double timeouts = dns("count", "timeout");
        dns.delay(Duration.ofMillis(1500));

        assertThat(connect("too-slow.test")).isEqualTo(502);

        assertThat(dns("count", "timeout")).isEqualTo(timeouts + 1);
        assertThat(dns("sum", "timeout")).isGreaterThanOrEqualTo(0.9);
        assertThat(proxy.scrapeValue("egress_proxy_upstream_connect_seconds_count{host=\"too-slow.test\"}"))
                .isLessThanOrEqualTo(0.0);
    }
}
