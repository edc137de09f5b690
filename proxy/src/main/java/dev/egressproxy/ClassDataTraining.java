package dev.egressproxy;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.metrics.StandardBinders;
import dev.egressproxy.server.ProxyServer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * {@code --cds-training}: a short run of the proxy's own code paths, made so that the JVM can record
 * the classes they load into a class-data-sharing archive
 * ({@code java -XX:ArchiveClassesAtExit=FILE -jar egress-proxy.jar --cds-training}, which the
 * launcher {@code deploy/bin/egress-proxy} runs once). Starting with {@code -XX:SharedArchiveFile=FILE}
 * then maps those classes instead of loading, verifying and linking them one by one: the first
 * CONNECT is answered in about half the time (docs/performance.md).
 *
 * <p>The run binds loopback only, on ports the kernel picks: a proxy allowing {@code localhost} on
 * the port of a small origin started here, then, a few times over, a CONNECT tunnel with a request
 * inside it, a plain-HTTP request, a refused CONNECT, and the admin endpoints. It prints one line and
 * returns 0, or 1 if any step did not answer as expected.
 */
final class ClassDataTraining {

    private static final int ROUNDS = 3;
    private static final Duration TIMEOUT = Duration.ofSeconds(10);

    private ClassDataTraining() {
    }

    static int run(PrintStream out, PrintStream err) throws Exception {
        try (ServerSocket origin = new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress())) {
            Thread originThread = new Thread(() -> serveOrigin(origin), "cds-training-origin");
            originThread.setDaemon(true);
            originThread.start();
            int port = origin.getLocalPort();
            ProxyConfig cfg = ConfigLoader.fromString("""
                    egress-proxy {
                      listen { host = "127.0.0.1", port = 0 }
                      admin { host = "127.0.0.1", port = 0 }
                      allowlist.hosts = ["localhost:%d", "127.0.0.1/32:%d", "registry.example.com"]
                      destinations.allow-private = ["127.0.0.0/8"]
                      reload.watch = false
                    }
                    """.formatted(port, port));
            PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            StandardBinders binders = StandardBinders.bind(registry);
            ProxyServer server = new ProxyServer(cfg, registry, Main.version());
            try {
                server.start();
                InetSocketAddress proxy = server.proxyAddress();
                InetSocketAddress admin = server.adminAddress();
                for (int i = 0; i < ROUNDS; i++) {
                    expect(exchange(proxy, "CONNECT localhost:" + port + " HTTP/1.1\r\nHost: localhost:" + port
                            + "\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
                            "HTTP/1.1 200 Connection established", "origin ok");
                    expect(exchange(proxy, "GET http://127.0.0.1:" + port + "/v2/ HTTP/1.1\r\nHost: 127.0.0.1:" + port
                            + "\r\nConnection: close\r\n\r\n"), "HTTP/1.1 200", "origin ok");
                    expect(exchange(proxy, "CONNECT denied.example.org:443 HTTP/1.1\r\nHost: denied.example.org:443\r\n\r\n"),
                            "HTTP/1.1 403", "denied.example.org");
                    for (String path : new String[] {"/metrics", "/denied", "/readyz", "/healthz"}) {
                        expect(exchange(admin, "GET " + path + " HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"),
                                "HTTP/1.1 200", "");
                    }
                }
                server.drain(Duration.ofSeconds(1));
            } catch (IOException | IllegalStateException e) {
                err.println("egress-proxy --cds-training failed: " + e);
                return 1;
            } finally {
                server.close();
                binders.close();
            }
            out.println("egress-proxy --cds-training: " + ROUNDS + " rounds of tunnel, forward, refusal and admin requests done");
            return 0;
        }
    }

    /** Sends {@code request}, half-closes, and returns everything read until the proxy closes. */
    private static String exchange(InetSocketAddress to, String request) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(to, (int) TIMEOUT.toMillis());
            s.setSoTimeout((int) TIMEOUT.toMillis());
            s.getOutputStream().write(request.getBytes(StandardCharsets.ISO_8859_1));
            s.getOutputStream().flush();
            return new String(s.getInputStream().readAllBytes(), StandardCharsets.ISO_8859_1);
        }
    }

    private static void expect(String answer, String start, String contains) {
        if (!answer.startsWith(start) || !answer.contains(contains)) {
            throw new IllegalStateException("expected an answer starting with '" + start + "', got: "
                    + answer.lines().findFirst().orElse("(nothing)"));
        }
    }

    /** One request head per connection, answered with a short body, then close. */
    private static void serveOrigin(ServerSocket origin) {
        while (!origin.isClosed()) {
            try (Socket s = origin.accept()) {
                s.setSoTimeout((int) TIMEOUT.toMillis());
                readHead(s.getInputStream());
                OutputStream o = s.getOutputStream();
                o.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\norigin ok"
                        .getBytes(StandardCharsets.ISO_8859_1));
                o.flush();
            } catch (IOException e) {
                // The socket closed (end of training) or one exchange failed; the client reports it.
            }
        }
    }

    private static void readHead(InputStream in) throws IOException {
        int matched = 0;
        byte[] end = {'\r', '\n', '\r', '\n'};
        int b;
        while (matched < end.length && (b = in.read()) >= 0) {
            matched = b == end[matched] ? matched + 1 : (b == '\r' ? 1 : 0);
        }
    }
}
