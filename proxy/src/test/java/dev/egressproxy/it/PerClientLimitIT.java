package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.guard.ClientGuardHandler;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code clients.max-connections-per-client} under contention, over real sockets: a proxy with four
 * event loops, so one client address's connections are counted and uncounted on different threads
 * at once, and client threads on 127.0.0.1 to 127.0.0.4 opening and closing connections
 * concurrently, round after round. Each round checks that the count the guard keeps is exactly the
 * number of connections held (a lost increment would leave it low for good, and let one connection
 * too many in), that exactly the limit is served and the next connection gets 429, and that the
 * count returns to zero, leaving no address behind, once everything is closed.
 */
class PerClientLimitIT {

    private static final int IO_THREADS = 4;
    private static final Duration WAIT = Duration.ofSeconds(20);

    private static final List<InetAddress> CLIENTS = new ArrayList<>();

    @BeforeAll
    static void loopbackAddresses() throws IOException {
        for (int i = 1; i <= 4; i++) {
            InetAddress a = InetAddress.getByAddress(new byte[] {127, 0, 0, (byte) i});
            try (Socket s = new Socket()) {
                s.bind(new InetSocketAddress(a, 0));
            } catch (IOException e) {
                Assumptions.abort("cannot bind a client socket to " + a.getHostAddress()
                        + " (this test needs all of 127.0.0.0/8 on the loopback interface, as Linux has): " + e);
            }
            CLIENTS.add(a);
        }
    }

    private static TestProxy proxy(TcpServer echo, int perClient) throws Exception {
        return TestProxy.start("""
                io-threads = %d
                allowlist.hosts = ["echo.test:7000"]
                destinations.connect-to { "echo.test:7000" = "127.0.0.1:%d" }
                clients.max-connections-per-client = %d
                """.formatted(IO_THREADS, echo.port(), perClient));
    }

    /** Opens a connection from {@code from} and closes it at once, whatever the proxy answers. */
    private static void churn(TestProxy proxy, InetAddress from) throws IOException {
        new RawClient(proxy.address(), from).close();
    }

    /** A CONNECT tunnel to the echo server from {@code from}, checked to relay, or null on 429. */
    private static RawClient tunnel(TestProxy proxy, InetAddress from) throws IOException {
        RawClient c = new RawClient(proxy.address(), from);
        try {
            c.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\nx");
            RawClient.Head head = c.readHead();
            if (head.status() == 429) {
                c.close();
                return null;
            }
            assertThat(head.status()).as(head.statusLine()).isEqualTo(200);
            assertThat(new String(c.readExactly(1), StandardCharsets.US_ASCII)).isEqualTo("x");
            return c;
        } catch (IOException | RuntimeException | Error e) {
            c.close();
            throw e;
        }
    }

    private static void awaitCounts(TestProxy proxy, int perAddress) {
        ClientGuardHandler guard = proxy.server.clientGuard();
        // The gauge is exact; the guard's count must reach the same number and stay there (a count
        // that lost an increment stays low until those connections close).
        await().atMost(WAIT).untilAsserted(() -> {
            assertThat(proxy.server.metrics().connectionsActive()).as("connections open")
                    .isEqualTo(perAddress * CLIENTS.size());
            for (InetAddress a : CLIENTS) {
                assertThat(guard.openFrom(a)).as("connections counted from %s", a.getHostAddress()).isEqualTo(perAddress);
            }
        });
        assertThat(guard.clientAddresses()).as("addresses in the guard's map").isEqualTo(perAddress == 0 ? 0 : CLIENTS.size());
    }

    /** Runs {@code workers} on threads of their own and fails with the first failure among them. */
    private static void runAll(List<Callable<Void>> workers, Runnable coordinator) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(workers.size());
        try {
            List<Future<Void>> futures = new ArrayList<>();
            for (Callable<Void> w : workers) {
                futures.add(pool.submit(w));
            }
            coordinator.run();
            for (Future<Void> f : futures) {
                f.get(60, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
            assertThat(pool.awaitTermination(30, TimeUnit.SECONDS)).isTrue();
        }
    }

    private static void meet(CyclicBarrier barrier) {
        try {
            barrier.await(WAIT.toSeconds(), TimeUnit.SECONDS);
        } catch (Exception e) {
            throw new AssertionError("a worker did not reach the barrier", e);
        }
    }

    @Test
    void countReturnsExactlyToZeroAfterConcurrentConnectsAndClosesOnFourEventLoops() throws Exception {
        int threadsPerAddress = 2;
        int rounds = 15;
        int churnPerRound = 40;
        try (TcpServer echo = TcpServer.echo(); TestProxy proxy = proxy(echo, 1000)) {
            int workers = threadsPerAddress * CLIENTS.size();
            CyclicBarrier barrier = new CyclicBarrier(workers + 1);
            List<Callable<Void>> tasks = new ArrayList<>();
            for (int t = 0; t < workers; t++) {
                InetAddress from = CLIENTS.get(t % CLIENTS.size());
                tasks.add(() -> {
                    for (int round = 0; round < rounds; round++) {
                        for (int i = 0; i < churnPerRound; i++) {
                            churn(proxy, from);
                        }
                        // The last connect of each thread races the last closes of the others.
                        try (RawClient held = new RawClient(proxy.address(), from)) {
                            meet(barrier); // all hold one
                            meet(barrier); // counted
                        }
                        meet(barrier); // all closed
                        meet(barrier); // counted
                    }
                    return null;
                });
            }
            runAll(tasks, () -> {
                for (int round = 0; round < rounds; round++) {
                    meet(barrier);
                    awaitCounts(proxy, threadsPerAddress);
                    meet(barrier);
                    meet(barrier);
                    awaitCounts(proxy, 0);
                    meet(barrier);
                }
            });
            assertThat(proxy.scrapeValue("egress_proxy_rejected_total{reason=\"per_client_limit\"}")).isZero();
        }
    }

    @Test
    void exactlyTheLimitIsServedAndTheNextConnectionGets429RoundAfterRound() throws Exception {
        int limit = 3;
        int rounds = 15;
        int churnPerRound = 10;
        int extras = 2;
        try (TcpServer echo = TcpServer.echo(); TestProxy proxy = proxy(echo, limit)) {
            int workers = limit * CLIENTS.size();
            CyclicBarrier barrier = new CyclicBarrier(workers + 1);
            List<Callable<Void>> tasks = new ArrayList<>();
            for (int t = 0; t < workers; t++) {
                InetAddress from = CLIENTS.get(t % CLIENTS.size());
                tasks.add(() -> {
                    for (int round = 0; round < rounds; round++) {
                        for (int i = 0; i < churnPerRound; i++) {
                            churn(proxy, from);
                        }
                        // Closes of this address's churn may not be counted yet, so a tunnel can
                        // meet a 429 for a moment; it asks again until it is served.
                        long deadline = System.nanoTime() + WAIT.toNanos();
                        RawClient held = tunnel(proxy, from);
                        while (held == null) {
                            assertThat(System.nanoTime()).as("served before the deadline").isLessThan(deadline);
                            held = tunnel(proxy, from);
                        }
                        try (RawClient h = held) {
                            meet(barrier); // the limit held from every address
                            meet(barrier); // the next ones refused
                        }
                        meet(barrier); // all closed
                        meet(barrier); // counted
                    }
                    return null;
                });
            }
            runAll(tasks, () -> {
                for (int round = 0; round < rounds; round++) {
                    meet(barrier);
                    awaitCounts(proxy, limit);
                    for (InetAddress from : CLIENTS) {
                        for (int i = 0; i < extras; i++) {
                            try (RawClient extra = new RawClient(proxy.address(), from)) {
                                extra.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
                                RawClient.Head head = extra.readHead();
                                assertThat(head.statusLine()).as("connection %d from %s", limit + 1 + i, from.getHostAddress())
                                        .isEqualTo("HTTP/1.1 429 too many connections from your address");
                                assertThat(head.header("x-egress-proxy-reason")).isEqualTo("per_client_limit");
                            } catch (IOException e) {
                                throw new AssertionError(e);
                            }
                            // A refused connection is never counted, not even while it closes.
                            assertThat(proxy.server.clientGuard().openFrom(from)).isEqualTo(limit);
                        }
                    }
                    meet(barrier);
                    meet(barrier);
                    awaitCounts(proxy, 0);
                    meet(barrier);
                }
            });
            assertThat(proxy.scrapeValue("egress_proxy_rejected_total{reason=\"per_client_limit\"}"))
                    .isGreaterThanOrEqualTo(rounds * CLIENTS.size() * extras);
        }
    }
}
