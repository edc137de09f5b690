package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RecordingOrigin;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestDnsServer;
import dev.egressproxy.testing.TestProxy;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@code allowlist.mode = report} over real sockets: a host the allowlist does not name is reached
 * and reported (metric, access log, {@code /denied}), the {@code /denied?format=hocon} entry pasted
 * into an enforcing config admits it, and what report mode must not relax (the address policy,
 * malformed requests) stays refused. A reload switches the mode for the next request.
 */
class ReportModeIT {

    static RecordingOrigin origin;
    static TcpServer echo;
    static TestDnsServer dns;
    static TestProxy proxy;
    AccessLogCapture log;

    @BeforeAll
    static void start() throws Exception {
        origin = new RecordingOrigin();
        echo = TcpServer.echo();
        dns = new TestDnsServer()
                .add("loopback.test", "127.0.0.1")
                .add("metadata.test", "169.254.169.254");
        proxy = TestProxy.start(settings("report", ""));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        dns.close();
        echo.close();
        origin.close();
    }

    @BeforeEach
    void reportMode() throws Exception {
        proxy.reload(settings("report", ""));
        origin.awaitQuiet(Duration.ofSeconds(5));
        origin.reset();
        log = new AccessLogCapture();
    }

    @AfterEach
    void detach() {
        log.close();
    }

    /**
     * The settings inside {@code egress-proxy { }}: the allowlist names only listed.test, and
     * unlisted.test (plain HTTP) and tunnel.test:5000 (CONNECT) are pinned to the loopback origins by
     * connect-to, the operator's own routing, which the address policy trusts.
     */
    private static String settings(String mode, String extraHosts) {
        return """
                allowlist { mode = %s, hosts = ["listed.test"%s] }
                destinations.connect-to {
                  "unlisted.test:80" = "127.0.0.1:%d"
                  "listed.test:80" = "127.0.0.1:%d"
                  "tunnel.test:5000" = "127.0.0.1:%d"
                }
                dns { servers = ["%s"], query-timeout = 2s }
                """.formatted(mode, extraHosts, origin.port(), origin.port(), echo.port(), dns.address());
    }

    private static RawClient.Head get(RawClient raw, String url) throws Exception {
        raw.send("GET " + url + " HTTP/1.1\r\nHost: ignored.test\r\nConnection: close\r\n\r\n");
        return raw.readHead();
    }

    private static RawClient.Head connect(String authority) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT " + authority + " HTTP/1.1\r\n\r\n");
            return raw.readHead();
        }
    }

    private void awaitLogLine(String... parts) {
        await("access-log line with " + List.of(parts)).atMost(Duration.ofSeconds(10))
                .until(() -> log.lines().stream().anyMatch(l -> List.of(parts).stream().allMatch(l::contains)));
    }

    @Test
    void unlistedHostIsReachedAndReportedAndItsHoconEntryAdmitsItOnceEnforced() throws Exception {
        assertThat(proxy.scrapeValue("egress_proxy_allowlist_enforced")).isEqualTo(0.0);
        try (RawClient raw = new RawClient(proxy.address())) {
            RawClient.Head head = get(raw, "http://unlisted.test/v2/blobs/sha256:1");
            assertThat(head.status()).isEqualTo(200);
        }
        assertThat(origin.requests()).singleElement().satisfies(r -> {
            assertThat(r.requestLine()).isEqualTo("GET /v2/blobs/sha256:1 HTTP/1.1");
            assertThat(r.values("host")).containsExactly("unlisted.test");
        });
        assertThat(proxy.scrapeValue("egress_proxy_would_deny_total{host=\"unlisted.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                .isEqualTo(1.0);
        assertThat(proxy.scrapeValue(
                "egress_proxy_requests_total{decision=\"would_deny\",kind=\"http\",reason=\"host_not_allowlisted\"}"))
                .isGreaterThanOrEqualTo(1.0);
        assertThat(proxy.scrapeValue("egress_proxy_denied_total{host=\"unlisted.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                .isEqualTo(-1.0);
        awaitLogLine("target=unlisted.test:80", "decision=would_deny reason=host_not_allowlisted rule=- status=200");

        HttpResponse<String> json = proxy.admin("/denied");
        assertThat(json.body()).contains("\"destination\":\"unlisted.test:80\",\"host\":\"unlisted.test\",\"port\":80,"
                + "\"reason\":\"host_not_allowlisted\",\"enforced\":false,\"entry\":\"unlisted.test\",\"policy\":\"default\",\"count\":1,");
        HttpResponse<String> hocon = proxy.admin("/denied?format=hocon");
        assertThat(hocon.statusCode()).isEqualTo(200);
        assertThat(hocon.headers().firstValue("content-type")).hasValue("text/plain; charset=utf-8");
        List<String> lines = hocon.body().lines().toList();
        assertThat(lines).contains("\"unlisted.test\"");
        assertThat(lines.get(lines.indexOf("\"unlisted.test\"") - 1)).startsWith("# 1 request, last seen ")
                .endsWith("(would_deny host_not_allowlisted)");

        // Pasted into an enforcing allowlist, the entry lets the same request through as allowed.
        String pasted = hocon.body().lines().filter(l -> l.startsWith("\"")).map(l -> ", " + l)
                .reduce("", String::concat);
        proxy.reload(settings("enforce", pasted));
        assertThat(proxy.scrapeValue("egress_proxy_allowlist_enforced")).isEqualTo(1.0);
        try (RawClient raw = new RawClient(proxy.address())) {
            assertThat(get(raw, "http://unlisted.test/v2/blobs/sha256:1").status()).isEqualTo(200);
        }
        assertThat(origin.requests()).hasSize(2);
        awaitLogLine("target=unlisted.test:80", "decision=allowed reason=host_allowlisted rule=unlisted.test status=200");

        // Enforcing without it refuses the host again, at the next request.
        proxy.reload(settings("enforce", ""));
        try (RawClient raw = new RawClient(proxy.address())) {
            RawClient.Head head = get(raw, "http://unlisted.test/v2/blobs/sha256:1");
            assertThat(head.status()).isEqualTo(403);
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("host_not_allowlisted");
        }
        assertThat(origin.requests()).hasSize(2);
        assertThat(proxy.scrapeValue("egress_proxy_denied_total{host=\"unlisted.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                .isEqualTo(1.0);
        assertThat(proxy.admin("/denied").body()).contains("\"destination\":\"unlisted.test:80\",\"host\":\"unlisted.test\","
                + "\"port\":80,\"reason\":\"host_not_allowlisted\",\"enforced\":true,");
        assertThat(proxy.scrapeValue("egress_proxy_would_deny_total{host=\"unlisted.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                .isEqualTo(1.0);
    }

    @Test
    void unlistedTunnelOnAnUnlistedPortRelaysBytesAndIsReported() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT tunnel.test:5000 HTTP/1.1\r\n\r\n");
            assertThat(raw.readHead().status()).isEqualTo(200);
            raw.send("ping");
            InputStream in = raw.socket.getInputStream();
            assertThat(new String(in.readNBytes(4), StandardCharsets.US_ASCII)).isEqualTo("ping");
        }
        assertThat(proxy.scrapeValue("egress_proxy_would_deny_total{host=\"tunnel.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                .isGreaterThanOrEqualTo(1.0);
        awaitLogLine("method=CONNECT target=tunnel.test:5000", "decision=would_deny reason=host_not_allowlisted");
        assertThat(proxy.admin("/denied?format=hocon").body().lines()).contains("\"tunnel.test:5000\"");
    }

    @Test
    void addressPolicyStillRefusesPrivateLoopbackAndMetadataAddresses() throws Exception {
        int echoConnections = echo.connections.get();
        // Names resolving inside the network, and IP literals, without connect-to.
        for (String authority : List.of("loopback.test:443", "metadata.test:443", "127.0.0.1:" + echo.port(),
                "[::1]:" + echo.port(), "169.254.169.254:80")) {
            RawClient.Head head = connect(authority);
            assertThat(head.status()).as(authority).isEqualTo(403);
            assertThat(head.header("x-egress-proxy-reason")).as(authority).isEqualTo("address_not_allowed");
        }
        assertThat(echo.connections.get()).isEqualTo(echoConnections);
        assertThat(proxy.scrapeValue("egress_proxy_denied_total{host=\"loopback.test\",policy=\"default\",reason=\"address_not_allowed\"}"))
                .isGreaterThanOrEqualTo(1.0);
        awaitLogLine("target=metadata.test:443", "decision=denied reason=address_not_allowed");
        // The entry the report offers warns that it would not be enough.
        String hocon = proxy.admin("/denied?format=hocon").body();
        List<String> lines = hocon.lines().toList();
        assertThat(lines.get(lines.indexOf("\"loopback.test\"") - 1)).contains("refused by the address policy too");
        assertThat(hocon).contains("#   loopback.test:443: ");
    }

    @Test
    void malformedAndOriginFormRequestsAreStillRefused() throws Exception {
        double reported = proxy.scrapeValue(
                "egress_proxy_would_deny_total{host=\"unlisted.test\",policy=\"default\",reason=\"host_not_allowlisted\"}");
        for (String request : List.of("CONNECT unlisted.test:99999 HTTP/1.1\r\n\r\n",
                "GET http://unlisted.test:http/ HTTP/1.1\r\n\r\n",
                "GET /v2/ HTTP/1.1\r\nHost: unlisted.test\r\n\r\n")) {
            try (RawClient raw = new RawClient(proxy.address())) {
                raw.send(request);
                assertThat(raw.readHead().status()).as(request).isEqualTo(400);
            }
        }
        assertThat(origin.requests()).isEmpty();
        assertThat(proxy.scrapeValue("egress_proxy_would_deny_total{host=\"unlisted.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                .isEqualTo(reported);
        awaitLogLine("decision=denied reason=malformed_request");
        awaitLogLine("decision=denied reason=origin_form_request");
    }

    /**
     * The mode is per allowlist: a policy in report mode lets its clients reach an unlisted host
     * (counted and listed under its own name), while the enforcing default refuses the same request
     * from every other client; and the other way round, an enforcing policy refuses its clients
     * while the default only reports.
     */
    @Test
    void eachPolicyKeepsItsOwnMode() throws Exception {
        String trial = """
                policies = [ { name = trial, clients = ["127.0.0.2/32"], allowlist { mode = %s, hosts = ["listed.test"] } } ]
                """;
        InetAddress second = InetAddress.getByName("127.0.0.2");
        try (TestProxy perPolicy = TestProxy.start(settings("enforce", "") + trial.formatted("report"))) {
            try (RawClient raw = new RawClient(perPolicy.address(), second)) {
                assertThat(get(raw, "http://unlisted.test/trial").status()).isEqualTo(200);
            }
            try (RawClient raw = new RawClient(perPolicy.address())) {
                RawClient.Head head = get(raw, "http://unlisted.test/default");
                assertThat(head.status()).isEqualTo(403);
                assertThat(head.header("x-egress-proxy-reason")).isEqualTo("host_not_allowlisted");
            }
            // Only the request of the report-mode policy reached the origin.
            assertThat(origin.requests()).singleElement()
                    .satisfies(r -> assertThat(r.requestLine()).isEqualTo("GET /trial HTTP/1.1"));
            assertThat(perPolicy.scrapeValue(
                    "egress_proxy_would_deny_total{host=\"unlisted.test\",policy=\"trial\",reason=\"host_not_allowlisted\"}"))
                    .isEqualTo(1.0);
            assertThat(perPolicy.scrapeValue(
                    "egress_proxy_denied_total{host=\"unlisted.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                    .isEqualTo(1.0);
            assertThat(perPolicy.scrapeValue(
                    "egress_proxy_denied_total{host=\"unlisted.test\",policy=\"trial\",reason=\"host_not_allowlisted\"}"))
                    .isEqualTo(-1.0);
            // One allowlist that only reports is enough for the alert's gauge to say "not enforcing".
            assertThat(perPolicy.scrapeValue("egress_proxy_allowlist_enforced")).isEqualTo(0.0);
            awaitLogLine("client=127.0.0.2:", "target=unlisted.test:80", "decision=would_deny", "policy=trial status=200");
            awaitLogLine("client=127.0.0.1:", "target=unlisted.test:80", "decision=denied");

            String denied = perPolicy.admin("/denied").body();
            assertThat(denied).contains("\"enforced\":false,\"entry\":\"unlisted.test\",\"policy\":\"trial\"")
                    .contains("\"enforced\":true,\"entry\":\"unlisted.test\",\"policy\":\"default\"");
            String hocon = perPolicy.admin("/denied?format=hocon").body();
            int trialSection = hocon.indexOf("# For policy \"trial\"");
            assertThat(trialSection).as(hocon).isPositive();
            assertThat(hocon.substring(0, trialSection)).contains("(denied host_not_allowlisted)\n\"unlisted.test\"");
            assertThat(hocon.substring(trialSection)).contains("(would_deny host_not_allowlisted)\n\"unlisted.test\"");
            assertThat(perPolicy.admin("/status").body()).contains("\"name\" : \"trial\"");
        }
        origin.reset();

        try (TestProxy perPolicy = TestProxy.start(settings("report", "") + trial.formatted("enforce"))) {
            try (RawClient raw = new RawClient(perPolicy.address(), second)) {
                RawClient.Head head = get(raw, "http://unlisted.test/trial");
                assertThat(head.status()).isEqualTo(403);
                assertThat(head.header("x-egress-proxy-reason")).isEqualTo("host_not_allowlisted");
            }
            try (RawClient raw = new RawClient(perPolicy.address())) {
                assertThat(get(raw, "http://unlisted.test/default").status()).isEqualTo(200);
            }
            assertThat(origin.requests()).singleElement()
                    .satisfies(r -> assertThat(r.requestLine()).isEqualTo("GET /default HTTP/1.1"));
            assertThat(perPolicy.scrapeValue(
                    "egress_proxy_denied_total{host=\"unlisted.test\",policy=\"trial\",reason=\"host_not_allowlisted\"}"))
                    .isEqualTo(1.0);
            assertThat(perPolicy.scrapeValue(
                    "egress_proxy_would_deny_total{host=\"unlisted.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                    .isEqualTo(1.0);
            awaitLogLine("client=127.0.0.2:", "target=unlisted.test:80", "decision=denied", "policy=trial status=403");
        }
    }

    @Test
    void jsonAccessLogCarriesTheWouldBeDenial() throws Exception {
        try (TestProxy json = TestProxy.start(settings("report", "") + "logging.access-format = json\n")) {
            try (RawClient raw = new RawClient(json.address())) {
                assertThat(get(raw, "http://unlisted.test/json").status()).isEqualTo(200);
            }
            awaitLogLine("\"target\":\"unlisted.test:80\"", "\"decision\":\"would_deny\",\"reason\":\"host_not_allowlisted\"");
        }
    }
}
