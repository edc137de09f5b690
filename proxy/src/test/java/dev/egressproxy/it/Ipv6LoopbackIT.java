package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * IPv6 end to end over real sockets: the proxy listens on {@code ::1}, a client on {@code ::1}
 * asks for {@code [::1]:PORT}, and every place a person or Prometheus reads the address (the status
 * line, the body's hint, the access log's client, target, rule and upstream, the {@code /denied}
 * report, the {@code host} label) shows it as {@code ::1}, never {@code 0:0:0:0:0:0:0:1}. The hint of
 * the refusal, put into the configuration in force, then lets exactly that tunnel through.
 */
class Ipv6LoopbackIT {

    private static final Pattern HINT = Pattern.compile("add \"([^\"]+)\" to egress-proxy\\.allowlist\\.hosts");

    @BeforeAll
    static void needsIpv6Loopback() {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName("::1"))) {
            assertThat(s.getLocalPort()).isPositive();
        } catch (IOException e) {
            Assumptions.abort("skipped: this machine has no IPv6 loopback address ::1 to listen on (" + e + ")");
        }
    }

    private static String settings(String allowlist) {
        return """
                listen.host = "::1"
                allowlist.hosts = [%s]
                destinations.allow-private = ["::1/128"]
                """.formatted(allowlist);
    }

    @Test
    void refusedIpv6DestinationIsNamedCompressedEverywhereAndItsHintLetsItThrough() throws Exception {
        try (TcpServer echo = TcpServer.echo(InetAddress.getByName("::1"));
                TestProxy proxy = TestProxy.start(settings("\"registry.example.com\""));
                AccessLogCapture accessLog = new AccessLogCapture()) {
            assertThat(proxy.address().getAddress()).isEqualTo(InetAddress.getByName("::1"));
            String authority = "[::1]:" + echo.port();

            String hint;
            int clientPort;
            try (RawClient raw = new RawClient(proxy.address())) {
                clientPort = raw.socket.getLocalPort();
                assertThat(raw.socket.getLocalAddress()).isEqualTo(InetAddress.getByName("::1"));
                raw.send("CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
                RawClient.Head head = raw.readHead();
                String body = new String(raw.readToEnd(), StandardCharsets.US_ASCII);

                assertThat(head.statusLine())
                        .isEqualTo("HTTP/1.1 403 " + authority + " is an IP address not in the egress allowlist");
                assertThat(head.header("x-egress-proxy-reason")).isEqualTo("ip_literal_not_allowed");
                Matcher m = HINT.matcher(body);
                assertThat(m.find()).as(body).isTrue();
                hint = m.group(1);
                assertThat(body).doesNotContain("0:0:0");
            }
            assertThat(hint).isEqualTo("[::1]/128:" + echo.port());
            String client = "[::1]:" + clientPort;

            await().atMost(Duration.ofSeconds(5)).until(() -> accessLog.lines().stream().anyMatch(l -> l.contains(authority)));
            String refused = accessLog.lines().stream().filter(l -> l.contains(authority)).findFirst().orElseThrow();
            assertThat(refused).contains(" client=" + client + " ", " target=" + authority + " ",
                    " reason=ip_literal_not_allowed ").doesNotContain("0:0:0");

            String denied = proxy.admin("/denied").body();
            assertThat(denied).contains("\"destination\":\"" + authority + "\",\"host\":\"::1\",\"port\":" + echo.port() + ",")
                    .contains("\"last_client\":\"" + client + "\"").doesNotContain("0:0:0");
            assertThat(proxy.scrapeValue("egress_proxy_denied_total{host=\"::1\",policy=\"default\",reason=\"ip_literal_not_allowed\"}"))
                    .isEqualTo(1.0);
            assertThat(proxy.admin("/metrics").body()).doesNotContain("0:0:0:0:0:0:0:1");

            // The operator pastes the hint; the configuration loader takes it as written.
            List<String> restart = proxy.server.apply(ConfigLoader.fromString("egress-proxy {\n"
                    + settings("\"registry.example.com\", \"" + hint + "\"")
                    + "listen.port = 0\nadmin { host = \"127.0.0.1\", port = 0 }\n"
                    + "transport = \"" + System.getProperty("egress.test.transport", "auto") + "\"\n}\n"));
            assertThat(restart).as("settings that would need a restart").isEmpty();

            int tunnelClientPort;
            try (RawClient raw = new RawClient(proxy.address())) {
                tunnelClientPort = raw.socket.getLocalPort();
                raw.send("CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\nhello");
                assertThat(raw.readHead().status()).isEqualTo(200);
                assertThat(new String(raw.readExactly(5), StandardCharsets.US_ASCII)).isEqualTo("hello");
            }
            await().atMost(Duration.ofSeconds(10)).until(() -> accessLog.lines().stream()
                    .anyMatch(l -> l.contains(" client=[::1]:" + tunnelClientPort + " ")));
            String tunnel = accessLog.lines().stream().filter(l -> l.contains(" client=[::1]:" + tunnelClientPort + " "))
                    .findFirst().orElseThrow();
            assertThat(tunnel).contains(" target=" + authority + " ", " decision=allowed ", " rule=" + hint + " ",
                    " upstream=" + authority + " ").doesNotContain("0:0:0");
            assertThat(proxy.scrapeValue("egress_proxy_upstream_connect_seconds_count{host=\"::1\"}")).isEqualTo(1.0);
        }
    }
}
