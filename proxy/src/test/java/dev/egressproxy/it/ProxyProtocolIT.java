package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RecordingOrigin;
import dev.egressproxy.testing.TestProxy;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code listen.proxy-protocol} behind a real HAProxy (Debian's {@code haproxy}, mode tcp, one
 * frontend with {@code send-proxy-v2} and one with {@code send-proxy}), started and stopped here
 * on free loopback ports. Clients reach HAProxy from 127.0.0.2, .3 and .6 while HAProxy itself
 * connects from 127.0.0.1, so the address in the header differs from the TCP peer: the access
 * log, {@code clients.allow}, the per-client limit and {@code /denied} must all go by the header.
 * Hostile headers are written by hand straight to the proxy; each must be refused and closed with
 * nothing reaching the origin, and the proxy must go on serving.
 */
class ProxyProtocolIT {

    private static final byte[] V2_SIGNATURE = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    private static final Duration WAIT = Duration.ofSeconds(15);

    private static InetAddress allowed;      // 127.0.0.2, in clients.allow
    private static InetAddress notAllowed;   // 127.0.0.3, outside clients.allow
    private static InetAddress untrusted;    // 127.0.0.4, outside proxy-protocol-from
    private static InetAddress limited;      // 127.0.0.6, in clients.allow, for the per-client limit

    @TempDir
    static Path dir;
    static RecordingOrigin origin;
    static TestProxy proxy;
    static Process haproxy;
    static InetSocketAddress viaV2;
    static InetSocketAddress viaV1;

    @BeforeAll
    static void start() throws Exception {
        Path bin = Path.of("/usr/sbin/haproxy");
        Assumptions.assumeTrue(Files.isExecutable(bin),
                "haproxy is not installed (Debian package haproxy; scripts/install-test-deps.sh installs it)");
        allowed = loopback(2);
        notAllowed = loopback(3);
        untrusted = loopback(4);
        limited = loopback(6);
        origin = new RecordingOrigin();
        proxy = TestProxy.start("""
                listen.proxy-protocol = "any"
                listen.proxy-protocol-from = ["127.0.0.1/32"]
                clients.allow = ["127.0.0.2/32", "127.0.0.6/32"]
                clients.max-connections-per-client = 2
                allowlist.hosts = ["origin.test"]
                destinations.connect-to { "origin.test:80" = "127.0.0.1:%d" }
                """.formatted(origin.port()));
        int[] ports = Processes.twoFreePorts();
        viaV2 = new InetSocketAddress("127.0.0.1", ports[0]);
        viaV1 = new InetSocketAddress("127.0.0.1", ports[1]);
        Path cfg = dir.resolve("haproxy.cfg");
        Files.writeString(cfg, """
                global
                  maxconn 200
                defaults
                  mode tcp
                  timeout connect 5s
                  timeout client 30s
                  timeout server 30s
                frontend v2
                  bind 127.0.0.1:%d
                  default_backend proxy_v2
                frontend v1
                  bind 127.0.0.1:%d
                  default_backend proxy_v1
                backend proxy_v2
                  server egress 127.0.0.1:%d send-proxy-v2
                backend proxy_v1
                  server egress 127.0.0.1:%d send-proxy
                """.formatted(ports[0], ports[1], proxy.port(), proxy.port()));
        haproxy = new ProcessBuilder(bin.toString(), "-f", cfg.toString(), "-db")
                .redirectErrorStream(true).redirectOutput(dir.resolve("haproxy.log").toFile()).start();
        await("haproxy listening").atMost(WAIT).until(() -> accepts(viaV2) && accepts(viaV1));
    }

    @AfterAll
    static void stop() throws Exception {
        if (haproxy != null) {
            haproxy.destroy();
            if (!haproxy.waitFor(10, TimeUnit.SECONDS)) {
                haproxy.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        }
        if (proxy != null) {
            proxy.close();
        }
        if (origin != null) {
            assertThat(origin.errors()).isEmpty();
            origin.close();
        }
    }

    private static InetAddress loopback(int last) throws IOException {
        InetAddress a = InetAddress.getByAddress(new byte[] {127, 0, 0, (byte) last});
        try (Socket s = new Socket()) {
            s.bind(new InetSocketAddress(a, 0));
        } catch (IOException e) {
            Assumptions.abort("cannot bind a client socket to " + a.getHostAddress()
                    + " (this test needs 127.0.0.0/8 on the loopback interface, as Linux has): " + e);
        }
        return a;
    }

    private static boolean accepts(InetSocketAddress a) {
        try (Socket s = new Socket()) {
            s.connect(a, 1000);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    private static String get(String path) {
        return "GET http://origin.test" + path + " HTTP/1.1\r\nHost: origin.test\r\n\r\n";
    }

    private static double rejected(TestProxy p, String reason) throws Exception {
        return p.scrapeValue("egress_proxy_rejected_total{reason=\"" + reason + "\"}");
    }

    /** Whether the origin received a request for {@code path}. */
    private static boolean originSaw(String path) {
        return origin.requests().stream().anyMatch(r -> r.target().equals(path));
    }

    /** A v2 header: signature, version and command, family and protocol, then the address block. */
    private static byte[] v2(int versionCommand, int familyProtocol, byte[] addresses) {
        ByteBuffer b = ByteBuffer.allocate(16 + addresses.length);
        b.put(V2_SIGNATURE).put((byte) versionCommand).put((byte) familyProtocol).putShort((short) addresses.length)
                .put(addresses);
        return b.array();
    }

    /** A v2 PROXY header for TCP over IPv4 from {@code source}. */
    private static byte[] v2Tcp4(InetAddress source, int sourcePort, int destinationPort) {
        ByteBuffer a = ByteBuffer.allocate(12);
        a.put(source.getAddress()).put(new byte[] {127, 0, 0, 1}).putShort((short) sourcePort)
                .putShort((short) destinationPort);
        return v2(0x21, 0x11, a.array());
    }

    private static byte[] concat(byte[] a, String b) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(a);
        out.writeBytes(b.getBytes(StandardCharsets.ISO_8859_1));
        return out.toByteArray();
    }

    /**
     * Sends {@code bytes} from {@code from} straight to {@code p} and checks that the connection is
     * closed without a byte of answer (a reset counts as closed: the proxy may close with the
     * request unread).
     */
    private static void refusedAndClosed(TestProxy p, InetAddress from, byte[] bytes) throws IOException {
        try (RawClient c = new RawClient(p.address(), from)) {
            byte[] answer;
            try {
                c.send(bytes);
                answer = c.readToEnd();
            } catch (IOException reset) {
                answer = new byte[0];
            }
            assertThat(new String(answer, StandardCharsets.ISO_8859_1)).as("answer to a refused connection").isEmpty();
        }
    }

    /** A request through HAProxy from {@code from}; returns the response head. */
    private static RawClient.Head through(InetSocketAddress haproxyFrontend, InetAddress from, String path)
            throws IOException {
        try (RawClient c = new RawClient(haproxyFrontend, from)) {
            c.send(get(path));
            return c.readHead();
        }
    }

    @Test
    void headerAddressIsTheClientForTheAccessLogAndClientsAllowOverV2AndV1() throws Exception {
        try (AccessLogCapture log = new AccessLogCapture()) {
            RawClient.Head v2 = through(viaV2, allowed, "/v2-allowed");
            assertThat(v2.status()).as(v2.statusLine()).isEqualTo(200);
            RawClient.Head v1 = through(viaV1, allowed, "/v1-allowed");
            assertThat(v1.status()).as(v1.statusLine()).isEqualTo(200);
            assertThat(originSaw("/v2-allowed")).isTrue();
            assertThat(originSaw("/v1-allowed")).isTrue();
            await().atMost(WAIT).untilAsserted(() -> assertThat(log.lines())
                    .anySatisfy(l -> assertThat(l).contains("/v2-allowed").contains("client=127.0.0.2:"))
                    .anySatisfy(l -> assertThat(l).contains("/v1-allowed").contains("client=127.0.0.2:")));
            // HAProxy's own address (127.0.0.1) is outside clients.allow: had the proxy gone by the
            // TCP peer, both would have been refused.

            double before = rejected(proxy, "client_not_allowed");
            RawClient.Head refused = through(viaV2, notAllowed, "/v2-not-allowed");
            assertThat(refused.statusLine()).isEqualTo("HTTP/1.1 403 your address may not use this egress proxy");
            assertThat(refused.header("x-egress-proxy-reason")).isEqualTo("client_not_allowed");
            RawClient.Head refusedV1 = through(viaV1, notAllowed, "/v1-not-allowed");
            assertThat(refusedV1.status()).isEqualTo(403);
            assertThat(rejected(proxy, "client_not_allowed")).isEqualTo(before + 2);
            assertThat(originSaw("/v2-not-allowed")).isFalse();
            assertThat(originSaw("/v1-not-allowed")).isFalse();
        }
    }

    @Test
    void deniedReportNamesTheHeaderAddress() throws Exception {
        try (RawClient c = new RawClient(viaV2, allowed)) {
            c.send("GET http://not-allowlisted.test/x HTTP/1.1\r\nHost: not-allowlisted.test\r\n\r\n");
            assertThat(c.readHead().status()).isEqualTo(403);
        }
        String denied = proxy.admin("/denied").body();
        assertThat(denied).contains("not-allowlisted.test").contains("127.0.0.2").doesNotContain("127.0.0.1\"");
    }

    @Test
    void perClientLimitCountsTheHeaderAddressNotTheBalancer() throws Exception {
        List<RawClient> held = new ArrayList<>();
        try {
            for (int i = 0; i < 2; i++) {
                RawClient c = new RawClient(viaV2, limited);
                held.add(c);
                c.send(get("/held-" + i));
                assertThat(c.readHead().status()).isEqualTo(200);
            }
            await().atMost(WAIT).untilAsserted(() -> assertThat(proxy.server.clientGuard().openFrom(limited)).isEqualTo(2));
            assertThat(proxy.server.clientGuard().openFrom(InetAddress.getByName("127.0.0.1")))
                    .as("connections counted against HAProxy's own address").isZero();
            RawClient.Head third = through(viaV2, limited, "/third");
            assertThat(third.statusLine()).isEqualTo("HTTP/1.1 429 too many connections from your address");
            assertThat(third.header("x-egress-proxy-reason")).isEqualTo("per_client_limit");
            assertThat(originSaw("/third")).isFalse();
            // Another client behind the same balancer is not affected.
            assertThat(through(viaV2, allowed, "/other-client").status()).isEqualTo(200);
        } finally {
            for (RawClient c : held) {
                c.close();
            }
        }
        await().atMost(WAIT).untilAsserted(() -> assertThat(proxy.server.clientGuard().openFrom(limited)).isZero());
    }

    @Test
    void hostileHeadersAreRefusedAndClosedWithNothingForwarded() throws Exception {
        InetAddress balancer = InetAddress.getByName("127.0.0.1");
        double malformed = rejected(proxy, "proxy_protocol_malformed");
        double untrustedBefore = rejected(proxy, "proxy_protocol_untrusted");

        // A v1 header whose destination is not an address.
        refusedAndClosed(proxy, balancer,
                ("PROXY TCP4 127.0.0.2 not-an-address 40000 3128\r\n" + get("/hostile-v1")).getBytes(StandardCharsets.US_ASCII));
        // A v2 header with an unknown command (0xF).
        refusedAndClosed(proxy, balancer, concat(v2(0x2F, 0x11, new byte[12]), get("/hostile-v2-command")));
        // A v2 TCP over IPv4 header whose address block is too short for two addresses and ports.
        refusedAndClosed(proxy, balancer, concat(v2(0x21, 0x11, new byte[] {127, 0, 0, 2}), get("/hostile-v2-short")));
        // A plain request, no header at all.
        refusedAndClosed(proxy, balancer, get("/hostile-plain").getBytes(StandardCharsets.US_ASCII));
        assertThat(rejected(proxy, "proxy_protocol_malformed")).isEqualTo(malformed + 4);

        // A well-formed header naming an allowed client, from a peer that may not send one.
        refusedAndClosed(proxy, untrusted, concat(v2Tcp4(allowed, 40000, proxy.port()), get("/hostile-untrusted")));
        assertThat(rejected(proxy, "proxy_protocol_untrusted")).isEqualTo(untrustedBefore + 1);

        origin.awaitQuiet(WAIT);
        assertThat(origin.requests()).noneSatisfy(r -> assertThat(r.target()).startsWith("/hostile"));
        // The next good client is served.
        assertThat(through(viaV2, allowed, "/after-hostile").status()).isEqualTo(200);
        assertThat(through(viaV1, allowed, "/after-hostile-v1").status()).isEqualTo(200);
    }

    @Test
    void localAndUnknownHeadersKeepTheBalancerAsTheClient() throws Exception {
        InetAddress balancer = InetAddress.getByName("127.0.0.1");
        // A v2 LOCAL (a health check) and a v1 UNKNOWN: the client is the TCP peer, 127.0.0.1,
        // which clients.allow does not admit here, so the answer is the 403 for that address.
        for (byte[] header : List.of(v2(0x20, 0x00, new byte[0]),
                "PROXY UNKNOWN\r\n".getBytes(StandardCharsets.US_ASCII))) {
            try (RawClient c = new RawClient(proxy.address(), balancer)) {
                c.send(concat(header, get("/local")));
                assertThat(c.readHead().statusLine()).isEqualTo("HTTP/1.1 403 your address may not use this egress proxy");
            }
        }
        assertThat(originSaw("/local")).isFalse();
    }

    @Test
    void proxyProtocolFromReloadsToTheNextConnectionAndTheModeNeedsARestart() throws Exception {
        String common = """
                clients.allow = ["127.0.0.2/32"]
                allowlist.hosts = ["origin.test"]
                destinations.connect-to { "origin.test:80" = "127.0.0.1:%d" }
                """.formatted(origin.port());
        try (TestProxy p = TestProxy.start("listen.proxy-protocol = \"v2\"\nlisten.proxy-protocol-from = [\"127.0.0.1/32\"]\n"
                + common)) {
            String running = "egress-proxy {\n listen { host = \"127.0.0.1\", port = 0 }\n admin { host = \"127.0.0.1\", port = 0 }\n"
                    + " transport = \"" + System.getProperty("egress.test.transport", "auto") + "\"\n" + common;
            List<String> restart = p.server.apply(ConfigLoader.fromString(running
                    + "listen.proxy-protocol = \"v2\"\nlisten.proxy-protocol-from = [\"127.0.0.4/32\"]\n}\n"));
            assertThat(restart).isEmpty();
            // The balancer moved to 127.0.0.4: it is trusted from the next connection, 127.0.0.1 no longer.
            try (RawClient c = new RawClient(p.address(), untrusted)) {
                c.send(concat(v2Tcp4(allowed, 40002, p.port()), get("/from-reloaded")));
                assertThat(c.readHead().status()).isEqualTo(200);
            }
            refusedAndClosed(p, InetAddress.getByName("127.0.0.1"),
                    concat(v2Tcp4(allowed, 40003, p.port()), get("/hostile-old-balancer")));
            assertThat(rejected(p, "proxy_protocol_untrusted")).isEqualTo(1);

            restart = p.server.apply(ConfigLoader.fromString(running + "}\n"));
            assertThat(restart).containsExactly("egress-proxy.listen.proxy-protocol");
            // Still reading headers until the restart, from the list it started with.
            try (RawClient c = new RawClient(p.address(), InetAddress.getByName("127.0.0.1"))) {
                c.send(concat(v2Tcp4(allowed, 40004, p.port()), get("/after-off-reload")));
                assertThat(c.readHead().status()).isEqualTo(200);
            }
        }
        assertThat(originSaw("/hostile-old-balancer")).isFalse();
    }

    @Test
    void v2OnlyListenerRefusesV1TimesOutADribbledHeaderAndReassemblesOneSentByteByByte() throws Exception {
        try (TestProxy v2Only = TestProxy.start("""
                listen.proxy-protocol = "v2"
                listen.proxy-protocol-from = ["127.0.0.1/32"]
                clients.allow = ["127.0.0.2/32"]
                timeouts.request-head = 1500ms
                allowlist.hosts = ["origin.test"]
                destinations.connect-to { "origin.test:80" = "127.0.0.1:%d" }
                """.formatted(origin.port()))) {
            InetAddress balancer = InetAddress.getByName("127.0.0.1");

            refusedAndClosed(v2Only, balancer,
                    ("PROXY TCP4 127.0.0.2 127.0.0.1 40000 3128\r\n" + get("/hostile-v1-on-v2")).getBytes(StandardCharsets.US_ASCII));
            assertThat(rejected(v2Only, "proxy_protocol_wrong_version")).isEqualTo(1);

            // Half a signature, then nothing: closed after timeouts.request-head, as proxy_protocol_timeout.
            long start = System.nanoTime();
            refusedAndClosed(v2Only, balancer, new byte[] {0x0D, 0x0A, 0x0D, 0x0A, 0x00});
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isGreaterThanOrEqualTo(Duration.ofMillis(1400));
            assertThat(rejected(v2Only, "proxy_protocol_timeout")).isEqualTo(1);
            assertThat(rejected(v2Only, "request_head_timeout")).as("no 408 for a missing header").isZero();

            // A valid header and request, one byte per write: TCP may cut a header anywhere.
            byte[] bytes = concat(v2Tcp4(allowed, 40001, v2Only.port()), get("/byte-by-byte"));
            try (RawClient c = new RawClient(v2Only.address(), balancer)) {
                c.socket.setTcpNoDelay(true);
                for (byte b : bytes) {
                    c.out().write(b);
                    c.out().flush();
                }
                assertThat(c.readHead().status()).isEqualTo(200);
            }
            assertThat(originSaw("/byte-by-byte")).isTrue();
            origin.awaitQuiet(WAIT);
            assertThat(originSaw("/hostile-v1-on-v2")).isFalse();
            assertThat(rejected(v2Only, "proxy_protocol_malformed")).isZero();
        }
    }
}
