package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.AppenderBase;
import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.metrics.AdminServer;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import io.micrometer.core.instrument.Gauge;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

/**
 * Who may read the admin listener ({@code admin.clients.allow}: 403 for others, counted and logged
 * at most every ten seconds, while {@code /healthz} and {@code /readyz} answer everyone), under
 * which names ({@code admin.hosts}, against DNS rebinding), and that
 * a scrape runs off the I/O threads: a render that does not finish delays neither a tunnel on the
 * proxy's only I/O thread nor a probe. Clients connect from 127.0.0.1 and from 127.0.0.2 (any
 * 127/8 address is loopback on Linux) to tell an allowed address from a refused one.
 */
class AdminAccessIT {

    private static final InetAddress REFUSED = InetAddress.getLoopbackAddress();
    private static final InetAddress ALLOWED = address("127.0.0.2");

    private static InetAddress address(String literal) {
        try {
            return InetAddress.getByName(literal);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /** A response as read from the admin port: status, the reason header and the body. */
    private record Answer(int status, String reason, String body) {
    }

    /** GETs {@code path} from the admin port with a socket bound to {@code from}, as 127.0.0.1:port. */
    private static Answer get(TestProxy proxy, InetAddress from, String path) throws Exception {
        return get(proxy, from, path, "127.0.0.1:" + proxy.server.adminAddress().getPort());
    }

    /** GETs {@code path} with {@code host} as the Host header (none when null). */
    private static Answer get(TestProxy proxy, InetAddress from, String path, String host) throws Exception {
        try (RawClient c = new RawClient(new InetSocketAddress("127.0.0.1", proxy.server.adminAddress().getPort()), from)) {
            c.socket.setSoTimeout(10_000);
            c.send("GET " + path + " HTTP/1.1\r\n" + (host == null ? "" : "Host: " + host + "\r\n") + "\r\n");
            RawClient.Head head = c.readHead();
            String body = new String(c.readExactly(Integer.parseInt(head.header("content-length"))), StandardCharsets.UTF_8);
            return new Answer(head.status(), head.header("x-egress-proxy-reason"), body);
        }
    }

    private static double sample(String body, String sample) {
        for (String line : body.split("\n")) {
            if (line.startsWith(sample + " ")) {
                return Double.parseDouble(line.substring(sample.length() + 1).trim());
            }
        }
        return -1;
    }

    /** Collects the admin server's log lines while attached. */
    private static final class AdminLog extends AppenderBase<ILoggingEvent> implements AutoCloseable {
        private final Logger logger = (Logger) LoggerFactory.getLogger(AdminServer.class);
        final List<ILoggingEvent> events = new CopyOnWriteArrayList<>();

        AdminLog() {
            start();
            logger.addAppender(this);
        }

        @Override
        protected void append(ILoggingEvent event) {
            events.add(event);
        }

        @Override
        public void close() {
            logger.detachAppender(this);
            stop();
        }
    }

    @Test
    void addressOutsideAdminClientsAllowGets403ButTheProbesAndIsCountedAndLoggedOnce() throws Exception {
        try (AdminLog log = new AdminLog();
                TestProxy proxy = TestProxy.start("""
                        allowlist.hosts = ["registry.redhat.io"]
                        admin.clients.allow = ["127.0.0.2/32"]
                        """)) {
            Answer metrics = get(proxy, REFUSED, "/metrics");
            Answer denied = get(proxy, REFUSED, "/denied?x=1");
            Answer unknown = get(proxy, REFUSED, "/nothing-here");

            for (Answer refused : List.of(metrics, denied, unknown)) {
                assertThat(refused.status()).isEqualTo(403);
                assertThat(refused.reason()).isEqualTo("admin_client_not_allowed");
                assertThat(refused.body()).contains("egress-proxy.admin.clients.allow").doesNotContain("egress_proxy_");
            }
            assertThat(get(proxy, REFUSED, "/healthz")).isEqualTo(new Answer(200, null, "ok\n"));
            assertThat(get(proxy, REFUSED, "/readyz?verbose")).isEqualTo(new Answer(200, null, "ready\n"));

            Answer allowed = get(proxy, ALLOWED, "/metrics");
            assertThat(allowed.status()).isEqualTo(200);
            assertThat(sample(allowed.body(), "egress_proxy_admin_rejected_total")).isEqualTo(3.0);
            assertThat(get(proxy, ALLOWED, "/denied").status()).isEqualTo(200);

            // Three refusals well within ten seconds: one line, for the first.
            List<String> warnings = log.events.stream().filter(e -> e.getLevel() == Level.WARN)
                    .map(ILoggingEvent::getFormattedMessage).toList();
            assertThat(warnings).singleElement().asString()
                    .contains("refused 1 request(s)", "egress-proxy.admin.clients.allow", "GET /metrics from 127.0.0.1");
        }
    }

    @Test
    void theStatusPageAndStatusJsonAnswerOnlyAdminClientsAllowWhileHealthzStaysOpen() throws Exception {
        try (TestProxy proxy = TestProxy.start("""
                allowlist.hosts = ["registry.redhat.io"]
                admin.clients.allow = ["127.0.0.2/32"]
                """)) {
            for (String path : List.of("/", "/status", "/status.js", "/status.css")) {
                Answer refused = get(proxy, REFUSED, path);
                assertThat(refused.status()).as(path).isEqualTo(403);
                assertThat(refused.reason()).as(path).isEqualTo("admin_client_not_allowed");
                assertThat(refused.body()).as(path).doesNotContain("\"version\"", "<html", "function");

                assertThat(get(proxy, ALLOWED, path).status()).as(path).isEqualTo(200);
            }
            assertThat(get(proxy, REFUSED, "/healthz")).isEqualTo(new Answer(200, null, "ok\n"));
            assertThat(get(proxy, ALLOWED, "/status").body()).contains("\"version\" : \"test\"");
        }
    }

    @Test
    void theDefaultLetsLoopbackReadEveryPath() throws Exception {
        try (TestProxy proxy = TestProxy.start("allowlist.hosts = [\"registry.redhat.io\"]")) {
            assertThat(get(proxy, REFUSED, "/metrics").status()).isEqualTo(200);
            assertThat(get(proxy, ALLOWED, "/denied").status()).isEqualTo(200);
            assertThat(proxy.scrapeValue("egress_proxy_admin_rejected_total")).isEqualTo(0.0);
        }
    }

    @Test
    void aReloadedAdminClientsAllowAppliesToTheNextRequestWithoutARestart() throws Exception {
        try (TestProxy proxy = TestProxy.start("""
                allowlist.hosts = ["registry.redhat.io"]
                admin.clients.allow = ["10.0.0.0/8"]
                """)) {
            assertThat(get(proxy, REFUSED, "/metrics").status()).isEqualTo(403);

            List<String> restart = proxy.server.apply(ConfigLoader.fromString("""
                    egress-proxy {
                      listen { host = "127.0.0.1", port = 0 }
                      admin { host = "127.0.0.1", port = 0, clients.allow = ["127.0.0.1"] }
                      allowlist.hosts = ["registry.redhat.io"]
                    }
                    """));

            assertThat(restart).doesNotContain("egress-proxy.admin");
            assertThat(get(proxy, REFUSED, "/metrics").status()).isEqualTo(200);
            assertThat(get(proxy, ALLOWED, "/metrics").status()).isEqualTo(403);
        }
    }

    @Test
    void aHostNoneOfTheListenersNamesGets403ButTheProbesAndIsCountedAndLoggedWithTheHost() throws Exception {
        // DNS rebinding: a page from evil.example re-points its name at the admin address; the
        // browser's address is allowed, its Host is the attacker's name.
        try (AdminLog log = new AdminLog();
                TestProxy proxy = TestProxy.start("""
                        allowlist.hosts = ["registry.redhat.io"]
                        admin.hosts = ["metrics.example.internal", "*.scrape.example.internal"]
                        """)) {
            int port = proxy.server.adminAddress().getPort();
            for (String host : List.of("evil.example:" + port, "evil.example", "example.internal", "127.0.0.1.evil.example",
                    "scrape.example.internal", "metrics.example.internal.evil.example")) {
                for (String path : List.of("/metrics", "/denied", "/status", "/")) {
                    Answer refused = get(proxy, ALLOWED, path, host);
                    assertThat(refused.status()).as("%s %s", host, path).isEqualTo(403);
                    assertThat(refused.reason()).isEqualTo("admin_host_not_allowed");
                    assertThat(refused.body()).contains("egress-proxy.admin.hosts")
                            .doesNotContain("egress_proxy_", "registry.redhat.io", "evil");
                }
                assertThat(get(proxy, ALLOWED, "/healthz", host)).isEqualTo(new Answer(200, null, "ok\n"));
                assertThat(get(proxy, ALLOWED, "/readyz", host)).isEqualTo(new Answer(200, null, "ready\n"));
            }
            for (String host : java.util.Arrays.asList("127.0.0.1:" + port, "127.0.0.2", "[::1]:" + port, "localhost:" + port,
                    "LOCALHOST", "metrics.example.internal:" + port, "Metrics.Example.Internal.", "a.scrape.example.internal",
                    "b.a.scrape.example.internal:" + port, null)) {
                assertThat(get(proxy, ALLOWED, "/metrics", host).status()).as(String.valueOf(host)).isEqualTo(200);
            }
            String machine = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/sys/kernel/hostname")).trim();
            assertThat(get(proxy, ALLOWED, "/denied", machine + ":" + port).status()).as(machine).isEqualTo(200);

            assertThat(proxy.scrapeValue("egress_proxy_admin_host_rejected_total")).isEqualTo(24.0);
            assertThat(proxy.scrapeValue("egress_proxy_admin_rejected_total")).isEqualTo(0.0);
            List<String> warnings = log.events.stream().filter(e -> e.getLevel() == Level.WARN)
                    .map(ILoggingEvent::getFormattedMessage).toList();
            assertThat(warnings).singleElement().asString()
                    .contains("refused 1 request(s)", "egress-proxy.admin.hosts", "Host evil.example:" + port + " from 127.0.0.2");
        }
    }

    @Test
    void aStarInAdminHostsAnswersAnyNameAndAReloadAppliesToTheNextRequest() throws Exception {
        try (TestProxy proxy = TestProxy.start("""
                allowlist.hosts = ["registry.redhat.io"]
                admin.hosts = ["*"]
                """)) {
            assertThat(get(proxy, ALLOWED, "/metrics", "anything.example").status()).isEqualTo(200);

            List<String> restart = proxy.server.apply(ConfigLoader.fromString("""
                    egress-proxy {
                      listen { host = "127.0.0.1", port = 0 }
                      admin { host = "127.0.0.1", port = 0, hosts = ["other.example"] }
                      allowlist.hosts = ["registry.redhat.io"]
                    }
                    """));

            assertThat(restart).doesNotContain("egress-proxy.admin");
            assertThat(get(proxy, ALLOWED, "/metrics", "anything.example").status()).isEqualTo(403);
            assertThat(get(proxy, ALLOWED, "/metrics", "other.example").status()).isEqualTo(200);
        }
    }

    /**
     * A meter whose value is only known when the test says so stands for a registry so large that
     * its render takes as long as anyone likes: while that render is in progress, a tunnel on the
     * proxy's only I/O thread relays, a new tunnel opens, a refusal that registers new series is
     * answered, and {@code /healthz} answers. Were the admin listener on the I/O loop, the round
     * trip would wait for the render and fail at its deadline.
     */
    @Test
    void aScrapeInProgressDelaysNeitherTunnelsNorProbes() throws Exception {
        CountDownLatch rendering = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        try (TcpServer echo = TcpServer.echo();
                TestProxy proxy = TestProxy.start("""
                        io-threads = 1
                        allowlist.hosts = ["echo.test:7000"]
                        destinations.connect-to { "echo.test:7000" = "127.0.0.1:%d" }
                        """.formatted(echo.port()));
                RawClient open = new RawClient(proxy.address())) {
            Gauge.builder("test.slow.render", () -> {
                rendering.countDown();
                try {
                    release.await(60, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                return 1;
            }).register(proxy.registry);
            open.socket.setSoTimeout(10_000);
            open.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
            assertThat(open.readHead().status()).isEqualTo(200);

            HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
            CompletableFuture<HttpResponse<String>> scrape = http.sendAsync(
                    HttpRequest.newBuilder(URI.create(proxy.adminUrl("/metrics"))).timeout(Duration.ofSeconds(60)).build(),
                    HttpResponse.BodyHandlers.ofString());
            try {
                assertThat(rendering.await(10, TimeUnit.SECONDS)).as("the scrape reached the slow meter").isTrue();

                open.send("ping");
                assertThat(new String(open.readExactly(4), StandardCharsets.US_ASCII)).isEqualTo("ping");
                try (RawClient fresh = new RawClient(proxy.address())) {
                    fresh.socket.setSoTimeout(10_000);
                    fresh.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\npong");
                    assertThat(fresh.readHead().status()).isEqualTo(200);
                    assertThat(new String(fresh.readExactly(4), StandardCharsets.US_ASCII)).isEqualTo("pong");
                }
                try (RawClient refused = new RawClient(proxy.address())) {
                    refused.socket.setSoTimeout(10_000);
                    refused.send("CONNECT not-allowed.test:443 HTTP/1.1\r\n\r\n");
                    assertThat(refused.readHead().status()).isEqualTo(403);
                }
                assertThat(get(proxy, REFUSED, "/healthz").status()).isEqualTo(200);

                assertThat(scrape).as("the render was still in progress throughout").isNotDone();
            } finally {
                release.countDown();
            }
            HttpResponse<String> done = scrape.get(20, TimeUnit.SECONDS);
            assertThat(done.statusCode()).isEqualTo(200);
            assertThat(sample(done.body(), "test_slow_render")).isEqualTo(1.0);
            assertThat(proxy.scrapeValue("egress_proxy_denied_total{host=\"not-allowed.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                    .as("the series registered during the render").isEqualTo(1.0);
        }
    }
}
