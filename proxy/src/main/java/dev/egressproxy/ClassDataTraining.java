package dev.egressproxy;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.metrics.StandardBinders;
import dev.egressproxy.server.ProxyServer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;

/**
 * {@code --cds-training [SECONDS]}: a short run of the proxy's own code paths, made so that the JVM
 * can record the classes they load into a class-data-sharing archive
 * ({@code java -XX:ArchiveClassesAtExit=FILE -jar egress-proxy.jar --cds-training}, which the
 * launcher {@code deploy/bin/egress-proxy} runs once). Starting with {@code -XX:SharedArchiveFile=FILE}
 * then maps those classes instead of loading, verifying and linking them one by one: the first
 * CONNECT is answered in about half the time (docs/performance.md).
 *
 * <p>The run binds loopback only, on ports the kernel picks: a proxy allowing {@code localhost} on
 * the port of a small origin started here, then, a few times over, a CONNECT tunnel with a request
 * inside it, a plain-HTTP request, a refused CONNECT, and the admin endpoints. That is enough to load
 * the classes. With SECONDS, load follows for that long from a few client threads: new tunnels (one
 * in ten carrying a body large enough for the relay's bulk path), plain-HTTP requests on keep-alive
 * connections and refusals. That is what a JDK 25 AOT cache ({@code -XX:AOTCacheOutput=FILE}) needs
 * on top of the classes: method profiles of the hot paths (JEP 515), which are only taken from code
 * that ran often enough. It prints one line and returns 0, or 1 if any step did not answer as
 * expected.
 */
final class ClassDataTraining {

    private static final int ROUNDS = 3;
    private static final Duration TIMEOUT = Duration.ofSeconds(10);
    /** Client threads of the timed load: more than the two cores of a small host, to keep both busy. */
    private static final int LOAD_THREADS = 4;
    /** Requests per keep-alive connection in the timed load. */
    private static final int KEEP_ALIVE_REQUESTS = 20;
    /** Body of {@code /big}: past the relay's 64 KiB per direction, after which it may splice. */
    private static final int BIG_BODY = 256 * 1024;

    private ClassDataTraining() {
    }

    static int run(PrintStream out, PrintStream err) throws Exception {
        return run(Duration.ZERO, out, err);
    }

    /** The rounds, then {@code load} of tunnels and requests (none if zero). */
    static int run(Duration load, PrintStream out, PrintStream err) throws Exception {
        ExecutorService originThreads = Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "cds-training-origin");
            t.setDaemon(true);
            return t;
        });
        try (ServerSocket origin = new ServerSocket(0, 200, java.net.InetAddress.getLoopbackAddress())) {
            originThreads.execute(() -> serveOrigin(origin, originThreads));
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
            long[] loaded = null;
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
                        expect(exchange(admin, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
                                "HTTP/1.1 200", "");
                    }
                }
                if (!load.isZero()) {
                    loaded = load(proxy, port, load);
                }
                server.drain(Duration.ofSeconds(1));
            } catch (IOException | IllegalStateException | ExecutionException e) {
                err.println("egress-proxy --cds-training failed: " + (e instanceof ExecutionException ? e.getCause() : e));
                return 1;
            } finally {
                server.close();
                binders.close();
                originThreads.shutdownNow();
            }
            out.println("egress-proxy --cds-training: " + ROUNDS + " rounds of tunnel, forward, refusal and admin requests done"
                    + (loaded == null ? "" : "; then in " + load.toSeconds() + " s " + loaded[0] + " tunnels, " + loaded[1]
                    + " forwarded requests and " + loaded[2] + " refusals"));
            return 0;
        }
    }

    /**
     * {@link #LOAD_THREADS} clients, each in turns until {@code duration} is over: a tunnel (to
     * {@code /big} and followed by a refusal every tenth turn), and every fourth turn a keep-alive
     * connection of {@link #KEEP_ALIVE_REQUESTS} forwarded requests. Returns the tunnels, requests
     * and refusals made.
     */
    private static long[] load(InetSocketAddress proxy, int port, Duration duration) throws Exception {
        long deadline = System.nanoTime() + duration.toNanos();
        ExecutorService clients = Executors.newFixedThreadPool(LOAD_THREADS);
        try {
            List<Future<long[]>> results = new ArrayList<>();
            for (int t = 0; t < LOAD_THREADS; t++) {
                results.add(clients.submit(() -> {
                    long[] n = new long[3];
                    for (int turn = 0; System.nanoTime() - deadline < 0; turn++) {
                        boolean tenth = turn % 10 == 0;
                        String path = tenth ? "/big" : "/";
                        expect(exchange(proxy, "CONNECT localhost:" + port + " HTTP/1.1\r\nHost: localhost:" + port
                                + "\r\n\r\nGET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
                                "HTTP/1.1 200 Connection established", "HTTP/1.1 200 OK");
                        n[0]++;
                        if (turn % 4 == 0) {
                            n[1] += keepAlive(proxy, port);
                        }
                        if (tenth) {
                            expect(exchange(proxy, "CONNECT denied.example.org:443 HTTP/1.1\r\nHost: denied.example.org:443\r\n\r\n"),
                                    "HTTP/1.1 403", "denied.example.org");
                            n[2]++;
                        }
                    }
                    return n;
                }));
            }
            long[] total = new long[3];
            for (Future<long[]> f : results) {
                long[] n = f.get();
                for (int i = 0; i < total.length; i++) {
                    total[i] += n[i];
                }
            }
            return total;
        } finally {
            clients.shutdownNow();
        }
    }

    /** {@link #KEEP_ALIVE_REQUESTS} plain-HTTP requests on one connection; returns how many were answered. */
    private static int keepAlive(InetSocketAddress proxy, int port) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(proxy, (int) TIMEOUT.toMillis());
            s.setSoTimeout((int) TIMEOUT.toMillis());
            OutputStream o = s.getOutputStream();
            InputStream in = new BufferedInputStream(s.getInputStream());
            byte[] request = ("GET http://127.0.0.1:" + port + "/v2/ HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n\r\n")
                    .getBytes(StandardCharsets.ISO_8859_1);
            for (int i = 0; i < KEEP_ALIVE_REQUESTS; i++) {
                o.write(request);
                o.flush();
                String head = readHead(in);
                expect(head, "HTTP/1.1 200", "");
                in.readNBytes(contentLength(head));
            }
            return KEEP_ALIVE_REQUESTS;
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

    private static int contentLength(String head) {
        for (String line : head.split("\r\n")) {
            if (line.regionMatches(true, 0, "Content-Length:", 0, 15)) {
                return Integer.parseInt(line.substring(15).trim());
            }
        }
        throw new IllegalStateException("no Content-Length in: " + head.lines().findFirst().orElse("(nothing)"));
    }

    private static void expect(String answer, String start, String contains) {
        if (!answer.startsWith(start) || !answer.contains(contains)) {
            throw new IllegalStateException("expected an answer starting with '" + start + "', got: "
                    + answer.lines().findFirst().orElse("(nothing)"));
        }
    }

    /** Accepts connections and serves each on a thread of its own. */
    private static void serveOrigin(ServerSocket origin, ExecutorService threads) {
        while (!origin.isClosed()) {
            try {
                Socket s = origin.accept();
                threads.execute(() -> serveConnection(s));
            } catch (IOException | RejectedExecutionException e) {
                // The socket closed: the end of training.
            }
        }
    }

    /**
     * Answers request heads until the client closes or asks to: {@code /big} with {@link #BIG_BODY}
     * bytes, anything else with "origin ok".
     */
    private static void serveConnection(Socket socket) {
        try (Socket s = socket) {
            s.setSoTimeout((int) TIMEOUT.toMillis());
            InputStream in = new BufferedInputStream(s.getInputStream());
            OutputStream o = s.getOutputStream();
            String head;
            while (!(head = readHead(in)).isEmpty()) {
                boolean close = head.toLowerCase(Locale.ROOT).contains("\r\nconnection: close");
                byte[] body = head.startsWith("GET /big ") ? new byte[BIG_BODY] : "origin ok".getBytes(StandardCharsets.ISO_8859_1);
                byte[] top = ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + body.length
                        + (close ? "\r\nConnection: close" : "") + "\r\n\r\n").getBytes(StandardCharsets.ISO_8859_1);
                // One write: a head and a body written apart would wait out the peer's delayed ACK.
                byte[] answer = Arrays.copyOf(top, top.length + body.length);
                System.arraycopy(body, 0, answer, top.length, body.length);
                o.write(answer);
                o.flush();
                if (close) {
                    return;
                }
            }
        } catch (IOException e) {
            // One exchange failed or the training ended; the client reports it.
        }
    }

    /** Reads up to and including the blank line ending a head; returns it, or "" at end of stream. */
    private static String readHead(InputStream in) throws IOException {
        StringBuilder head = new StringBuilder();
        int b;
        while ((b = in.read()) >= 0) {
            head.append((char) b);
            int n = head.length();
            if (n >= 4 && head.charAt(n - 1) == '\n' && head.charAt(n - 2) == '\r' && head.charAt(n - 3) == '\n'
                    && head.charAt(n - 4) == '\r') {
                return head.toString();
            }
        }
        return "";
    }
}
