package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.DelayLine;
import dev.egressproxy.testing.LossyNamespace;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Bulk transfers through tunnels over a bad link: 1% of the packets dropped and 50 ms of delay each
 * way, between the proxy and the origin. Three tunnels at once each carry 8 MiB up and 8 MiB down
 * at the same time, and every byte arrives: each receiving end checks the SHA-256 of what it got,
 * and the access log counts exactly what was sent. The loss comes from a network namespace
 * ({@link LossyNamespace}: iptables' statistic match, as this kernel has no netem), the delay from
 * a relay in user space ({@link DelayLine}). Skipped, with the reason, where the namespace cannot be
 * made (not root, no {@code ip} or {@code iptables}).
 *
 * <pre>
 * client -> proxy -> [namespace: DNAT back, 1% dropped] -> DelayLine (50 ms) -> origin
 * </pre>
 */
@ParameterizedClass(name = "relay {0}")
@ValueSource(strings = {"user-space", "splice"})
class NetnsFaultsIT {

    private static final int SIZE = 8 * 1024 * 1024;
    private static final int TUNNELS = 3;
    private static final int CHUNK = 64 * 1024;

    @Parameter
    String relay;

    static LossyNamespace namespace;
    static TcpServer origin;
    static DelayLine delay;
    static TestProxy proxy;

    @BeforeAll
    static void link() throws Exception {
        namespace = LossyNamespace.create(0.01);
        origin = TcpServer.of(NetnsFaultsIT::serve);
        delay = new DelayLine(namespace.hostAddress(), new InetSocketAddress("127.0.0.1", origin.port()), 50);
    }

    @AfterAll
    static void unlink() throws Exception {
        // Each may be missing when an earlier step failed or the class was skipped.
        if (delay != null) {
            delay.close();
            assertThat(delay.errors).isEmpty();
        }
        if (origin != null) {
            origin.close();
            assertThat(origin.errors).isEmpty();
        }
        if (namespace != null) {
            namespace.close();
        }
    }

    @BeforeParameterizedClassInvocation
    static void start(String relay) throws Exception {
        proxy = TestProxy.start(TestProxy.relaySettings(relay) + """
                allowlist.hosts = ["bulk.test:443"]
                destinations.connect-to { "bulk.test:443" = "%s:%d" }
                tunnels.sni-check = off
                """.formatted(namespace.namespaceAddress().getHostAddress(), delay.port()));
    }

    @AfterParameterizedClassInvocation
    static void stop() {
        proxy.close();
    }

    /** Fills {@code buf} with the next bytes of the stream of {@code seed}, the same however it is cut into chunks. */
    private static void fill(Random random, byte[] buf) {
        random.nextBytes(buf);
    }

    /**
     * The origin: reads an 8-byte seed, then at the same time hashes the upload (to the client's
     * FIN) and sends {@value #SIZE} bytes of the stream of {@code seed + 1}; after both, sends the
     * upload's SHA-256 and closes.
     */
    private static void serve(Socket s, TcpServer server) throws IOException {
        DataInputStream in = new DataInputStream(s.getInputStream());
        long seed = in.readLong();
        CompletableFuture<byte[]> upload = CompletableFuture.supplyAsync(() -> {
            try {
                return sha256(in);
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        });
        OutputStream out = s.getOutputStream();
        Random random = new Random(seed + 1);
        byte[] buf = new byte[CHUNK];
        for (int sent = 0; sent < SIZE; sent += CHUNK) {
            fill(random, buf);
            out.write(buf);
        }
        out.write(upload.join());
        out.flush();
        s.close();
    }

    private static byte[] sha256(InputStream in) throws IOException {
        MessageDigest sha = digest();
        byte[] buf = new byte[CHUNK];
        int n;
        while ((n = in.read(buf)) >= 0) {
            sha.update(buf, 0, n);
        }
        return sha.digest();
    }

    private static MessageDigest digest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The SHA-256 of {@value #SIZE} bytes of the stream of {@code seed}. */
    private static byte[] expected(long seed) {
        MessageDigest sha = digest();
        Random random = new Random(seed);
        byte[] buf = new byte[CHUNK];
        for (int n = 0; n < SIZE; n += CHUNK) {
            fill(random, buf);
            sha.update(buf);
        }
        return sha.digest();
    }

    /** What one tunnel's client saw. */
    private record Transfer(int clientPort, long firstByteNanos, byte[] downloadSha, byte[] uploadShaAtOrigin) {
    }

    private static Transfer transfer(long seed) throws Exception {
        try (RawClient c = new RawClient(proxy.address())) {
            c.socket.setSoTimeout(120_000);
            c.send("CONNECT bulk.test:443 HTTP/1.1\r\n\r\n");
            assertThat(c.readHead().status()).isEqualTo(200);
            OutputStream out = c.out();
            long asked = System.nanoTime();
            out.write(java.nio.ByteBuffer.allocate(8).putLong(seed).array());
            out.flush();
            CompletableFuture<Void> upload = CompletableFuture.runAsync(() -> {
                try {
                    Random random = new Random(seed);
                    byte[] buf = new byte[CHUNK];
                    for (int sent = 0; sent < SIZE; sent += CHUNK) {
                        fill(random, buf);
                        out.write(buf);
                    }
                    out.flush();
                    c.socket.shutdownOutput();
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
            });
            InputStream in = c.in();
            int first = in.read();
            long firstByte = System.nanoTime() - asked;
            assertThat(first).isNotNegative();
            MessageDigest sha = digest();
            sha.update((byte) first);
            byte[] buf = new byte[CHUNK];
            long left = SIZE - 1;
            while (left > 0) {
                int n = in.read(buf, 0, (int) Math.min(buf.length, left));
                assertThat(n).as("end of stream with %d bytes of the download missing", left).isPositive();
                sha.update(buf, 0, n);
                left -= n;
            }
            byte[] atOrigin = in.readNBytes(32);
            assertThat(in.read()).isEqualTo(-1);
            upload.get(60, TimeUnit.SECONDS);
            return new Transfer(c.socket.getLocalPort(), firstByte, sha.digest(), atOrigin);
        }
    }

    @Test
    void bulkTransfersBothWaysArriveIntactOverALossySlowLink() throws Exception {
        long droppedBefore = namespace.dropped();
        ExecutorService clients = Executors.newFixedThreadPool(TUNNELS);
        try (AccessLogCapture log = new AccessLogCapture()) {
            List<Long> seeds = new ArrayList<>();
            List<Future<Transfer>> running = new ArrayList<>();
            for (int i = 0; i < TUNNELS; i++) {
                long seed = System.nanoTime() + i;
                seeds.add(seed);
                running.add(clients.submit(() -> transfer(seed)));
            }
            for (int i = 0; i < TUNNELS; i++) {
                Transfer t = running.get(i).get(3, TimeUnit.MINUTES);
                long seed = seeds.get(i);
                assertThat(t.downloadSha()).as("SHA-256 of the download at the client").isEqualTo(expected(seed + 1));
                assertThat(t.uploadShaAtOrigin()).as("SHA-256 of the upload at the origin").isEqualTo(expected(seed));
                // The seed crossed the delay line one way and the first byte back the other.
                assertThat(t.firstByteNanos()).isGreaterThanOrEqualTo(TimeUnit.MILLISECONDS.toNanos(100));

                assertThat(log.lineOf(t.clientPort())).contains(" bytes_up=" + (8 + SIZE) + " bytes_down=" + (SIZE + 32) + " ")
                        .containsPattern(" end=(client_closed|upstream_closed)$");
            }
        } finally {
            clients.shutdownNow();
        }
        assertThat(namespace.dropped() - droppedBefore).as("packets the namespace dropped").isPositive();
    }
}
