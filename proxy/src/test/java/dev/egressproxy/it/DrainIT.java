package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import java.io.File;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The proxy process under the signals an init system sends: SIGTERM drains (readiness 503, no
 * new connections, open tunnels finish, exit 0 within the grace) and SIGHUP reloads the file.
 */
class DrainIT {

    @TempDir
    Path dir;

    private Process start(Path config) throws Exception {
        File out = dir.resolve("stdout.log").toFile();
        File err = dir.resolve("stderr.log").toFile();
        ProcessBuilder pb = new ProcessBuilder(JarIT.java(), "-jar", JarIT.jar(), "--config", config.toString())
                .redirectOutput(out).redirectError(err);
        pb.environment().keySet().removeIf(k -> k.startsWith("EGRESS_PROXY_"));
        return pb.start();
    }

    private static int status(HttpClient http, int admin, String path) {
        try {
            return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + admin + path)).build(),
                    HttpResponse.BodyHandlers.discarding()).statusCode();
        } catch (Exception e) {
            return -1;
        }
    }

    private Path writeConfig(int port, int admin, int echoPort, String hosts) throws Exception {
        Path config = dir.resolve("egress-proxy.conf");
        Files.writeString(config, """
                egress-proxy {
                  listen { host = "127.0.0.1", port = %d }
                  admin { host = "127.0.0.1", port = %d }
                  allowlist { presets = [], hosts = [%s] }
                  destinations.connect-to { "echo.test:7000" = "127.0.0.1:%d", "later.test:7000" = "127.0.0.1:%d" }
                  shutdown.grace = 20s
                  reload.watch = false
                }
                """.formatted(port, admin, hosts, echoPort, echoPort));
        return config;
    }

    @Test
    void sigtermDrainsOpenTunnelsAndExitsZero() throws Exception {
        int[] ports = Processes.twoFreePorts();
        int port = ports[0];
        int admin = ports[1];
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
        try (TcpServer echo = TcpServer.echo()) {
            Process proxy = start(writeConfig(port, admin, echo.port(), "\"echo.test:7000\""));
            try {
                await().atMost(Duration.ofSeconds(30)).until(() -> status(http, admin, "/readyz") == 200);
                try (RawClient tunnel = new RawClient(new InetSocketAddress("127.0.0.1", port))) {
                    tunnel.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
                    assertThat(tunnel.readHead().status()).isEqualTo(200);

                    proxy.destroy(); // SIGTERM
                    await().atMost(Duration.ofSeconds(10)).until(() -> status(http, admin, "/readyz") == 503);
                    assertThat(status(http, admin, "/healthz")).isEqualTo(200);
                    assertThatThrownBy(() -> new Socket("127.0.0.1", port).close()).isInstanceOf(ConnectException.class);

                    // The open tunnel still carries a whole transfer.
                    byte[] payload = new byte[512 * 1024];
                    new Random(3).nextBytes(payload);
                    CompletableFuture<byte[]> back = CompletableFuture.supplyAsync(() -> {
                        try {
                            return tunnel.in().readNBytes(payload.length);
                        } catch (Exception e) {
                            throw new IllegalStateException(e);
                        }
                    });
                    tunnel.send(payload);
                    assertThat(Arrays.equals(back.get(20, TimeUnit.SECONDS), payload)).isTrue();
                    assertThat(proxy.isAlive()).isTrue();
                }
                // With the last tunnel closed the drain ends well before the grace.
                assertThat(proxy.waitFor(15, TimeUnit.SECONDS)).isTrue();
                assertThat(proxy.exitValue()).isZero();
                assertThat(Files.readString(dir.resolve("stderr.log"))).contains("draining 1 connections").contains("egress-proxy stopped");
            } finally {
                proxy.destroyForcibly();
            }
        }
    }

    @Test
    void secondSigtermExitsAtOnceWithoutWaitingForOpenTunnels() throws Exception {
        int[] ports = Processes.twoFreePorts();
        int port = ports[0];
        int admin = ports[1];
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
        try (TcpServer echo = TcpServer.echo()) {
            Process proxy = start(writeConfig(port, admin, echo.port(), "\"echo.test:7000\""));
            try {
                await().atMost(Duration.ofSeconds(30)).until(() -> status(http, admin, "/readyz") == 200);
                try (RawClient tunnel = new RawClient(new InetSocketAddress("127.0.0.1", port))) {
                    tunnel.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
                    assertThat(tunnel.readHead().status()).isEqualTo(200);
                    proxy.destroy(); // first SIGTERM: drain, with a 20 s grace and a tunnel open
                    await().atMost(Duration.ofSeconds(10)).until(() -> status(http, admin, "/readyz") == 503);
                    assertThat(proxy.isAlive()).isTrue();
                    long start = System.nanoTime();
                    proxy.destroy(); // second SIGTERM: out at once
                    assertThat(proxy.waitFor(5, TimeUnit.SECONDS)).isTrue();
                    assertThat((System.nanoTime() - start) / 1_000_000).isLessThan(5_000);
                }
                assertThat(Files.readString(dir.resolve("stderr.log"))).contains("second stop signal");
            } finally {
                proxy.destroyForcibly();
            }
        }
    }

    @Test
    void sighupReloadsTheConfigFile() throws Exception {
        int[] ports = Processes.twoFreePorts();
        int port = ports[0];
        int admin = ports[1];
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
        try (TcpServer echo = TcpServer.echo()) {
            Process proxy = start(writeConfig(port, admin, echo.port(), "\"echo.test:7000\""));
            try {
                await().atMost(Duration.ofSeconds(30)).until(() -> status(http, admin, "/readyz") == 200);
                assertThat(connect(port, "later.test:7000")).isEqualTo(403);
                writeConfig(port, admin, echo.port(), "\"echo.test:7000\", \"later.test:7000\"");
                Processes.Result kill = Processes.run(List.of("kill", "-HUP", Long.toString(proxy.pid())), null, 10);
                assertThat(kill.exitCode()).isZero();
                await().atMost(Duration.ofSeconds(10)).until(() -> connect(port, "later.test:7000") == 200);
                // The new allowlist is in force before the reloader logs that it is.
                await().atMost(Duration.ofSeconds(10)).until(() -> Files.readString(dir.resolve("stderr.log"))
                        .contains("configuration reloaded (SIGHUP)"));
            } finally {
                proxy.destroy();
                assertThat(proxy.waitFor(20, TimeUnit.SECONDS)).isTrue();
                assertThat(proxy.exitValue()).isZero();
            }
        }
    }

    private static int connect(int port, String authority) throws Exception {
        try (RawClient raw = new RawClient(new InetSocketAddress("127.0.0.1", port))) {
            raw.send("CONNECT " + authority + " HTTP/1.1\r\n\r\n");
            return raw.readHead().status();
        }
    }
}
