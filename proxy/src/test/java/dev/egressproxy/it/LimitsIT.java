package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Timeouts, size limits and the connection cap: each answers or closes the offending connection
 * and is counted, while the proxy keeps serving others. Run with tunnels relayed through the
 * proxy's buffers and with every tunnel direction spliced from its first read (the idle timeout
 * must see spliced bytes too).
 */
@ParameterizedClass(name = "relay {0}")
@ValueSource(strings = {"user-space", "splice"})
class LimitsIT {

    @Parameter
    String relay;

    static TcpServer echo;
    static TestProxy proxy;

    @BeforeParameterizedClassInvocation
    static void start(String relay) throws Exception {
        echo = TcpServer.echo();
        proxy = TestProxy.start(TestProxy.relaySettings(relay) + """
                allowlist.hosts = ["echo.test:7000"]
                destinations.connect-to { "echo.test:7000" = "127.0.0.1:%d" }
                timeouts { request-head = 1s, idle = 2s }
                limits { max-request-head = 1KiB, max-connections = 20 }
                """.formatted(echo.port()));
    }

    @AfterParameterizedClassInvocation
    static void stop() throws Exception {
        proxy.close();
        echo.close();
    }

    private static void assertTunnelWorks() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\nok");
            assertThat(raw.readHead().status()).isEqualTo(200);
            assertThat(new String(raw.readExactly(2))).isEqualTo("ok");
        }
    }

    @Test
    void slowRequestHeadIsAnswered408AndClosed() throws Exception {
        long start = System.nanoTime();
        try (RawClient slow = new RawClient(proxy.address())) {
            slow.send("CONNECT echo.test:7000 HTTP/1.1\r\nX-Slow: ");
            assertTunnelWorks();
            RawClient.Head head = slow.readHead();
            assertThat(head.status()).isEqualTo(408);
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("request_head_timeout");
            slow.readToEnd();
        }
        assertThat((System.nanoTime() - start) / 1_000_000).isBetween(900L, 10_000L);
        assertThat(proxy.scrapeValue("egress_proxy_rejected_total{reason=\"request_head_timeout\"}")).isGreaterThanOrEqualTo(1.0);
    }

    @Test
    void idleTunnelIsClosedAfterTheIdleTimeout() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
            assertThat(raw.readHead().status()).isEqualTo(200);
            long start = System.nanoTime();
            assertThat(raw.in().read()).isEqualTo(-1);
            assertThat((System.nanoTime() - start) / 1_000_000).isBetween(1_500L, 10_000L);
        }
        await().atMost(Duration.ofSeconds(5)).until(
                () -> proxy.scrapeValue("egress_proxy_rejected_total{reason=\"idle_timeout\"}") >= 1.0);
    }

    @Test
    void aTunnelInUseOutlivesTheIdleTimeoutAndGoesIdleWhenTrafficStops() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
            assertThat(raw.readHead().status()).isEqualTo(200);
            long start = System.nanoTime();
            // A byte each way every 400 ms for 3.6 s, nearly twice the 2 s idle timeout: the timer
            // re-arms on this traffic and never fires. (The sleep paces the traffic; it waits for
            // nothing.)
            for (int i = 0; i < 9; i++) {
                raw.send("x");
                assertThat(raw.readExactly(1)).containsExactly('x');
                TimeUnit.MILLISECONDS.sleep(400);
            }
            assertThat((System.nanoTime() - start) / 1_000_000).isGreaterThan(3_000L);
            long quietFrom = System.nanoTime();
            assertThat(raw.in().read()).isEqualTo(-1);
            assertThat((System.nanoTime() - quietFrom) / 1_000_000).isBetween(1_500L, 10_000L);
        }
    }

    @Test
    void oversizedHeadersAre431AndOversizedRequestLineIs414() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\nX-Big: " + "a".repeat(2000) + "\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).isEqualTo(431);
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("head_too_large");
        }
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("GET http://echo.test:7000/" + "a".repeat(2000) + " HTTP/1.1\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).isEqualTo(414);
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("uri_too_long");
        }
        assertTunnelWorks();
    }

    @Test
    void garbageIsAnswered400() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("\u0001\u0002 not http at all\r\n\r\n");
            assertThat(raw.readHead().status()).isEqualTo(400);
        }
        assertTunnelWorks();
    }

    @Test
    void connectionsBeyondTheCapAre503AndTheProxyRecovers() throws Exception {
        java.util.List<RawClient> held = new java.util.ArrayList<>();
        try {
            await().atMost(Duration.ofSeconds(5)).until(() -> proxy.server.metrics().connectionsActive() == 0);
            for (int i = 0; i < 20; i++) {
                held.add(new RawClient(proxy.address()));
            }
            await().atMost(Duration.ofSeconds(5)).until(() -> proxy.server.metrics().connectionsActive() == 20);
            try (RawClient extra = new RawClient(proxy.address())) {
                RawClient.Head head = extra.readHead();
                assertThat(head.status()).isEqualTo(503);
                assertThat(head.header("x-egress-proxy-reason")).isEqualTo("connection_limit");
            }
            assertThat(proxy.scrapeValue("egress_proxy_rejected_total{reason=\"connection_limit\"}")).isGreaterThanOrEqualTo(1.0);
        } finally {
            for (RawClient c : held) {
                c.close();
            }
        }
        await().atMost(Duration.ofSeconds(5)).until(() -> proxy.server.metrics().connectionsActive() == 0);
        assertTunnelWorks();
    }
}
