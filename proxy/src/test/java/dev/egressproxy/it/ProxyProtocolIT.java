package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.Json;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RawResponse;
import dev.egressproxy.testing.RecordingOrigin;
import dev.egressproxy.testing.Required;
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
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.springframework.security.crypto.bcrypt.BCrypt;

/**
 * {@code listen.proxy-protocol} behind a real HAProxy (Debian's {@code haproxy}, mode tcp, one
 * frontend with {@code send-proxy-v2} and one with {@code send-proxy}), started and stopped here
 * on free loopback ports. Clients reach HAProxy from 127.0.0.2, .3, .6, .7, .8 and .9 while HAProxy
 * itself connects from 127.0.0.1, so the address in the header differs from the TCP peer: the
 * access log, {@code clients.allow}, the per-client limit, {@code /denied}, the choice among
 * {@code policies} by {@code clients} and the proxy-authentication failure limit must all go by the
 * header (those last two on proxies and HAProxies of their own). Hostile headers are written by
 * hand straight to the proxy; each must be refused and closed with nothing reaching the origin, and
 * the proxy must go on serving.
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
    static Haproxy lb;
    static InetSocketAddress viaV2;
    static InetSocketAddress viaV1;

    @BeforeAll
    static void start() throws Exception {
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
        lb = Haproxy.start(dir.resolve("haproxy"), proxy.port());
        viaV2 = lb.v2;
        viaV1 = lb.v1;
    }

    @AfterAll
    static void stop() throws Exception {
        if (lb != null) {
            lb.close();
        }
        if (proxy != null) {
            proxy.close();
        }
        if (origin != null) {
            assertThat(origin.errors()).isEmpty();
            origin.close();
        }
    }

    /**
     * A HAProxy in mode tcp in front of the proxy on {@code proxyPort}: a frontend that sends a
     * PROXY v2 header ({@code send-proxy-v2}) and one that sends v1 ({@code send-proxy}). HAProxy
     * dials the proxy from 127.0.0.1, whatever address its client came from.
     */
    private record Haproxy(Process process, InetSocketAddress v2, InetSocketAddress v1) implements AutoCloseable {

        static Haproxy start(Path dir, int proxyPort) throws Exception {
            Path bin = Path.of("/usr/sbin/haproxy");
            Required.program(Files.isExecutable(bin),
                    "haproxy is not installed (Debian package haproxy; scripts/install-test-deps.sh installs it)");
            Files.createDirectories(dir);
            int[] ports = Processes.twoFreePorts();
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
                    """.formatted(ports[0], ports[1], proxyPort, proxyPort));
            Process process = new ProcessBuilder(bin.toString(), "-f", cfg.toString(), "-db")
                    .redirectErrorStream(true).redirectOutput(dir.resolve("haproxy.log").toFile()).start();
            Haproxy lb = new Haproxy(process, new InetSocketAddress("127.0.0.1", ports[0]),
                    new InetSocketAddress("127.0.0.1", ports[1]));
            try {
                await("haproxy listening").atMost(WAIT).until(() -> accepts(lb.v2) && accepts(lb.v1));
            } catch (RuntimeException | Error e) {
                lb.close();
                throw e;
            }
            return lb;
        }

        @Override
        public void close() throws InterruptedException {
            process.destroy();
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
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

    /** One request with {@code head} (CRLF CRLF included) after {@code prefix}, sent from {@code from} to {@code to}. */
    private static RawResponse exchange(InetSocketAddress to, InetAddress from, byte[] prefix, String head)
            throws IOException {
        try (RawClient c = new RawClient(to, from)) {
            c.send(concat(prefix, head));
            return RawResponse.read(c.in(), head.substring(0, head.indexOf(' ')));
        }
    }

    private static String get(String host, String path, String credentials) {
        return "GET http://" + host + path + " HTTP/1.1\r\nHost: " + host + "\r\n"
                + (credentials == null ? "" : "Proxy-Authorization: Basic "
                        + Base64.getEncoder().encodeToString(credentials.getBytes(StandardCharsets.UTF_8)) + "\r\n")
                + "Connection: close\r\n\r\n";
    }

    /** The last access-log line that contains every one of {@code parts}, once one is written. */
    private static String logLine(AccessLogCapture log, String... parts) {
        await("access-log line with " + List.of(parts)).atMost(WAIT)
                .until(() -> log.lines().stream().anyMatch(l -> Arrays.stream(parts).allMatch(l::contains)));
        List<String> lines = log.lines().stream().filter(l -> Arrays.stream(parts).allMatch(l::contains)).toList();
        return lines.get(lines.size() - 1);
    }

    /** The {@code /denied} entry for {@code destination}. */
    @SuppressWarnings("unchecked")
    private static Map<String, Object> deniedEntry(TestProxy p, String destination) throws Exception {
        List<Object> entries = (List<Object>) Json.at(Json.object(p.admin("/denied").body()), "entries");
        return entries.stream().map(e -> (Map<String, Object>) e)
                .filter(e -> destination.equals(e.get("destination"))).findFirst()
                .orElseThrow(() -> new AssertionError("no /denied entry for " + destination + " in " + entries));
    }

    @Test
    void policiesClientsSelectsByTheHeaderAddressNotTheBalancer() throws Exception {
        InetAddress balancer = InetAddress.getByName("127.0.0.1");
        InetAddress ciHost = loopback(7);
        StringBuilder connectTo = new StringBuilder();
        for (String host : List.of("origin.test", "ci-only.test", "balancer-only.test")) {
            connectTo.append("  \"").append(host).append(":80\" = \"127.0.0.1:").append(origin.port()).append("\"\n");
        }
        // clients.allow is the default (loopback and private ranges): every address here may use the
        // proxy, and only the policies tell them apart.
        try (TestProxy p = TestProxy.start("""
                listen.proxy-protocol = "any"
                listen.proxy-protocol-from = ["127.0.0.1/32"]
                allowlist.hosts = ["origin.test"]
                policies = [
                  # HAProxy's own address, the TCP peer of every connection in this test: selected
                  # only if the proxy took the peer for the client.
                  { name = balancer, clients = ["127.0.0.1/32"], allowlist.hosts = ["balancer-only.test"] }
                  { name = ci, clients = ["10.20.0.0/16", "127.0.0.7/32"], allowlist.hosts = ["ci-only.test"] }
                ]
                destinations.connect-to {
                %s}
                """.formatted(connectTo));
                Haproxy edge = Haproxy.start(dir.resolve("haproxy-policies"), p.port());
                AccessLogCapture log = new AccessLogCapture()) {
            InetAddress ci = InetAddress.getByName("10.20.1.5");
            InetAddress outsider = InetAddress.getByName("10.30.1.5");
            byte[] fromCi = v2Tcp4(ci, 40100, p.port());
            byte[] fromOutsider = v2Tcp4(outsider, 40101, p.port());

            // A hand-written v2 header from the balancer claiming 10.20.1.5: policy ci decides.
            assertThat(exchange(p.address(), balancer, fromCi, get("ci-only.test", "/pp-ci-allowed", null)).status())
                    .isEqualTo(200);
            RawResponse refused = exchange(p.address(), balancer, fromCi, get("origin.test", "/pp-ci-refused", null));
            assertThat(refused.statusLine()).isEqualTo("HTTP/1.1 403 origin.test:80 is not in the egress allowlist");
            assertThat(refused.header("X-Egress-Proxy-Reason")).isEqualTo("host_not_allowlisted");
            assertThat(refused.bodyText()).contains("reason host_not_allowlisted, policy ci)")
                    .contains("to the allowlist of policy \"ci\"");
            assertThat(exchange(p.address(), balancer, fromCi, get("balancer-only.test", "/pp-ci-balancer", null))
                    .bodyText()).contains("policy ci)");

            // Claiming 10.30.1.5, which no policy names: the top-level allowlist decides.
            assertThat(exchange(p.address(), balancer, fromOutsider, get("origin.test", "/pp-default-allowed", null))
                    .status()).isEqualTo(200);
            RawResponse outsiderRefused = exchange(p.address(), balancer, fromOutsider,
                    get("ci-only.test", "/pp-default-refused", null));
            assertThat(outsiderRefused.status()).isEqualTo(403);
            assertThat(outsiderRefused.bodyText()).doesNotContain("policy")
                    .contains("to egress-proxy.allowlist.hosts.");

            // Through HAProxy (v2 and v1), whose connections all come from 127.0.0.1: the client it
            // saw decides, 127.0.0.7 under ci and 127.0.0.2 under the top-level allowlist.
            for (InetSocketAddress frontend : List.of(edge.v2, edge.v1)) {
                String v = frontend == edge.v2 ? "v2" : "v1";
                assertThat(exchange(frontend, ciHost, new byte[0], get("ci-only.test", "/lb-ci-allowed-" + v, null))
                        .status()).isEqualTo(200);
                RawResponse lbRefused = exchange(frontend, ciHost, new byte[0],
                        get("balancer-only.test", "/lb-ci-refused-" + v, null));
                assertThat(lbRefused.status()).isEqualTo(403);
                assertThat(lbRefused.bodyText()).contains("policy ci)");
                assertThat(exchange(frontend, allowed, new byte[0], get("origin.test", "/lb-default-allowed-" + v, null))
                        .status()).isEqualTo(200);
                assertThat(exchange(frontend, allowed, new byte[0], get("ci-only.test", "/lb-default-refused-" + v, null))
                        .bodyText()).doesNotContain("policy");
            }

            // What the origin received: exactly the allowed requests.
            origin.awaitQuiet(WAIT);
            assertThat(origin.requests()).extracting(RecordingOrigin.Request::target)
                    .contains("/pp-ci-allowed", "/pp-default-allowed", "/lb-ci-allowed-v2", "/lb-ci-allowed-v1",
                            "/lb-default-allowed-v2", "/lb-default-allowed-v1")
                    .doesNotContain("/pp-ci-refused", "/pp-ci-balancer", "/pp-default-refused", "/lb-ci-refused-v2",
                            "/lb-ci-refused-v1", "/lb-default-refused-v2", "/lb-default-refused-v1");

            // The access log names the header's client and the policy that decided.
            assertThat(logLine(log, "url=http://ci-only.test/pp-ci-allowed ")).contains(" client=10.20.1.5:40100 ",
                    " decision=allowed ", " policy=ci status=200 ");
            assertThat(logLine(log, "url=http://origin.test/pp-ci-refused ")).contains(" client=10.20.1.5:40100 ",
                    " decision=denied reason=host_not_allowlisted ", " policy=ci status=403 ");
            assertThat(logLine(log, "url=http://origin.test/pp-default-allowed ")).contains(" client=10.30.1.5:40101 ",
                    " status=200").doesNotContain("policy=");
            for (String v : List.of("v2", "v1")) {
                assertThat(logLine(log, "url=http://ci-only.test/lb-ci-allowed-" + v + " "))
                        .contains(" client=127.0.0.7:", " policy=ci status=200 ");
                assertThat(logLine(log, "url=http://balancer-only.test/lb-ci-refused-" + v + " "))
                        .contains(" client=127.0.0.7:", " policy=ci status=403 ");
                assertThat(logLine(log, "url=http://origin.test/lb-default-allowed-" + v + " "))
                        .contains(" client=127.0.0.2:").doesNotContain("policy=");
            }
            assertThat(log.lines()).noneSatisfy(l -> assertThat(l).contains("policy=balancer"))
                    .noneSatisfy(l -> assertThat(l).contains(" client=127.0.0.1:"));

            // /denied and denied_total name policy ci, and the header's address as the last client.
            Map<String, Object> originDenied = deniedEntry(p, "origin.test:80");
            assertThat(originDenied).containsEntry("policy", "ci").containsEntry("last_client", "10.20.1.5:40100");
            Map<String, Object> balancerDenied = deniedEntry(p, "balancer-only.test:80");
            assertThat(balancerDenied).containsEntry("policy", "ci");
            assertThat((String) balancerDenied.get("last_client")).startsWith("127.0.0.7:");
            assertThat(deniedEntry(p, "ci-only.test:80")).containsEntry("policy", "default");
            assertThat(p.scrapeValue("egress_proxy_denied_total{host=\"balancer-only.test\",policy=\"ci\","
                    + "reason=\"host_not_allowlisted\"}")).isEqualTo(3.0);
            assertThat(p.admin("/denied").body()).doesNotContain("\"balancer\"");
        }
    }

    @Test
    void authFailureRateLimitCountsTheHeaderAddressNotTheBalancer() throws Exception {
        InetAddress balancer = InetAddress.getByName("127.0.0.1");
        InetAddress guesser = loopback(8);
        InetAddress colleague = loopback(9);
        Path users = Files.createDirectories(dir.resolve("auth")).resolve("users");
        Files.writeString(users, "ci:" + BCrypt.hashpw("ci-secret", BCrypt.gensalt("$2y", 4)) + "\n");
        try (TestProxy p = TestProxy.start("""
                listen.proxy-protocol = "any"
                listen.proxy-protocol-from = ["127.0.0.1/32"]
                auth.basic { users-file = "%s", max-failures = 3, failure-window = 10m }
                allowlist.hosts = ["origin.test"]
                destinations.connect-to { "origin.test:80" = "127.0.0.1:%d" }
                """.formatted(users, origin.port()));
                Haproxy edge = Haproxy.start(dir.resolve("haproxy-auth"), p.port());
                AccessLogCapture log = new AccessLogCapture()) {
            // Three wrong passwords from 127.0.0.8, through HAProxy (whose connections all come
            // from 127.0.0.1): its address is now limited, even with the right password.
            for (int i = 0; i < 3; i++) {
                RawResponse guess = exchange(edge.v2, guesser, new byte[0],
                        get("origin.test", "/guess-" + i, "ci:guess-" + i));
                assertThat(guess.status()).isEqualTo(407);
            }
            RawResponse limited = exchange(edge.v2, guesser, new byte[0],
                    get("origin.test", "/guesser-right", "ci:ci-secret"));
            assertThat(limited.status()).isEqualTo(429);
            assertThat(limited.header("X-Egress-Proxy-Reason")).isEqualTo("auth_rate_limited");
            // Over v1 too: the limit belongs to the client address, whatever the header's version.
            assertThat(exchange(edge.v1, guesser, new byte[0], get("origin.test", "/guesser-right-v1", "ci:ci-secret"))
                    .status()).isEqualTo(429);

            // 127.0.0.9 behind the same balancer, and 10.20.1.6 in a hand-written header from the
            // balancer's own address: neither is limited. A wrong password is a 407, not a 429.
            assertThat(exchange(edge.v2, colleague, new byte[0], get("origin.test", "/colleague-wrong", "ci:typo"))
                    .status()).isEqualTo(407);
            assertThat(exchange(edge.v2, colleague, new byte[0], get("origin.test", "/colleague-right", "ci:ci-secret"))
                    .status()).isEqualTo(200);
            byte[] other = v2Tcp4(InetAddress.getByName("10.20.1.6"), 40200, p.port());
            assertThat(exchange(p.address(), balancer, other, get("origin.test", "/header-right", "ci:ci-secret"))
                    .status()).isEqualTo(200);
            // A hand-written header naming the guesser gets its 429, although the right password
            // was just verified (and cached) for the others.
            byte[] asGuesser = v2Tcp4(guesser, 40201, p.port());
            RawResponse claimed = exchange(p.address(), balancer, asGuesser,
                    get("origin.test", "/header-guesser", "ci:ci-secret"));
            assertThat(claimed.status()).isEqualTo(429);

            assertThat(p.registry.get(ProxyMetrics.AUTH_FAILURES).tag("reason", "rate_limited").counter().count())
                    .isEqualTo(3.0);
            assertThat(p.registry.get(ProxyMetrics.AUTH_FAILURES).tag("reason", "bad_password").counter().count())
                    .isEqualTo(4.0);
            origin.awaitQuiet(WAIT);
            assertThat(origin.requests()).extracting(RecordingOrigin.Request::target)
                    .contains("/colleague-right", "/header-right")
                    .doesNotContain("/guess-0", "/guess-1", "/guess-2", "/guesser-right", "/guesser-right-v1",
                            "/colleague-wrong", "/header-guesser");
            assertThat(origin.requests()).filteredOn(r -> r.target().equals("/colleague-right")).singleElement()
                    .satisfies(r -> assertThat(r.has("Proxy-Authorization")).isFalse());
            assertThat(logLine(log, "url=http://origin.test/guesser-right ")).contains(" client=127.0.0.8:", " user=- ",
                    " reason=auth_rate_limited ", " status=429 ");
            assertThat(logLine(log, "url=http://origin.test/colleague-right ")).contains(" client=127.0.0.9:",
                    " user=ci ", " status=200 ");
            assertThat(logLine(log, "url=http://origin.test/header-guesser ")).contains(" client=127.0.0.8:40201 ",
                    " status=429 ");
            assertThat(log.lines()).noneSatisfy(l -> assertThat(l).contains(" client=127.0.0.1:"));
        }
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
