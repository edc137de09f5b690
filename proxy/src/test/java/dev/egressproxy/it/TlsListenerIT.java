package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.server.ConfigReloader;
import dev.egressproxy.server.ProxyServer;
import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.GoClient;
import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RecordingOrigin;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestCerts;
import dev.egressproxy.testing.TestPki;
import dev.egressproxy.testing.TestProxy;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLSocket;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The TLS listener ({@code listen.tls}) over real sockets with real clients: curl with
 * {@code --proxy https://} (CONNECT to a TLS origin, plain-HTTP GET, mutual TLS with
 * {@code --proxy-cert}), the Go standard library's {@code https://} proxy URL, the JDK's TLS
 * sockets, and hostile peers (plain HTTP to the TLS port, a silent client, no, a foreign or an
 * expired client certificate). Certificates are made by the test with openssl ({@link TestPki}).
 *
 * <p>Three proxies: {@code tls} (server certificate only, splice on from the first byte, a 2 s
 * handshake and head timeout), {@code mutual} (client certificates from the {@code clients} CA
 * required) and {@code limited} (one connection per client); the rotation tests start their own
 * from a file so that they can reload it, by hand or by the file watch (the certificate rewritten
 * in place, or swapped with a Kubernetes Secret's {@code ..data} link).
 */
class TlsListenerIT {

    @TempDir
    static Path dir;
    static TestCerts originCerts;
    static Origin tlsOrigin;
    static RecordingOrigin plainOrigin;
    static TcpServer echo;
    static TestPki proxyCa;
    static TestPki clientCa;
    static TestPki otherCa;
    static TestPki.Issued proxyCert;
    static TestPki.Issued builder;
    static TestPki.Issued stranger;
    static TestPki.Issued expired;
    static TestProxy tls;
    static TestProxy mutual;
    static TestProxy limited;
    static AccessLogCapture log;

    @BeforeAll
    static void start() throws Exception {
        proxyCa = TestPki.create(dir, "proxy");
        clientCa = TestPki.create(dir, "clients");
        otherCa = TestPki.create(dir, "other");
        proxyCert = proxyCa.server("proxy");
        builder = clientCa.client("builder", "/O=Build/CN=builder",
                "URI:spiffe://example.org/ns/build/sa/builder,DNS:builder.internal");
        stranger = otherCa.client("stranger", "/CN=builder", "");
        expired = clientCa.expiredClient("expired", "/CN=expired");
        originCerts = TestCerts.generate(dir);
        tlsOrigin = Origin.https(originCerts.serverContext()).respond("/v2/", 200, "tls origin\n");
        plainOrigin = new RecordingOrigin();
        echo = TcpServer.echo();
        log = new AccessLogCapture();
        tls = TestProxy.start(settings("") + "timeouts.request-head = 2s\n" + TestProxy.relaySettings("splice"));
        mutual = TestProxy.start(settings("client-ca = \"" + clientCa.caCert() + "\""));
        limited = TestProxy.start(settings("") + "clients.max-connections-per-client = 1\n");
    }

    private static String settings(String tlsExtra) {
        return "listen.tls { certificate = \"" + proxyCert.cert() + "\", private-key = \"" + proxyCert.key() + "\"\n"
                + tlsExtra + "\n}\n"
                + "allowlist.hosts = [\"cdn.quay.io\", \"plain.test:8080\", \"echo.test:7000\"]\n"
                + "destinations.connect-to {\n"
                + "  \"cdn.quay.io:443\" = \"127.0.0.1:" + tlsOrigin.port() + "\"\n"
                + "  \"plain.test:8080\" = \"127.0.0.1:" + plainOrigin.port() + "\"\n"
                + "  \"echo.test:7000\" = \"127.0.0.1:" + echo.port() + "\"\n"
                + "}\n";
    }

    @AfterAll
    static void stop() throws Exception {
        if (log != null) {
            log.close();
        }
        for (AutoCloseable c : Arrays.asList(tls, mutual, limited, tlsOrigin, plainOrigin, echo)) {
            if (c != null) {
                c.close();
            }
        }
        if (plainOrigin != null) {
            assertThat(plainOrigin.errors()).isEmpty();
        }
    }

    // ------------------------------------------------------------------ real clients

    @Test
    void curlConnectsThroughTheTlsListenerToATlsOrigin() throws Exception {
        int seen = tlsOrigin.seen.size();

        Processes.Result r = curl(tls, "--cacert", originCerts.certPem().toString(), "https://cdn.quay.io/v2/");

        assertThat(r.output()).isEqualTo("tls origin\n");
        assertThat(r.exitCode()).isZero();
        assertThat(tlsOrigin.seen.subList(seen, tlsOrigin.seen.size())).extracting(Origin.Seen::path).contains("/v2/");
        assertThat(logLine(" target=cdn.quay.io:443 ")).contains(" method=CONNECT ").contains(" decision=allowed ")
                .doesNotContain(" identity=");
    }

    @Test
    void curlForwardsPlainHttpThroughTheTlsListener() throws Exception {
        Processes.Result r = curl(tls, "http://plain.test:8080/through-tls?x=1");

        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(r.output()).startsWith("request ");
        assertThat(originTargets()).contains("/through-tls?x=1");
        assertThat(logLine(" url=http://plain.test:8080/through-tls ")).contains(" decision=allowed ").contains(" status=200 ");
    }

    @Test
    void goClientUsesAnHttpsProxyUrl() throws Exception {
        Path client = GoClient.build(dir);
        // Go's transport verifies the proxy and the origin with the same roots.
        Path roots = dir.resolve("go-roots.pem");
        Files.writeString(roots, Files.readString(proxyCa.caCert()) + Files.readString(originCerts.certPem()));
        int seen = tlsOrigin.seen.size();

        Processes.Result r = Processes.run(List.of(client.toString(), "https://127.0.0.1:" + tls.port(), roots.toString(),
                "https://cdn.quay.io/v2/"), null, 60, Map.of("HTTPS_PROXY", "", "NO_PROXY", ""));

        assertThat(r.output()).isEqualTo("200 tls origin\n");
        assertThat(r.exitCode()).isZero();
        assertThat(tlsOrigin.seen.size()).isGreaterThan(seen);
    }

    @Test
    void tunnelOnTheTlsListenerRelaysBytesBothWaysWithoutSplice() throws Exception {
        // This proxy splices every tunnel direction from its first read where it can (epoll): a
        // tunnel on a TLS client connection must relay through user space, or the echo server would
        // receive TLS records and the client read garbage.
        byte[] payload = new byte[512 * 1024];
        new Random(7).nextBytes(payload);
        try (RawClient raw = new RawClient(tlsSocket(tls, null, proxyCa.caCert()))) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\nHost: echo.test:7000\r\n\r\n");
            assertThat(raw.readHead().status()).isEqualTo(200);
            CompletableFuture<Void> sent = CompletableFuture.runAsync(() -> {
                try {
                    raw.send(payload);
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
            });
            byte[] back = raw.readExactly(payload.length);
            sent.get(20, TimeUnit.SECONDS);
            assertThat(Arrays.equals(back, payload)).as("echoed bytes equal the bytes sent").isTrue();
        }
        assertThat(tls.scrapeValue("egress_proxy_tunnel_splices_total")).isZero();
        assertThat(logLine(" target=echo.test:7000 ")).contains(" bytes_up=" + payload.length + " ")
                .contains(" bytes_down=" + payload.length + " ");
    }

    // ------------------------------------------------------------------ hostile peers

    @Test
    void plainHttpToTheTlsPortIsClosedAndTheNextClientIsServed() throws Exception {
        double before = failures(tls, "not_tls");
        byte[] answer;
        try (RawClient raw = new RawClient(tls.address())) {
            raw.send("GET http://plain.test:8080/in-clear-text HTTP/1.1\r\nHost: plain.test:8080\r\n\r\n");
            answer = readUntilClosed(raw);
        }

        assertThat(new String(answer, StandardCharsets.ISO_8859_1)).doesNotStartWith("HTTP/");
        await().atMost(Duration.ofSeconds(10)).until(() -> failures(tls, "not_tls") == before + 1);
        assertThat(originTargets()).doesNotContain("/in-clear-text");
        Processes.Result next = curl(tls, "http://plain.test:8080/after-clear-text");
        assertThat(next.exitCode()).as(next.output()).isZero();
        assertThat(originTargets()).contains("/after-clear-text");
    }

    @Test
    void silentClientIsClosedAtTheHandshakeTimeout() throws Exception {
        double before = failures(tls, "timeout");
        long start = System.nanoTime();
        try (RawClient raw = new RawClient(tls.address())) {
            assertThat(readUntilClosed(raw)).isEmpty();
        }
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(10));
        await().atMost(Duration.ofSeconds(10)).until(() -> failures(tls, "timeout") == before + 1);
    }

    @Test
    void guardRefusalIsAnsweredInsideTls() throws Exception {
        try (RawClient first = new RawClient(tlsSocket(limited, null, proxyCa.caCert()))) {
            ((SSLSocket) first.socket).startHandshake();
            // The second connection from this address is over clients.max-connections-per-client:
            // the 429 comes after the handshake, encrypted.
            try (RawClient second = new RawClient(tlsSocket(limited, null, proxyCa.caCert()))) {
                RawClient.Head head = second.readHead();
                assertThat(head.status()).isEqualTo(429);
                assertThat(head.header("X-Egress-Proxy-Reason")).isEqualTo("per_client_limit");
            }
        }
    }

    // ------------------------------------------------------------------ mutual TLS

    @Test
    void clientCertificateIdentitiesReachTheAccessLog() throws Exception {
        Processes.Result r = curl(mutual, "--proxy-cert", builder.cert().toString(), "--proxy-key", builder.key().toString(),
                "http://plain.test:8080/with-certificate");

        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(originTargets()).contains("/with-certificate");
        assertThat(logLine(" url=http://plain.test:8080/with-certificate "))
                .contains(" identity=CN=builder,spiffe://example.org/ns/build/sa/builder,DNS:builder.internal ");
    }

    @Test
    void clientWithoutCertificateIsRefused() throws Exception {
        assertRefused("no_client_certificate", "/without-certificate");
    }

    @Test
    void certificateFromAnotherCaIsRefused() throws Exception {
        assertRefused("untrusted_certificate", "/foreign-certificate", "--proxy-cert", stranger.cert().toString(),
                "--proxy-key", stranger.key().toString());
    }

    @Test
    void expiredClientCertificateIsRefused() throws Exception {
        assertRefused("expired_certificate", "/expired-certificate", "--proxy-cert", expired.cert().toString(),
                "--proxy-key", expired.key().toString());
    }

    private void assertRefused(String reason, String path, String... certificate) throws Exception {
        double before = failures(mutual, reason);
        List<String> args = new ArrayList<>(List.of(certificate));
        args.add("http://plain.test:8080" + path);

        Processes.Result r = curl(mutual, args.toArray(String[]::new));

        assertThat(r.exitCode()).as(r.output()).isNotZero();
        await().atMost(Duration.ofSeconds(10)).until(() -> failures(mutual, reason) == before + 1);
        assertThat(originTargets()).doesNotContain(path);
        // The proxy goes on serving a client with a good certificate.
        try (RawClient ok = new RawClient(tlsSocket(mutual, builder, proxyCa.caCert()))) {
            ok.send("GET http://plain.test:8080" + path + "-then-ok HTTP/1.1\r\nHost: plain.test:8080\r\n\r\n");
            assertThat(ok.readHead().status()).isEqualTo(200);
        }
    }

    // ------------------------------------------------------------------ reload

    @Test
    void reloadRotatesTheCertificateForNewConnectionsOnly() throws Exception {
        TestPki nextCa = TestPki.create(dir, "rotated");
        TestPki.Issued next = nextCa.server("proxy-next");
        Path cert = dir.resolve("live.pem");
        Path key = dir.resolve("live.key");
        Files.copy(proxyCert.cert(), cert, StandardCopyOption.REPLACE_EXISTING);
        Files.copy(proxyCert.key(), key, StandardCopyOption.REPLACE_EXISTING);
        Path file = dir.resolve("rotation.conf");
        Files.writeString(file, fileConfig(cert, key, "plain.test:8080", plainOrigin.port()));
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
        try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics());
                RawClient open = new RawClient(tlsSocket(server.proxyAddress(), null, proxyCa.caCert()))) {
            assertThat(get(open, "/before-rotation")).isEqualTo(200);

            Files.copy(next.cert(), cert, StandardCopyOption.REPLACE_EXISTING);
            Files.copy(next.key(), key, StandardCopyOption.REPLACE_EXISTING);
            assertThat(reloader.reload("test")).isTrue();

            // New connections get the new certificate: a client trusting only the old CA fails.
            try (RawClient fresh = new RawClient(tlsSocket(server.proxyAddress(), null, nextCa.caCert()))) {
                assertThat(get(fresh, "/after-rotation")).isEqualTo(200);
                assertThat(issuer(fresh)).contains("rotated test CA");
            }
            assertThatThrownBy(() -> {
                try (RawClient stale = new RawClient(tlsSocket(server.proxyAddress(), null, proxyCa.caCert()))) {
                    ((SSLSocket) stale.socket).startHandshake();
                }
            }).isInstanceOf(SSLException.class);
            // The connection opened before keeps its session and goes on working.
            assertThat(get(open, "/still-open")).isEqualTo(200);
            assertThat(issuer(open)).contains("proxy test CA");

            // A broken key refuses the reload; new connections keep the rotated certificate.
            Files.writeString(key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
            assertThat(reloader.reload("test")).isFalse();
            assertThat(registry.get("egress.proxy.config.reloads").tag("result", "failure").counter().count()).isEqualTo(1.0);
            try (RawClient after = new RawClient(tlsSocket(server.proxyAddress(), null, nextCa.caCert()))) {
                assertThat(get(after, "/after-refused-reload")).isEqualTo(200);
            }
        } finally {
            server.close();
            registry.close();
        }
        assertThat(originTargets()).contains("/before-rotation", "/after-rotation", "/still-open", "/after-refused-reload");
    }

    @Test
    void watchedCertificateRewrittenInPlaceServesNewHandshakesAndABrokenKeyKeepsTheOldOne() throws Exception {
        Path secret = Files.createDirectories(dir.resolve("in-place-secret"));
        Path cert = Files.copy(proxyCert.cert(), secret.resolve("tls.crt"));
        Path key = Files.copy(proxyCert.key(), secret.resolve("tls.key"));
        TestPki.Issued next = proxyCa.server("proxy-in-place-next");
        try (WatchedProxy p = WatchedProxy.start("in-place", cert, key);
                RawClient open = tunnel(p.server.proxyAddress())) {
            assertThat(presented(p)).isEqualTo("CN=egress-proxy proxy");

            // A key that does not parse: the reload is refused, new handshakes keep the certificate.
            Files.writeString(key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
            await("refused reload").atMost(Duration.ofSeconds(15)).until(p::lastRefused);
            assertThat(p.reloads("failure")).isEqualTo(1.0);
            assertThat(p.server.status().lastReload().error()).contains("listen.tls.private-key").contains(key.toString());
            assertThat(presented(p)).isEqualTo("CN=egress-proxy proxy");
            assertThat(echo(open, "after the refusal")).isEqualTo("after the refusal");

            // The new pair, written in place: new handshakes present it once the watch reloaded.
            Files.copy(next.cert(), cert, StandardCopyOption.REPLACE_EXISTING);
            Files.copy(next.key(), key, StandardCopyOption.REPLACE_EXISTING);
            await("rotated certificate served").atMost(Duration.ofSeconds(15))
                    .until(() -> presented(p).equals("CN=egress-proxy proxy-in-place-next"));
            // The new context is in force a moment before the reload is recorded as applied.
            await().atMost(Duration.ofSeconds(5)).until(() -> p.server.status().lastReload().applied());
            // The tunnel opened over the old certificate goes on.
            assertThat(echo(open, "after the rotation")).isEqualTo("after the rotation");
            assertThat(subject(open)).isEqualTo("CN=egress-proxy proxy");
        }
    }

    @Test
    void secretDataSwapRotatesTheCertificateAndAMismatchedPairIsRefused() throws Exception {
        // A Secret volume as the kubelet lays it out: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>.
        Path secret = Files.createDirectories(dir.resolve("swap-secret"));
        Path first = Files.createDirectories(secret.resolve("..2025_01_01_00_00_00.1"));
        Files.copy(proxyCert.cert(), first.resolve("tls.crt"));
        Files.copy(proxyCert.key(), first.resolve("tls.key"));
        Files.createSymbolicLink(secret.resolve("..data"), first.getFileName());
        Path cert = Files.createSymbolicLink(secret.resolve("tls.crt"), Path.of("..data", "tls.crt"));
        Path key = Files.createSymbolicLink(secret.resolve("tls.key"), Path.of("..data", "tls.key"));
        TestPki.Issued next = proxyCa.server("proxy-swap-next");
        try (WatchedProxy p = WatchedProxy.start("swap", cert, key);
                RawClient open = tunnel(p.server.proxyAddress())) {
            assertThat(presented(p)).isEqualTo("CN=egress-proxy proxy");

            swapData(secret, "..2025_01_02_00_00_00.2", next.cert(), next.key());
            await("swapped certificate served").atMost(Duration.ofSeconds(15))
                    .until(() -> presented(p).equals("CN=egress-proxy proxy-swap-next"));
            await().atMost(Duration.ofSeconds(5)).until(() -> p.reloads("success") == 1.0);
            assertThat(echo(open, "after the swap")).isEqualTo("after the swap");
            assertThat(subject(open)).isEqualTo("CN=egress-proxy proxy");

            // A half-done pair (the old certificate with the new key) is refused as a whole.
            swapData(secret, "..2025_01_03_00_00_00.3", proxyCert.cert(), next.key());
            await("refused reload").atMost(Duration.ofSeconds(15)).until(p::lastRefused);
            assertThat(p.reloads("failure")).isEqualTo(1.0);
            assertThat(p.server.status().lastReload().error()).contains("is not the key of the certificate");
            assertThat(presented(p)).isEqualTo("CN=egress-proxy proxy-swap-next");
            assertThat(echo(open, "after the refusal")).isEqualTo("after the refusal");
        }
    }

    /** Writes a new timestamped directory and renames a {@code ..data_tmp} link over {@code ..data}, as the kubelet does. */
    private static void swapData(Path secret, String version, Path cert, Path key) throws IOException {
        Path target = Files.createDirectories(secret.resolve(version));
        Files.copy(cert, target.resolve("tls.crt"));
        Files.copy(key, target.resolve("tls.key"));
        Path tmp = Files.createSymbolicLink(secret.resolve("..data_tmp"), target.getFileName());
        Files.move(tmp, secret.resolve("..data"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /**
     * A config file's text for a proxy whose TLS listener reads {@code cert} and {@code key} and
     * which allows only {@code authority}, pinned to {@code originPort} on loopback.
     */
    private static String fileConfig(Path cert, Path key, String authority, int originPort) {
        return "egress-proxy {\n listen { host = \"127.0.0.1\", port = 0\n"
                + "  tls { certificate = \"" + cert + "\", private-key = \"" + key + "\" } }\n"
                + " admin.enabled = false\n transport = \"" + System.getProperty("egress.test.transport", "auto") + "\"\n"
                + " allowlist.hosts = [\"" + authority + "\"]\n"
                + " destinations.connect-to { \"" + authority + "\" = \"127.0.0.1:" + originPort + "\" }\n}\n";
    }

    /** A proxy whose TLS listener reads {@code cert} and {@code key}, from a config file of its own, watched. */
    private record WatchedProxy(ProxyServer server, PrometheusMeterRegistry registry, ConfigReloader reloader)
            implements AutoCloseable {

        static WatchedProxy start(String name, Path cert, Path key) throws Exception {
            Path conf = Files.createDirectories(dir.resolve(name + "-conf"));
            Path file = conf.resolve("egress-proxy.conf");
            Files.writeString(file, fileConfig(cert, key, "echo.test:7000", echo.port()));
            PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
            try {
                return new WatchedProxy(server, registry, new ConfigReloader(file, Map.of(), server, server.metrics()).watch());
            } catch (IOException | RuntimeException e) {
                server.close();
                registry.close();
                throw e;
            }
        }

        /** Whether the last reload was refused (recorded for /status after it was counted). */
        boolean lastRefused() {
            return server.status().lastReload() != null && !server.status().lastReload().applied();
        }

        double reloads(String result) {
            return registry.get("egress.proxy.config.reloads").tag("result", result).counter().count();
        }

        @Override
        public void close() {
            reloader.close();
            server.close();
            registry.close();
        }
    }

    /** The subject of the certificate a new TLS handshake with {@code p} presents. */
    private static String presented(WatchedProxy p) throws Exception {
        try (SSLSocket socket = tlsSocket(p.server.proxyAddress(), null, proxyCa.caCert())) {
            socket.startHandshake();
            return ((X509Certificate) socket.getSession().getPeerCertificates()[0]).getSubjectX500Principal().getName();
        }
    }

    /** The subject of the certificate {@code client}'s handshake got. */
    private static String subject(RawClient client) throws Exception {
        SSLSocket socket = (SSLSocket) client.socket;
        return ((X509Certificate) socket.getSession().getPeerCertificates()[0]).getSubjectX500Principal().getName();
    }

    /** A tunnel to the echo server over a TLS connection to {@code proxy}. */
    private static RawClient tunnel(InetSocketAddress proxy) throws Exception {
        RawClient raw = new RawClient(tlsSocket(proxy, null, proxyCa.caCert()));
        try {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\nHost: echo.test:7000\r\n\r\n");
            assertThat(raw.readHead().status()).isEqualTo(200);
            return raw;
        } catch (IOException | AssertionError e) {
            raw.close();
            throw e;
        }
    }

    /** Sends {@code text} through the tunnel and reads back as many bytes. */
    private static String echo(RawClient tunnel, String text) throws IOException {
        tunnel.send(text);
        return new String(tunnel.readExactly(text.length()), StandardCharsets.US_ASCII);
    }

    // ------------------------------------------------------------------ helpers

    private static int get(RawClient client, String path) throws IOException {
        client.send("GET http://plain.test:8080" + path + " HTTP/1.1\r\nHost: plain.test:8080\r\n\r\n");
        RawClient.Head head = client.readHead();
        int length = Integer.parseInt(head.header("Content-Length"));
        client.readExactly(length);
        return head.status();
    }

    private static String issuer(RawClient client) throws Exception {
        SSLSocket socket = (SSLSocket) client.socket;
        return ((X509Certificate) socket.getSession().getPeerCertificates()[0]).getIssuerX500Principal().getName();
    }

    private static SSLSocket tlsSocket(TestProxy proxy, TestPki.Issued identity, Path trusted) throws Exception {
        return tlsSocket(proxy.address(), identity, trusted);
    }

    private static SSLSocket tlsSocket(InetSocketAddress proxy, TestPki.Issued identity, Path trusted) throws Exception {
        SSLContext ctx = TestPki.clientContext(identity, trusted);
        Socket plain = new Socket();
        plain.connect(proxy, 5000);
        return (SSLSocket) ctx.getSocketFactory().createSocket(plain, "127.0.0.1", proxy.getPort(), true);
    }

    /** Reads until the proxy closes the connection (a reset counts as closed). */
    private static byte[] readUntilClosed(RawClient raw) {
        try {
            return raw.readToEnd();
        } catch (IOException e) {
            return new byte[0];
        }
    }

    private static Processes.Result curl(TestProxy proxy, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of("curl", "-sS", "--max-time", "20",
                "--proxy", "https://127.0.0.1:" + proxy.port(), "--proxy-cacert", proxyCa.caCert().toString()));
        command.addAll(List.of(args));
        return Processes.run(command, null, 30, Map.of("NO_PROXY", "", "no_proxy", ""));
    }

    private static List<String> originTargets() {
        return plainOrigin.requests().stream().map(RecordingOrigin.Request::target).toList();
    }

    /** egress_proxy_tls_handshake_failures_total{reason}. */
    private static double failures(TestProxy proxy, String reason) throws Exception {
        return proxy.scrapeValue("egress_proxy_tls_handshake_failures_total{reason=\"" + reason + "\"}");
    }

    /** The last access-log line containing {@code marker}, once it is written. */
    private static String logLine(String marker) {
        await().atMost(Duration.ofSeconds(10)).until(() -> log.lines().stream().anyMatch(l -> l.contains(marker)));
        List<String> lines = log.lines().stream().filter(l -> l.contains(marker)).toList();
        return lines.get(lines.size() - 1);
    }
}
