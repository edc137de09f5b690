package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.net.InetAddress;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Abuse limits: a slowloris crowd is cut off by the request-head timeout while a normal client
 * and the health endpoint keep being served; the per-client cap and the client allowlist.
 */
class AbuseIT {

    @Test
    void slowlorisCrowdIsClosedByTheHeadTimeoutWhileOthersAreServed() throws Exception {
        try (TcpServer echo = TcpServer.echo();
                TestProxy proxy = TestProxy.start("""
                        allowlist.hosts = ["echo.test:7000"]
                        destinations.connect-to { "echo.test:7000" = "127.0.0.1:%d" }
                        timeouts.request-head = 3s
                        """.formatted(echo.port()))) {
            List<RawClient> crowd = new ArrayList<>();
            try {
                for (int i = 0; i < 500; i++) {
                    RawClient c = new RawClient(proxy.address());
                    c.send("CONNECT echo.test:7000 HTTP/1.1\r\nX-Slow-" + i + ": ");
                    crowd.add(c);
                }
                // Keep dribbling a byte at a time; the proxy must still serve everyone else.
                for (RawClient c : crowd) {
                    c.send("a");
                }
                long start = System.nanoTime();
                HttpResponse<String> health = proxy.admin("/healthz");
                assertThat(health.statusCode()).isEqualTo(200);
                assertThat((System.nanoTime() - start) / 1_000_000).isLessThan(1_000);
                try (RawClient normal = new RawClient(proxy.address())) {
                    normal.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\nhello");
                    assertThat(normal.readHead().status()).isEqualTo(200);
                    assertThat(new String(normal.readExactly(5), StandardCharsets.US_ASCII)).isEqualTo("hello");
                }
                // Every dribbling connection gets its 408 and is closed.
                for (RawClient c : crowd) {
                    assertThat(c.readHead().status()).isEqualTo(408);
                    c.readToEnd();
                }
                await().atMost(Duration.ofSeconds(10)).until(() -> proxy.server.metrics().connectionsActive() == 0);
                assertThat(proxy.scrapeValue("egress_proxy_rejected_total{reason=\"request_head_timeout\"}")).isEqualTo(500.0);
            } finally {
                for (RawClient c : crowd) {
                    c.close();
                }
            }
        }
    }

    @Test
    void perClientCapAnswers429AndFreesUpWhenConnectionsClose() throws Exception {
        try (TestProxy proxy = TestProxy.start("""
                allowlist.hosts = ["registry.redhat.io"]
                clients.max-connections-per-client = 3
                """)) {
            List<RawClient> held = new ArrayList<>();
            try {
                for (int i = 0; i < 3; i++) {
                    held.add(new RawClient(proxy.address()));
                }
                // Connections are accepted on several event loops: wait until all three are counted.
                await().atMost(Duration.ofSeconds(5)).until(() -> proxy.server.metrics().connectionsActive() == 3);
                try (RawClient extra = new RawClient(proxy.address())) {
                    RawClient.Head head = extra.readHead();
                    assertThat(head.statusLine()).isEqualTo("HTTP/1.1 429 too many connections from your address");
                    assertThat(head.header("x-egress-proxy-reason")).isEqualTo("per_client_limit");
                }
            } finally {
                for (RawClient c : held) {
                    c.close();
                }
            }
            assertThat(proxy.scrapeValue("egress_proxy_rejected_total{reason=\"per_client_limit\"}")).isEqualTo(1.0);
            await().atMost(Duration.ofSeconds(5)).until(() -> proxy.server.metrics().connectionsActive() == 0);
            try (RawClient again = new RawClient(proxy.address())) {
                again.send("CONNECT evil.example:443 HTTP/1.1\r\n\r\n");
                assertThat(again.readHead().status()).isEqualTo(403);
            }
        }
    }

    @Test
    void clientOutsideClientsAllowIsRefusedBeforeAnyRequest() throws Exception {
        try (TestProxy proxy = TestProxy.start("""
                allowlist.hosts = ["registry.redhat.io"]
                clients.allow = ["10.0.0.0/8"]
                """)) {
            assertThat(InetAddress.getLoopbackAddress().isLoopbackAddress()).isTrue();
            try (RawClient outsider = new RawClient(proxy.address())) {
                RawClient.Head head = outsider.readHead();
                assertThat(head.statusLine()).isEqualTo("HTTP/1.1 403 your address may not use this egress proxy");
                assertThat(head.header("x-egress-proxy-reason")).isEqualTo("client_not_allowed");
                outsider.readToEnd();
            }
            assertThat(proxy.scrapeValue("egress_proxy_rejected_total{reason=\"client_not_allowed\"}")).isEqualTo(1.0);
        }
    }
}
