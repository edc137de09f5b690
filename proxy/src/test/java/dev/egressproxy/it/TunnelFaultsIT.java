package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.Required;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TcpTable;
import dev.egressproxy.testing.TestProxy;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Faults in the middle of a transfer, over real sockets: an origin that resets, a client that
 * resets, a client that stops reading for good, and the proxy shutting down. The other side is
 * closed at once, the access-log line names how the tunnel ended ({@code end=}), and the byte
 * counts of the line and of {@code egress_proxy_bytes_total} are what was delivered. Run with
 * tunnels relayed through the proxy's buffers and with every direction spliced from its first
 * read, on each transport the build runs.
 *
 * <p>The origin's first byte from the client picks what it does: {@code R} streams the pattern and
 * resets the connection mid-stream, {@code S} counts what it receives until the end, {@code D}
 * streams until its writes fail, {@code F} sends 1 MiB and closes cleanly.
 */
@ParameterizedClass(name = "relay {0}")
@ValueSource(strings = {"user-space", "splice"})
class TunnelFaultsIT {

    private static final Pattern COUNTS = Pattern.compile(" bytes_up=(\\d+) bytes_down=(\\d+) .* end=(\\w+)$");
    private static final long PROMPTLY_NANOS = TimeUnit.SECONDS.toNanos(2);

    @Parameter
    String relay;

    static TcpServer origin;
    /** What the origin saw of the current test's connection; each test makes new ones. */
    static volatile CompletableFuture<Long> originResetAt;
    static volatile CompletableFuture<long[]> originReceived;
    static volatile CompletableFuture<long[]> originStopped;
    /** The port the proxy's socket to the origin has, as the origin saw it ({@code S}). */
    static volatile CompletableFuture<Integer> originPeerPort;
    /** The settings of every proxy here: the relay mode and the origin. */
    static String common;
    static TestProxy proxy;
    static TestProxy idleProxy;

    AccessLogCapture log;

    @BeforeParameterizedClassInvocation
    static void start(String relay) throws Exception {
        origin = TcpServer.of(TunnelFaultsIT::serve);
        common = TestProxy.relaySettings(relay) + """
                allowlist.hosts = ["origin.test:7000"]
                destinations.connect-to { "origin.test:7000" = "127.0.0.1:%d" }
                """.formatted(origin.port());
        // Long enough that a close within 2 s cannot be the idle timer's.
        proxy = TestProxy.start(common + "timeouts.idle = 30s\n");
        idleProxy = TestProxy.start(common + "timeouts.idle = 1s\n");
    }

    @AfterParameterizedClassInvocation
    static void stop() throws Exception {
        proxy.close();
        idleProxy.close();
        origin.close();
        assertThat(origin.errors).isEmpty();
    }

    @BeforeEach
    void fresh() {
        originResetAt = new CompletableFuture<>();
        originReceived = new CompletableFuture<>();
        originStopped = new CompletableFuture<>();
        originPeerPort = new CompletableFuture<>();
        log = new AccessLogCapture();
    }

    @AfterEach
    void detach() {
        log.close();
    }

    private static void serve(Socket s, TcpServer server) throws IOException {
        int command = s.getInputStream().read();
        switch (command) {
            case 'R' -> {
                // Mid-stream: far more than the socket buffers hold is still to come.
                TcpServer.sendPattern(s, null, 2 * 1024 * 1024);
                s.setSoLinger(true, 0);
                originResetAt.complete(System.nanoTime());
                s.close();
            }
            case 'S' -> {
                originPeerPort.complete(s.getPort());
                InputStream in = s.getInputStream();
                byte[] buf = new byte[65536];
                long total = 0;
                int n;
                try {
                    while ((n = in.read(buf)) >= 0) {
                        total += n;
                    }
                    originReceived.complete(new long[] {total, System.nanoTime(), 0});
                } catch (IOException e) {
                    originReceived.complete(new long[] {total, System.nanoTime(), 1});
                }
            }
            case 'D' -> {
                try {
                    TcpServer.sendPattern(s, null, Long.MAX_VALUE);
                } catch (IOException e) {
                    // The proxy closed the connection: expected.
                }
                originStopped.complete(new long[] {System.nanoTime()});
            }
            case 'F' -> {
                TcpServer.sendPattern(s, null, 1024 * 1024);
                s.close();
            }
            default -> throw new IOException("unexpected command " + command);
        }
    }


    private static RawClient tunnel(TestProxy through, char command) throws IOException {
        RawClient c = new RawClient(through.address());
        c.send("CONNECT origin.test:7000 HTTP/1.1\r\n\r\n");
        assertThat(c.readHead().status()).isEqualTo(200);
        c.send(new byte[] {(byte) command});
        return c;
    }

    /** Reads {@code limit} bytes (or to the end) and checks each against the origin's pattern. */
    private static long readPattern(InputStream in, long from, long limit) throws IOException {
        byte[] buf = new byte[65536];
        long at = from;
        while (at - from < limit) {
            int n = in.read(buf, 0, (int) Math.min(buf.length, limit - (at - from)));
            if (n < 0) {
                break;
            }
            for (int i = 0; i < n; i++) {
                if (buf[i] != TcpServer.patternByte(at + i)) {
                    throw new AssertionError("byte " + (at + i) + " differs from what the origin sent");
                }
            }
            at += n;
        }
        return at - from;
    }

    /** The access-log line of the tunnel from the client's local port: {bytes_up, bytes_down} and its end. */
    private Matcher lineOf(Socket client) {
        String line = log.lineOf(client.getLocalPort());
        Matcher m = COUNTS.matcher(line);
        assertThat(m.find()).as(line).isTrue();
        return m;
    }

    private static double bytesTotal(TestProxy p, String direction) throws Exception {
        return p.scrapeValue("egress_proxy_bytes_total{direction=\"" + direction + "\"}");
    }

    /**
     * On io_uring (Netty 4.2.18) a reset that arrives while reading from that socket is paused
     * (its peer is not writable) is never reported: when reading resumes, no read completes and
     * no error comes, so the tunnel stays open until {@code timeouts.idle} closes it
     * (docs/architecture.md, Known limitations). Resets while reading runs are reported.
     */
    private static void assumeResetWhilePausedIsReported() {
        Assumptions.assumeFalse("io_uring".equals(System.getProperty("egress.test.transport")),
                "io_uring does not report a reset on a socket whose reading is paused (Netty 4.2.18): such a "
                        + "tunnel ends by the idle timeout; see docs/architecture.md, Known limitations");
    }

    @Test
    void originResetMidTransferClosesTheClientAtOnceAndCountsWhatItReceived() throws Exception {
        // The origin writes faster than the client reads: the upstream socket is paused when it resets.
        assumeResetWhilePausedIsReported();
        double upBefore = bytesTotal(proxy, "client_to_upstream");
        double downBefore = bytesTotal(proxy, "upstream_to_client");
        try (RawClient c = tunnel(proxy, 'R')) {
            CompletableFuture<long[]> received = CompletableFuture.supplyAsync(() -> {
                try {
                    long n = readPattern(c.in(), 0, Long.MAX_VALUE);
                    return new long[] {n, System.nanoTime()};
                } catch (IOException e) {
                    throw new IllegalStateException("the client should see a clean close, not " + e, e);
                }
            });
            long resetAt = originResetAt.get(10, TimeUnit.SECONDS);
            long[] got = received.get(PROMPTLY_NANOS, TimeUnit.NANOSECONDS);
            assertThat(got[1] - resetAt).as("nanoseconds from the origin's reset to the client's end of stream")
                    .isLessThan(PROMPTLY_NANOS);

            Matcher line = lineOf(c.socket);
            assertThat(line.group(3)).isEqualTo("upstream_reset");
            assertThat(Long.parseLong(line.group(1))).isEqualTo(1);
            assertThat(Long.parseLong(line.group(2))).isEqualTo(got[0]);
            assertThat(bytesTotal(proxy, "upstream_to_client") - downBefore).isEqualTo(got[0]);
            assertThat(bytesTotal(proxy, "client_to_upstream") - upBefore).isEqualTo(1);
        }
    }

    @Test
    void clientResetMidUploadClosesTheUpstreamAtOnceAndItGetsEveryByteCounted() throws Exception {
        // The client writes faster than the proxy's upstream socket drains: reading it pauses.
        assumeResetWhilePausedIsReported();
        double upBefore = bytesTotal(proxy, "client_to_upstream");
        try (RawClient c = tunnel(proxy, 'S')) {
            byte[] chunk = new byte[65536];
            for (int i = 0; i < 64; i++) {
                c.out().write(chunk);
            }
            c.socket.setSoLinger(true, 0);
            long resetAt = System.nanoTime();
            c.close();

            long[] seen = originReceived.get(PROMPTLY_NANOS, TimeUnit.NANOSECONDS);
            assertThat(seen[1] - resetAt).as("nanoseconds from the client's reset to the origin's end of stream")
                    .isLessThan(PROMPTLY_NANOS);
            assertThat(seen[2]).as("the origin sees a clean end of what the proxy relayed").isZero();
            Matcher line = lineOf(c.socket);
            assertThat(line.group(3)).isEqualTo("client_reset");
            // The command byte, then what reached the origin before the reset.
            assertThat(Long.parseLong(line.group(1))).isEqualTo(seen[0] + 1);
            assertThat(bytesTotal(proxy, "client_to_upstream") - upBefore).isEqualTo(seen[0] + 1);
        }
    }

    @Test
    void clientResetMidDownloadClosesTheUpstreamAtOnce() throws Exception {
        try (RawClient c = tunnel(proxy, 'D')) {
            long read = readPattern(c.in(), 0, 1024 * 1024);
            assertThat(read).isEqualTo(1024 * 1024);
            c.socket.setSoLinger(true, 0);
            long resetAt = System.nanoTime();
            c.close();

            long[] stopped = originStopped.get(PROMPTLY_NANOS, TimeUnit.NANOSECONDS);
            assertThat(stopped[0] - resetAt).as("nanoseconds from the client's reset to the origin's failed write")
                    .isLessThan(PROMPTLY_NANOS);
            Matcher line = lineOf(c.socket);
            assertThat(line.group(3)).isEqualTo("client_reset");
            // What the proxy's socket took: at least what the client read, more by what the kernel
            // buffers held when the client reset.
            assertThat(Long.parseLong(line.group(2))).isGreaterThanOrEqualTo(read);
        }
    }

    @Test
    void slowReaderThatKeepsReadingOutlivesTheIdleTimeout() throws Exception {
        // 16 KiB every 50 ms for four idle timeouts: the kernel's send buffer of the proxy's socket
        // (megabytes on loopback) holds more than that, so no write is handed to the client channel
        // all the while; the bytes leaving that buffer are what keeps the tunnel from being idle.
        String transport = System.getProperty("egress.test.transport", "auto");
        Assumptions.assumeTrue(transport.equals("auto") || transport.equals("epoll"),
                "only the epoll transport can ask the kernel when a socket last sent data (TCP_INFO); on "
                        + transport + " a reader this slow is closed as idle, see docs/architecture.md, Known limitations");
        try (RawClient c = tunnel(idleProxy, 'D')) {
            byte[] chunk = new byte[16 * 1024];
            long at = 0;
            long next = System.nanoTime();
            for (int i = 0; i < 80; i++) {
                at += readPattern(c.in(), at, chunk.length);
                next += TimeUnit.MILLISECONDS.toNanos(50);
                LockSupport.parkNanos(next - System.nanoTime()); // the reader's pace, not a wait for a condition
            }
            assertThat(at).as("bytes read at the slow reader's pace").isEqualTo(80L * chunk.length);
            assertThat(originStopped).as("the upstream stays open while the client still reads").isNotDone();
            assertThat(idleProxy.scrapeValue("egress_proxy_tunnels_active")).isEqualTo(1);
        }
    }

    @Test
    void stalledClientIsQueuedAtMostNotsentLowatUnsentBytesInTheKernel() throws Exception {
        String transport = System.getProperty("egress.test.transport", "auto");
        Assumptions.assumeFalse(transport.equals("nio"),
                "NIO cannot set TCP_NOTSENT_LOWAT: relay.notsent-lowat does nothing there");
        try (TestProxy unlimited = TestProxy.start(common + "timeouts.idle = 30s\nrelay.notsent-lowat = 0\n")) {
            long bounded = queuedTowardsStalledClient(proxy);
            long kernelDefault = queuedTowardsStalledClient(unlimited);
            // In flight: at most the client's 64 KiB window; unsent: relay.notsent-lowat (512 KiB)
            // and the last write that crossed it (a splice chunk or a read, 64 KiB at most).
            assertThat(bounded).as("bytes queued in the proxy's socket towards a client that stopped reading")
                    .isLessThanOrEqualTo(64 * 1024 + 512 * 1024 + 64 * 1024);
            assertThat(kernelDefault).as("the same with relay.notsent-lowat = 0 (the kernel grows the send buffer)")
                    .isGreaterThan(2 * bounded);
        }
    }

    /**
     * Opens a download to a client with a 64 KiB receive buffer that reads 64 KiB and then stops,
     * and returns what the proxy's socket towards it holds once that stops growing: the send
     * queue (in flight and unsent) the kernel reports in /proc/net/tcp.
     */
    private long queuedTowardsStalledClient(TestProxy through) throws Exception {
        try (RawClient c = tunnel(through, 'D')) {
            c.socket.setReceiveBufferSize(64 * 1024);
            assertThat(readPattern(c.in(), 0, 65536)).isEqualTo(65536);
            long[] last = {-1, 0};
            return await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(200)).until(() -> {
                long now = TcpTable.sendQueue(through.port(), c.socket.getLocalPort());
                last[1] = now == last[0] ? last[1] + 1 : 0;
                last[0] = now;
                return now;
            }, now -> last[1] >= 5 && now > 0);
        }
    }

    @Test
    void clientThatStopsReadingIsClosedByTheIdleTimeoutAndTheMemoryItPinnedReturns() throws Exception {
        try (RawClient c = tunnel(idleProxy, 'D')) {
            assertThat(readPattern(c.in(), 0, 65536)).isEqualTo(65536);
            long stalledAt = System.nanoTime();
            if (relay.equals("user-space")) {
                // The origin fills the client's queue in the proxy up to the write buffer's high mark.
                await().atMost(Duration.ofSeconds(5)).until(
                        () -> idleProxy.scrapeValue("egress_proxy_memory_held_bytes") >= 32 * 1024);
            }
            long[] stopped = originStopped.get(10, TimeUnit.SECONDS);
            assertThat(stopped[0] - stalledAt).as("nanoseconds from the client's last read to the upstream close")
                    .isBetween(TimeUnit.MILLISECONDS.toNanos(900), TimeUnit.SECONDS.toNanos(5));
            Matcher line = lineOf(c.socket);
            assertThat(line.group(3)).isEqualTo("idle_timeout");
            await().atMost(Duration.ofSeconds(5)).until(
                    () -> idleProxy.scrapeValue("egress_proxy_memory_held_bytes") < 16 * 1024);
            assertThat(idleProxy.scrapeValue("egress_proxy_tunnels_active")).isZero();
        }
    }

    @Test
    void upstreamSocketAbortedByTheKernelEndsTheTunnelNamingTheError() throws Exception {
        // Neither a reset nor a clean end: the kernel aborts the proxy's socket to the origin (ss -K,
        // as an administrator can), and the next read on it fails with ECONNABORTED. The client is
        // closed at once and the log names the error in the kernel's words.
        Required.program(Processes.onPath("ss"), "ss is missing (Debian package iproute2)");
        try (RawClient c = tunnel(proxy, 'S')) {
            int up = originPeerPort.get(10, TimeUnit.SECONDS);
            String killed = Processes.run(List.of("ss", "-K", "-t", "sport", "=", ":" + up, "and", "dport", "=",
                    ":" + origin.port()), null, 10).output();
            Assumptions.assumeTrue(killed.contains(":" + up),
                    "ss -K cannot close sockets here (needs CAP_NET_ADMIN and a kernel with INET_DIAG_DESTROY): " + killed);
            long killedAt = System.nanoTime();

            assertThat(c.in().read()).as("the client's end of stream").isEqualTo(-1);
            assertThat(System.nanoTime() - killedAt).isLessThan(PROMPTLY_NANOS);
            assertThat(log.lineOf(c.socket.getLocalPort())).contains(" error=software_caused_connection_abort ").contains(" bytes_up=1 ")
                    .endsWith(" end=upstream_error");
        }
    }

    @Test
    void originThatFinishesAndClosesEndsTheTunnelCleanly() throws Exception {
        // Seen once in six runs on io_uring, not understood yet: the proxy's upstream read fails
        // with ECONNRESET before the last ~32 KiB of the origin's 1 MiB, though the origin closed
        // normally with nothing unread (end=upstream_reset, the client short of bytes).
        Assumptions.assumeFalse("io_uring".equals(System.getProperty("egress.test.transport")),
                "io_uring: the origin's normal close sometimes arrives as a reset (under investigation)");
        try (RawClient c = tunnel(proxy, 'F')) {
            assertThat(readPattern(c.in(), 0, Long.MAX_VALUE)).isEqualTo(1024 * 1024);
            c.socket.shutdownOutput();
            Matcher line = lineOf(c.socket);
            assertThat(line.group(3)).isEqualTo("upstream_closed");
            assertThat(Long.parseLong(line.group(2))).isEqualTo(1024 * 1024);
        }
    }

    @Test
    void proxyShutdownEndsAnOpenTunnelAsProxyClosed() throws Exception {
        TestProxy closing = TestProxy.start(TestProxy.relaySettings(relay) + """
                allowlist.hosts = ["origin.test:7000"]
                destinations.connect-to { "origin.test:7000" = "127.0.0.1:%d" }
                """.formatted(origin.port()));
        boolean closed = false;
        try (RawClient c = tunnel(closing, 'S')) {
            c.send("still here");
            await().atMost(Duration.ofSeconds(5)).until(() -> closing.server.metrics().tunnelsActive() == 1);
            closing.close();
            closed = true;
            assertThat(originReceived.get(5, TimeUnit.SECONDS)[0]).isEqualTo("still here".length());
            Matcher line = lineOf(c.socket);
            assertThat(line.group(3)).isEqualTo("proxy_closed");
            assertThat(c.in().read()).isEqualTo(-1);
        } finally {
            if (!closed) {
                closing.close();
            }
        }
    }
}
