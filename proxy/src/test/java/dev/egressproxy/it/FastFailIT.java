package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.Json;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestDnsServer;
import dev.egressproxy.testing.TestProxy;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code upstream.fast-fail} over real sockets, with {@code timeouts.connect = 1s}: an address whose
 * connect timed out (a listener with a full backlog, so its SYNs are dropped) is not dialled again
 * during its cool-down, a destination whose every address is in cool-down is answered 504
 * {@code upstream_unreachable_recently} at once, and the other addresses of a name are still
 * dialled. Each test uses its own dead address, so the order of the tests does not matter.
 */
class FastFailIT {

    static TcpServer deadPinned;
    static TcpServer deadSecond;
    static TcpServer echo;
    static TestDnsServer dns;
    static TestProxy proxy;
    static int pinnedPort;
    static int port;

    @BeforeAll
    static void start() throws Exception {
        deadPinned = TcpServer.blackhole();
        pinnedPort = deadPinned.port();
        echo = TcpServer.echo();
        port = echo.port();
        deadSecond = TcpServer.blackhole(InetAddress.getByName("127.0.0.2"), port);
        dns = new TestDnsServer()
                .add("half-dead.test", "127.0.0.2").add("half-dead.test", "127.0.0.1")
                .add("dead-only.test", "127.0.0.2")
                .add("live.test", "127.0.0.1");
        proxy = TestProxy.start("""
                allowlist.hosts = ["dead.test:%1$d", "half-dead.test:%2$d", "dead-only.test:%2$d", "live.test:%2$d"]
                destinations.allow-private = ["127.0.0.0/8"]
                destinations.connect-to { "dead.test:%1$d" = "127.0.0.1:%1$d" }
                dns { servers = ["%3$s"], query-timeout = 2s }
                timeouts.connect = 1s
                """.formatted(pinnedPort, port, dns.address()));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        dns.close();
        for (TcpServer s : new TcpServer[] {deadPinned, deadSecond, echo}) {
            s.close();
        }
        assertThat(echo.errors).isEmpty();
    }

    record Answer(RawClient.Head head, Duration took) {
    }

    /** CONNECTs to {@code authority} through {@code proxy}; checks an echo when the answer is 200. */
    static Answer connect(TestProxy proxy, String authority) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            long t0 = System.nanoTime();
            raw.send("CONNECT " + authority + " HTTP/1.1\r\n\r\n");
            RawClient.Head head = raw.readHead();
            Duration took = Duration.ofNanos(System.nanoTime() - t0);
            if (head.status() == 200) {
                raw.send("ping " + authority);
                assertThat(new String(raw.readExactly(("ping " + authority).length()), StandardCharsets.US_ASCII))
                        .isEqualTo("ping " + authority);
            }
            return new Answer(head, took);
        }
    }

    static double metric(TestProxy proxy, String sample) throws Exception {
        return proxy.scrapeValue(sample);
    }

    @Test
    void aTimedOutDestinationIsAnsweredAtOnceDuringItsCoolDownAndSaysWhy() throws Exception {
        String authority = "dead.test:" + pinnedPort;
        try (AccessLogCapture accessLog = new AccessLogCapture()) {
            assertThat(metric(proxy, "egress_proxy_upstream_fast_fail{host=\"dead.test\"}"))
                    .as("registered at zero for the allowlisted host").isEqualTo(0.0);

            Answer first = connect(proxy, authority);
            assertThat(first.head().statusLine())
                    .isEqualTo("HTTP/1.1 504 " + authority + " did not answer within 1s (connect timeout)");
            assertThat(first.took()).isGreaterThan(Duration.ofMillis(900));

            Answer second = connect(proxy, authority);

            assertThat(second.head().status()).isEqualTo(504);
            assertThat(second.head().reason()).matches(
                    "dead\\.test:" + pinnedPort + " timed out \\d\\.\\ds ago; not retried for another 1[45]s \\(fast-fail\\)");
            assertThat(second.head().header("x-egress-proxy-reason")).isEqualTo("upstream_unreachable_recently");
            // Not dialled: a dial of the blackhole would take the 1 s connect timeout.
            assertThat(second.took()).isLessThan(Duration.ofMillis(300));
            assertThat(metric(proxy, "egress_proxy_upstream_failures_total{cause=\"timeout\",host=\"dead.test\"}"))
                    .isEqualTo(1.0);
            assertThat(metric(proxy,
                    "egress_proxy_upstream_failures_total{cause=\"unreachable_recently\",host=\"dead.test\"}"))
                    .isEqualTo(1.0);
            assertThat(metric(proxy, "egress_proxy_upstream_fast_fail{host=\"dead.test\"}")).isEqualTo(1.0);
            // The status page's source names it too, with the address and when it is retried.
            Map<String, Object> status = Json.object(proxy.admin("/status").body());
            List<?> down = ((List<?>) Json.at(status, "fast_fail", "hosts")).stream()
                    .filter(h -> authority.equals(((Map<?, ?>) h).get("destination"))).toList();
            assertThat(down).hasSize(1);
            assertThat(Json.at(down, 0, "addresses")).isEqualTo(List.of("127.0.0.1:" + pinnedPort));
            assertThat((Long) Json.at(down, 0, "retry_in_seconds")).isBetween(14L, 15L);
            assertThat(Json.at(down, 0, "trial_running")).isEqualTo(false);
            await().atMost(Duration.ofSeconds(5)).until(() -> accessLog.lines().stream().anyMatch(l ->
                    l.contains("target=" + authority) && l.contains("status=504")
                            && l.contains("error=upstream_unreachable_recently")));
        }
        assertThat(proxy.admin("/denied").body()).contains(
                "\"type\":\"upstream_failure\",\"destination\":\"dead.test:" + pinnedPort + "\"")
                .contains("\"reason\":\"unreachable_recently\"");
        // A live destination of the same proxy is not affected.
        assertThat(connect(proxy, "live.test:" + port).head().status()).isEqualTo(200);
    }

    @Test
    void anAddressThatTimedOutIsSkippedForTheOtherNamesThatResolveToItAndTheirLiveAddressServesAtOnce()
            throws Exception {
        String halfDead = "half-dead.test:" + port;
        Answer before = connect(proxy, halfDead);
        assertThat(before.head().status()).isEqualTo(200);
        // 127.0.0.2 first: the live 127.0.0.1 is dialled beside it after the 250 ms attempt delay.
        assertThat(before.took()).isGreaterThanOrEqualTo(Duration.ofMillis(240));

        Answer dead = connect(proxy, "dead-only.test:" + port);
        assertThat(dead.head().header("x-egress-proxy-reason")).isEqualTo("upstream_timeout");

        Answer after = connect(proxy, halfDead);

        assertThat(after.head().status()).isEqualTo(200);
        assertThat(after.took()).as("127.0.0.2 is no longer dialled first").isLessThan(Duration.ofMillis(200));
        assertThat(metric(proxy, "egress_proxy_upstream_fast_fail{host=\"half-dead.test\"}")).isEqualTo(0.0);
        assertThat(metric(proxy, "egress_proxy_upstream_fast_fail{host=\"dead-only.test\"}")).isEqualTo(1.0);
        assertThat(connect(proxy, "dead-only.test:" + port).head().header("x-egress-proxy-reason"))
                .isEqualTo("upstream_unreachable_recently");
    }

    @Test
    void afterTheCoolDownOneTrialDialsAgainAndWhenTheOriginIsBackItConnectsAndClearsTheState() throws Exception {
        InetAddress address = InetAddress.getByName("127.0.0.3");
        TcpServer blackhole = TcpServer.blackhole(address, 0);
        int backPort = blackhole.port();
        String authority = "back.test:" + backPort;
        TcpServer back = null;
        try (TestProxy shortProxy = TestProxy.start("""
                allowlist.hosts = ["%1$s"]
                destinations.connect-to { "%1$s" = "127.0.0.3:%2$d" }
                timeouts.connect = 1s
                upstream.fast-fail.cool-down = 1s
                """.formatted(authority, backPort))) {
            assertThat(connect(shortProxy, authority).head().header("x-egress-proxy-reason"))
                    .isEqualTo("upstream_timeout");
            assertThat(connect(shortProxy, authority).head().header("x-egress-proxy-reason"))
                    .isEqualTo("upstream_unreachable_recently");

            // Once the cool-down is over a request dials again (the trial): still dead, it waits the
            // connect timeout, and starts another cool-down.
            Answer[] trial = new Answer[1];
            await().atMost(Duration.ofSeconds(5)).pollInterval(Duration.ofMillis(50)).until(() -> {
                trial[0] = connect(shortProxy, authority);
                return !"upstream_unreachable_recently".equals(trial[0].head().header("x-egress-proxy-reason"));
            });
            assertThat(trial[0].head().header("x-egress-proxy-reason")).isEqualTo("upstream_timeout");
            assertThat(trial[0].took()).isGreaterThan(Duration.ofMillis(900));
            assertThat(connect(shortProxy, authority).head().header("x-egress-proxy-reason"))
                    .isEqualTo("upstream_unreachable_recently");
            assertThat(metric(shortProxy, "egress_proxy_upstream_fast_fail{host=\"back.test\"}")).isEqualTo(1.0);

            // The origin comes back on the same address and port.
            blackhole.close();
            back = TcpServer.echo(address, backPort);
            long backAt = System.nanoTime();
            await().atMost(Duration.ofSeconds(5)).pollInterval(Duration.ofMillis(50))
                    .until(() -> connect(shortProxy, authority).head().status() == 200);

            assertThat(Duration.ofNanos(System.nanoTime() - backAt))
                    .as("within one cool-down (1 s) and some slack").isLessThan(Duration.ofMillis(2500));
            assertThat(metric(shortProxy, "egress_proxy_upstream_fast_fail{host=\"back.test\"}")).isEqualTo(0.0);
            Answer next = connect(shortProxy, authority);
            assertThat(next.head().status()).isEqualTo(200);
            assertThat(metric(shortProxy, "egress_proxy_upstream_failures_total{cause=\"timeout\",host=\"back.test\"}"))
                    .isEqualTo(2.0);
        } finally {
            blackhole.close();
            if (back != null) {
                back.close();
            }
        }
    }
}
