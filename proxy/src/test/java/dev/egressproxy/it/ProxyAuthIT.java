package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;


import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.server.ConfigReloader;
import dev.egressproxy.server.ProxyServer;
import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.GoClient;
import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RawResponse;
import dev.egressproxy.testing.Required;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestCerts;
import dev.egressproxy.testing.TestProxy;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.springframework.security.crypto.bcrypt.BCrypt;

/**
 * Proxy authentication ({@code auth.basic}) with real clients: curl ({@code -U} and credentials in
 * the proxy URL), a Go net/http client (which sends {@code Proxy-Authorization} from the proxy
 * URL's userinfo without waiting for a 407) and a Java {@code HttpClient} (which waits for the 407
 * and answers it through an Authenticator). The users file holds entries written by the real
 * tools: {@code htpasswd -B} (bcrypt), {@code openssl passwd -5} and {@code -6}. The origins assert
 * what they received, and that {@code Proxy-Authorization} never reached them.
 */
class ProxyAuthIT {

    @TempDir
    static Path dir;
    static TestCerts certs;
    static Origin registryTls;
    static Origin registryHttp;
    static TcpServer echo;
    static TestProxy proxy;
    static AccessLogCapture log;
    static Path users;

    static final String ALICE = "alice:in-wonderland";
    static final String BOB = "bob:sha256-crypt";
    static final String CAROL = "carol:sha512-crypt";
    static final String ERIN = "erin:bcrypt-2b";

    @BeforeAll
    static void start() throws Exception {
        certs = TestCerts.generate(dir);
        registryTls = Origin.https(certs.serverContext()).respond("/v2/", 200, "registry over tls\n");
        registryHttp = Origin.http().respond("/v2/", 200, "registry over http\n");
        echo = TcpServer.echo();
        users = dir.resolve("users");
        // bcrypt cost 9: slow enough that 200 guesses keep the checkers busy for seconds.
        Files.writeString(users, String.join("\n", "# egress-proxy users, made by ProxyAuthIT",
                bcryptLine("alice", "in-wonderland", 9),
                "bob:" + run("openssl", "passwd", "-5", "sha256-crypt"),
                "carol:" + run("openssl", "passwd", "-6", "sha512-crypt"),
                "erin:" + BCrypt.hashpw("bcrypt-2b", BCrypt.gensalt("$2b", 5)), ""));
        log = new AccessLogCapture();
        proxy = TestProxy.start("""
                allowlist.hosts = ["registry.redhat.io", "echo.test:7000"]
                destinations.connect-to {
                  "registry.redhat.io:443" = "127.0.0.1:%d"
                  "registry.redhat.io:80" = "127.0.0.1:%d"
                  "echo.test:7000" = "127.0.0.1:%d"
                }
                auth.basic {
                  users-file = "%s"
                  max-failures = 5
                  failure-window = 2s
                }
                """.formatted(registryTls.port(), registryHttp.port(), echo.port(), users));
    }

    @AfterAll
    static void stop() throws Exception {
        if (proxy != null) {
            proxy.close();
        }
        log.close();
        registryTls.close();
        registryHttp.close();
        echo.close();
        assertThat(echo.errors).isEmpty();
    }

    /**
     * A bcrypt line by {@code htpasswd -B} when it is installed, else by the library, as {@code $2y$}
     * either way (in CI, where it must be installed, a missing or failing htpasswd fails the test).
     */
    private static String bcryptLine(String user, String password, int cost) throws Exception {
        Processes.Result r;
        try {
            r = Processes.run(List.of("htpasswd", "-nbB", "-C", Integer.toString(cost), user, password), null, 60);
        } catch (IOException e) {
            r = null;
        }
        if (Required.programOrStandIn(r != null && r.exitCode() == 0, r == null
                ? "htpasswd is not installed (scripts/install-test-deps.sh installs apache2-utils),"
                        + " so the bcrypt line comes from the library"
                : "htpasswd -nbB failed (exit " + r.exitCode() + "): " + r.output().strip())) {
            return r.output().strip();
        }
        return user + ":" + BCrypt.hashpw(password, BCrypt.gensalt("$2y", cost));
    }

    private static String run(String... command) throws Exception {
        Processes.Result r = Processes.run(List.of(command), null, 60);
        assertThat(r.exitCode()).as(r.output()).isZero();
        return r.output().strip();
    }

    private static Processes.Result curl(String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of("curl", "-sS", "--max-time", "20", "--cacert",
                certs.certPem().toString()));
        command.addAll(List.of(args));
        return Processes.run(command, null, 30, Map.of("NO_PROXY", "", "no_proxy", ""));
    }

    private static String proxyUrl() {
        return "http://127.0.0.1:" + proxy.port();
    }

    private static String basic(String userPass) {
        return "Basic " + Base64.getEncoder().encodeToString(userPass.getBytes(StandardCharsets.UTF_8));
    }

    private static double failures(String reason) {
        return proxy.registry.get(ProxyMetrics.AUTH_FAILURES).tag("reason", reason).counter().count();
    }

    /** The last access-log line containing every one of {@code parts}, once it is written. */
    private static String logLine(String... parts) {
        await().atMost(Duration.ofSeconds(10)).until(() -> log.lines().stream()
                .anyMatch(l -> Arrays.stream(parts).allMatch(l::contains)));
        List<String> lines = log.lines().stream().filter(l -> Arrays.stream(parts).allMatch(l::contains)).toList();
        return lines.get(lines.size() - 1);
    }

    private static RawResponse request(RawClient c, String head, String method) throws IOException {
        c.send(head);
        return RawResponse.read(c.in(), method);
    }

    @Test
    void curlWithUserOptionTunnelsToTheTlsOriginWhichSeesNoProxyAuthorization() throws Exception {
        int before = registryTls.seen.size();
        Processes.Result r = curl("-x", proxyUrl(), "-U", ALICE, "https://registry.redhat.io/v2/");
        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(r.output()).isEqualTo("registry over tls\n");
        assertThat(registryTls.seen).hasSize(before + 1);
        Origin.Seen seen = registryTls.seen.get(before);
        assertThat(seen.path()).isEqualTo("/v2/");
        assertThat(seen.header("Proxy-Authorization")).isNull();
        assertThat(logLine(" user=alice ", " method=CONNECT ", " target=registry.redhat.io:443 "))
                .contains(" decision=allowed ", " status=200 ");
    }

    @Test
    void credentialsInTheProxyUrlForwardPlainHttpWithoutProxyAuthorization() throws Exception {
        int before = registryHttp.seen.size();
        for (String userPass : List.of(BOB, CAROL, ERIN)) {
            Processes.Result r = curl("--proxy", "http://" + userPass + "@127.0.0.1:" + proxy.port(),
                    "http://registry.redhat.io/v2/");
            assertThat(r.exitCode()).as(r.output()).isZero();
            assertThat(r.output()).isEqualTo("registry over http\n");
        }
        assertThat(registryHttp.seen).hasSize(before + 3)
                .allSatisfy(s -> assertThat(s.header("Proxy-Authorization")).isNull());
        assertThat(logLine(" user=bob ", " method=GET ", " url=http://registry.redhat.io/v2/ ")).contains(" status=200 ");
        assertThat(logLine(" user=carol ", " method=GET ")).contains(" status=200 ");
        assertThat(logLine(" user=erin ", " method=GET ")).contains(" status=200 ");
    }

    @Test
    void wrongPasswordUnknownUserAndNoCredentialsGetTheSame407WithTheChallenge() throws Exception {
        double bad = failures("bad_password");
        double unknown = failures("unknown_user");
        double missing = failures("missing");
        double malformed = failures("malformed");
        int tlsBefore = registryTls.seen.size();
        int httpBefore = registryHttp.seen.size();
        List<String> bodies = new ArrayList<>();
        int k = 0;
        for (String credentials : List.of("Proxy-Authorization: " + basic("alice:wrong") + "\r\n",
                "Proxy-Authorization: " + basic("mallory:in-wonderland") + "\r\n", "",
                "Proxy-Authorization: Bearer abc\r\n")) {
            // Each kind from its own address, so that together they stay under max-failures.
            InetAddress from = InetAddress.getByName("127.0.0." + (21 + k++));
            for (String head : List.of("CONNECT registry.redhat.io:443 HTTP/1.1\r\nHost: registry.redhat.io:443\r\n",
                    "GET http://registry.redhat.io/v2/ HTTP/1.1\r\nHost: registry.redhat.io\r\n")) {
                try (RawClient c = new RawClient(proxy.address(), from)) {
                    RawResponse res = request(c, head + credentials + "\r\n", head.substring(0, head.indexOf(' ')));
                    assertThat(res.status()).as(head + credentials).isEqualTo(407);
                    assertThat(res.header("Proxy-Authenticate")).isEqualTo("Basic realm=\"egress-proxy\", charset=\"UTF-8\"");
                    assertThat(res.header("X-Egress-Proxy-Reason")).isEqualTo("auth_required");
                    bodies.add(res.statusLine() + "\n" + res.bodyText());
                }
            }
        }
        // Nothing tells an unknown user from a wrong password.
        assertThat(bodies.get(0)).isEqualTo(bodies.get(2));
        assertThat(bodies.get(1)).isEqualTo(bodies.get(3));
        assertThat(failures("bad_password") - bad).isEqualTo(2);
        assertThat(failures("unknown_user") - unknown).isEqualTo(2);
        assertThat(failures("missing") - missing).isEqualTo(2);
        assertThat(failures("malformed") - malformed).isEqualTo(2);
        assertThat(registryTls.seen).hasSize(tlsBefore);
        assertThat(registryHttp.seen).hasSize(httpBefore);
        assertThat(logLine(" client=127.0.0.21:", " reason=auth_required ", " error=bad_password "))
                .contains(" user=- ", " status=407 ");
        // curl without credentials prints the proxy's answer.
        Processes.Result r = curl("-x", proxyUrl(), "--interface", "127.0.0.29", "-o", "/dev/null", "-w", "%{http_code}",
                "http://registry.redhat.io/v2/");
        assertThat(r.output()).isEqualTo("407");
    }

    @Test
    void a407KeepsAKeptAlivePlainHttpConnectionForTheRetryButNotACONNECT() throws Exception {
        InetAddress from = InetAddress.getByName("127.0.0.23");
        try (RawClient c = new RawClient(proxy.address(), from)) {
            String get = "GET http://registry.redhat.io/v2/ HTTP/1.1\r\nHost: registry.redhat.io\r\n";
            RawResponse challenge = request(c, get + "\r\n", "GET");
            assertThat(challenge.status()).isEqualTo(407);
            assertThat(challenge.header("Connection")).isNull();
            RawResponse ok = request(c, get + "Proxy-Authorization: " + basic(BOB) + "\r\n\r\n", "GET");
            assertThat(ok.status()).isEqualTo(200);
            assertThat(ok.bodyText()).isEqualTo("registry over http\n");
        }
        try (RawClient c = new RawClient(proxy.address(), from)) {
            RawResponse challenge = request(c, "CONNECT echo.test:7000 HTTP/1.1\r\nHost: echo.test:7000\r\n\r\n", "CONNECT");
            assertThat(challenge.status()).isEqualTo(407);
            assertThat(challenge.header("Connection")).isEqualTo("close");
            assertThat(c.in().read()).isEqualTo(-1);
        }
    }

    @Test
    void proxyAuthorizationOfACONNECTNeverReachesTheTunnelPeer() throws Exception {
        try (RawClient c = new RawClient(proxy.address())) {
            c.send("CONNECT echo.test:7000 HTTP/1.1\r\nHost: echo.test:7000\r\nProxy-Authorization: " + basic(ALICE)
                    + "\r\n\r\n");
            assertThat(c.readHead().status()).isEqualTo(200);
            byte[] payload = "first bytes of the tunnel\n".getBytes(StandardCharsets.US_ASCII);
            c.send(payload);
            // The echo server sends back exactly what reached it: the payload, nothing of the CONNECT head.
            assertThat(new String(c.readExactly(payload.length), StandardCharsets.US_ASCII))
                    .isEqualTo("first bytes of the tunnel\n");
            c.socket.setSoTimeout(300);
            try {
                int extra = c.in().read();
                assertThat(extra).as("bytes beyond the payload").isEqualTo(-1);
            } catch (SocketTimeoutException expected) {
                // Nothing more came back: good.
            }
        }
    }

    @Test
    void rateLimitAnswers429AfterTheFailuresThenRecoversAfterTheWindow() throws Exception {
        InetAddress guesser = InetAddress.getByName("127.0.0.31");
        double limited = failures("rate_limited");
        String get = "GET http://registry.redhat.io/v2/ HTTP/1.1\r\nHost: registry.redhat.io\r\nProxy-Authorization: ";
        try (RawClient c = new RawClient(proxy.address(), guesser)) {
            for (int i = 0; i < 5; i++) {
                assertThat(request(c, get + basic("bob:guess-" + i) + "\r\n\r\n", "GET").status()).isEqualTo(407);
            }
            RawResponse refused = request(c, get + basic(BOB) + "\r\n\r\n", "GET");
            assertThat(refused.status()).isEqualTo(429);
            assertThat(refused.header("X-Egress-Proxy-Reason")).isEqualTo("auth_rate_limited");
        }
        assertThat(failures("rate_limited") - limited).isEqualTo(1);
        // Another address is not affected.
        try (RawClient c = new RawClient(proxy.address(), InetAddress.getByName("127.0.0.32"))) {
            assertThat(request(c, get + basic(BOB) + "\r\n\r\n", "GET").status()).isEqualTo(200);
        }
        await().atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(200)).until(() -> {
            try (RawClient c = new RawClient(proxy.address(), guesser)) {
                return request(c, get + basic(BOB) + "\r\n\r\n", "GET").status() == 200;
            }
        });
    }

    @Test
    void goClientSendsTheProxyUrlsCredentialsWithoutWaitingForA407() throws Exception {
        // The Go client of SniCheckIT: http.ProxyURL takes the credentials from the URL's userinfo.
        Path client = GoClient.build(dir);
        double missing = failures("missing");
        for (String url : List.of("https://registry.redhat.io/v2/", "http://registry.redhat.io/v2/")) {
            Processes.Result r = Processes.run(List.of(client.toString(), "http://" + CAROL + "@127.0.0.1:" + proxy.port(),
                    certs.certPem().toString(), url), null, 60, Map.of("NO_PROXY", "", "no_proxy", ""));
            assertThat(r.exitCode()).as(r.output()).isZero();
            assertThat(r.output()).startsWith("200 registry over ");
        }
        assertThat(failures("missing")).isEqualTo(missing);
        assertThat(logLine(" user=carol ", " method=CONNECT ")).contains(" status=200 ");
    }

    @Test
    void javaHttpClientAnswersThe407ThroughItsAuthenticator() throws Exception {
        Path source = dir.resolve("AuthClient.java");
        try (InputStream in = ProxyAuthIT.class.getResourceAsStream("/auth-java-client/AuthClient.java")) {
            Files.copy(in, source, StandardCopyOption.REPLACE_EXISTING);
        }
        double missing = failures("missing");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Processes.Result r = Processes.run(List.of(java, "-Djdk.http.auth.tunneling.disabledSchemes=", source.toString(),
                "127.0.0.1", Integer.toString(proxy.port()), "erin", "bcrypt-2b", certs.certPem().toString(),
                "https://registry.redhat.io/v2/", "http://registry.redhat.io/v2/"), null, 120);
        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(r.output()).contains("200 https://registry.redhat.io/v2/ registry over tls",
                "200 http://registry.redhat.io/v2/ registry over http");
        // Java asks without credentials first, and answers the 407.
        assertThat(failures("missing") - missing).isGreaterThanOrEqualTo(1);
        assertThat(logLine(" user=erin ", " method=CONNECT ")).contains(" status=200 ");
    }

    @Test
    void aBurstOfBadAttemptsDoesNotStallAnOpenTunnel() throws Exception {
        try (RawClient tunnel = new RawClient(proxy.address())) {
            tunnel.send("CONNECT echo.test:7000 HTTP/1.1\r\nProxy-Authorization: " + basic(ALICE) + "\r\n\r\n");
            assertThat(tunnel.readHead().status()).isEqualTo(200);
            byte[] chunk = new byte[16 * 1024];
            Arrays.fill(chunk, (byte) 'x');
            ExecutorService pool = Executors.newFixedThreadPool(40);
            List<Future<Integer>> answers = new ArrayList<>();
            try {
                // 200 wrong passwords for alice (bcrypt), each from its own address so that the rate
                // limit does not cut them short: every one is checked.
                for (int i = 0; i < 200; i++) {
                    InetAddress from = InetAddress.getByName("127.0.1." + (i + 1));
                    answers.add(pool.submit(() -> {
                        try (RawClient c = new RawClient(proxy.address(), from)) {
                            return request(c, "CONNECT echo.test:7000 HTTP/1.1\r\nProxy-Authorization: "
                                    + basic("alice:guess") + "\r\n\r\n", "CONNECT").status();
                        }
                    }));
                }
                // Meanwhile the tunnel keeps moving bytes: every round trip within a second.
                long rounds = 0;
                while (!answers.stream().allMatch(Future::isDone) || rounds < 10) {
                    long start = System.nanoTime();
                    tunnel.send(chunk);
                    assertThat(tunnel.readExactly(chunk.length)).isEqualTo(chunk);
                    long millis = (System.nanoTime() - start) / 1_000_000;
                    assertThat(millis).as("round trip %d through the tunnel during the burst", rounds).isLessThan(1000);
                    rounds++;
                }
                for (Future<Integer> f : answers) {
                    assertThat(f.get(30, TimeUnit.SECONDS)).isIn(407, 503);
                }
                assertThat(rounds).isGreaterThanOrEqualTo(10);
            } finally {
                pool.shutdownNow();
            }
        }
    }

    @Test
    void aReloadReadsTheUsersFileAgainAndABrokenOneKeepsTheRunningUsers() throws Exception {
        // The users file in a directory of its own (as a mounted Secret would be): it is watched too.
        Path confDir = Files.createDirectories(dir.resolve("reload-conf"));
        Path secretDir = Files.createDirectories(dir.resolve("reload-secret"));
        Path file = confDir.resolve("egress-proxy.conf");
        Path usersFile = secretDir.resolve("users");
        String bobLine = "bob:" + run("openssl", "passwd", "-5", "sha256-crypt");
        Files.writeString(usersFile, bobLine + "\n");
        Files.writeString(file, """
                egress-proxy {
                  listen { host = "127.0.0.1", port = 0 }
                  admin { host = "127.0.0.1", port = 0 }
                  transport = "%s"
                  allowlist { presets = [], hosts = ["registry.redhat.io"] }
                  destinations.connect-to { "registry.redhat.io:80" = "127.0.0.1:%d" }
                  auth.basic.users-file = "%s"
                }
                """.formatted(System.getProperty("egress.test.transport", "auto"), registryHttp.port(), usersFile));
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        ProxyServer server = new ProxyServer(ConfigLoader.load(file, Map.of()), registry, "test").start();
        try (ConfigReloader reloader = new ConfigReloader(file, Map.of(), server, server.metrics()).watch()) {
            String get = "GET http://registry.redhat.io/v2/ HTTP/1.1\r\nHost: registry.redhat.io\r\nProxy-Authorization: ";
            Function<String, Integer> status = userPass -> {
                try (RawClient c = new RawClient(server.proxyAddress())) {
                    return request(c, get + basic(userPass) + "\r\n\r\n", "GET").status();
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            };
            assertThat(status.apply(BOB)).isEqualTo(200);
            assertThat(status.apply(CAROL)).isEqualTo(407);

            Files.writeString(usersFile, bobLine + "\ncarol:" + run("openssl", "passwd", "-6", "sha512-crypt") + "\n");
            await().atMost(Duration.ofSeconds(15)).until(() -> reloads(registry, "success") == 1.0);
            assertThat(status.apply(CAROL)).isEqualTo(200);

            Files.writeString(usersFile, bobLine + "\ndave:plaintext-password\n");
            await().atMost(Duration.ofSeconds(15)).until(() -> reloads(registry, "failure") == 1.0);
            assertThat(server.status().lastReload().toString()).contains(usersFile + ":2: the entry of user 'dave' is not a"
                    + " password hash").doesNotContain("plaintext-password");
            // The running users stay in force.
            assertThat(status.apply(CAROL)).isEqualTo(200);
            assertThat(status.apply(BOB)).isEqualTo(200);
        } finally {
            server.close();
            registry.close();
        }
    }

    private static double reloads(MeterRegistry registry, String result) {
        return registry.get("egress.proxy.config.reloads").tag("result", result).counter().count();
    }

    @Test
    void theAdminPortNeedsNoProxyCredentials() throws Exception {
        assertThat(proxy.admin("/metrics").statusCode()).isEqualTo(200);
        assertThat(proxy.admin("/metrics").body()).contains("egress_proxy_auth_failures_total{reason=\"bad_password\"}");
    }
}
