package dev.egressproxy.it;

import static dev.egressproxy.testing.Json.at;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.server.ConfigReloader;
import dev.egressproxy.server.ProxyServer;
import dev.egressproxy.testing.Json;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code GET /status} over a real socket, parsed with Jackson: what the proxy runs with, its
 * allowlist with the preset of each entry, the open connections and tunnels, the refusals and the
 * unreachable destinations caused through the proxy, and the outcome of the last reload, applied
 * and then refused. And the status page's files: the page, its script and style, with the
 * headers that keep a browser from running anything else on it.
 */
class StatusIT {

    @TempDir
    Path dir;

    private static HttpResponse<String> get(String url) throws Exception {
        HttpClient c = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        return c.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    private static Map<String, Object> status(ProxyServer server) throws Exception {
        HttpResponse<String> res = get("http://127.0.0.1:" + server.adminAddress().getPort() + "/status");
        assertThat(res.statusCode()).isEqualTo(200);
        assertThat(res.headers().firstValue("content-type")).hasValue("application/json");
        assertThat(res.headers().firstValue("cache-control")).hasValue("no-store");
        return Json.object(res.body());
    }

    private static int connect(TestProxy proxy, String authority) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.socket.setSoTimeout(10_000);
            raw.send("CONNECT " + authority + " HTTP/1.1\r\n\r\n");
            return raw.readHead().status();
        }
    }

    @Test
    void statusDescribesTheRunningProxyItsAllowlistOpenTunnelsRefusalsAndUnreachableHosts() throws Exception {
        int closed = Processes.freePort();
        try (TcpServer echo = TcpServer.echo();
                TestProxy proxy = TestProxy.start("""
                        allowlist { presets = ["quay-cdn"], hosts = ["echo.test:7000", "gone.test:7001"] }
                        destinations.connect-to {
                          "echo.test:7000" = "127.0.0.1:%d"
                          "gone.test:7001" = "127.0.0.1:%d"
                        }
                        """.formatted(echo.port(), closed));
                RawClient tunnel = new RawClient(proxy.address())) {
            tunnel.socket.setSoTimeout(10_000);
            tunnel.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
            assertThat(tunnel.readHead().status()).isEqualTo(200);
            assertThat(connect(proxy, "gone.test:7001")).isEqualTo(502);
            assertThat(connect(proxy, "not-listed.test:443")).isEqualTo(403);
            assertThat(connect(proxy, "not-listed.test:443")).isEqualTo(403);

            // The refused connections are counted until their close is processed.
            await().atMost(Duration.ofSeconds(10)).until(() -> at(status(proxy.server), "connections", "active").equals(1L));
            Map<String, Object> s = status(proxy.server);

            assertThat(s).containsEntry("version", "test").containsEntry("ready", true)
                    .containsEntry("transport", proxy.server.transportName());
            assertThat(Instant.parse((String) s.get("started"))).isBefore(Instant.parse((String) s.get("now")));
            assertThat((Long) s.get("uptime_seconds")).isBetween(0L, 600L);
            assertThat(at(s, "config", "file")).as("no file: the shipped defaults and the test's text").isNull();
            assertThat(at(s, "config", "last_reload")).isNull();
            assertThat(at(s, "config", "reloads")).isEqualTo(Map.of("success", 0L, "failure", 0L));

            assertThat(at(s, "allowlist", "presets")).isEqualTo(List.of("quay-cdn"));
            assertThat(at(s, "allowlist", "entries")).isEqualTo(List.of(
                    Map.of("entry", "registry.redhat.io", "source", "preset", "preset", "quay-cdn"),
                    Map.of("entry", "registry.access.redhat.com", "source", "preset", "preset", "quay-cdn"),
                    Map.of("entry", "*.quay.io", "source", "preset", "preset", "quay-cdn"),
                    Map.of("entry", "echo.test:7000", "source", "hosts"),
                    Map.of("entry", "gone.test:7001", "source", "hosts")));

            assertThat(at(s, "tunnels", "active")).isEqualTo(1L);
            assertThat((Long) at(s, "connections", "limit")).isPositive();
            assertThat(at(s, "denied")).isEqualTo(Map.of("entries", 1L, "requests", 2L, "capacity", 1000L,
                    "details", "/denied"));

            List<?> unreachable = (List<?>) at(s, "unreachable");
            assertThat(unreachable).hasSize(1);
            assertThat(at(unreachable, 0)).asInstanceOf(org.assertj.core.api.InstanceOfAssertFactories.MAP)
                    .containsEntry("destination", "gone.test:7001").containsEntry("host", "gone.test")
                    .containsEntry("port", 7001L).containsEntry("cause", "refused").containsEntry("count", 1L)
                    .containsKeys("first_seen", "last_seen");
            assertThat((String) at(unreachable, 0, "last_client")).startsWith("127.0.0.1:");
            assertThat(at(s, "fast_fail")).as("fast-fail on by default, nothing skipped")
                    .isEqualTo(Map.of("enabled", true, "cool_down_seconds", 15L, "hosts", List.of()));

            tunnel.send("still open");
            assertThat(new String(tunnel.readExactly(10), StandardCharsets.US_ASCII)).isEqualTo("still open");
        }
    }

    private static String config(String hosts, int maxConnections) {
        return """
                egress-proxy {
                  listen { host = "127.0.0.1", port = 0 }
                  admin { host = "127.0.0.1", port = 0 }
                  allowlist { presets = [], hosts = [%s] }
                  limits.max-connections = %d
                }
                """.formatted(hosts, maxConnections);
    }

    @Test
    void lastReloadShowsAnAppliedReloadThenARefusedOneWithItsErrorWhileTheAllowlistStays() throws Exception {
        Path file = dir.resolve("egress-proxy.conf");
        Files.writeString(file, config("\"first.test\"", 1000));
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
        try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics())) {
            Map<String, Object> before = status(server);
            assertThat(at(before, "config", "file")).isEqualTo(file.toAbsolutePath().toString());
            assertThat(at(before, "config", "last_reload")).isNull();

            Files.writeString(file, config("\"second.test\"", 2000));
            Instant asked = Instant.now();
            assertThat(reloader.reload("test edit")).isTrue();

            Map<String, Object> applied = status(server);
            assertThat(at(applied, "config", "reloads")).isEqualTo(Map.of("success", 1L, "failure", 0L));
            @SuppressWarnings("unchecked")
            Map<String, Object> last = (Map<String, Object>) at(applied, "config", "last_reload");
            assertThat(last.keySet()).containsExactly("at", "trigger", "result", "restart_needed");
            assertThat(last).containsEntry("trigger", "test edit").containsEntry("result", "success")
                    .containsEntry("restart_needed", List.of("egress-proxy.limits"));
            Instant appliedAt = Instant.parse((String) last.get("at"));
            assertThat(appliedAt).isAfterOrEqualTo(asked);
            assertThat(at(applied, "allowlist", "entries")).isEqualTo(List.of(Map.of("entry", "second.test", "source", "hosts")));

            Files.writeString(file, config("\"*broken.test\"", 2000));
            assertThat(reloader.reload("SIGHUP")).isFalse();

            Map<String, Object> refused = status(server);
            assertThat(at(refused, "config", "reloads")).isEqualTo(Map.of("success", 1L, "failure", 1L));
            assertThat(at(refused, "config", "last_reload", "trigger")).isEqualTo("SIGHUP");
            assertThat(at(refused, "config", "last_reload", "result")).isEqualTo("failure");
            assertThat(at(refused, "config", "last_reload", "restart_needed")).isEqualTo(List.of());
            assertThat((String) at(refused, "config", "last_reload", "error"))
                    .contains("egress-proxy.allowlist.hosts[0]", "'*broken.test' is not a valid pattern; use '*.broken.test'");
            assertThat(Instant.parse((String) at(refused, "config", "last_reload", "at"))).isAfterOrEqualTo(appliedAt);
            assertThat(at(refused, "allowlist", "entries")).as("the running allowlist stays in force")
                    .isEqualTo(List.of(Map.of("entry", "second.test", "source", "hosts")));
        } finally {
            server.close();
            registry.close();
        }
    }

    @Test
    void thePageItsScriptAndItsStyleComeWithAPolicyThatAllowsNothingElse() throws Exception {
        try (TestProxy proxy = TestProxy.start("allowlist.hosts = [\"registry.redhat.io\"]")) {
            HttpResponse<String> page = get(proxy.adminUrl("/"));
            assertThat(page.statusCode()).isEqualTo(200);
            assertThat(page.headers().firstValue("content-type")).hasValue("text/html; charset=utf-8");
            assertThat(page.headers().firstValue("content-security-policy")).hasValue(
                    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
                            + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
            assertThat(page.headers().firstValue("x-content-type-options")).hasValue("nosniff");
            assertThat(page.headers().firstValue("cache-control")).hasValue("no-store");
            assertThat(page.headers().firstValue("x-frame-options")).hasValue("DENY");
            assertThat(page.body()).startsWith("<!DOCTYPE html>").contains("<script src=\"/status.js\" defer></script>",
                    "<link rel=\"stylesheet\" href=\"/status.css\">");
            // No inline script or style, and nothing from another origin: the policy would block it.
            String markup = page.body().replace("<script src=\"/status.js\" defer>", "");
            assertThat(markup).doesNotContain("<script", "<style", " style=", "http://", "https://");
            assertThat(markup).doesNotContainPattern("\\son[a-z]+\\s*=");

            HttpResponse<String> script = get(proxy.adminUrl("/status.js"));
            assertThat(script.statusCode()).isEqualTo(200);
            assertThat(script.headers().firstValue("content-type")).hasValue("text/javascript; charset=utf-8");
            assertThat(script.headers().firstValue("x-content-type-options")).hasValue("nosniff");
            assertThat(script.body()).contains("fetch(path").doesNotContain("innerHTML", "eval(", "http://", "https://");

            HttpResponse<String> style = get(proxy.adminUrl("/status.css"));
            assertThat(style.statusCode()).isEqualTo(200);
            assertThat(style.headers().firstValue("content-type")).hasValue("text/css; charset=utf-8");
            assertThat(style.body()).doesNotContain("url(", "@import");

            assertThat(get(proxy.adminUrl("/status.html")).statusCode()).isEqualTo(404);
        }
    }
}
