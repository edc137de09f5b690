package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.metrics.StandardBinders;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TestProxy;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The admin endpoints and the metrics, checked by real tools: {@code promtool check metrics} on a
 * real scrape, and a real Prometheus (Debian's package) scraping the proxy every second and
 * answering PromQL about a refused host and an unreachable one. Also the bound on host labels.
 */
class ObservabilityIT {

    @TempDir
    static Path dir;
    static TestProxy proxy;
    static StandardBinders binders;
    static int closedPort;

    @BeforeAll
    static void start() throws Exception {
        closedPort = Processes.freePort();
        proxy = TestProxy.start("""
                allowlist.hosts = ["registry.redhat.io", "cdn01.quay.io"]
                destinations.connect-to { "cdn01.quay.io:443" = "127.0.0.1:%d" }
                metrics.max-host-labels = 10
                """.formatted(closedPort));
        binders = StandardBinders.bind(proxy.registry);
    }

    @AfterAll
    static void stop() throws Exception {
        binders.close();
        proxy.close();
    }

    private static int connect(String authority) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT " + authority + " HTTP/1.1\r\n\r\n");
            return raw.readHead().status();
        }
    }

    @Test
    void healthAndReadinessAnswer() throws Exception {
        HttpResponse<String> health = proxy.admin("/healthz");
        assertThat(health.statusCode()).isEqualTo(200);
        assertThat(health.body()).isEqualTo("ok\n");
        assertThat(proxy.admin("/readyz").statusCode()).isEqualTo(200);
        assertThat(proxy.admin("/nope").statusCode()).isEqualTo(404);
    }

    @Test
    void readinessTurns503WhenTheProxyStopsAcceptingWhileHealthStays200() throws Exception {
        try (TestProxy draining = TestProxy.start("allowlist.hosts = [\"registry.redhat.io\"]")) {
            assertThat(draining.admin("/readyz").statusCode()).isEqualTo(200);
            draining.server.stopAccepting();
            HttpResponse<String> ready = draining.admin("/readyz");
            assertThat(ready.statusCode()).isEqualTo(503);
            assertThat(ready.body()).isEqualTo("not ready\n");
            assertThat(draining.admin("/healthz").statusCode()).isEqualTo(200);
        }
    }

    @Test
    void deniedReportListsRefusedDestinationsWithCounts() throws Exception {
        assertThat(connect("cdn06.quay.io:443")).isEqualTo(403);
        assertThat(connect("cdn06.quay.io:443")).isEqualTo(403);
        HttpResponse<String> denied = proxy.admin("/denied");
        assertThat(denied.statusCode()).isEqualTo(200);
        assertThat(denied.headers().firstValue("content-type")).hasValue("application/json");
        Matcher m = Pattern.compile("\\{\"type\":\"denied\",\"destination\":\"cdn06.quay.io:443\",[^}]*\"count\":(\\d+)[^}]*}")
                .matcher(denied.body());
        assertThat(m.find()).as(denied.body()).isTrue();
        assertThat(m.group(1)).isEqualTo("2");
        assertThat(m.group()).contains("\"reason\":\"host_not_allowlisted\"").contains("\"last_client\":\"127.0.0.1:");
    }

    @Test
    void scrapePassesPromtoolAndOffersOpenMetrics() throws Exception {
        assertThat(connect("cdn02.quay.io:443")).isEqualTo(403);
        String scrape = proxy.admin("/metrics").body();
        assertThat(scrape).contains("egress_proxy_build_info{version=\"test\"} 1")
                .contains("egress_proxy_upstream_failures_total{cause=\"timeout\",host=\"registry.redhat.io\"} 0")
                .contains("jvm_memory_used_bytes").contains("netty_allocator_memory_used");
        Processes.Result lint = Processes.run(List.of("promtool", "check", "metrics"), scrape, 60);
        assertThat(lint.output()).isEmpty();
        assertThat(lint.exitCode()).isZero();

        HttpResponse<String> om = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(proxy.adminUrl("/metrics")))
                .header("Accept", "application/openmetrics-text; version=1.0.0").build(), HttpResponse.BodyHandlers.ofString());
        assertThat(om.headers().firstValue("content-type").orElse("")).startsWith("application/openmetrics-text");
        assertThat(om.body()).endsWith("# EOF\n");
    }

    @Test
    void aScrapeWaitsForTheLateJvmMetersWithoutHoldingUpTheOtherAdminPaths() throws Exception {
        CompletableFuture<Void> meters = new CompletableFuture<>();
        CountDownLatch asked = new CountDownLatch(1);
        try (TestProxy late = TestProxy.start("allowlist.hosts = [\"registry.redhat.io\"]",
                server -> server.scrapeWaitsFor(() -> {
                    asked.countDown();
                    return meters;
                }))) {
            HttpClient http = HttpClient.newHttpClient();
            CompletableFuture<HttpResponse<String>> scrape = http.sendAsync(
                    HttpRequest.newBuilder(URI.create(late.adminUrl("/metrics"))).build(), HttpResponse.BodyHandlers.ofString());
            assertThat(asked.await(10, TimeUnit.SECONDS)).isTrue();
            // The scrape is held: a meter registered now must be in its answer.
            late.registry.gauge("bound_while_the_scrape_waited", 7);
            assertThat(late.admin("/healthz").statusCode()).isEqualTo(200);
            assertThat(late.admin("/readyz").statusCode()).isEqualTo(200);
            assertThat(scrape).isNotDone();
            meters.complete(null);
            HttpResponse<String> answer = scrape.get(10, TimeUnit.SECONDS);
            assertThat(answer.statusCode()).isEqualTo(200);
            assertThat(answer.body()).contains("bound_while_the_scrape_waited 7.0");
        }
    }

    @Test
    void hostLabelsAreCappedAndTheOverflowIsCounted() throws Exception {
        for (int i = 0; i < 40; i++) {
            assertThat(connect("scanner-" + i + ".example:443")).isEqualTo(403);
        }
        String scrape = proxy.admin("/metrics").body();
        long hostSeries = scrape.lines().filter(l -> l.startsWith("egress_proxy_denied_total{"))
                .map(l -> l.replaceAll(".*host=\"([^\"]*)\".*", "$1")).distinct().count();
        assertThat(hostSeries).isLessThanOrEqualTo(11);
        assertThat(scrape).contains("egress_proxy_denied_total{host=\"_other_\",policy=\"default\",reason=\"host_not_allowlisted\"}");
        assertThat(proxy.scrapeValue("egress_proxy_host_labels_overflow_total{metric=\"denied\"}")).isGreaterThanOrEqualTo(30.0);
        // The report still names every host the metrics had to fold.
        assertThat(proxy.admin("/denied").body()).contains("scanner-39.example:443");
    }

    @Test
    void realPrometheusFindsTheRefusedAndTheUnreachableHostByName() throws Exception {
        int port = Processes.freePort();
        Path config = dir.resolve("prometheus.yml");
        Files.writeString(config, """
                global:
                  scrape_interval: 1s
                  evaluation_interval: 1s
                scrape_configs:
                  - job_name: egress-proxy
                    static_configs:
                      - targets: ["127.0.0.1:%d"]
                """.formatted(proxy.server.adminAddress().getPort()));
        Process prometheus = new ProcessBuilder("prometheus", "--config.file=" + config,
                "--storage.tsdb.path=" + dir.resolve("tsdb"), "--web.listen-address=127.0.0.1:" + port)
                .redirectErrorStream(true).redirectOutput(dir.resolve("prometheus.log").toFile()).start();
        try {
            HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
            await().atMost(Duration.ofSeconds(60)).ignoreExceptions().until(() -> http.send(
                    HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/-/ready")).build(),
                    HttpResponse.BodyHandlers.ofString()).statusCode() == 200);

            assertThat(connect("cdn02.quay.io:443")).isEqualTo(403);
            assertThat(connect("cdn01.quay.io:443")).isEqualTo(502);

            String denied = "egress_proxy_denied_total{host=\"cdn02.quay.io\"}";
            String failed = "egress_proxy_upstream_failures_total{host=\"cdn01.quay.io\",cause=\"refused\"}";
            await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(500)).until(
                    () -> query(http, port, denied) >= 1 && query(http, port, failed) >= 1);
        } finally {
            prometheus.destroy();
            if (!prometheus.waitFor(20, TimeUnit.SECONDS)) {
                prometheus.destroyForcibly();
            }
        }
    }

    /** The value of a single-series instant query, or -1 when there is none yet. */
    private static double query(HttpClient http, int port, String promql) throws Exception {
        String url = "http://127.0.0.1:" + port + "/api/v1/query?query=" + URLEncoder.encode(promql, StandardCharsets.UTF_8);
        String body = http.send(HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofString()).body();
        Matcher m = Pattern.compile("\"value\":\\[[0-9.]+,\"([0-9.eE+-]+)\"]").matcher(body);
        return m.find() ? Double.parseDouble(m.group(1)) : -1;
    }
}
