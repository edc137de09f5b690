package dev.egressproxy.guard;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.InetAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * The per-client counts {@link ClientGuardHandler} keeps: exact semantics on one thread, and exact
 * under contention from several threads (as several event loops count one client's connections),
 * which a counter taken out of the map and incremented outside it was not.
 */
class ClientCountsTest {

    private static final InetAddress A = address(127, 0, 0, 1);
    private static final InetAddress B = address(127, 0, 0, 2);
    private static final int THREADS = 4;

    private static InetAddress address(int a, int b, int c, int d) {
        try {
            return InetAddress.getByAddress(new byte[] {(byte) a, (byte) b, (byte) c, (byte) d});
        } catch (java.net.UnknownHostException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void acquiresUpToTheLimitThenRefusesWithoutCountingTheRefusal() {
        ClientCounts counts = new ClientCounts();

        assertThat(counts.tryAcquire(A, 2)).isTrue();
        assertThat(counts.tryAcquire(A, 2)).isTrue();
        assertThat(counts.tryAcquire(A, 2)).isFalse();
        assertThat(counts.openFrom(A)).isEqualTo(2);
        assertThat(counts.tryAcquire(B, 2)).isTrue();
        assertThat(counts.openFrom(B)).isEqualTo(1);

        counts.release(A);
        assertThat(counts.openFrom(A)).isEqualTo(1);
        assertThat(counts.tryAcquire(A, 2)).isTrue();
        assertThat(counts.openFrom(A)).isEqualTo(2);
    }

    @Test
    void forgetsAnAddressWhenItsLastConnectionIsReleased() {
        ClientCounts counts = new ClientCounts();
        counts.tryAcquire(A, 10);
        counts.tryAcquire(A, 10);
        counts.tryAcquire(B, 10);

        counts.release(A);
        counts.release(B);
        assertThat(counts.addresses()).isEqualTo(1);
        counts.release(A);

        assertThat(counts.addresses()).isZero();
        assertThat(counts.openFrom(A)).isZero();
        counts.release(A);
        assertThat(counts.openFrom(A)).isZero();
    }

    @Test
    void aLimitLoweredBelowWhatIsHeldRefusesUntilEnoughAreReleased() {
        ClientCounts counts = new ClientCounts();
        for (int i = 0; i < 3; i++) {
            counts.tryAcquire(A, 3);
        }

        assertThat(counts.tryAcquire(A, 1)).isFalse();
        counts.release(A);
        counts.release(A);
        assertThat(counts.tryAcquire(A, 1)).isFalse();
        counts.release(A);
        assertThat(counts.tryAcquire(A, 1)).isTrue();
    }

    /**
     * Rounds of: every thread acquires and releases one connection many times, the count crossing
     * zero again and again while other threads acquire, then acquires one more and holds it. A
     * thread holding a connection must always see a count of at least one, and once all hold one the
     * count is exactly the number of threads; once all released, the address is gone.
     */
    @Test
    void countStaysExactWhileThreadsAcquireAndReleaseTheSameAddressConcurrently() throws Exception {
        ClientCounts counts = new ClientCounts();
        int rounds = 300;
        CyclicBarrier barrier = new CyclicBarrier(THREADS + 1);
        ConcurrentLinkedQueue<String> problems = new ConcurrentLinkedQueue<>();
        ExecutorService pool = Executors.newFixedThreadPool(THREADS);
        try {
            List<Future<?>> workers = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                workers.add(pool.submit(() -> {
                    for (int round = 0; round < rounds; round++) {
                        for (int i = 0; i < 200; i++) {
                            if (!counts.tryAcquire(A, THREADS)) {
                                problems.add("refused below the limit");
                            }
                            if (counts.openFrom(A) < 1) {
                                problems.add("a held connection was not counted");
                            }
                            counts.release(A);
                        }
                        counts.tryAcquire(A, THREADS);
                        barrier.await(30, TimeUnit.SECONDS); // all hold one
                        barrier.await(30, TimeUnit.SECONDS); // checked
                        counts.release(A);
                        barrier.await(30, TimeUnit.SECONDS); // all released
                        barrier.await(30, TimeUnit.SECONDS); // checked
                    }
                    return null;
                }));
            }
            for (int round = 0; round < rounds; round++) {
                barrier.await(30, TimeUnit.SECONDS);
                assertThat(counts.openFrom(A)).as("round %d, all holding", round).isEqualTo(THREADS);
                barrier.await(30, TimeUnit.SECONDS);
                barrier.await(30, TimeUnit.SECONDS);
                assertThat(counts.openFrom(A)).as("round %d, all released", round).isZero();
                assertThat(counts.addresses()).as("round %d, addresses left", round).isZero();
                barrier.await(30, TimeUnit.SECONDS);
            }
            for (Future<?> w : workers) {
                w.get(30, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
        }
        assertThat(problems).isEmpty();
    }

    /** However the threads interleave, no more than the limit ever hold a connection at once. */
    @Test
    void neverAdmitsMoreThanTheLimitUnderContention() throws Exception {
        ClientCounts counts = new ClientCounts();
        int max = 2;
        AtomicInteger holding = new AtomicInteger();
        AtomicInteger most = new AtomicInteger();
        AtomicInteger admitted = new AtomicInteger();
        ExecutorService pool = Executors.newFixedThreadPool(THREADS);
        try {
            List<Future<?>> workers = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                workers.add(pool.submit(() -> {
                    for (int i = 0; i < 100_000; i++) {
                        if (counts.tryAcquire(A, max)) {
                            admitted.incrementAndGet();
                            most.accumulateAndGet(holding.incrementAndGet(), Math::max);
                            holding.decrementAndGet();
                            counts.release(A);
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> w : workers) {
                w.get(60, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
        }
        assertThat(most.get()).isLessThanOrEqualTo(max);
        assertThat(admitted.get()).isPositive();
        assertThat(counts.openFrom(A)).isZero();
        assertThat(counts.addresses()).isZero();
    }
}
