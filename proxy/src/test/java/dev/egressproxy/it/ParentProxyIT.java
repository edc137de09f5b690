package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.server.ConfigReloader;
import dev.egressproxy.server.ProxyServer;
import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.Squid;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestCerts;
import dev.egressproxy.testing.TestDnsServer;
import dev.egressproxy.testing.TestProxy;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code upstream-proxy} with a real Squid as the parent, started by the test: CONNECT and plain
 * HTTP go through it (Squid's access log shows them, the origin receives them), names routed to it
 * are resolved by Squid only (its hosts file; the proxy's DNS server never hears them), a bypassed
 * destination goes direct, the parent gets our credentials and never the client's, and a parent's
 * 407, 403 or absence reaches the client as 502 naming both hops; a parent that accepts and stays
 * silent, or a blackholed one, as 504 at the connect timeout. The allowlist refuses before any
 * parent is contacted. A scripted parent checks the CONNECT the proxy sends and that bytes it
 * sends behind its 200 reach the client. A rotated {@code password-file} is picked up by the file
 * watch and used by the next tunnel.
 */
class ParentProxyIT {

    static final String USER = "egress";
    static final String PASSWORD = "s3cret-pass";
    /** What the client sends this proxy; never for the parent. */
    static final String CLIENT_CREDENTIALS = "Basic " + Base64.getEncoder()
            .encodeToString("client:mine".getBytes(StandardCharsets.US_ASCII));

    @TempDir
    static Path dir;
    static Origin tlsOrigin;
    static Origin httpOrigin;
    static TestDnsServer dns;
    static Squid squid;
    static Squid authSquid;
    static TcpServer scriptedParent;
    static final List<String> scriptedHeads = new CopyOnWriteArrayList<>();
    /** Accepts, reads the CONNECT and never answers. */
    static TcpServer silentParent;
    static final List<String> silentReads = new CopyOnWriteArrayList<>();
    /** Never accepts: its backlog is full, so a connect hangs. */
    static TcpServer blackholeParent;
    static HttpClient.Builder tls;
    static TestProxy proxy;
    static TestProxy authProxy;
    static TestProxy wrongPasswordProxy;
    static TestProxy downProxy;
    static TestProxy scriptedProxy;
    static TestProxy silentProxy;
    static TestProxy blackholeProxy;
    static String common;
    static String registry;
    static String web;

    @BeforeAll
    static void start() throws Exception {
        TestCerts certs = TestCerts.generate(Files.createDirectories(dir.resolve("certs")));
        // The origin closes after answering, so that the tunnel ends and Squid logs it (at its end).
        tlsOrigin = Origin.https(certs.serverContext()).route("/v2/", ex -> {
            ex.getResponseHeaders().add("Connection", "close");
            Origin.send(ex, 200, "registry through the parent\n".getBytes(StandardCharsets.UTF_8));
        });
        httpOrigin = Origin.http().respond("/blob", 200, "blob through the parent\n").respond("/direct", 200, "direct\n");
        registry = "registry.redhat.io:" + tlsOrigin.port();
        web = "web.parent.test:" + httpOrigin.port();
        // Our DNS knows the parent's name only: a destination name asked here would fail.
        dns = new TestDnsServer().add("corp-proxy.test", "127.0.0.1");
        Map<String, String> squidHosts = Map.of("registry.redhat.io", "127.0.0.1", "web.parent.test", "127.0.0.1",
                "denied.test", "127.0.0.1");
        squid = Squid.open(squidHosts, "denied.test");
        authSquid = Squid.withAuth(squidHosts, USER, PASSWORD);
        scriptedParent = TcpServer.of(ParentProxyIT::scriptedParent);
        silentParent = TcpServer.of((s, server) -> {
            InputStream in = s.getInputStream();
            byte[] buf = new byte[4096];
            for (int n; (n = in.read(buf)) > 0; ) {
                silentReads.add(new String(buf, 0, n, StandardCharsets.ISO_8859_1));
            }
        });
        blackholeParent = TcpServer.blackhole();
        Path good = Files.writeString(dir.resolve("parent.password"), PASSWORD + "\n");
        Path wrong = Files.writeString(dir.resolve("wrong.password"), "not-the-password\n");
        tls = HttpClient.newBuilder().sslContext(certs.clientContext()).version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(5));
        common = """
                allowlist.hosts = ["%s", "%s", "denied.test", "127.0.0.1/32:%d"]
                destinations.allow-private = ["127.0.0.0/8"]
                dns { servers = ["%s"], query-timeout = 2s }
                timeouts.connect = 2s
                """.formatted(registry, web, httpOrigin.port(), dns.address());
        proxy = TestProxy.start(common + """
                upstream-proxy { url = "http://corp-proxy.test:%d", bypass = ["127.0.0.0/8"] }
                """.formatted(squid.port()));
        authProxy = TestProxy.start(common + """
                upstream-proxy { url = "%s", user = "%s", password-file = "%s" }
                """.formatted(authSquid.url(), USER, good));
        wrongPasswordProxy = TestProxy.start(common + """
                upstream-proxy { url = "%s", user = "%s", password-file = "%s" }
                """.formatted(authSquid.url(), USER, wrong));
        downProxy = TestProxy.start(common + """
                upstream-proxy.url = "http://127.0.0.1:%d"
                """.formatted(Processes.freePort()));
        scriptedProxy = TestProxy.start(common + """
                upstream-proxy { url = "http://127.0.0.1:%d", user = "%s", password-file = "%s" }
                """.formatted(scriptedParent.port(), USER, good));
        silentProxy = TestProxy.start(common + """
                upstream-proxy.url = "http://127.0.0.1:%d"
                """.formatted(silentParent.port()));
        blackholeProxy = TestProxy.start(common + """
                upstream-proxy.url = "http://127.0.0.1:%d"
                """.formatted(blackholeParent.port()));
    }

    @AfterAll
    static void stop() throws Exception {
        for (AutoCloseable c : new AutoCloseable[] {proxy, authProxy, wrongPasswordProxy, downProxy, scriptedProxy,
                silentProxy, blackholeProxy, squid, authSquid, scriptedParent, silentParent, blackholeParent, dns, tlsOrigin,
                httpOrigin}) {
            if (c != null) {
                c.close();
            }
        }
        assertThat(scriptedParent.errors).isEmpty();
        assertThat(silentParent.errors).isEmpty();
    }

    /**
     * A parent that reads the CONNECT head, answers 200 with the origin's first bytes in the same
     * write (a server that speaks first), then echoes.
     */
    static void scriptedParent(java.net.Socket s, TcpServer server) throws java.io.IOException {
        InputStream in = s.getInputStream();
        ByteArrayOutputStream head = new ByteArrayOutputStream();
        while (!head.toString(StandardCharsets.ISO_8859_1).endsWith("\r\n\r\n")) {
            int b = in.read();
            if (b < 0) {
                return;
            }
            head.write(b);
        }
        scriptedHeads.add(head.toString(StandardCharsets.ISO_8859_1));
        s.getOutputStream().write("HTTP/1.1 200 Connection established\r\n\r\nbanner from the origin\n"
                .getBytes(StandardCharsets.US_ASCII));
        s.getOutputStream().flush();
        byte[] buf = new byte[4096];
        for (int n; (n = in.read(buf)) > 0; ) {
            s.getOutputStream().write(buf, 0, n);
        }
        s.close();
    }

    private static HttpResponse<String> get(TestProxy through, String url) throws Exception {
        HttpClient c = tls.proxy(ProxySelector.of(through.address())).build();
        return c.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(15)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    private static RawClient.Head connect(TestProxy through, String authority) throws Exception {
        return connect(through.address(), authority);
    }

    private static RawClient.Head connect(InetSocketAddress through, String authority) throws Exception {
        try (RawClient raw = new RawClient(through)) {
            raw.send("CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
            return raw.readHead();
        }
    }

    /** Waits until Squid logged a line containing {@code text}, and returns its log. */
    private static List<String> awaitSquidLine(Squid s, String text) {
        await().atMost(Duration.ofSeconds(10)).until(() -> s.accessLog().stream().anyMatch(l -> l.contains(text)));
        try {
            return s.accessLog();
        } catch (java.io.IOException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void connectGoesThroughTheParentWhichAloneResolvesTheName() throws Exception {
        try (AccessLogCapture log = new AccessLogCapture()) {
            HttpResponse<String> res = get(proxy, "https://" + registry + "/v2/");
            assertThat(res.statusCode()).isEqualTo(200);
            assertThat(res.body()).isEqualTo("registry through the parent\n");
            assertThat(tlsOrigin.seen).extracting(Origin.Seen::path).contains("/v2/");
            assertThat(awaitSquidLine(squid, "CONNECT " + registry)).anyMatch(l -> l.contains("TCP_TUNNEL/200"));
            // The parent's name was asked here, the destination's never.
            assertThat(dns.questions).anyMatch(q -> q.contains("corp-proxy.test"));
            assertThat(dns.questions).noneMatch(q -> q.contains("registry.redhat.io"));
            await().atMost(Duration.ofSeconds(10)).until(() -> log.lines().stream()
                    .anyMatch(l -> l.contains("target=" + registry) && l.contains("end=")));
            assertThat(log.lines()).filteredOn(l -> l.contains("target=" + registry)).first().asString()
                    .contains("upstream=127.0.0.1:" + squid.port(), "via=parent", "status=200");
        }
    }

    @Test
    void plainHttpGoesToTheParentInAbsoluteFormWithoutTheClientsCredentials() throws Exception {
        int before = httpOrigin.seen.size();
        try (RawClient raw = new RawClient(proxy.address())) {
            for (int i = 0; i < 2; i++) {
                raw.send("GET http://" + web + "/blob HTTP/1.1\r\nHost: " + web + "\r\nProxy-Authorization: "
                        + CLIENT_CREDENTIALS + "\r\n\r\n");
                RawClient.Head head = raw.readHead();
                assertThat(head.status()).isEqualTo(200);
                assertThat(new String(raw.readExactly(Integer.parseInt(head.header("content-length"))),
                        StandardCharsets.US_ASCII)).isEqualTo("blob through the parent\n");
            }
        }
        Origin.Seen seen = httpOrigin.seen.get(before);
        assertThat(seen.path()).isEqualTo("/blob");
        assertThat(seen.header("Proxy-Authorization")).isNull();
        assertThat(seen.header("Via")).contains("egress-proxy").contains("parent-squid");
        assertThat(awaitSquidLine(squid, "GET http://" + web + "/blob"))
                .filteredOn(l -> l.contains("GET http://" + web + "/blob")).hasSize(2);
        assertThat(dns.questions).noneMatch(q -> q.contains("web.parent.test"));
    }

    @Test
    void bypassedDestinationGoesDirect() throws Exception {
        HttpResponse<String> res = get(proxy, "http://127.0.0.1:" + httpOrigin.port() + "/direct");
        assertThat(res.statusCode()).isEqualTo(200);
        assertThat(httpOrigin.seen).extracting(Origin.Seen::path).contains("/direct");
        // A request through Squid after it: once Squid logged that one, it would have logged the bypassed one.
        assertThat(get(proxy, "http://" + web + "/blob?after-direct").statusCode()).isEqualTo(200);
        assertThat(awaitSquidLine(squid, "after-direct")).noneMatch(l -> l.contains("/direct"));
    }

    @Test
    void parentWithAuthenticationGetsTheConfiguredCredentials() throws Exception {
        assertThat(get(authProxy, "https://" + registry + "/v2/").statusCode()).isEqualTo(200);
        try (RawClient raw = new RawClient(authProxy.address())) {
            raw.send("GET http://" + web + "/blob?auth HTTP/1.1\r\nHost: " + web + "\r\nProxy-Authorization: "
                    + CLIENT_CREDENTIALS + "\r\n\r\n");
            assertThat(raw.readHead().status()).isEqualTo(200);
        }
        List<String> lines = awaitSquidLine(authSquid, "/blob?auth");
        assertThat(lines).anyMatch(l -> l.contains("CONNECT " + registry) && l.contains(" " + USER + " "));
        assertThat(lines).anyMatch(l -> l.contains("/blob?auth") && l.contains(" " + USER + " "));
        assertThat(lines).noneMatch(l -> l.contains(" client "));
    }

    @Test
    void wrongParentPasswordIs502NamingBothHopsAndThe407() throws Exception {
        RawClient.Head head = connect(wrongPasswordProxy, registry);
        assertThat(head.status()).isEqualTo(502);
        assertThat(head.reason()).isEqualTo("parent proxy 127.0.0.1:" + authSquid.port() + " answered 407 for " + registry);
        assertThat(head.header("X-Egress-Proxy-Reason")).isEqualTo("parent_refused");
        try (RawClient raw = new RawClient(wrongPasswordProxy.address())) {
            raw.send("GET http://" + web + "/blob HTTP/1.1\r\nHost: " + web + "\r\n\r\n");
            RawClient.Head get = raw.readHead();
            assertThat(get.status()).isEqualTo(502);
            assertThat(get.reason()).isEqualTo("parent proxy 127.0.0.1:" + authSquid.port() + " answered 407 for " + web);
            assertThat(get.header("X-Egress-Proxy-Reason")).isEqualTo("parent_refused");
        }
        assertThat(wrongPasswordProxy.scrapeValue(
                "egress_proxy_parent_failures_total{cause=\"answered_407\",host=\"registry.redhat.io\"}")).isEqualTo(1);
        assertThat(wrongPasswordProxy.scrapeValue(
                "egress_proxy_parent_failures_total{cause=\"answered_407\",host=\"web.parent.test\"}")).isEqualTo(1);
    }

    @Test
    void parentThatDeniesAHostIs502NamingIts403() throws Exception {
        RawClient.Head head = connect(proxy, "denied.test:443");
        assertThat(head.status()).isEqualTo(502);
        assertThat(head.reason()).isEqualTo("parent proxy corp-proxy.test:" + squid.port() + " answered 403 for denied.test:443");
        assertThat(head.header("X-Egress-Proxy-Reason")).isEqualTo("parent_refused");
        assertThat(proxy.scrapeValue("egress_proxy_parent_failures_total{cause=\"answered_403\",host=\"denied.test\"}"))
                .isEqualTo(1);
        assertThat(proxy.admin("/denied").body()).contains("denied.test:443").contains("parent_answered_403");
    }

    @Test
    void parentDownIs502NamingTheParent() throws Exception {
        RawClient.Head head = connect(downProxy, registry);
        assertThat(head.status()).isEqualTo(502);
        assertThat(head.reason()).startsWith("parent proxy 127.0.0.1:").contains("connection refused")
                .endsWith("for " + registry);
        assertThat(head.header("X-Egress-Proxy-Reason")).isEqualTo("parent_unreachable");
        assertThat(downProxy.scrapeValue("egress_proxy_parent_failures_total{cause=\"connection_refused\",host=\"registry.redhat.io\"}"))
                .isEqualTo(1);
        // The destination itself did not fail: the direct-failure metric stays quiet.
        assertThat(downProxy.admin("/metrics").body())
                .doesNotContain("egress_proxy_upstream_failures_total{cause=\"refused\",host=\"registry.redhat.io\"} 1");
    }

    @Test
    void parentThatAcceptsButNeverAnswersTheConnectIs504NamingBothHopsAtTheConnectTimeout() throws Exception {
        try (AccessLogCapture log = new AccessLogCapture()) {
            long start = System.nanoTime();
            RawClient.Head head = connect(silentProxy, registry);
            Duration took = Duration.ofNanos(System.nanoTime() - start);

            assertThat(head.status()).isEqualTo(504);
            assertThat(head.reason()).isEqualTo("parent proxy 127.0.0.1:" + silentParent.port()
                    + " did not answer the CONNECT within 2s (connect timeout) for " + registry);
            assertThat(head.header("X-Egress-Proxy-Reason")).isEqualTo("parent_timeout");
            // timeouts.connect = 2s: not before it, and not much after it.
            assertThat(took).isBetween(Duration.ofMillis(1900), Duration.ofSeconds(5));
            // The parent did get the CONNECT: it was its silence that timed out.
            assertThat(String.join("", silentReads)).startsWith("CONNECT " + registry + " HTTP/1.1\r\n");
            assertThat(accessLine(log, registry)).contains(" method=CONNECT ", " status=504 ",
                    " upstream=127.0.0.1:" + silentParent.port() + " ", " via=parent ", " error=parent_timeout ");
        }
        assertThat(silentProxy.scrapeValue(
                "egress_proxy_parent_failures_total{cause=\"timeout\",host=\"registry.redhat.io\"}")).isEqualTo(1);
        // The destination did not fail: upstream_failures_total (its series registered at zero for
        // the allowlisted host) is for direct connections only.
        assertThat(silentProxy.scrapeValue(
                "egress_proxy_upstream_failures_total{cause=\"timeout\",host=\"registry.redhat.io\"}")).isZero();
        assertThat(silentProxy.admin("/denied").body()).contains(registry).contains("parent_timeout");
    }

    @Test
    void blackholedParentIs504NamingBothHopsAtTheConnectTimeoutAndThenFastFails() throws Exception {
        try (AccessLogCapture log = new AccessLogCapture()) {
            long start = System.nanoTime();
            RawClient.Head head = connect(blackholeProxy, registry);
            Duration took = Duration.ofNanos(System.nanoTime() - start);

            assertThat(head.status()).isEqualTo(504);
            assertThat(head.reason()).isEqualTo("parent proxy 127.0.0.1:" + blackholeParent.port()
                    + " did not answer within 2s (connect timeout), for " + registry);
            assertThat(head.header("X-Egress-Proxy-Reason")).isEqualTo("parent_timeout");
            assertThat(took).isBetween(Duration.ofMillis(1900), Duration.ofSeconds(5));
            // No connection to the parent, so no upstream address in the line; via says which hop failed.
            assertThat(accessLine(log, registry)).contains(" method=CONNECT ", " status=504 ", " via=parent ",
                    " error=parent_timeout ");
        }
        assertThat(blackholeProxy.scrapeValue(
                "egress_proxy_parent_failures_total{cause=\"timeout\",host=\"registry.redhat.io\"}")).isEqualTo(1);
        assertThat(blackholeProxy.scrapeValue(
                "egress_proxy_upstream_failures_total{cause=\"timeout\",host=\"registry.redhat.io\"}")).isZero();

        // The parent's address is now in fast-fail (upstream.fast-fail.timeouts = 1): the next
        // request through it is answered at once, still naming both hops.
        long start = System.nanoTime();
        RawClient.Head again = connect(blackholeProxy, web);
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(1));
        assertThat(again.status()).isEqualTo(504);
        assertThat(again.reason()).startsWith("parent proxy 127.0.0.1:" + blackholeParent.port()).endsWith("for " + web);
        assertThat(again.header("X-Egress-Proxy-Reason")).isEqualTo("parent_timeout");
        assertThat(blackholeProxy.scrapeValue("egress_proxy_upstream_fast_fail{host=\"127.0.0.1\"}")).isEqualTo(1);
        assertThat(blackholeProxy.scrapeValue(
                "egress_proxy_parent_failures_total{cause=\"unreachable_recently\",host=\"web.parent.test\"}")).isEqualTo(1);
    }

    /** The access-log line of the CONNECT to {@code authority}, once it is written. */
    private static String accessLine(AccessLogCapture log, String authority) {
        String target = " target=" + authority + " ";
        await().atMost(Duration.ofSeconds(10)).until(() -> log.lines().stream().anyMatch(l -> l.contains(target)));
        return log.lines().stream().filter(l -> l.contains(target)).findFirst().orElseThrow();
    }

    @Test
    void rotatedPasswordFileIsUsedByTheNextTunnelWithoutASignal() throws Exception {
        // The password in a Secret volume of its own (password -> ..data/password), first a wrong one.
        Path secret = Files.createDirectories(dir.resolve("parent-secret"));
        swapData(secret, "..2025_01_01_00_00_00.1", "not-the-password\n");
        Path passwordFile = Files.createSymbolicLink(secret.resolve("password"), Path.of("..data", "password"));
        Path conf = Files.createDirectories(dir.resolve("parent-conf"));
        Path file = conf.resolve("egress-proxy.conf");
        Files.writeString(file, "egress-proxy {\n listen { host = \"127.0.0.1\", port = 0 }\n admin.enabled = false\n"
                + " transport = \"" + System.getProperty("egress.test.transport", "auto") + "\"\n" + common
                + "upstream-proxy { url = \"" + authSquid.url() + "\", user = \"" + USER + "\", password-file = \""
                + passwordFile + "\" }\n}\n");
        PrometheusMeterRegistry meters = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), meters, "test").start();
        try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics()).watch()) {
            String answered407 = "parent proxy 127.0.0.1:" + authSquid.port() + " answered 407 for " + registry;
            assertThat(connect(server.proxyAddress(), registry).reason()).isEqualTo(answered407);

            long tunnelsBefore = squidTunnels();
            // The kubelet's update of the Secret: Squid accepts the next tunnel's credentials.
            swapData(secret, "..2025_01_02_00_00_00.2", PASSWORD + "\n");
            await("new password in use").atMost(Duration.ofSeconds(15))
                    .until(() -> connect(server.proxyAddress(), registry).status() == 200);
            // The new snapshot is in force a moment before the reload is recorded as applied.
            await().atMost(Duration.ofSeconds(5)).until(() -> server.status().lastReload() != null
                    && server.status().lastReload().applied());
            // Squid's own log: a tunnel it opened for our user (logged when it ends).
            await().atMost(Duration.ofSeconds(10)).until(() -> squidTunnels() > tunnelsBefore);

            // The next rotation is applied as well (the watch goes on after the first).
            swapData(secret, "..2025_01_03_00_00_00.3", "rotated-away\n");
            await("rotated-away password in use").atMost(Duration.ofSeconds(15))
                    .until(() -> answered407.equals(connect(server.proxyAddress(), registry).reason()));
            await().atMost(Duration.ofSeconds(5))
                    .until(() -> meters.get("egress.proxy.config.reloads").tag("result", "success").counter().count() == 2.0);
            assertThat(meters.get("egress.proxy.config.reloads").tag("result", "failure").counter().count()).isZero();
        } finally {
            server.close();
            meters.close();
        }
    }

    /** Tunnels to the registry Squid with authentication opened for {@link #USER}. */
    private static long squidTunnels() throws java.io.IOException {
        return authSquid.accessLog().stream().filter(l -> l.contains("TCP_TUNNEL/200") && l.contains("CONNECT " + registry)
                && l.contains(" " + USER + " ")).count();
    }

    /** Writes {@code password} in a new timestamped directory and renames a {@code ..data_tmp} link over {@code ..data}. */
    private static void swapData(Path secret, String version, String password) throws java.io.IOException {
        Path target = Files.createDirectories(secret.resolve(version));
        Files.writeString(target.resolve("password"), password);
        Path tmp = Files.createSymbolicLink(secret.resolve("..data_tmp"), target.getFileName());
        Files.move(tmp, secret.resolve("..data"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    @Test
    void allowlistRefusesBeforeAnyParentIsContacted() throws Exception {
        RawClient.Head head = connect(proxy, "not-listed.test:443");
        assertThat(head.status()).isEqualTo(403);
        assertThat(head.header("X-Egress-Proxy-Reason")).isEqualTo("host_not_allowlisted");
        assertThat(get(proxy, "http://" + web + "/blob?after-refusal").statusCode()).isEqualTo(200);
        assertThat(awaitSquidLine(squid, "after-refusal")).noneMatch(l -> l.contains("not-listed.test"));
    }

    @Test
    void parentGetsOurConnectAndTheBytesItSendsBehindItsAnswerReachTheClient() throws Exception {
        try (RawClient raw = new RawClient(scriptedProxy.address())) {
            raw.send("CONNECT " + registry + " HTTP/1.1\r\nHost: " + registry + "\r\nProxy-Authorization: "
                    + CLIENT_CREDENTIALS + "\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).as(head.statusLine()).isEqualTo(200);
            String banner = "banner from the origin\n";
            assertThat(new String(raw.readExactly(banner.length()), StandardCharsets.US_ASCII)).isEqualTo(banner);
            raw.send("ping");
            assertThat(new String(raw.readExactly(4), StandardCharsets.US_ASCII)).isEqualTo("ping");
        }
        String ours = "Basic " + Base64.getEncoder().encodeToString((USER + ":" + PASSWORD).getBytes(StandardCharsets.UTF_8));
        assertThat(scriptedHeads).hasSize(1);
        assertThat(scriptedHeads.get(0)).isEqualTo("CONNECT " + registry + " HTTP/1.1\r\nHost: " + registry
                + "\r\nProxy-Authorization: " + ours + "\r\n\r\n");
    }
}
