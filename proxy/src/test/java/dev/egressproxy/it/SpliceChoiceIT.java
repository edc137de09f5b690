package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.io.IOException;
import java.io.OutputStream;
import java.time.Duration;
import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Which tunnel directions move to splice(2) with the shipped relay settings (after 64 KiB, on a
 * read of at least 16 KiB): small round trips on a long-lived tunnel stay in user space however
 * many bytes they add up to, and the same tunnel splices once it streams, with every byte counted
 * across the switch.
 */
class SpliceChoiceIT {

    static TcpServer echo;
    static TestProxy proxy;

    @BeforeAll
    static void start() throws Exception {
        echo = TcpServer.echo();
        proxy = TestProxy.start("""
                allowlist.hosts = ["echo.test:7000"]
                destinations.connect-to { "echo.test:7000" = "127.0.0.1:%d" }
                """.formatted(echo.port()));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        echo.close();
        assertThat(echo.errors).isEmpty();
    }

    private static double splices() throws Exception {
        return proxy.scrapeValue("egress_proxy_tunnel_splices_total");
    }

    @Test
    void smallRoundTripsStayInUserSpaceAndTheSameTunnelSplicesOnceItStreams() throws Exception {
        int rounds = 2_000;
        int message = 64;
        int bulk = 4_000_000;
        double before = splices();
        try (AccessLogCapture log = new AccessLogCapture(); RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
            assertThat(raw.readHead().status()).isEqualTo(200);

            // 128,000 bytes each way, twice the splice threshold, in 64-byte round trips.
            byte[] ping = new byte[message];
            for (int i = 0; i < rounds; i++) {
                Arrays.fill(ping, (byte) i);
                raw.send(ping);
                assertThat(raw.readExactly(message)).as("round trip %d", i).isEqualTo(ping);
            }
            assertThat(splices() - before).as("directions spliced by small round trips").isEqualTo(0.0);

            byte[] payload = new byte[bulk];
            new Random(7).nextBytes(payload);
            CompletableFuture<byte[]> received = CompletableFuture.supplyAsync(() -> {
                try {
                    return raw.readToEnd();
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
            });
            OutputStream out = raw.out();
            out.write(payload);
            out.flush();
            raw.socket.shutdownOutput();
            byte[] back = received.get(30, TimeUnit.SECONDS);
            assertThat(back.length).isEqualTo(bulk);
            assertThat(Arrays.equals(back, payload)).as("bulk echo intact").isTrue();

            long each = (long) rounds * message + bulk;
            await().atMost(Duration.ofSeconds(10)).until(() -> log.lines().stream()
                    .anyMatch(l -> l.contains("echo.test") && l.contains("bytes_up=" + each + " bytes_down=" + each)));
        }
        if (proxy.server.transportName().equals("epoll")) {
            // The upload arrives in one 4 MB write, so the client's direction reads 64 KiB at a time;
            // the echo's direction depends on how its 16 KiB writes meet the proxy's reads.
            assertThat(splices() - before).as("directions spliced once the tunnel streams").isBetween(1.0, 2.0);
        } else {
            assertThat(splices() - before).isEqualTo(0.0);
        }
    }
}
