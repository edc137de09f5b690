package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RecordingOrigin;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Per-client policies over real sockets: clients from 127.0.0.2 are selected by the policy "ci"
 * and get its allowlist, everyone else the top-level one. What the origin received, the 403's
 * hint, the access log, {@code denied_total{policy}} and {@code /denied} each name the policy; a
 * reload applies to new requests while an open tunnel keeps the policy it was admitted under.
 */
class PolicyIT {

    private static final InetAddress CI;
    private static final InetAddress OTHER;

    static {
        try {
            CI = InetAddress.getByName("127.0.0.2");
            OTHER = InetAddress.getByName("127.0.0.1");
        } catch (Exception e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    static RecordingOrigin origin;
    static TcpServer echo;
    static TestProxy proxy;
    AccessLogCapture log;

    @BeforeAll
    static void start() throws Exception {
        origin = new RecordingOrigin();
        echo = TcpServer.echo();
        proxy = TestProxy.start(settings("\"ci-only.test\", \"tunnel.test:5000\""));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        echo.close();
        origin.close();
    }

    @BeforeEach
    void reset() throws Exception {
        proxy.reload(settings("\"ci-only.test\", \"tunnel.test:5000\""));
        origin.awaitQuiet(Duration.ofSeconds(5));
        origin.reset();
        log = new AccessLogCapture();
    }

    @AfterEach
    void detach() {
        log.close();
    }

    /** The top-level allowlist names listed.test; policy "ci" (127.0.0.2) names {@code ciHosts} instead. */
    private static String settings(String ciHosts) {
        return """
                allowlist { hosts = ["listed.test"] }
                policies = [
                  { name = ci, clients = ["127.0.0.2/32"], allowlist { hosts = [%s] } }
                ]
                destinations.connect-to {
                  "listed.test:80" = "127.0.0.1:%d"
                  "ci-only.test:80" = "127.0.0.1:%d"
                  "tunnel.test:5000" = "127.0.0.1:%d"
                }
                """.formatted(ciHosts, origin.port(), origin.port(), echo.port());
    }

    /** The proxy's answer to a GET sent from {@code from}: its head and body. */
    private record Answer(RawClient.Head head, String body) {
        int status() {
            return head.status();
        }
    }

    private static Answer get(InetAddress from, String url) throws Exception {
        try (RawClient raw = new RawClient(proxy.address(), from)) {
            raw.send("GET " + url + " HTTP/1.1\r\nHost: ignored.test\r\nConnection: close\r\n\r\n");
            RawClient.Head head = raw.readHead();
            return new Answer(head, new String(raw.readToEnd(), StandardCharsets.UTF_8));
        }
    }

    private void awaitLogLine(String... parts) {
        await("access-log line with " + List.of(parts)).atMost(Duration.ofSeconds(10))
                .until(() -> log.lines().stream().anyMatch(l -> List.of(parts).stream().allMatch(l::contains)));
    }

    @Test
    void eachClientGetsItsPolicysAllowlistAndARefusalNamesThePolicy() throws Exception {
        assertThat(get(CI, "http://ci-only.test/ci").status()).isEqualTo(200);
        assertThat(get(OTHER, "http://listed.test/other").status()).isEqualTo(200);
        assertThat(origin.requests()).extracting(RecordingOrigin.Request::requestLine)
                .containsExactly("GET /ci HTTP/1.1", "GET /other HTTP/1.1");
        awaitLogLine("client=127.0.0.2:", "target=ci-only.test:80", "decision=allowed", "policy=ci status=200");
        awaitLogLine("client=127.0.0.1:", "target=listed.test:80", "decision=allowed", "rule=listed.test status=200");

        // Each is refused what only the other's allowlist names; the origin sees neither.
        Answer ciRefused = get(CI, "http://listed.test/ci-refused");
        Answer otherRefused = get(OTHER, "http://ci-only.test/other-refused");
        assertThat(ciRefused.status()).isEqualTo(403);
        assertThat(ciRefused.head().reason()).isEqualTo("listed.test:80 is not in the egress allowlist");
        assertThat(ciRefused.head().header("X-Egress-Proxy-Reason")).isEqualTo("host_not_allowlisted");
        // The hint names the policy and where its entry goes.
        assertThat(ciRefused.body()).contains("policy ci")
                .contains("add \"listed.test\" to the allowlist of policy \"ci\" (egress-proxy.policies)");
        assertThat(otherRefused.status()).isEqualTo(403);
        assertThat(otherRefused.body()).contains("add \"ci-only.test\" to egress-proxy.allowlist.hosts")
                .doesNotContain("policy");
        assertThat(origin.requests()).hasSize(2);

        awaitLogLine("client=127.0.0.2:", "target=listed.test:80", "decision=denied", "policy=ci status=403");
        awaitLogLine("client=127.0.0.1:", "target=ci-only.test:80", "decision=denied reason=host_not_allowlisted rule=- status=403");
        assertThat(proxy.scrapeValue(
                "egress_proxy_denied_total{host=\"listed.test\",policy=\"ci\",reason=\"host_not_allowlisted\"}"))
                .isEqualTo(1.0);
        assertThat(proxy.scrapeValue(
                "egress_proxy_denied_total{host=\"ci-only.test\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                .isEqualTo(1.0);
        String denied = proxy.admin("/denied").body();
        assertThat(denied).contains("\"destination\":\"listed.test:80\"").contains("\"entry\":\"listed.test\",\"policy\":\"ci\"")
                .contains("\"entry\":\"ci-only.test\",\"policy\":\"default\"");
        String hocon = proxy.admin("/denied?format=hocon").body();
        int ciSection = hocon.indexOf("# For policy \"ci\"");
        assertThat(ciSection).isPositive();
        assertThat(hocon.substring(0, ciSection)).contains("\n\"ci-only.test\"\n").doesNotContain("\"listed.test\"");
        assertThat(hocon.substring(ciSection)).contains("\n\"listed.test\"\n");
        assertThat(proxy.admin("/status").body()).contains("\"policies\"").contains("\"name\" : \"ci\"");
    }

    @Test
    void aReloadDecidesNewRequestsWhileAnOpenTunnelKeepsThePolicyItWasAdmittedUnder() throws Exception {
        try (RawClient tunnel = new RawClient(proxy.address(), CI)) {
            tunnel.send("CONNECT tunnel.test:5000 HTTP/1.1\r\n\r\n");
            assertThat(tunnel.readHead().status()).isEqualTo(200);

            // Policy "ci" loses tunnel.test:5000.
            proxy.reload(settings("\"ci-only.test\""));
            try (RawClient next = new RawClient(proxy.address(), CI)) {
                next.send("CONNECT tunnel.test:5000 HTTP/1.1\r\n\r\n");
                assertThat(next.readHead().status()).isEqualTo(403);
            }

            // The tunnel admitted before the reload still carries bytes both ways.
            tunnel.send("still open");
            assertThat(new String(tunnel.readExactly(10), StandardCharsets.US_ASCII)).isEqualTo("still open");
        }
        awaitLogLine("client=127.0.0.2:", "target=tunnel.test:5000", "decision=denied", "policy=ci status=403");
    }

    @Test
    void clientsNoPolicySelectsGetTheTopLevelAllowlistAndNoPolicyField() throws Exception {
        assertThat(get(OTHER, "http://listed.test/plain").status()).isEqualTo(200);
        awaitLogLine("client=127.0.0.1:", "target=listed.test:80", "status=200");
        assertThat(log.lines()).filteredOn(l -> l.contains("target=listed.test:80")).allMatch(l -> !l.contains("policy="));
    }
}
