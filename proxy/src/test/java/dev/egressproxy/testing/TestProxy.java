package dev.egressproxy.testing;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.server.ProxyServer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.netty.channel.uring.IoUring;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.function.Consumer;
import org.junit.jupiter.api.Assumptions;

/**
 * An in-process proxy on loopback ports picked by the kernel, built from HOCON text over
 * {@code reference.conf}, with a fresh meter registry.
 */
public final class TestProxy implements AutoCloseable {

    public final ProxyServer server;
    public final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);

    private TestProxy(ProxyConfig config, Consumer<ProxyServer> beforeStart) throws Exception {
        server = new ProxyServer(config, registry, "test");
        beforeStart.accept(server);
        server.start();
    }

    /** Starts a proxy with {@code hocon} (inside {@code egress-proxy { }}) on free loopback ports. */
    public static TestProxy start(String hocon) throws Exception {
        return start(hocon, server -> { });
    }

    /** The same, with {@code beforeStart} given the server before it starts (to set what a scrape waits for). */
    public static TestProxy start(String hocon, Consumer<ProxyServer> beforeStart) throws Exception {
        // The build runs the relay tests once per transport (epoll where it loads, NIO, io_uring).
        String transport = System.getProperty("egress.test.transport", "auto");
        Assumptions.assumeTrue(!transport.equals("io_uring") || IoUring.isAvailable(),
                () -> "io_uring is not available on this machine, so the io_uring transport run is skipped: "
                        + IoUring.unavailabilityCause());
        return new TestProxy(ConfigLoader.fromString(wrapped(hocon)), beforeStart);
    }

    /** {@code hocon} inside {@code egress-proxy { }} with the listeners and transport every test proxy has. */
    private static String wrapped(String hocon) {
        return "egress-proxy {\n listen { host = \"127.0.0.1\", port = 0 }\n"
                + " admin { host = \"127.0.0.1\", port = 0 }\n transport = \""
                + System.getProperty("egress.test.transport", "auto") + "\"\n" + hocon + "\n}\n";
    }

    /** Reloads the running proxy with {@code hocon} as {@link #start(String)} takes it; returns what needs a restart. */
    public java.util.List<String> reload(String hocon) throws Exception {
        return server.apply(ConfigLoader.fromString(wrapped(hocon)));
    }

    /**
     * The settings of a relay mode the parametrised tests run in: {@code "user-space"} (no splice)
     * or {@code "splice"} (every tunnel direction spliced from its first read, whatever its size).
     */
    public static String relaySettings(String relay) {
        return switch (relay) {
            case "user-space" -> "relay.splice = false\n";
            case "splice" -> "relay.splice-after = 0\nrelay.splice-min-read = 0\n";
            default -> throw new IllegalArgumentException("relay mode " + relay);
        };
    }

    public int port() {
        return server.proxyAddress().getPort();
    }

    public InetSocketAddress address() {
        return server.proxyAddress();
    }

    public String adminUrl(String path) {
        return "http://127.0.0.1:" + server.adminAddress().getPort() + path;
    }

    /** GETs an admin path directly (not through the proxy). */
    public HttpResponse<String> admin(String path) throws Exception {
        HttpClient c = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        return c.send(HttpRequest.newBuilder(URI.create(adminUrl(path))).timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    /** The value of one sample in the Prometheus scrape, or -1 when absent. */
    public double scrapeValue(String sampleWithLabels) throws Exception {
        for (String line : admin("/metrics").body().split("\n")) {
            if (line.startsWith(sampleWithLabels + " ")) {
                return Double.parseDouble(line.substring(sampleWithLabels.length() + 1).trim());
            }
        }
        return -1;
    }

    @Override
    public void close() {
        server.close();
        registry.close();
    }
}
