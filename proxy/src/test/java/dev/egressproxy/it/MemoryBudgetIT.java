package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.ProxyProcess;
import dev.egressproxy.testing.TcpServer;
import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The direct-memory budget, on a proxy process with 32 MiB of direct memory: many tunnels from a
 * fast origin to clients that do not read (slow readers pulling big layers) would each hold up to a
 * write-buffer's worth plus a read in the proxy, together more than the JVM's direct memory. With
 * the budget no {@code OutOfMemoryError} happens, new clients are answered 503 {@code memory_budget}
 * at once, the tunnels already open deliver every byte once their clients read, and new tunnels
 * work again afterwards. Relayed through user space ({@code relay.splice = false}), as on the NIO
 * and io_uring transports: splice keeps the bytes in kernel pipes instead.
 */
class MemoryBudgetIT {

    private static final int TUNNELS = 400;
    private static final int PER_TUNNEL = 4 * 1024 * 1024;

    @TempDir
    Path dir;

    private final List<Socket> sockets = new ArrayList<>();
    private final ExecutorService readers = Executors.newFixedThreadPool(64);
    private TcpServer source;
    private ProxyProcess proxy;

    @AfterEach
    void tearDown() throws Exception {
        readers.shutdownNow();
        for (Socket s : sockets) {
            s.close();
        }
        if (proxy != null) {
            proxy.close();
        }
        if (source != null) {
            source.close();
        }
    }

    private void startProxy(String budget) throws Exception {
        startProxy(budget, "", TcpServer.source(PER_TUNNEL));
    }

    private void startProxy(String budget, String moreConfig, TcpServer origin) throws Exception {
        source = origin;
        proxy = ProxyProcess.start(dir, List.of(), List.of("-Xmx128m", "-XX:MaxDirectMemorySize=32m"), """
                  allowlist { presets = [], hosts = ["layers.test:443"] }
                  destinations.connect-to { "layers.test:443" = "127.0.0.1:%d" }
                  clients.max-connections-per-client = 100000
                  relay.splice = false
                  tunnels.sni-check = off
                  limits.memory-budget = %s
                  %s
                """.formatted(source.port(), budget, moreConfig));
    }

    /** A CONNECT whose client reads nothing after the 200 (a 4 KiB receive buffer: the kernel holds little). */
    private Socket slowReader() throws IOException {
        Socket s = new Socket();
        sockets.add(s);
        s.setReceiveBufferSize(4096);
        s.connect(proxy.address(), 5000);
        s.setSoTimeout(5000);
        s.getOutputStream().write("CONNECT layers.test:443 HTTP/1.1\r\nHost: layers.test:443\r\n\r\n"
                .getBytes(StandardCharsets.US_ASCII));
        return s;
    }

    /** Reads the answer head; returns its status line and the reason header. */
    private static String head(Socket s) throws IOException {
        InputStream in = s.getInputStream();
        StringBuilder sb = new StringBuilder();
        while (!sb.toString().endsWith("\r\n\r\n")) {
            int b = in.read();
            if (b < 0) {
                throw new IOException("closed after " + sb);
            }
            sb.append((char) b);
        }
        return sb.toString();
    }

    /** Reads the whole download and checks it byte by byte; returns its length. */
    private static long readAll(Socket s) throws IOException {
        return read(s, Long.MAX_VALUE);
    }

    /** Reads up to {@code limit} bytes of the download (or to its end) and checks them; returns how many. */
    private static long read(Socket s, long limit) throws IOException {
        s.setSoTimeout(60_000);
        InputStream in = s.getInputStream();
        byte[] buf = new byte[65536];
        long offset = 0;
        int n;
        while (offset < limit && (n = in.read(buf, 0, (int) Math.min(buf.length, limit - offset))) >= 0) {
            for (int i = 0; i < n; i++) {
                if (buf[i] != TcpServer.patternByte(offset + i)) {
                    throw new IOException("byte " + (offset + i) + " differs");
                }
            }
            offset += n;
        }
        return offset;
    }

    @Test
    void slowReadersBeyondTheDirectMemoryGet503AndNoOutOfMemoryAndEveryByteArrives() throws Exception {
        startProxy("auto");
        long budget = (long) proxy.metric("egress_proxy_memory_budget_bytes");
        assertThat(budget).isEqualTo(20L << 20); // 32 MiB * 3/4 less one 4 MiB chunk (one arena)
        List<Socket> admitted = new ArrayList<>();
        int refused = 0;
        for (int i = 0; i < TUNNELS; i++) {
            Socket s = slowReader();
            long start = System.nanoTime();
            String head = head(s);
            assertThat(Duration.ofNanos(System.nanoTime() - start)).as("answer to client %d", i).isLessThan(Duration.ofSeconds(2));
            if (head.startsWith("HTTP/1.1 200")) {
                admitted.add(s);
            } else {
                assertThat(head).startsWith("HTTP/1.1 503").contains("X-Egress-Proxy-Reason: memory_budget");
                refused++;
            }
        }
        assertThat(refused).as("the budget refused new clients once nearly full").isPositive();
        assertThat(proxy.metric("egress_proxy_memory_held_bytes")).isLessThanOrEqualTo(budget + (4 << 20));
        assertThat(proxy.metric("egress_proxy_rejected_total{reason=\"memory_budget\"}")).isEqualTo(refused);

        // The tunnels already open keep moving: each client now reads its whole download.
        List<Future<Long>> reads = new ArrayList<>();
        for (Socket s : admitted) {
            reads.add(readers.submit(() -> readAll(s)));
        }
        for (Future<Long> f : reads) {
            assertThat(f.get(120, TimeUnit.SECONDS)).isEqualTo(PER_TUNNEL);
        }
        // With the memory back, new tunnels are admitted again.
        await().atMost(Duration.ofSeconds(10)).until(() -> proxy.metric("egress_proxy_memory_held_bytes") < budget * 0.8);
        for (int i = 0; i < 20; i++) {
            Socket s = slowReader();
            assertThat(head(s)).startsWith("HTTP/1.1 200");
            assertThat(readAll(s)).isEqualTo(PER_TUNNEL);
        }
        assertThat(proxy.log()).doesNotContain("OutOfMemoryError").doesNotContain("Cannot reserve");
        assertThat(proxy.isAlive()).isTrue();
    }

    @Test
    void atAFullBudgetRelaysPauseReadingUntilSlowSidesHaveDrained() throws Exception {
        // 40 tunnels whose own watermark lets each hold 1 MiB: 40 MiB together, more than the whole
        // direct memory, against a budget of 8 MiB. They are all admitted before their downloads
        // start, so only the pausing can keep them near it.
        int tunnels = 40;
        startProxy("8MiB", "limits { write-buffer-high = 1MiB, write-buffer-low = 512KiB }",
                TcpServer.sourceOnRequest(PER_TUNNEL));
        List<Socket> admitted = new ArrayList<>();
        for (int i = 0; i < tunnels; i++) {
            Socket s = slowReader();
            assertThat(head(s)).startsWith("HTTP/1.1 200");
            admitted.add(s);
        }
        // Now all ask for their downloads at once.
        for (Socket s : admitted) {
            s.getOutputStream().write('g');
        }
        await().atMost(Duration.ofSeconds(20)).until(() -> proxy.log().contains("memory budget full"));
        // Per tunnel past the budget: reads go on until its slow side holds the budget's 16 KiB
        // backlog, then one read of up to 64 KiB more, and the read that finds it so: 144 KiB.
        // Without the budget they would hold 40 MiB.
        long bound = (8L << 20) + tunnels * (16 * 1024 + 2 * 64 * 1024);
        // Held stays there while the clients read nothing: sample it for a second. (The origins do
        // not end their streams: a sender's FIN makes Netty's epoll transport read the socket to
        // its end whatever the backpressure, a bound of its own, see docs/architecture.md.)
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(1);
        double max = 0;
        while (System.nanoTime() < deadline) {
            max = Math.max(max, proxy.metric("egress_proxy_memory_held_bytes"));
        }
        assertThat(max).isLessThanOrEqualTo(bound);
        List<Future<Long>> reads = new ArrayList<>();
        for (Socket s : admitted) {
            reads.add(readers.submit(() -> read(s, PER_TUNNEL)));
        }
        // Every paused read was resumed as its client drained, or these would not finish.
        for (Future<Long> f : reads) {
            assertThat(f.get(120, TimeUnit.SECONDS)).isEqualTo(PER_TUNNEL);
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> proxy.log().contains("memory budget: "));
        assertThat(proxy.log()).doesNotContain("OutOfMemoryError");
    }

    @Test
    void withoutTheBudgetTheSameLoadExhaustsDirectMemory() throws Exception {
        // The control: a budget above the JVM's direct memory is no budget. The load above then
        // fails as it did before the budget existed, so the test above measures something.
        startProxy("1GiB");
        for (int i = 0; i < 2 * TUNNELS && !proxy.log().contains("OutOfMemoryError"); i++) {
            Socket s = slowReader();
            try {
                head(s);
            } catch (IOException e) {
                // a client the out-of-memory proxy never answered
            }
        }
        await().atMost(Duration.ofSeconds(20)).until(() -> proxy.log().contains("OutOfMemoryError"));
        assertThat(proxy.log()).contains("Cannot reserve");
    }
}
