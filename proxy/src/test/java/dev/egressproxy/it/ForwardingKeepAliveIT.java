package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RawResponse;
import dev.egressproxy.testing.RecordingOrigin;
import dev.egressproxy.testing.RecordingOrigin.Connection;
import dev.egressproxy.testing.RecordingOrigin.Reply;
import dev.egressproxy.testing.RecordingOrigin.Request;
import dev.egressproxy.testing.TestProxy;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Kept-alive plain-HTTP connections, on both sides of the proxy. Upstream: the race where an
 * origin closes an idle connection just as the proxy reuses it (an idempotent GET without a body
 * is retried once on a fresh connection, anything else gets 502). Downstream: the request-head
 * timeout starts again after every exchange, so a client that dribbles its second or third head a
 * byte at a time gets 408 about {@code timeouts.request-head} after its previous answer, while a
 * client that sends its next head in time is served.
 */
class ForwardingKeepAliveIT {

    private static final Duration QUIET = Duration.ofSeconds(10);
    private static final String REASON = "X-Egress-Proxy-Reason";
    /** A head that takes about 16 s to dribble at one byte per 200 ms: it never completes in these tests. */
    private static final byte[] SLOW_HEAD = ("GET http://origin.test/slow HTTP/1.1\r\nHost: origin.test\r\nX-Slow: "
            + "a".repeat(20) + "\r\n\r\n").getBytes(StandardCharsets.ISO_8859_1);

    static RecordingOrigin origin;
    static TestProxy proxy;
    static ScheduledExecutorService pacer;

    @BeforeAll
    static void start() throws Exception {
        origin = new RecordingOrigin();
        pacer = Executors.newSingleThreadScheduledExecutor();
        proxy = TestProxy.start("""
                allowlist.hosts = ["origin.test"]
                destinations.connect-to { "origin.test:80" = "127.0.0.1:%d" }
                timeouts.request-head = 1s
                """.formatted(origin.port()));
    }

    @AfterAll
    static void stop() throws Exception {
        if (proxy != null) {
            proxy.close();
        }
        origin.close();
        pacer.shutdownNow();
        assertThat(pacer.awaitTermination(5, TimeUnit.SECONDS)).isTrue();
    }

    @AfterEach
    void originSawOnlyWellFormedRequests() throws Exception {
        try {
            origin.awaitQuiet(QUIET);
            assertThat(origin.errors()).as("requests the origin could not parse").isEmpty();
        } finally {
            origin.reset();
        }
    }

    private static String get(String path) {
        return "GET http://origin.test" + path + " HTTP/1.1\r\nHost: origin.test\r\n\r\n";
    }

    private static List<String> lines(Connection c) {
        return c.requests().stream().map(Request::requestLine).toList();
    }

    // ---- 11. Keep-alive race upstream ---------------------------------------------------------

    @Test
    void getOnAConnectionTheOriginClosesIsRetriedOnceOnAFreshOne() throws Exception {
        origin.responder(RecordingOrigin.hangUpOnRequest(2, RecordingOrigin.counting()));
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(get("/first"));
            RawResponse first = RawResponse.read(raw.in(), "GET");
            assertThat(first.status()).as(first.statusLine()).isEqualTo(200);
            raw.send(get("/second"));
            RawResponse second = RawResponse.read(raw.in(), "GET");
            assertThat(second.status()).as(second.statusLine()).isEqualTo(200);
            // The answer is the origin's, to the retry: the third request it received.
            assertThat(second.bodyText()).isEqualTo("request 3\n");
        }
        origin.awaitQuiet(QUIET);
        List<Connection> connections = origin.connections();
        assertThat(connections).as("upstream connections").hasSize(2);
        assertThat(lines(connections.get(0))).containsExactly("GET /first HTTP/1.1", "GET /second HTTP/1.1");
        assertThat(connections.get(0).hungUpByOrigin()).isTrue();
        assertThat(lines(connections.get(1))).containsExactly("GET /second HTTP/1.1");
    }

    @Test
    void postWithABodyOnAConnectionTheOriginClosesIsNotRetried() throws Exception {
        origin.responder(RecordingOrigin.hangUpOnRequest(2, RecordingOrigin.counting()));
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(get("/first"));
            assertThat(RawResponse.read(raw.in(), "GET").status()).isEqualTo(200);
            raw.send("POST http://origin.test/second HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 7\r\n\r\npayload");
            RawResponse second = RawResponse.read(raw.in(), "POST");
            assertThat(second.status()).as(second.statusLine()).isEqualTo(502);
            assertThat(second.header(REASON)).isNotBlank();
            assertThat(raw.readToEnd().length).as("bytes after the 502 before the proxy closed").isLessThan(1024);
        }
        origin.awaitQuiet(QUIET);
        assertThat(origin.connections()).as("upstream connections").hasSize(1);
        assertThat(origin.requests()).extracting(Request::requestLine)
                .containsExactly("GET /first HTTP/1.1", "POST /second HTTP/1.1");
        assertThat(origin.requests().get(1).bodyText()).isEqualTo("payload");
    }

    @Test
    void getWhoseRetryFailsToo502() throws Exception {
        // Only the very first request is answered; every later one is read and hung up on.
        origin.responder(r -> r.number() == 1 ? Reply.ok("first\n") : Reply.hangUp());
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(get("/first"));
            assertThat(RawResponse.read(raw.in(), "GET").status()).isEqualTo(200);
            raw.send(get("/second"));
            RawResponse second = RawResponse.read(raw.in(), "GET");
            assertThat(second.status()).as(second.statusLine()).isEqualTo(502);
            assertThat(second.header(REASON)).isNotBlank();
            assertThat(raw.readToEnd().length).as("bytes after the 502 before the proxy closed").isLessThan(1024);
        }
        origin.awaitQuiet(QUIET);
        List<Connection> connections = origin.connections();
        assertThat(connections).as("upstream connections (the first, then one retry)").hasSize(2);
        assertThat(lines(connections.get(0))).containsExactly("GET /first HTTP/1.1", "GET /second HTTP/1.1");
        assertThat(lines(connections.get(1))).containsExactly("GET /second HTTP/1.1");
    }

    // ---- 12. Keep-alive slowloris downstream ------------------------------------------------------

    /** Sends {@code bytes} to the proxy one at a time, every {@code period}; stops at the first write that fails. */
    private static ScheduledFuture<?> dribble(RawClient raw, byte[] bytes, Duration period) {
        AtomicInteger next = new AtomicInteger();
        return pacer.scheduleAtFixedRate(() -> {
            int i = next.getAndIncrement();
            if (i >= bytes.length) {
                throw new IllegalStateException("all sent"); // ends the schedule
            }
            try {
                raw.send(new byte[] {bytes[i]});
            } catch (IOException e) {
                throw new UncheckedIOException(e); // the proxy closed: ends the schedule
            }
        }, 0, period.toMillis(), TimeUnit.MILLISECONDS);
    }

    private static void normalExchanges(RawClient raw, int n) throws IOException {
        for (int i = 1; i <= n; i++) {
            raw.send(get("/normal-" + i));
            RawResponse res = RawResponse.read(raw.in(), "GET");
            assertThat(res.status()).as("exchange " + i + ": " + res.statusLine()).isEqualTo(200);
        }
    }

    @ParameterizedTest(name = "head dribbled after {0} normal exchange(s) gets 408 in about 1 s")
    @ValueSource(ints = {1, 2})
    void dribbledHeadOnAKeptAliveConnectionGets408(int exchanges) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            normalExchanges(raw, exchanges);
            long start = System.nanoTime();
            ScheduledFuture<?> dribbling = dribble(raw, SLOW_HEAD, Duration.ofMillis(200));
            try {
                raw.socket.setSoTimeout(3000);
                RawResponse res;
                try {
                    res = RawResponse.read(raw.in(), "GET");
                } catch (SocketTimeoutException e) {
                    throw new AssertionError("no answer within 3 s of the end of exchange " + exchanges
                            + " while the next head dribbled in", e);
                }
                long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
                assertThat(res.status()).as(res.statusLine()).isEqualTo(408);
                assertThat(res.header(REASON)).isEqualTo("request_head_timeout");
                assertThat(millis).as("ms from the previous answer to the 408").isBetween(600L, 3000L);
                assertThat(raw.readToEnd().length).as("bytes after the 408 before the proxy closed").isLessThan(1024);
            } finally {
                dribbling.cancel(false);
            }
        }
        origin.awaitQuiet(QUIET);
        assertThat(origin.requests()).as("requests the origin received").hasSize(exchanges);
        assertThat(origin.requests()).extracting(Request::target).doesNotContain("/slow");
    }

    @Test
    void secondHeadSentAtOnceIsServed() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            normalExchanges(raw, 2);
        }
        origin.awaitQuiet(QUIET);
        assertThat(origin.connections()).hasSize(1);
        assertThat(origin.requests()).extracting(Request::requestLine)
                .containsExactly("GET /normal-1 HTTP/1.1", "GET /normal-2 HTTP/1.1");
    }

    /** The control for the dribbling test: pieces paced the same way but done well within the timeout are served. */
    @Test
    void secondHeadInPiecesWithinTheTimeoutIsServed() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            normalExchanges(raw, 1);
            byte[] head = get("/paced").getBytes(StandardCharsets.ISO_8859_1);
            int third = head.length / 3;
            AtomicInteger piece = new AtomicInteger();
            ScheduledFuture<?> pacing = pacer.scheduleAtFixedRate(() -> {
                int i = piece.getAndIncrement();
                if (i >= 3) {
                    throw new IllegalStateException("all sent"); // ends the schedule
                }
                int from = i * third;
                int to = i == 2 ? head.length : from + third;
                try {
                    raw.send(Arrays.copyOfRange(head, from, to));
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }, 0, 200, TimeUnit.MILLISECONDS);
            try {
                RawResponse res = RawResponse.read(raw.in(), "GET");
                assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
                assertThat(res.bodyText()).isEqualTo("request 2\n");
            } finally {
                pacing.cancel(false);
            }
        }
        origin.awaitQuiet(QUIET);
        assertThat(origin.requests()).extracting(Request::requestLine)
                .containsExactly("GET /normal-1 HTTP/1.1", "GET /paced HTTP/1.1");
    }
}
