package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.server.ConfigReloader;
import dev.egressproxy.server.ProxyServer;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Hot reload through the file watch: while a tunnel stays open and keeps passing bytes, a newly
 * allowed host works and a removed one is refused at once; an invalid file leaves the rules in
 * force and counts a failure.
 */
class ReloadIT {

    @TempDir
    Path dir;

    private static String config(int echoPort, String hosts) {
        return """
                egress-proxy {
                  listen { host = "127.0.0.1", port = 0 }
                  admin { host = "127.0.0.1", port = 0 }
                  allowlist { presets = [], hosts = [%s] }
                  destinations.connect-to {
                    "kept.test:7000" = "127.0.0.1:%d"
                    "old.test:7000" = "127.0.0.1:%d"
                    "new.test:7000" = "127.0.0.1:%d"
                  }
                }
                """.formatted(hosts, echoPort, echoPort, echoPort);
    }

    private static String roundTrip(RawClient raw, String text) throws Exception {
        raw.send(text);
        return new String(raw.readExactly(text.length()), StandardCharsets.US_ASCII);
    }

    private static int connectStatus(ProxyServer server, String authority) throws Exception {
        try (RawClient raw = new RawClient(server.proxyAddress())) {
            raw.send("CONNECT " + authority + " HTTP/1.1\r\n\r\n");
            return raw.readHead().status();
        }
    }

    @Test
    void editedFileAppliesToNewRequestsWhileOpenTunnelsRunOn() throws Exception {
        Path file = dir.resolve("egress-proxy.conf");
        try (TcpServer echo = TcpServer.echo()) {
            Files.writeString(file, config(echo.port(), "\"kept.test:7000\", \"old.test:7000\""));
            PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
            try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics()).watch();
                    RawClient tunnel = new RawClient(server.proxyAddress())) {
                tunnel.send("CONNECT kept.test:7000 HTTP/1.1\r\n\r\n");
                assertThat(tunnel.readHead().status()).isEqualTo(200);
                assertThat(roundTrip(tunnel, "before")).isEqualTo("before");
                assertThat(connectStatus(server, "new.test:7000")).isEqualTo(403);

                Files.writeString(file, config(echo.port(), "\"new.test:7000\""));
                await().atMost(Duration.ofSeconds(15)).until(() -> reloads(registry, "success") == 1.0);

                assertThat(roundTrip(tunnel, "after the reload")).isEqualTo("after the reload");
                assertThat(connectStatus(server, "new.test:7000")).isEqualTo(200);
                assertThat(connectStatus(server, "old.test:7000")).isEqualTo(403);

                Files.writeString(file, config(echo.port(), "\"*broken.test\""));
                await().atMost(Duration.ofSeconds(15)).until(() -> reloads(registry, "failure") == 1.0);
                assertThat(reloads(registry, "success")).isEqualTo(1.0);
                assertThat(connectStatus(server, "new.test:7000")).isEqualTo(200);
                assertThat(roundTrip(tunnel, "still open")).isEqualTo("still open");
            } finally {
                server.close();
                registry.close();
            }
        }
    }

    /**
     * A Kubernetes ConfigMap volume: the file is a symlink through {@code ..data}, and an update
     * writes a new timestamped directory and swaps {@code ..data} with a rename. The file itself
     * never sees a write; the reload must still happen.
     */
    @Test
    void configMapStyleSymlinkSwapIsReloaded() throws Exception {
        try (TcpServer echo = TcpServer.echo()) {
            Path v1 = Files.createDirectory(dir.resolve("..2026_11_28_v1"));
            Files.writeString(v1.resolve("egress-proxy.conf"), config(echo.port(), "\"kept.test:7000\""));
            Files.createSymbolicLink(dir.resolve("..data"), v1.getFileName());
            Path file = dir.resolve("egress-proxy.conf");
            Files.createSymbolicLink(file, Path.of("..data", "egress-proxy.conf"));
            PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
            try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics()).watch()) {
                assertThat(connectStatus(server, "new.test:7000")).isEqualTo(403);
                Path v2 = Files.createDirectory(dir.resolve("..2026_11_28_v2"));
                Files.writeString(v2.resolve("egress-proxy.conf"), config(echo.port(), "\"new.test:7000\""));
                Path tmpLink = Files.createSymbolicLink(dir.resolve("..data_tmp"), v2.getFileName());
                Files.move(tmpLink, dir.resolve("..data"), java.nio.file.StandardCopyOption.ATOMIC_MOVE,
                        java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                await().atMost(Duration.ofSeconds(15)).until(() -> reloads(registry, "success") == 1.0);
                assertThat(connectStatus(server, "new.test:7000")).isEqualTo(200);
                assertThat(connectStatus(server, "kept.test:7000")).isEqualTo(403);
            } finally {
                server.close();
                registry.close();
            }
        }
    }

    private static double reloads(PrometheusMeterRegistry registry, String result) {
        return registry.get("egress.proxy.config.reloads").tag("result", result).counter().count();
    }
}
