package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestDnsServer;
import dev.egressproxy.testing.TestProxy;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A name with several addresses, from a real DNS server on loopback: the proxy tries them in order
 * until one connects (the next at once when one fails, or beside it when it has hung for the
 * attempt delay: see HappyEyeballsIT), and the whole connect shares {@code timeouts.connect}. On loopback,
 * 127.0.0.1 serves (an echo server), 127.0.0.4 and 127.0.0.5 refuse (nothing listens there), and
 * 127.0.0.2 and 127.0.0.3 drop SYNs (a listener with a full backlog), all on the echo's port.
 */
class AddressFallbackIT {

    static TcpServer echo;
    static TcpServer blackhole2;
    static TcpServer blackhole3;
    static TestDnsServer dns;
    static TestProxy proxy;
    static int port;

    @BeforeAll
    static void start() throws Exception {
        echo = TcpServer.echo();
        port = echo.port();
        blackhole2 = TcpServer.blackhole(InetAddress.getByName("127.0.0.2"), port);
        blackhole3 = TcpServer.blackhole(InetAddress.getByName("127.0.0.3"), port);
        dns = new TestDnsServer()
                .add("refused-first.test", "127.0.0.4").add("refused-first.test", "127.0.0.1")
                .add("serving-first.test", "127.0.0.1").add("serving-first.test", "127.0.0.4")
                .add("all-refuse.test", "127.0.0.4").add("all-refuse.test", "127.0.0.5")
                .add("silent-first.test", "127.0.0.2").add("silent-first.test", "127.0.0.1")
                .add("all-silent.test", "127.0.0.2").add("all-silent.test", "127.0.0.3");
        proxy = TestProxy.start("""
                allowlist.hosts = ["refused-first.test:%1$d", "serving-first.test:%1$d", "all-refuse.test:%1$d",
                                   "silent-first.test:%1$d", "all-silent.test:%1$d"]
                destinations.allow-private = ["127.0.0.0/8"]
                dns { servers = ["%2$s"], query-timeout = 2s }
                timeouts.connect = 2s
                # These tests time the dialing itself; all-silent.test's timeouts would otherwise put
                # 127.0.0.2 in fast-fail (FastFailIT) and silent-first.test would skip it.
                upstream.fast-fail.enabled = false
                """.formatted(port, dns.address()));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        dns.close();
        for (TcpServer s : new TcpServer[] {blackhole2, blackhole3, echo}) {
            s.close();
        }
    }

    /** CONNECTs to {@code host} on the echo's port; returns the head, and checks an echo when it is 200. */
    private static RawClient.Head tunnel(String host) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT " + host + ":" + port + " HTTP/1.1\r\n\r\n");
            RawClient.Head head = raw.readHead();
            if (head.status() == 200) {
                raw.send("ping through " + host);
                assertThat(new String(raw.readExactly(("ping through " + host).length()), StandardCharsets.US_ASCII))
                        .isEqualTo("ping through " + host);
            }
            return head;
        }
    }

    private static double failures(String cause, String host) throws Exception {
        return proxy.scrapeValue("egress_proxy_upstream_failures_total{cause=\"" + cause + "\",host=\"" + host + "\"}");
    }

    @Test
    void aRefusingAddressIsSkippedInWhicheverOrderTheNameListsIt() throws Exception {
        // One of the two names has its serving address second: without the fallback it would answer 502.
        assertThat(tunnel("refused-first.test").status()).isEqualTo(200);
        assertThat(tunnel("serving-first.test").status()).isEqualTo(200);
        assertThat(failures("refused", "refused-first.test")).isLessThanOrEqualTo(0.0);
    }

    @Test
    void whenEveryAddressRefusesTheAnswerSaysSoAndHowManyWereTriedAndCountsOneFailure() throws Exception {
        RawClient.Head head = tunnel("all-refuse.test");
        assertThat(head.statusLine()).isEqualTo("HTTP/1.1 502 all-refuse.test:" + port
                + " is unreachable: connection refused (2 addresses tried)");
        assertThat(head.header("x-egress-proxy-reason")).isEqualTo("upstream_refused");
        assertThat(failures("refused", "all-refuse.test")).isEqualTo(1.0);
    }

    @Test
    void aSilentFirstAddressCostsTheAttemptDelayThenTheNextOneServesBesideIt() throws Exception {
        long t0 = System.nanoTime();
        assertThat(tunnel("silent-first.test").status()).isEqualTo(200);
        Duration took = Duration.ofNanos(System.nanoTime() - t0);
        // The second address is dialled 250 ms (timeouts.connect-attempt-delay) after the first,
        // while the first still hangs, and connects at once.
        assertThat(took).isBetween(Duration.ofMillis(240), Duration.ofMillis(900));
    }

    @Test
    void whenEveryAddressIsSilentTheWholeConnectStillEndsAtTheTimeout() throws Exception {
        long t0 = System.nanoTime();
        RawClient.Head head = tunnel("all-silent.test");
        Duration took = Duration.ofNanos(System.nanoTime() - t0);
        assertThat(head.statusLine()).isEqualTo("HTTP/1.1 504 all-silent.test:" + port
                + " did not answer within 2s (connect timeout) (2 addresses tried)");
        assertThat(head.header("x-egress-proxy-reason")).isEqualTo("upstream_timeout");
        // Not 2 s per address: 4 s would mean each attempt had the whole timeout.
        assertThat(took).isBetween(Duration.ofMillis(1900), Duration.ofMillis(3500));
        assertThat(failures("timeout", "all-silent.test")).isEqualTo(1.0);
    }
}
