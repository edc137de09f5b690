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
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
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

    /**
     * A log file written beside the config (here every 50 ms, for the whole test) neither causes
     * reload attempts nor holds back a real edit: the edit is in force within the bound.
     */
    @Test
    void fileWrittenBesideTheConfigNeitherReloadsNorDelaysAnEdit() throws Exception {
        Path file = dir.resolve("egress-proxy.conf");
        Path noise = dir.resolve("access.log");
        try (TcpServer echo = TcpServer.echo();
                Writer writer = Writer.every50ms(() -> Files.writeString(noise, "GET / 200\n",
                        StandardOpenOption.CREATE, StandardOpenOption.APPEND))) {
            Files.writeString(file, config(echo.port(), "\"kept.test:7000\""));
            PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
            try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics()).watch()) {
                await().atMost(Duration.ofSeconds(5)).until(() -> writer.writes() >= 5);
                await("no reload while only the log file changes").during(Duration.ofMillis(1500))
                        .atMost(Duration.ofSeconds(3))
                        .until(() -> reloads(registry, "success") + reloads(registry, "failure") == 0.0);

                Files.writeString(file, config(echo.port(), "\"new.test:7000\""));
                await("edit in force despite the log writes").atMost(Duration.ofSeconds(2))
                        .until(() -> connectStatus(server, "new.test:7000") == 200);
                assertThat(connectStatus(server, "kept.test:7000")).isEqualTo(403);
                assertThat(reloads(registry, "success")).isEqualTo(1.0);
                writer.check();
            } finally {
                server.close();
                registry.close();
            }
        }
    }

    /**
     * A config rewritten every 50 ms without pause (a tool that renders it in a loop, each time
     * to a temporary file renamed over it) is still applied, within the bound, and once.
     */
    @Test
    void configRewrittenWithoutPauseIsAppliedWithinTheBound() throws Exception {
        Path file = dir.resolve("egress-proxy.conf");
        try (TcpServer echo = TcpServer.echo()) {
            Files.writeString(file, config(echo.port(), "\"kept.test:7000\""));
            PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
            String next = config(echo.port(), "\"new.test:7000\"");
            Path tmp = dir.resolve("egress-proxy.conf.tmp");
            try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics()).watch();
                    Writer writer = Writer.every50ms(() -> {
                        Files.writeString(tmp, next);
                        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                    })) {
                await("rewritten config in force").atMost(Duration.ofSeconds(2))
                        .until(() -> connectStatus(server, "new.test:7000") == 200);
                assertThat(writer.writes()).isPositive();
                assertThat(connectStatus(server, "kept.test:7000")).isEqualTo(403);
                // The same content rewritten again and again: one reload, not one per bound.
                await().during(Duration.ofMillis(1500)).atMost(Duration.ofSeconds(3))
                        .until(() -> reloads(registry, "success") == 1.0 && reloads(registry, "failure") == 0.0);
                writer.check();
            } finally {
                server.close();
                registry.close();
            }
        }
    }

    /** Preset files count only while the config names presets, and then the edit is applied. */
    @Test
    void presetFilesAreWatchedOnlyWhenTheConfigUsesPresets() throws Exception {
        Path file = dir.resolve("egress-proxy.conf");
        Path presets = Files.createDirectory(dir.resolve("presets"));
        try (TcpServer echo = TcpServer.echo()) {
            Files.writeString(file, config(echo.port(), "\"kept.test:7000\""));
            PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
            try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics()).watch()) {
                // No preset in use: a preset file written is no reason to reload.
                Files.writeString(presets.resolve("team.conf"), "hosts = [\"old.test:7000\"]\n");
                await("no reload for an unused preset file").during(Duration.ofMillis(1500))
                        .atMost(Duration.ofSeconds(3))
                        .until(() -> reloads(registry, "success") + reloads(registry, "failure") == 0.0);

                Files.writeString(file, config(echo.port(), "\"kept.test:7000\"")
                        .replace("presets = []", "presets = [\"team\"]"));
                await().atMost(Duration.ofSeconds(2)).until(() -> connectStatus(server, "old.test:7000") == 200);

                // Now in use: editing the preset is applied.
                Files.writeString(presets.resolve("team.conf"), "hosts = [\"new.test:7000\"]\n");
                await().atMost(Duration.ofSeconds(2)).until(() -> connectStatus(server, "new.test:7000") == 200);
                assertThat(connectStatus(server, "old.test:7000")).isEqualTo(403);
                assertThat(reloads(registry, "success")).isEqualTo(2.0);
            } finally {
                server.close();
                registry.close();
            }
        }
    }

    /**
     * Files pulled in with HOCON {@code include}, nested ones too and one in another directory, are
     * watched with the config: editing one is applied without a signal; an include that a reload
     * adds is watched from then on.
     */
    @Test
    void includedFilesAreWatchedWithTheConfig() throws Exception {
        Path file = dir.resolve("egress-proxy.conf");
        Path elsewhere = Files.createDirectory(dir.resolve("teams"));
        try (TcpServer echo = TcpServer.echo()) {
            String main = config(echo.port(), "\"kept.test:7000\"")
                    .replace("allowlist { presets = [], hosts = [\"kept.test:7000\"] }",
                            "allowlist { presets = [], include \"allowlist.conf\" }");
            Files.writeString(file, main);
            Files.writeString(dir.resolve("allowlist.conf"), "hosts = [\"kept.test:7000\"]\ninclude \"teams/extra\"\n");
            Files.writeString(elsewhere.resolve("extra.conf"), "hosts += \"old.test:7000\"\n");
            PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
            try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics()).watch()) {
                assertThat(server.liveConfig().reload().includes())
                        .containsExactly(dir.resolve("allowlist.conf"), elsewhere.resolve("extra.conf"));
                assertThat(connectStatus(server, "old.test:7000")).isEqualTo(200);
                assertThat(connectStatus(server, "new.test:7000")).isEqualTo(403);

                // The nested include, in a directory of its own, renamed over as a tool would.
                Path tmp = elsewhere.resolve("extra.conf.tmp");
                Files.writeString(tmp, "hosts += \"new.test:7000\"\n");
                Files.move(tmp, elsewhere.resolve("extra.conf"), StandardCopyOption.ATOMIC_MOVE,
                        StandardCopyOption.REPLACE_EXISTING);
                await().atMost(Duration.ofSeconds(5)).until(() -> connectStatus(server, "new.test:7000") == 200);
                assertThat(connectStatus(server, "old.test:7000")).isEqualTo(403);

                // The first include, written in place, drops its nested include and names one of its own.
                Files.writeString(dir.resolve("more.conf"), "hosts += \"old.test:7000\"\n");
                Files.writeString(dir.resolve("allowlist.conf"), "hosts = [\"kept.test:7000\"]\ninclude \"more.conf\"\n");
                await().atMost(Duration.ofSeconds(5)).until(() -> connectStatus(server, "old.test:7000") == 200);
                assertThat(connectStatus(server, "new.test:7000")).isEqualTo(403);
                assertThat(server.liveConfig().reload().includes())
                        .containsExactly(dir.resolve("allowlist.conf"), dir.resolve("more.conf"));

                // Added by the reload, watched from then on.
                Files.writeString(dir.resolve("more.conf"), "hosts += \"new.test:7000\"\n");
                await().atMost(Duration.ofSeconds(5)).until(() -> connectStatus(server, "new.test:7000") == 200);
                assertThat(connectStatus(server, "old.test:7000")).isEqualTo(403);
                assertThat(reloads(registry, "success")).isEqualTo(3.0);
                assertThat(reloads(registry, "failure")).isZero();
            } finally {
                server.close();
                registry.close();
            }
        }
    }

    /** Runs a file write every 50 ms on its own thread until closed; a failed write fails the test. */
    private static final class Writer implements AutoCloseable {
        interface Write {
            void run() throws Exception;
        }

        private final ScheduledExecutorService executor = Executors.newSingleThreadScheduledExecutor();
        private final AtomicInteger writes = new AtomicInteger();
        private final AtomicReference<Exception> failure = new AtomicReference<>();

        static Writer every50ms(Write write) {
            Writer w = new Writer();
            w.executor.scheduleAtFixedRate(() -> {
                try {
                    write.run();
                    w.writes.incrementAndGet();
                } catch (Exception e) {
                    w.failure.compareAndSet(null, e);
                }
            }, 0, 50, TimeUnit.MILLISECONDS);
            return w;
        }

        int writes() {
            return writes.get();
        }

        void check() {
            assertThat(failure.get()).isNull();
        }

        @Override
        public void close() throws InterruptedException {
            executor.shutdownNow();
            assertThat(executor.awaitTermination(5, TimeUnit.SECONDS)).isTrue();
        }
    }

    private static double reloads(PrometheusMeterRegistry registry, String result) {
        return registry.get("egress.proxy.config.reloads").tag("result", result).counter().count();
    }
}
