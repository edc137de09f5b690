package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.check.CheckCommand;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestCerts;
import dev.egressproxy.testing.TestDnsServer;
import io.netty.channel.uring.IoUring;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.core.JsonParser;
import tools.jackson.core.JsonToken;
import tools.jackson.core.ObjectReadContext;
import tools.jackson.core.json.JsonFactory;

/**
 * {@code egress-proxy check hosts} against real servers on loopback: a TLS server with the test
 * certificate and a plain one reached through {@code connect-to} and through the test DNS server,
 * a black hole, a name the DNS server does not know, a name that resolves to a forbidden address,
 * wildcard entries with and without {@code check.samples}; in this JVM for the results and as the
 * jar for the exit statuses.
 */
class CheckHostsIT {

    @TempDir
    static Path dir;

    static TestCerts certs;
    static TlsServer tls;
    static TcpServer plain;
    static TcpServer blackhole;
    static TestDnsServer dns;

    @BeforeAll
    static void servers() throws Exception {
        certs = TestCerts.generate(dir);
        tls = new TlsServer(certs);
        plain = TcpServer.echo();
        blackhole = TcpServer.blackhole();
        dns = new TestDnsServer().add("plain.test", "127.0.0.1").add("metadata.test", "169.254.169.254");
    }

    @AfterAll
    static void stop() throws Exception {
        tls.close();
        plain.close();
        blackhole.close();
        dns.close();
    }

    static String transport() {
        String t = System.getProperty("egress.test.transport", "auto");
        Assumptions.assumeTrue(!t.equals("io_uring") || IoUring.isAvailable(), "io_uring is not available here");
        return t;
    }

    /** The whole world: one host of each kind. */
    static Path worldConfig() throws IOException {
        Path file = dir.resolve("world.conf");
        Files.writeString(file, """
                egress-proxy {
                  transport = "%s"
                  allowlist {
                    presets = []
                    hosts = ["cdn01.quay.io", "*.quay.io", "*.nosample.test", "plain.test:%d", "dead.test",
                             "nowhere.test", "metadata.test", "10.0.0.0/8"]
                  }
                  check.samples = ["cdn02.quay.io"]
                  destinations {
                    allow-private = ["127.0.0.1/32"]
                    connect-to {
                      "cdn01.quay.io:443" = "127.0.0.1:%d"
                      "cdn02.quay.io:443" = "127.0.0.1:%d"
                      "dead.test:443" = "127.0.0.1:%d"
                    }
                  }
                  dns { servers = ["%s"], query-timeout = 2s }
                }
                """.formatted(transport(), plain.port(), tls.port(), tls.port(), blackhole.port(), dns.address()));
        return file;
    }

    record Run(int status, String out, String err) {
    }

    static Run check(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = CheckCommand.run(null, List.of(args), Map.of(), new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    @SuppressWarnings("unchecked")
    void reportsEveryHostAsTheProxyWouldDialItInJson() throws Exception {
        long t0 = System.nanoTime();
        Run r = check("hosts", "--config", worldConfig().toString(), "--json", "--timeout", "1s",
                "--ca-file", certs.certPem().toString());
        long millis = (System.nanoTime() - t0) / 1_000_000;
        assertThat(r.status()).as(r.out() + r.err()).isEqualTo(CheckCommand.EXIT_FAILED);
        Map<String, Object> doc = (Map<String, Object>) parse(r.out());
        Map<String, Map<String, Object>> byDest = new LinkedHashMap<>();
        for (Object o : (List<Object>) doc.get("hosts")) {
            Map<String, Object> h = (Map<String, Object>) o;
            byDest.put(h.get("host") == null ? (String) h.get("entry") : h.get("host") + ":" + h.get("port"), h);
        }
        assertThat(byDest.keySet()).containsExactly("cdn01.quay.io:443", "cdn02.quay.io:443", "*.nosample.test",
                "plain.test:" + plain.port(), "dead.test:443", "nowhere.test:443", "metadata.test:443", "10.0.0.0/8");

        Map<String, Object> cdn01 = byDest.get("cdn01.quay.io:443");
        assertThat(cdn01).containsEntry("verdict", "PASS").containsEntry("via", "connect-to")
                .containsEntry("connected_to", "127.0.0.1:" + tls.port());
        Map<String, Object> cert = (Map<String, Object>) cdn01.get("tls");
        assertThat(cert).containsEntry("ok", true).containsEntry("subject", "CN=egress-proxy test");
        assertThat((String) cert.get("not_after")).matches("\\d{4}-\\d\\d-\\d\\dT.*Z");
        // The sample of the wildcard entry is dialled under that entry, with SNI of its own name.
        assertThat(byDest.get("cdn02.quay.io:443")).containsEntry("verdict", "PASS").containsEntry("entry", "*.quay.io");
        assertThat(tls.serverNames).contains("cdn01.quay.io", "cdn02.quay.io");
        assertThat(byDest.get("*.nosample.test")).containsEntry("verdict", "SKIP");
        assertThat((String) byDest.get("*.nosample.test").get("reason")).contains("check.samples");

        Map<String, Object> plainHost = byDest.get("plain.test:" + plain.port());
        assertThat(plainHost).containsEntry("verdict", "PASS").containsEntry("via", "dns")
                .containsEntry("addresses", List.of("127.0.0.1")).doesNotContainKey("tls");
        assertThat(((Number) plainHost.get("dns_ms")).longValue()).isGreaterThanOrEqualTo(0);

        assertThat(byDest.get("dead.test:443")).containsEntry("verdict", "FAIL")
                .containsEntry("reason", "connect timed out after 1s");
        assertThat(byDest.get("nowhere.test:443")).containsEntry("verdict", "FAIL").containsEntry("reason", "DNS: no such host");
        assertThat(byDest.get("metadata.test:443")).containsEntry("verdict", "FAIL")
                .containsEntry("addresses", List.of("169.254.169.254"));
        assertThat((String) byDest.get("metadata.test:443").get("reason")).startsWith("resolves to a forbidden address: 169.254.169.254");
        assertThat(byDest.get("10.0.0.0/8")).containsEntry("verdict", "SKIP");
        assertThat(doc).containsEntry("passed", 3).containsEntry("failed", 3).containsEntry("skipped", 2);
        // Concurrently: the black hole's second and the DNS answers overlap.
        assertThat(millis).isLessThan(6000);
        // The forbidden address was never dialled: nothing listens there, and a dial would be a timeout, not this reason.
    }

    @Test
    void aCertificateTheTrustStoreDoesNotKnowFailsUnlessInsecure() throws Exception {
        Path file = dir.resolve("tls.conf");
        Files.writeString(file, """
                egress-proxy {
                  transport = "%s"
                  allowlist { presets = [], hosts = ["cdn01.quay.io", "cdn03.quay.io:8443"] }
                  tunnels.tls-ports = [443, 8443]
                  destinations.connect-to {
                    "cdn01.quay.io:443" = "127.0.0.1:%d"
                    "cdn03.quay.io:8443" = "127.0.0.1:%d"
                  }
                }
                """.formatted(transport(), tls.port(), plain.port()));
        Run strict = check("hosts", "--config", file.toString());
        assertThat(strict.status()).as(strict.out() + strict.err()).isEqualTo(CheckCommand.EXIT_FAILED);
        assertThat(line(strict.out(), "cdn01.quay.io:443")).contains("FAIL")
                .contains("TLS: certificate not trusted (its issuer is not in the trust store)")
                .contains("failed CN=egress-proxy test until ");
        // A port of tunnels.tls-ports gets a handshake: a server that does not speak TLS fails it.
        assertThat(line(strict.out(), "cdn03.quay.io:8443")).contains("FAIL").contains("TLS:");

        Run insecure = check("hosts", "--config", file.toString(), "--insecure");
        assertThat(line(insecure.out(), "cdn01.quay.io:443")).contains("PASS").contains("ok CN=egress-proxy test")
                .contains("certificate not validated (--insecure)");
        assertThat(insecure.out()).contains("1 passed, 1 failed, 0 skipped");
    }

    @Test
    void theJarExitsZeroWhenAllPassOneOnAFailureTwoForABadConfigAnd64ForBadArguments() throws Exception {
        Path good = dir.resolve("good.conf");
        Files.writeString(good, """
                egress-proxy {
                  transport = "%s"
                  allowlist { presets = [], hosts = ["cdn01.quay.io", "*.quay.io"] }
                  destinations.connect-to { "cdn01.quay.io:443" = "127.0.0.1:%d" }
                }
                """.formatted(transport(), tls.port()));
        Processes.Result pass = jar("check", "hosts", "--config", good.toString(), "--ca-file", certs.certPem().toString());
        assertThat(pass.exitCode()).as(pass.output()).isZero();
        assertThat(pass.output()).contains("cdn01.quay.io:443").contains("PASS").contains("*.quay.io")
                .contains("1 passed, 0 failed, 1 skipped (a SKIP does not fail the check)");

        // --config before the verb, as the launcher puts it.
        Processes.Result fail = jar("--config", good.toString(), "check", "hosts");
        assertThat(fail.exitCode()).as(fail.output()).isEqualTo(1);

        Path bad = dir.resolve("bad.conf");
        Files.writeString(bad, "egress-proxy { allowlist.hosts = [\"*.quay.io\"], check.samples = [\"cdn01.example.com\"] }\n");
        Processes.Result config = jar("check", "hosts", "--config", bad.toString());
        assertThat(config.exitCode()).isEqualTo(2);
        assertThat(config.output()).contains("egress-proxy.check.samples[0] (" + bad
                + ":1): 'cdn01.example.com' is under no wildcard entry of the allowlist");

        assertThat(jar("check", "hosts", "--timeout", "soon").exitCode()).isEqualTo(64);
        assertThat(jar("check", "nothing").exitCode()).isEqualTo(64);
        assertThat(jar("check", "image").exitCode()).isEqualTo(64);
    }

    private static Processes.Result jar(String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of(JarIT.java(), "-jar", JarIT.jar()));
        command.addAll(List.of(args));
        return Processes.run(command, null, 60);
    }

    private static String line(String out, String start) {
        return out.lines().filter(l -> l.startsWith(start)).findFirst().orElse("(no line for " + start + " in:\n" + out + ")");
    }

    /** The document as maps, lists, strings, numbers, booleans and nulls, read with jackson-core. */
    static Object parse(String json) {
        try (JsonParser p = new JsonFactory().createParser(ObjectReadContext.empty(), json)) {
            p.nextToken();
            return value(p);
        }
    }

    private static Object value(JsonParser p) {
        switch (p.currentToken()) {
            case START_OBJECT -> {
                Map<String, Object> m = new LinkedHashMap<>();
                while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                    String name = p.currentName();
                    p.nextToken();
                    m.put(name, value(p));
                }
                return m;
            }
            case START_ARRAY -> {
                List<Object> l = new ArrayList<>();
                while (p.nextToken() != JsonToken.END_ARRAY) {
                    l.add(value(p));
                }
                return l;
            }
            case VALUE_STRING -> {
                return p.getString();
            }
            case VALUE_NUMBER_INT -> {
                return p.getIntValue();
            }
            case VALUE_TRUE, VALUE_FALSE -> {
                return p.getBooleanValue();
            }
            case VALUE_NULL -> {
                return null;
            }
            default -> throw new IllegalStateException("unexpected " + p.currentToken());
        }
    }

    /** A TLS server with the test certificate: completes the handshake, records the SNI name, closes. */
    static final class TlsServer implements AutoCloseable {
        final SSLServerSocket socket;
        final List<String> serverNames = new java.util.concurrent.CopyOnWriteArrayList<>();
        final List<Throwable> errors = new java.util.concurrent.CopyOnWriteArrayList<>();
        final AtomicInteger handshakes = new AtomicInteger();
        private final ExecutorService pool = Executors.newCachedThreadPool();

        TlsServer(TestCerts certs) throws Exception {
            socket = (SSLServerSocket) certs.serverContext().getServerSocketFactory()
                    .createServerSocket(0, 50, InetAddress.getLoopbackAddress());
            pool.execute(this::accept);
        }

        private void accept() {
            while (!socket.isClosed()) {
                Socket s;
                try {
                    s = socket.accept();
                } catch (IOException e) {
                    return;
                }
                pool.execute(() -> {
                    try (SSLSocket ssl = (SSLSocket) s) {
                        ssl.setSoTimeout(10_000);
                        ssl.startHandshake();
                        handshakes.incrementAndGet();
                        var names = ((javax.net.ssl.ExtendedSSLSession) ssl.getSession()).getRequestedServerNames();
                        names.forEach(n -> serverNames.add(((javax.net.ssl.SNIHostName) n).getAsciiName()));
                        ssl.getInputStream().read();
                    } catch (IOException e) {
                        // A client that rejects the certificate ends the handshake: expected in some tests.
                    }
                });
            }
        }

        int port() {
            return socket.getLocalPort();
        }

        @Override
        public void close() throws IOException {
            socket.close();
            pool.shutdownNow();
        }
    }
}
