package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RecordingOrigin;
import dev.egressproxy.testing.TestPki;
import dev.egressproxy.testing.TestProxy;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import javax.net.ssl.SSLSocket;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.springframework.security.crypto.bcrypt.BCrypt;

/**
 * Policies selected by what the proxy verified, over real TLS connections with client
 * certificates and proxy authentication: a certificate identity ({@code identities}), an
 * authenticated user ({@code users}), and both at once (every stated selector must match). What
 * reached the origin, the access log's {@code user}, {@code identity} and {@code policy} fields and
 * {@code denied_total{policy}} show which policy decided.
 */
class PolicySelectorsIT {

    @TempDir
    static Path dir;
    static TestPki proxyCa;
    static TestPki clientCa;
    static TestPki.Issued builder;
    static TestPki.Issued special;
    static TestPki.Issued plain;
    static RecordingOrigin origin;
    static TestProxy proxy;
    static AccessLogCapture log;

    @BeforeAll
    static void start() throws Exception {
        proxyCa = TestPki.create(dir, "proxy");
        clientCa = TestPki.create(dir, "clients");
        TestPki.Issued proxyCert = proxyCa.server("proxy");
        builder = clientCa.client("builder", "/O=Build/CN=builder", "URI:spiffe://example.org/build");
        special = clientCa.client("special", "/CN=special", "");
        plain = clientCa.client("plain", "/CN=plain", "");
        Path users = dir.resolve("users");
        Files.writeString(users, "ci-bot:" + BCrypt.hashpw("bot-secret", BCrypt.gensalt("$2y", 5)) + "\n"
                + "alice:" + BCrypt.hashpw("alice-secret", BCrypt.gensalt("$2y", 5)) + "\n");
        origin = new RecordingOrigin();
        log = new AccessLogCapture();
        StringBuilder connectTo = new StringBuilder();
        for (String host : List.of("listed.test", "build-only.test", "bot-only.test", "both-only.test")) {
            connectTo.append("  \"").append(host).append(":80\" = \"127.0.0.1:").append(origin.port()).append("\"\n");
        }
        proxy = TestProxy.start("""
                listen.tls { certificate = "%s", private-key = "%s", client-ca = "%s" }
                auth.basic.users-file = "%s"
                allowlist.hosts = ["listed.test"]
                policies = [
                  { name = both, users = ["ci-bot"], identities = ["CN=special"], allowlist.hosts = ["both-only.test"] }
                  { name = builders, identities = ["spiffe://example.org/build"], allowlist.hosts = ["build-only.test"] }
                  { name = bot, users = ["ci-bot"], allowlist.hosts = ["bot-only.test"] }
                ]
                destinations.connect-to {
                %s}
                """.formatted(proxyCert.cert(), proxyCert.key(), clientCa.caCert(), users, connectTo));
    }

    @AfterAll
    static void stop() throws Exception {
        if (log != null) {
            log.close();
        }
        if (proxy != null) {
            proxy.close();
        }
        if (origin != null) {
            origin.close();
        }
    }

    /** GET {@code url} over TLS with {@code certificate}, as {@code user:password}; the status. */
    private static int get(TestPki.Issued certificate, String credentials, String url) throws Exception {
        Socket tcp = new Socket(proxy.address().getAddress(), proxy.address().getPort());
        SSLSocket tls = (SSLSocket) TestPki.clientContext(certificate, proxyCa.caCert()).getSocketFactory()
                .createSocket(tcp, "127.0.0.1", proxy.address().getPort(), true);
        tls.startHandshake();
        try (RawClient raw = new RawClient(tls)) {
            raw.send("GET " + url + " HTTP/1.1\r\nHost: ignored.test\r\nProxy-Authorization: Basic "
                    + Base64.getEncoder().encodeToString(credentials.getBytes(StandardCharsets.UTF_8))
                    + "\r\nConnection: close\r\n\r\n");
            return raw.readHead().status();
        }
    }

    private static void awaitLogLine(String... parts) {
        await("access-log line with " + List.of(parts)).atMost(Duration.ofSeconds(10))
                .until(() -> log.lines().stream().anyMatch(l -> List.of(parts).stream().allMatch(l::contains)));
    }

    @Test
    void theCertificateIdentitySelectsBuildersWhateverTheUser() throws Exception {
        assertThat(get(builder, "alice:alice-secret", "http://build-only.test/b1")).isEqualTo(200);
        assertThat(get(builder, "alice:alice-secret", "http://listed.test/b2")).isEqualTo(403);
        assertThat(origin.requests()).extracting(RecordingOrigin.Request::requestLine).contains("GET /b1 HTTP/1.1")
                .doesNotContain("GET /b2 HTTP/1.1");
        awaitLogLine("user=alice", "identity=CN=builder,spiffe://example.org/build", "target=build-only.test:80",
                "policy=builders status=200");
        awaitLogLine("user=alice", "target=listed.test:80", "decision=denied", "policy=builders status=403");
        assertThat(proxy.scrapeValue(
                "egress_proxy_denied_total{host=\"listed.test\",policy=\"builders\",reason=\"host_not_allowlisted\"}"))
                .isEqualTo(1.0);
    }

    @Test
    void theUserSelectsBotAndBothSelectorsMustMatchForBoth() throws Exception {
        // ci-bot with a plain certificate: policy bot, not both (its identity is not CN=special).
        assertThat(get(plain, "ci-bot:bot-secret", "http://bot-only.test/u1")).isEqualTo(200);
        assertThat(get(plain, "ci-bot:bot-secret", "http://both-only.test/u2")).isEqualTo(403);
        // ci-bot with CN=special: policy both, the first that matches.
        assertThat(get(special, "ci-bot:bot-secret", "http://both-only.test/u3")).isEqualTo(200);
        assertThat(get(special, "ci-bot:bot-secret", "http://bot-only.test/u4")).isEqualTo(403);
        // alice with CN=special: no policy states her; the top-level allowlist decides.
        assertThat(get(special, "alice:alice-secret", "http://listed.test/u5")).isEqualTo(200);
        assertThat(get(special, "alice:alice-secret", "http://both-only.test/u6")).isEqualTo(403);
        // A wrong password never reaches a policy.
        assertThat(get(special, "ci-bot:wrong", "http://both-only.test/u7")).isEqualTo(407);

        assertThat(origin.requests()).extracting(RecordingOrigin.Request::requestLine)
                .contains("GET /u1 HTTP/1.1", "GET /u3 HTTP/1.1", "GET /u5 HTTP/1.1")
                .doesNotContain("GET /u2 HTTP/1.1", "GET /u4 HTTP/1.1", "GET /u6 HTTP/1.1", "GET /u7 HTTP/1.1");
        awaitLogLine("user=ci-bot", "identity=CN=plain", "target=bot-only.test:80", "policy=bot status=200");
        awaitLogLine("user=ci-bot", "identity=CN=special", "target=both-only.test:80", "policy=both status=200");
        awaitLogLine("user=alice", "identity=CN=special", "target=both-only.test:80", "decision=denied", "rule=- status=403");
        awaitLogLine("user=alice", "url=http://listed.test/u5", "status=200");
        assertThat(log.lines()).filteredOn(l -> l.contains("url=http://listed.test/u5")).singleElement()
                .matches(l -> !l.contains("policy="));
    }
}
