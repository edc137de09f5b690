package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.server.ProxyServer;
import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.RepeatedTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The proxy process under the signals an init system sends: SIGTERM drains (readiness 503, no
 * new connections, open tunnels finish, exit 0 within the grace) and SIGHUP reloads the file. And
 * the drain itself, in process, under a storm of connections spread over several I/O loops.
 */
class DrainIT {

    /** Clients connecting without pause during the storm. */
    private static final int STORM_THREADS = 24;
    /** Exchanges in flight (the origin holds the answer) when the drain starts. */
    private static final int HELD = 8;

    @TempDir
    Path dir;

    private Process start(Path config) throws Exception {
        File out = dir.resolve("stdout.log").toFile();
        File err = dir.resolve("stderr.log").toFile();
        ProcessBuilder pb = new ProcessBuilder(JarIT.java(), "-jar", JarIT.jar(), "--config", config.toString())
                .redirectOutput(out).redirectError(err);
        pb.environment().keySet().removeIf(k -> k.startsWith("EGRESS_PROXY_"));
        return pb.start();
    }

    private static int status(HttpClient http, int admin, String path) {
        try {
            return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + admin + path)).build(),
                    HttpResponse.BodyHandlers.discarding()).statusCode();
        } catch (Exception e) {
            return -1;
        }
    }

    private Path writeConfig(int port, int admin, int echoPort, String hosts) throws Exception {
        Path config = dir.resolve("egress-proxy.conf");
        Files.writeString(config, """
                egress-proxy {
                  listen { host = "127.0.0.1", port = %d }
                  admin { host = "127.0.0.1", port = %d }
                  allowlist { presets = [], hosts = [%s] }
                  destinations.connect-to { "echo.test:7000" = "127.0.0.1:%d", "later.test:7000" = "127.0.0.1:%d" }
                  shutdown.grace = 20s
                  reload.watch = false
                }
                """.formatted(port, admin, hosts, echoPort, echoPort));
        return config;
    }

    @Test
    void sigtermDrainsOpenTunnelsAndExitsZero() throws Exception {
        int[] ports = Processes.twoFreePorts();
        int port = ports[0];
        int admin = ports[1];
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
        try (TcpServer echo = TcpServer.echo()) {
            Process proxy = start(writeConfig(port, admin, echo.port(), "\"echo.test:7000\""));
            try {
                await().atMost(Duration.ofSeconds(30)).until(() -> status(http, admin, "/readyz") == 200);
                try (RawClient tunnel = new RawClient(new InetSocketAddress("127.0.0.1", port))) {
                    tunnel.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
                    assertThat(tunnel.readHead().status()).isEqualTo(200);

                    proxy.destroy(); // SIGTERM
                    await().atMost(Duration.ofSeconds(10)).until(() -> status(http, admin, "/readyz") == 503);
                    assertThat(status(http, admin, "/healthz")).isEqualTo(200);
                    assertThatThrownBy(() -> new Socket("127.0.0.1", port).close()).isInstanceOf(ConnectException.class);

                    // The open tunnel still carries a whole transfer.
                    byte[] payload = new byte[512 * 1024];
                    new Random(3).nextBytes(payload);
                    CompletableFuture<byte[]> back = CompletableFuture.supplyAsync(() -> {
                        try {
                            return tunnel.in().readNBytes(payload.length);
                        } catch (Exception e) {
                            throw new IllegalStateException(e);
                        }
                    });
                    tunnel.send(payload);
                    assertThat(Arrays.equals(back.get(20, TimeUnit.SECONDS), payload)).isTrue();
                    assertThat(proxy.isAlive()).isTrue();
                }
                // With the last tunnel closed the drain ends well before the grace.
                assertThat(proxy.waitFor(15, TimeUnit.SECONDS)).isTrue();
                assertThat(proxy.exitValue()).isZero();
                assertThat(Files.readString(dir.resolve("stderr.log"))).contains("draining 1 connections").contains("egress-proxy stopped");
            } finally {
                proxy.destroyForcibly();
            }
        }
    }

    @Test
    void secondSigtermExitsAtOnceWithoutWaitingForOpenTunnels() throws Exception {
        int[] ports = Processes.twoFreePorts();
        int port = ports[0];
        int admin = ports[1];
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
        try (TcpServer echo = TcpServer.echo()) {
            Process proxy = start(writeConfig(port, admin, echo.port(), "\"echo.test:7000\""));
            try {
                await().atMost(Duration.ofSeconds(30)).until(() -> status(http, admin, "/readyz") == 200);
                try (RawClient tunnel = new RawClient(new InetSocketAddress("127.0.0.1", port))) {
                    tunnel.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
                    assertThat(tunnel.readHead().status()).isEqualTo(200);
                    proxy.destroy(); // first SIGTERM: drain, with a 20 s grace and a tunnel open
                    await().atMost(Duration.ofSeconds(10)).until(() -> status(http, admin, "/readyz") == 503);
                    assertThat(proxy.isAlive()).isTrue();
                    long start = System.nanoTime();
                    proxy.destroy(); // second SIGTERM: out at once
                    assertThat(proxy.waitFor(5, TimeUnit.SECONDS)).isTrue();
                    assertThat((System.nanoTime() - start) / 1_000_000).isLessThan(5_000);
                }
                assertThat(Files.readString(dir.resolve("stderr.log"))).contains("second stop signal");
            } finally {
                proxy.destroyForcibly();
            }
        }
    }

    @Test
    void sighupReloadsTheConfigFile() throws Exception {
        int[] ports = Processes.twoFreePorts();
        int port = ports[0];
        int admin = ports[1];
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
        try (TcpServer echo = TcpServer.echo()) {
            Process proxy = start(writeConfig(port, admin, echo.port(), "\"echo.test:7000\""));
            try {
                await().atMost(Duration.ofSeconds(30)).until(() -> status(http, admin, "/readyz") == 200);
                assertThat(connect(port, "later.test:7000")).isEqualTo(403);
                writeConfig(port, admin, echo.port(), "\"echo.test:7000\", \"later.test:7000\"");
                Processes.Result kill = Processes.run(List.of("kill", "-HUP", Long.toString(proxy.pid())), null, 10);
                assertThat(kill.exitCode()).isZero();
                await().atMost(Duration.ofSeconds(10)).until(() -> connect(port, "later.test:7000") == 200);
                // The new allowlist is in force before the reloader logs that it is.
                await().atMost(Duration.ofSeconds(10)).until(() -> Files.readString(dir.resolve("stderr.log"))
                        .contains("configuration reloaded (SIGHUP)"));
            } finally {
                proxy.destroy();
                assertThat(proxy.waitFor(20, TimeUnit.SECONDS)).isTrue();
                assertThat(proxy.exitValue()).isZero();
            }
        }
    }

    /**
     * Clients connect without pause, over eight I/O loops, while the drain starts. The listener's
     * loop hands each accepted connection to another loop, which registers it a moment later:
     * every connection accepted before the listener closed must still be drained (an idle one
     * closed at once, an exchange in flight answered, then closed), so that the drain ends as soon
     * as they are gone instead of waiting out its grace for one it never told.
     */
    @RepeatedTest(value = 3, name = "storm {currentRepetition} of {totalRepetitions}")
    void drainUnderAConnectStormEndsEveryAcceptedConnectionWellBeforeTheGrace() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        try (Origin origin = Origin.http()
                .respond("/fast", 200, "ok")
                .route("/held", ex -> {
                    try {
                        // The exchange stays in flight until the drain has begun.
                        release.await(20, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                    Origin.send(ex, 200, "held".getBytes(StandardCharsets.US_ASCII));
                });
                TestProxy proxy = TestProxy.start("""
                        io-threads = 8
                        timeouts.idle = 5m
                        clients.max-connections-per-client = 5000
                        allowlist { presets = [], hosts = ["origin.test"] }
                        destinations.connect-to { "origin.test:80" = "127.0.0.1:%d" }
                        """.formatted(origin.port()))) {
            ProxyServer server = proxy.server;
            List<RawClient> held = new ArrayList<>();
            List<Socket> parked = new CopyOnWriteArrayList<>();
            ExecutorService clients = Executors.newFixedThreadPool(STORM_THREADS + HELD);
            try {
                List<Future<String>> heldAnswers = new ArrayList<>();
                for (int i = 0; i < HELD; i++) {
                    RawClient c = new RawClient(proxy.address());
                    held.add(c);
                    c.send("GET http://origin.test/held?n=" + i + " HTTP/1.1\r\nHost: origin.test\r\n\r\n");
                    heldAnswers.add(clients.submit(() -> answerThenEnd(c)));
                }
                await().atMost(Duration.ofSeconds(10)).until(() -> origin.seen.size() == HELD);

                AtomicInteger fastAsked = new AtomicInteger();
                Set<String> fastAnswered = ConcurrentHashMap.newKeySet();
                AtomicInteger refused = new AtomicInteger();
                List<Future<?>> storm = new ArrayList<>();
                for (int t = 0; t < STORM_THREADS; t++) {
                    storm.add(clients.submit(() -> storm(proxy.address(), parked, fastAsked, fastAnswered, refused)));
                }
                await().atMost(Duration.ofSeconds(20)).until(() -> parked.size() >= 150);

                long start = System.nanoTime();
                CompletableFuture<Integer> drain = CompletableFuture.supplyAsync(() -> {
                    try {
                        return server.drain(Duration.ofSeconds(15));
                    } catch (InterruptedException e) {
                        throw new IllegalStateException(e);
                    }
                });
                await().atMost(Duration.ofSeconds(5)).until(() -> !server.isReady());
                release.countDown();

                int left;
                try {
                    left = drain.get(12, TimeUnit.SECONDS);
                } catch (TimeoutException e) {
                    throw new AssertionError("the drain still waits after 12 s (grace 15 s) with "
                            + server.clientChannels().size() + " client connections open: it missed some", e);
                }
                assertThat(left).as("connections left at the end of the drain").isZero();
                long drainMillis = (System.nanoTime() - start) / 1_000_000;
                assertThat(drainMillis).as("drain time, grace 15 s").isLessThan(5_000);
                for (Future<?> f : storm) {
                    f.get(10, TimeUnit.SECONDS);
                }
                assertThat(refused.get()).as("clients refused once the listener closed").isPositive();
                // Every exchange in flight was answered in full, then its connection closed.
                for (Future<String> answer : heldAnswers) {
                    assertThat(answer.get(5, TimeUnit.SECONDS)).isEqualTo("held");
                }
                // Every request the origin saw was answered to its client.
                assertThat(fastAnswered).containsExactlyInAnyOrderElementsOf(origin.seen.stream()
                        .map(Origin.Seen::path).filter(p -> p.startsWith("/fast")).toList());
                // Every connection accepted has been closed by the proxy: none waits for a grace.
                assertThat(parked.size()).isGreaterThanOrEqualTo(150);
                for (Socket s : parked) {
                    assertThat(endedByProxy(s)).as("connection from port %d ended by the proxy", s.getLocalPort()).isTrue();
                }
                assertThat(server.clientChannels().size()).isZero();
            } finally {
                release.countDown();
                clients.shutdownNow();
                for (RawClient c : held) {
                    c.close();
                }
                for (Socket s : parked) {
                    s.close();
                }
            }
        }
    }

    /**
     * One storm thread: connects again and again until the listener refuses; two connections in
     * three say nothing, the third asks for {@code /fast} and reads the answer; each is then left
     * open (parked) for the drain to close.
     */
    private static Void storm(InetSocketAddress proxy, List<Socket> parked, AtomicInteger fastAsked,
            Set<String> fastAnswered, AtomicInteger refused) throws IOException {
        for (int i = 0; parked.size() < 3000; i++) {
            Socket s = new Socket();
            try {
                s.connect(proxy, 5000);
            } catch (SocketException e) {
                // Refused once the listener is closed, or reset when it closed while this connect's
                // handshake waited in its queue: either way the drain turned the client away.
                s.close();
                refused.incrementAndGet();
                return null;
            }
            s.setSoTimeout(10_000);
            if (i % 3 == 2) {
                String path = "/fast?n=" + fastAsked.incrementAndGet();
                try {
                    s.getOutputStream().write(("GET http://origin.test" + path + " HTTP/1.1\r\nHost: origin.test\r\n\r\n")
                            .getBytes(StandardCharsets.US_ASCII));
                    String answer = readAnswer(s.getInputStream());
                    if (answer == null) {
                        s.close(); // closed by the drain before the proxy had read the request
                        continue;
                    }
                    assertThat(answer).isEqualTo("ok");
                    fastAnswered.add(path);
                } catch (SocketException e) {
                    s.close(); // reset: still in the listen queue when the listener closed
                    continue;
                }
            }
            parked.add(s);
        }
        return null;
    }

    /** The body of a Content-Length answer, or null if the connection ended before any answer. */
    private static String readAnswer(InputStream in) throws IOException {
        ByteArrayOutputStream head = new ByteArrayOutputStream();
        while (!head.toString(StandardCharsets.ISO_8859_1).endsWith("\r\n\r\n")) {
            int b = in.read();
            if (b < 0) {
                assertThat(head.size()).as("answer cut off in its head").isZero();
                return null;
            }
            head.write(b);
        }
        String text = head.toString(StandardCharsets.ISO_8859_1);
        assertThat(text).startsWith("HTTP/1.1 200");
        int length = -1;
        for (String line : text.split("\r\n")) {
            if (line.toLowerCase(java.util.Locale.ROOT).startsWith("content-length:")) {
                length = Integer.parseInt(line.substring(15).trim());
            }
        }
        assertThat(length).isNotNegative();
        byte[] body = in.readNBytes(length);
        assertThat(body).hasSize(length);
        return new String(body, StandardCharsets.US_ASCII);
    }

    /** Reads the answer to a request in flight, then expects the proxy to close. */
    private static String answerThenEnd(RawClient c) throws IOException {
        String answer = readAnswer(c.in());
        assertThat(c.in().read()).as("end after the answer").isEqualTo(-1);
        return answer;
    }

    /** True if the proxy has closed {@code s} (end of stream or reset), false if it is still open. */
    private static boolean endedByProxy(Socket s) throws IOException {
        s.setSoTimeout(3_000);
        try {
            return s.getInputStream().read() == -1;
        } catch (SocketTimeoutException e) {
            return false;
        } catch (SocketException e) {
            return true; // reset
        }
    }

    private static int connect(int port, String authority) throws Exception {
        try (RawClient raw = new RawClient(new InetSocketAddress("127.0.0.1", port))) {
            raw.send("CONNECT " + authority + " HTTP/1.1\r\n\r\n");
            return raw.readHead().status();
        }
    }
}
