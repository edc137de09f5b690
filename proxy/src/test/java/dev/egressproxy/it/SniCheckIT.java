package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.GoClient;
import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestCerts;
import dev.egressproxy.testing.TestProxy;
import dev.egressproxy.testing.TlsHellos;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ProxySelector;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The SNI check ({@code tunnels.sni-check}) over real sockets, with real TLS clients (openssl
 * s_client, curl, a Go program, the JDK's HttpClient) and hand-made first flights, against a real
 * TLS origin. Every upstream connection goes through a {@link Tap} that records each byte the
 * proxy sent it, so "nothing reached the origin" is asserted where the origin is.
 *
 * <p>Two proxies: one with {@code enforce}, one with {@code report}, both with a short
 * {@code client-hello-timeout}. Each test uses its own CONNECT host, so metric values and log
 * lines are its own.
 */
class SniCheckIT {

    /** The fatal access_denied alert record the proxy sends before closing a refused tunnel. */
    private static final byte[] ACCESS_DENIED_ALERT = {21, 3, 3, 0, 2, 2, 49};
    private static final String BANNER = "220 origin speaks first\r\n";

    @TempDir
    static Path dir;
    static TestCerts certs;
    static Origin origin;
    /** In front of the TLS origin: records what the proxy sent and relays both ways. */
    static Tap tls;
    /** Records what the proxy sent and never answers. */
    static Tap sink;
    /** Writes a banner as soon as the proxy connects (server speaks first), then records. */
    static Tap banner;
    static TestProxy enforcing;
    static TestProxy reporting;
    static AccessLogCapture log;

    @BeforeAll
    static void start() throws Exception {
        certs = TestCerts.generate(dir);
        origin = Origin.https(certs.serverContext()).respond("/v2/", 200, "tls origin\n")
                .route("/v2/close", ex -> {
                    // So that a pooling client (the JDK's) closes its tunnel, which writes its log line.
                    ex.getResponseHeaders().add("Connection", "close");
                    Origin.send(ex, 200, "tls origin\n".getBytes(StandardCharsets.US_ASCII));
                });
        tls = Tap.relayingTo(origin.port(), null);
        sink = Tap.relayingTo(0, null);
        banner = Tap.relayingTo(0, BANNER.getBytes(StandardCharsets.US_ASCII));
        log = new AccessLogCapture();
        enforcing = TestProxy.start(settings("enforce"));
        reporting = TestProxy.start(settings("report"));
    }

    private static String settings(String mode) {
        StringBuilder connectTo = new StringBuilder();
        List<String> hosts = new ArrayList<>();
        for (String name : List.of("cdn.quay.io", "cdn01.quay.io", "cdn02.quay.io", "cdn03.quay.io", "registry.redhat.io",
                "registry.access.redhat.com", "front-openssl.test", "front-curl.test", "fronted-report.test")) {
            hosts.add('"' + name + '"');
            connectTo.append("  \"").append(name).append(":443\" = \"127.0.0.1:").append(tls.port()).append("\"\n");
        }
        for (String name : List.of("frag.test", "frag-bad.test", "early.test", "nottls.test", "nottls-report.test",
                "late.test", "reload.test")) {
            hosts.add('"' + name + '"');
            connectTo.append("  \"").append(name).append(":443\" = \"127.0.0.1:").append(sink.port()).append("\"\n");
        }
        hosts.add("\"silent.test\"");
        connectTo.append("  \"silent.test:443\" = \"127.0.0.1:").append(banner.port()).append("\"\n");
        hosts.add("\"plain.test:8080\"");
        connectTo.append("  \"plain.test:8080\" = \"127.0.0.1:").append(sink.port()).append("\"\n");
        return "allowlist.hosts = [" + String.join(", ", hosts) + "]\n"
                + "tunnels { sni-check = " + mode + ", client-hello-timeout = 2s }\n"
                + "destinations.connect-to {\n" + connectTo + "}\n";
    }

    @AfterAll
    static void stop() throws Exception {
        log.close();
        for (AutoCloseable c : List.<AutoCloseable>of(enforcing, reporting, origin, tls, sink, banner)) {
            c.close();
        }
    }

    // ------------------------------------------------------------------ real clients

    @Test
    void opensslWithAnotherServerNameIsRefusedUnderEnforceBeforeAnyByteReachesTheOrigin() throws Exception {
        int before = tls.connections();
        Processes.Result r = sClient(enforcing, "front-openssl.test:443", "registry.redhat.io");

        assertThat(r.exitCode()).as(r.output()).isNotZero();
        assertThat(r.output()).contains("alert access denied");
        Tap.Conn upstream = tls.connection(before);
        await().atMost(Duration.ofSeconds(10)).until(() -> upstream.ended);
        assertThat(upstream.received()).as("bytes the origin received").isEmpty();
        assertThat(count(enforcing, "front-openssl.test", "sni_mismatch")).isEqualTo(1.0);
        assertThat(logLine("front-openssl.test:443")).contains(" status=200 ")
                .contains(" error=sni_mismatch sni=registry.redhat.io sni_check=sni_mismatch bytes_up=0 ");
    }

    @Test
    void opensslWithAnotherServerNameCompletesItsHandshakeUnderReportAndIsCounted() throws Exception {
        Processes.Result r = sClient(reporting, "fronted-report.test:443", "registry.redhat.io");

        assertThat(r.output()).contains("CONNECTION ESTABLISHED");
        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(count(reporting, "fronted-report.test", "sni_mismatch")).isEqualTo(1.0);
        assertThat(logLine("fronted-report.test:443")).contains(" error=- sni=registry.redhat.io sni_check=sni_mismatch ");
    }

    @Test
    void opensslWithTheConnectHostAsServerNamePassesUnderEnforce() throws Exception {
        Processes.Result r = sClient(enforcing, "registry.access.redhat.com:443", "registry.access.redhat.com");

        assertThat(r.output()).contains("CONNECTION ESTABLISHED");
        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(logLine("registry.access.redhat.com:443")).contains(" error=- sni=registry.access.redhat.com sni_check=ok ");
        assertThat(count(enforcing, "registry.access.redhat.com", "sni_mismatch")).isEqualTo(0.0);
    }

    @Test
    void curlConnectToAnotherHostKeepsTheUrlHostAsServerNameAndIsRefusedUnderEnforce() throws Exception {
        // curl --connect-to sends CONNECT to the connect-to target (front-curl.test:443) while its
        // server name stays the URL's host: the mismatch a fronting client produces.
        int before = tls.connections();
        Processes.Result r = curl(enforcing, "--connect-to", "registry.redhat.io:443:front-curl.test:443",
                "https://registry.redhat.io/v2/");

        assertThat(r.exitCode()).as(r.output()).isNotZero();
        assertThat(r.output()).contains("alert access denied");
        Tap.Conn upstream = tls.connection(before);
        await().atMost(Duration.ofSeconds(10)).until(() -> upstream.ended);
        assertThat(upstream.received()).isEmpty();
        assertThat(count(enforcing, "front-curl.test", "sni_mismatch")).isEqualTo(1.0);
        assertThat(logLine("front-curl.test:443")).contains("method=CONNECT target=front-curl.test:443 ")
                .contains(" error=sni_mismatch sni=registry.redhat.io sni_check=sni_mismatch ");
    }

    @Test
    void curlWithMatchingNamesFetchesThroughEnforce() throws Exception {
        Processes.Result r = curl(enforcing, "https://cdn.quay.io/v2/");

        assertThat(r.output()).isEqualTo("tls origin\n");
        assertThat(r.exitCode()).isZero();
        assertThat(logLine("cdn.quay.io:443")).contains(" sni=cdn.quay.io sni_check=ok ");
    }

    @Test
    void goNetHttpClientFetchesThroughEnforce() throws Exception {
        Path client = GoClient.build(dir);
        Processes.Result r = Processes.run(List.of(client.toString(), "http://127.0.0.1:" + enforcing.port(),
                certs.certPem().toString(), "https://cdn02.quay.io/v2/"), null, 60, Map.of("HTTPS_PROXY", "", "NO_PROXY", ""));

        assertThat(r.output()).isEqualTo("200 tls origin\n");
        assertThat(r.exitCode()).isZero();
        assertThat(logLine("cdn02.quay.io:443")).contains(" sni=cdn02.quay.io sni_check=ok ");
    }

    @Test
    void jdkHttpClientFetchesThroughEnforce() throws Exception {
        HttpClient client = HttpClient.newBuilder().proxy(ProxySelector.of(enforcing.address()))
                .sslContext(certs.clientContext()).version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(5)).build();

        HttpResponse<String> res = client.send(HttpRequest.newBuilder(URI.create("https://cdn01.quay.io/v2/close"))
                .timeout(Duration.ofSeconds(15)).build(), HttpResponse.BodyHandlers.ofString());

        assertThat(res.statusCode()).isEqualTo(200);
        assertThat(res.body()).isEqualTo("tls origin\n");
        assertThat(logLine("cdn01.quay.io:443")).contains(" sni=cdn01.quay.io sni_check=ok ");
    }

    // ------------------------------------------------------------------ hand-made first flights

    @Test
    void aClientHelloIn50ByteRecordsWrittenOneByOneReachesTheOriginExactlyAsSent() throws Exception {
        byte[] flight = TlsHellos.records(TlsHellos.unframe(TlsHellos.jdk("frag.test")), 50);
        int before = sink.connections();
        try (RawClient raw = connect(enforcing, "frag.test:443")) {
            // Each 50-byte record (55 bytes with its header) in a write and a flush of its own.
            for (int off = 0; off < flight.length; off += 55) {
                raw.send(Arrays.copyOfRange(flight, off, Math.min(flight.length, off + 55)));
            }
            byte[] after = "bytes after the hello".getBytes(StandardCharsets.US_ASCII);
            raw.send(after);
            Tap.Conn upstream = sink.connection(before);
            byte[] expected = TlsHellos.concat(flight, after);
            await().atMost(Duration.ofSeconds(10)).until(() -> upstream.received().length >= expected.length);
            assertThat(upstream.received()).isEqualTo(expected);
        }
        assertThat(logLine("frag.test:443")).contains(" sni=frag.test sni_check=ok ");
    }

    @Test
    void aFragmentedClientHelloNamingAnotherHostIsRefusedUnderEnforceWithAnAlert() throws Exception {
        byte[] flight = TlsHellos.records(TlsHellos.unframe(TlsHellos.jdk("other.test")), 50);
        int before = sink.connections();
        try (RawClient raw = connect(enforcing, "frag-bad.test:443")) {
            for (int off = 0; off < flight.length; off += 55) {
                raw.send(Arrays.copyOfRange(flight, off, Math.min(flight.length, off + 55)));
            }
            assertThat(raw.readToEnd()).isEqualTo(ACCESS_DENIED_ALERT);
        }
        Tap.Conn upstream = sink.connection(before);
        await().atMost(Duration.ofSeconds(10)).until(() -> upstream.ended);
        assertThat(upstream.received()).isEmpty();
        assertThat(count(enforcing, "frag-bad.test", "sni_mismatch")).isEqualTo(1.0);
        assertThat(logLine("frag-bad.test:443")).contains(" error=sni_mismatch sni=other.test sni_check=sni_mismatch ");
    }

    @Test
    void aHelloSentInTheSameWriteAsTheConnectIsCheckedFirst() throws Exception {
        byte[] hello = TlsHellos.jdk("other.test");
        int before = sink.connections();
        try (RawClient raw = new RawClient(enforcing.address())) {
            raw.send(TlsHellos.concat("CONNECT early.test:443 HTTP/1.1\r\n\r\n".getBytes(StandardCharsets.US_ASCII), hello));
            assertThat(raw.readHead().status()).isEqualTo(200);
            assertThat(raw.readToEnd()).isEqualTo(ACCESS_DENIED_ALERT);
        }
        Tap.Conn upstream = sink.connection(before);
        await().atMost(Duration.ofSeconds(10)).until(() -> upstream.ended);
        assertThat(upstream.received()).isEmpty();
        assertThat(logLine("early.test:443")).contains(" error=sni_mismatch sni=other.test sni_check=sni_mismatch ");
    }

    @Test
    void plainHttpOnATlsPortIsNotTlsAndNeverReachesTheOriginUnderEnforce() throws Exception {
        int before = sink.connections();
        try (RawClient raw = connect(enforcing, "nottls.test:443")) {
            raw.send("GET / HTTP/1.1\r\nHost: nottls.test\r\n\r\n");
            assertThat(raw.readToEnd()).as("no TLS alert for a client that does not speak TLS").isEmpty();
        }
        Tap.Conn upstream = sink.connection(before);
        await().atMost(Duration.ofSeconds(10)).until(() -> upstream.ended);
        assertThat(upstream.received()).isEmpty();
        assertThat(count(enforcing, "nottls.test", "not_tls")).isEqualTo(1.0);
        assertThat(logLine("nottls.test:443")).contains(" error=not_tls sni=- sni_check=not_tls ");
    }

    @Test
    void plainHttpOnATlsPortIsReportedAndRelayedUnchangedUnderReport() throws Exception {
        byte[] request = "GET / HTTP/1.1\r\nHost: nottls.test\r\n\r\n".getBytes(StandardCharsets.US_ASCII);
        int before = sink.connections();
        try (RawClient raw = connect(reporting, "nottls-report.test:443")) {
            raw.send(request);
            Tap.Conn upstream = sink.connection(before);
            await().atMost(Duration.ofSeconds(10)).until(() -> upstream.received().length >= request.length);
            assertThat(upstream.received()).isEqualTo(request);
        }
        assertThat(count(reporting, "nottls-report.test", "not_tls")).isEqualTo(1.0);
        assertThat(logLine("nottls-report.test:443")).contains(" error=- sni=- sni_check=not_tls ");
    }

    @Test
    void aSilentClientStillGetsTheOriginsFirstWordsAndIsClosedAtTheHelloTimeoutUnderEnforce() throws Exception {
        int before = banner.connections();
        long start = System.nanoTime();
        try (RawClient raw = connect(enforcing, "silent.test:443")) {
            byte[] greeting = raw.readExactly(BANNER.length());
            assertThat(new String(greeting, StandardCharsets.US_ASCII)).isEqualTo(BANNER);
            assertThat(Duration.ofNanos(System.nanoTime() - start)).as("the origin's bytes are not held")
                    .isLessThan(Duration.ofMillis(1500));
            assertThat(raw.readToEnd()).isEqualTo(ACCESS_DENIED_ALERT);
        }
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isGreaterThanOrEqualTo(Duration.ofMillis(1900));
        Tap.Conn upstream = banner.connection(before);
        await().atMost(Duration.ofSeconds(10)).until(() -> upstream.ended);
        assertThat(upstream.received()).isEmpty();
        assertThat(count(enforcing, "silent.test", "client_hello_timeout")).isEqualTo(1.0);
        assertThat(logLine("silent.test:443")).contains(" error=client_hello_timeout sni=- sni_check=client_hello_timeout ");
    }

    @Test
    void underReportATunnelSilentPastTheTimeoutIsCountedAndThenRelaysAsUsual() throws Exception {
        int before = sink.connections();
        try (RawClient raw = connect(reporting, "late.test:443")) {
            await().atMost(Duration.ofSeconds(10))
                    .until(() -> count(reporting, "late.test", "client_hello_timeout") == 1.0);
            raw.send("late bytes");
            Tap.Conn upstream = sink.connection(before);
            await().atMost(Duration.ofSeconds(10)).until(() -> upstream.received().length >= 10);
            assertThat(new String(upstream.received(), StandardCharsets.US_ASCII)).isEqualTo("late bytes");
        }
    }

    @Test
    void aTunnelToAPortOutsideTlsPortsIsNotChecked() throws Exception {
        int before = sink.connections();
        try (RawClient raw = connect(enforcing, "plain.test:8080")) {
            raw.send("GET / HTTP/1.1\r\n\r\n");
            Tap.Conn upstream = sink.connection(before);
            await().atMost(Duration.ofSeconds(10)).until(() -> upstream.received().length >= 18);
        }
        assertThat(logLine("plain.test:8080")).doesNotContain("sni");
        assertThat(count(enforcing, "plain.test", "not_tls")).isEqualTo(0.0);
    }

    @Test
    void aClientThatClosesWithoutSendingIsNoProblem() throws Exception {
        try (RawClient raw = connect(reporting, "cdn03.quay.io:443")) {
            raw.socket.shutdownOutput();
            raw.readToEnd();
        }
        assertThat(logLine("cdn03.quay.io:443")).contains(" sni=- sni_check=no_bytes ");
        assertThat(reporting.admin("/metrics").body()).doesNotContain("sni_mismatch_total{host=\"cdn03.quay.io\"");
    }

    @Test
    void aReloadedModeAppliesToTheNextTunnel() throws Exception {
        try (TestProxy proxy = TestProxy.start(settings("enforce"))) {
            byte[] hello = TlsHellos.jdk("other.test");
            int first = sink.connections();
            try (RawClient raw = connect(proxy, "reload.test:443")) {
                raw.send(hello);
                assertThat(raw.readToEnd()).isEqualTo(ACCESS_DENIED_ALERT);
            }
            sink.connection(first);
            proxy.server.apply(ConfigLoader.fromString("egress-proxy {\n listen { host = \"127.0.0.1\", port = 0 }\n"
                    + " admin { host = \"127.0.0.1\", port = 0 }\n" + settings("off") + "}\n"));
            int before = sink.connections();
            try (RawClient raw = connect(proxy, "reload.test:443")) {
                raw.send(hello);
                Tap.Conn upstream = sink.connection(before);
                await().atMost(Duration.ofSeconds(10)).until(() -> upstream.received().length >= hello.length);
                assertThat(upstream.received()).isEqualTo(hello);
            }
        }
    }

    // ------------------------------------------------------------------ helpers

    private static RawClient connect(TestProxy proxy, String authority) throws IOException {
        RawClient raw = new RawClient(proxy.address());
        raw.send("CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
        RawClient.Head head = raw.readHead();
        assertThat(head.statusLine()).isEqualTo("HTTP/1.1 200 Connection established");
        return raw;
    }

    private static Processes.Result sClient(TestProxy proxy, String connect, String serverName) throws Exception {
        return Processes.run(List.of("openssl", "s_client", "-brief", "-proxy", "127.0.0.1:" + proxy.port(),
                "-connect", connect, "-servername", serverName, "-CAfile", certs.certPem().toString()), "", 30);
    }

    private static Processes.Result curl(TestProxy proxy, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of("curl", "-sS", "--max-time", "20", "--cacert",
                certs.certPem().toString(), "-x", "http://127.0.0.1:" + proxy.port()));
        command.addAll(List.of(args));
        return Processes.run(command, null, 30, Map.of("NO_PROXY", "", "no_proxy", ""));
    }

    /** egress_proxy_sni_mismatch_total for this host and reason; 0 while the series does not exist. */
    private static double count(TestProxy proxy, String host, String reason) throws Exception {
        double v = proxy.scrapeValue("egress_proxy_sni_mismatch_total{host=\"" + host + "\",reason=\"" + reason + "\"}");
        return Math.max(v, 0);
    }

    /** The access-log line of the tunnel to {@code authority}, once it is written. */
    private static String logLine(String authority) {
        String marker = " target=" + authority + " ";
        await().atMost(Duration.ofSeconds(10)).until(() -> log.lines().stream().anyMatch(l -> l.contains(marker)));
        List<String> lines = log.lines().stream().filter(l -> l.contains(marker)).toList();
        return lines.get(lines.size() - 1);
    }

    /**
     * A loopback TCP server standing for the origin: it records every byte the proxy sends on each
     * connection and, when given a backend port, relays both ways to it (the real TLS origin).
     */
    static final class Tap implements AutoCloseable {

        /** One upstream connection as the origin saw it. */
        static final class Conn {
            private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            volatile boolean ended;

            synchronized void record(byte[] b, int n) {
                bytes.write(b, 0, n);
            }

            synchronized byte[] received() {
                return bytes.toByteArray();
            }
        }

        private final List<Conn> conns = new CopyOnWriteArrayList<>();
        private final TcpServer server;

        private Tap(int backendPort, byte[] greeting) throws IOException {
            server = TcpServer.of((s, srv) -> serve(s, backendPort, greeting));
        }

        static Tap relayingTo(int backendPort, byte[] greeting) throws IOException {
            return new Tap(backendPort, greeting);
        }

        private void serve(Socket s, int backendPort, byte[] greeting) throws IOException {
            Conn conn = new Conn();
            conns.add(conn);
            Socket backend = backendPort > 0 ? new Socket(InetAddress.getLoopbackAddress(), backendPort) : null;
            Thread back = null;
            try {
                OutputStream out = s.getOutputStream();
                if (greeting != null) {
                    out.write(greeting);
                    out.flush();
                }
                if (backend != null) {
                    InputStream fromBackend = backend.getInputStream();
                    back = new Thread(() -> {
                        try {
                            fromBackend.transferTo(out);
                            s.shutdownOutput();
                        } catch (IOException ignored) {
                            // the proxy side went away
                        }
                    }, "tap-backend");
                    back.setDaemon(true);
                    back.start();
                }
                InputStream in = s.getInputStream();
                byte[] buf = new byte[8192];
                int n;
                while ((n = in.read(buf)) >= 0) {
                    conn.record(buf, n);
                    if (backend != null) {
                        backend.getOutputStream().write(buf, 0, n);
                    }
                }
                if (backend != null) {
                    backend.shutdownOutput();
                    back.join(10_000);
                }
            } catch (IOException e) {
                // A reset from the proxy ends the connection like a FIN here.
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                conn.ended = true;
                if (backend != null) {
                    backend.close();
                }
            }
        }

        int port() {
            return server.port();
        }

        int connections() {
            return conns.size();
        }

        /** The connection accepted after {@code before} others, once it is there. */
        Conn connection(int before) {
            await().atMost(Duration.ofSeconds(10)).until(() -> conns.size() > before);
            return conns.get(before);
        }

        @Override
        public void close() throws IOException {
            server.close();
        }
    }
}
