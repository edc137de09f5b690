package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.egressproxy.testing.ProxyProcess;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The open-file budget, on a proxy process started under a low open-file limit ({@code prlimit}):
 * the cap it derives is logged and exported, every client past it is answered 503 at once (none
 * waits unanswered in the listen backlog, no accept fails), the tunnels it holds keep working, and
 * splice pipes never take the descriptors of a connection.
 */
class FdBudgetIT {

    private static final int LIMIT = 300;

    @TempDir
    Path dir;

    private final List<RawClient> clients = new ArrayList<>();
    private TcpServer echo;
    private ProxyProcess proxy;

    @AfterEach
    void tearDown() throws Exception {
        for (RawClient c : clients) {
            c.close();
        }
        if (proxy != null) {
            proxy.close();
        }
        if (echo != null) {
            echo.close();
        }
    }

    private void startProxy(String relay) throws Exception {
        echo = TcpServer.echo();
        proxy = ProxyProcess.start(dir, List.of("prlimit", "--nofile=" + LIMIT + ":" + LIMIT), List.of("-Xmx128m"), """
                  allowlist { presets = [], hosts = ["echo.test:7000"] }
                  destinations.connect-to { "echo.test:7000" = "127.0.0.1:%d" }
                  clients.max-connections-per-client = 100000
                  %s
                """.formatted(echo.port(), relay));
    }

    /** A CONNECT to the echo server; the open tunnel, or the refusal's head. */
    private Object tunnel() throws IOException {
        RawClient c = new RawClient(proxy.address());
        c.socket.setSoTimeout(3000);
        clients.add(c);
        c.send("CONNECT echo.test:7000 HTTP/1.1\r\nHost: echo.test:7000\r\n\r\n");
        RawClient.Head head = c.readHead();
        return head.status() == 200 ? c : head;
    }

    private static void assertEchoes(RawClient c, int size) throws IOException {
        byte[] data = new byte[size];
        new Random(size).nextBytes(data);
        c.send(data);
        assertThat(c.readExactly(size)).isEqualTo(data);
    }

    @Test
    void clientsPastTheCapTheLimitAllowsAreAnswered503AtOnceAndHeldTunnelsKeepWorking() throws Exception {
        startProxy("");
        int cap = (int) proxy.metric("egress_proxy_connections_limit");
        // 300 descriptors: a few dozen open at start, a reserve of 64, two per connection.
        assertThat(cap).isBetween(80, (LIMIT - 64) / 2);
        assertThat(proxy.log()).contains("the open-file limit (" + LIMIT + ") allows " + cap
                + " client connections, not the 10000 of limits.max-connections")
                .contains("LimitNOFILE=").contains("--ulimit nofile=");

        List<RawClient> held = new ArrayList<>();
        for (int i = 0; i < cap; i++) {
            Object t = tunnel();
            assertThat(t).as("tunnel %d of %d", i + 1, cap).isInstanceOf(RawClient.class);
            held.add((RawClient) t);
        }
        // Past the cap: every client is answered, fast, with the reason; none hangs in the backlog.
        for (int i = 0; i < 40; i++) {
            long start = System.nanoTime();
            Object refused = tunnel();
            assertThat(refused).as("client %d past the cap", i + 1).isInstanceOf(RawClient.Head.class);
            RawClient.Head head = (RawClient.Head) refused;
            assertThat(head.status()).isEqualTo(503);
            assertThat(head.header("X-Egress-Proxy-Reason")).isEqualTo("connection_limit");
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(2));
        }
        for (RawClient c : held) {
            assertEchoes(c, 1000);
        }
        // Ten tunnels end: ten new ones are admitted.
        for (RawClient c : held.subList(0, 10)) {
            c.close();
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> proxy.metric("egress_proxy_connections_active") <= cap - 10);
        for (int i = 0; i < 10; i++) {
            Object t = tunnel();
            assertThat(t).isInstanceOf(RawClient.class);
            assertEchoes((RawClient) t, 1000);
        }
        assertThat(proxy.metric("egress_proxy_rejected_total{reason=\"connection_limit\"}")).isEqualTo(40);
        assertThat(proxy.metric("egress_proxy_rejected_total{reason=\"accept_failed\"}")).isZero();
        assertThat(proxy.log()).doesNotContain("Too many open files").doesNotContain("accept failed");
        assertThat(proxy.isAlive()).isTrue();
    }

    @Test
    void splicePipesOnlyTakeDescriptorsNoConnectionNeeds() throws Exception {
        String transport = System.getProperty("egress.test.transport", "auto");
        assumeTrue(transport.equals("auto") || transport.equals("epoll"), "splice(2) exists only on the epoll transport");
        // Every direction that carries bytes would splice at once if it could.
        startProxy("relay { splice = true, splice-after = 0, splice-min-read = 0 }");
        int cap = (int) proxy.metric("egress_proxy_connections_limit");
        List<RawClient> admitted = new ArrayList<>();
        int refused = 0;
        // Each admitted tunnel moves 256 KiB each way (both directions want a pipe: two
        // descriptors each), held open; clients keep coming until well past the cap.
        for (int i = 0; i < cap + 30; i++) {
            Object t = tunnel();
            if (t instanceof RawClient c) {
                assertEchoes(c, 256 * 1024);
                admitted.add(c);
            } else {
                RawClient.Head head = (RawClient.Head) t;
                assertThat(head.status()).isEqualTo(503);
                assertThat(head.header("X-Egress-Proxy-Reason")).isEqualTo("connection_limit");
                refused++;
            }
        }
        assertThat(proxy.metric("egress_proxy_tunnel_splices_total")).as("the first tunnels spliced").isPositive();
        assertThat(admitted.size()).as("pipes took descriptors from connections, but not all")
                .isLessThan(cap).isGreaterThan(cap / 2);
        assertThat(refused).isEqualTo(cap + 30 - admitted.size());
        assertThat(proxy.metric("egress_proxy_rejected_total{reason=\"accept_failed\"}")).isZero();
        assertThat(proxy.log()).doesNotContain("Too many open files");
        // Everything admitted still works, spliced or not.
        for (RawClient c : admitted) {
            assertEchoes(c, 4096);
        }
    }
}
