package dev.egressproxy.guard;

import io.netty.buffer.PooledByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.util.internal.PlatformDependent;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A budget for the bytes the proxy holds in direct memory, so that relaying never meets an
 * {@link OutOfMemoryError}.
 *
 * <p>Every byte in flight sits in a buffer of the pooled allocator, whose chunks (4 MiB) are taken
 * from the JVM's direct memory ({@code -XX:MaxDirectMemorySize}). Each relay direction already
 * stops reading once its slow side has {@code limits.write-buffer-high} queued, but thousands of
 * tunnels each within their own bound can still exhaust the memory together. Here the bytes pinned
 * to live buffers ({@link PooledByteBufAllocator#pinnedDirectMemory()}) are sampled every
 * {@value #SAMPLE_MILLIS} ms against the budget:
 * <ul>
 *   <li>from 90% new client connections are refused ({@link #admitting()} false: 503
 *       {@code memory_budget}), so the connections already open keep the memory they move with;
 *   <li>from 100% ({@code full}), or as soon as the last sample plus the bytes relays have
 *       read since reach it (so a burst between two samples cannot run far past it), a relay
 *       direction whose slow side still holds more than {@value #BACKLOG} bytes stops reading
 *       ({@link #pauseIfFull}) until that side has drained to it: slow readers hold at most that
 *       much more, while directions whose readers keep up (nothing queued) move on at full speed;
 *   <li>below 80% everything paused reads again and new connections are admitted.
 * </ul>
 * Memory held by clients that stopped reading altogether stays held until they read or
 * {@code timeouts.idle} closes them; meanwhile new connections get 503 and the others keep moving.
 * The default budget ({@code limits.memory-budget = auto}) leaves room below the JVM's limit for one
 * fresh chunk per arena, what a sampling interval can bring in at full speed, and the allocator's
 * fragmentation: three quarters of the direct memory, less one chunk per arena.
 */
public final class MemoryBudget implements AutoCloseable {

    private static final Logger log = LoggerFactory.getLogger(MemoryBudget.class);
    static final int SAMPLE_MILLIS = 10;
    private static final BufferPoolMXBean JVM_DIRECT = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class)
            .stream().filter(b -> b.getName().equals("direct")).findFirst().orElseThrow();

    /** While the budget is full, a direction whose slow side holds more than this waits. */
    static final int BACKLOG = 16 * 1024;

    /** A relay direction that may wait for the budget. */
    public interface Resumable {
        /** The channel the direction writes to (null if none yet). */
        Channel slowSide();

        /** Reads again, if nothing else holds it back; runs on the reading channel's event loop. */
        void resume();
    }

    private final PooledByteBufAllocator allocator;
    private final long budget;
    private final long refuseAt;
    private final long resumeAt;
    private final Map<Channel, Resumable> paused = new ConcurrentHashMap<>();
    private volatile boolean full;
    private volatile boolean admitting = true;
    private volatile long held;
    /** Bytes relays have read since the last sample: held may have grown by this much since. */
    private final LongAdder sinceSample = new LongAdder();
    private final LongAdder pauses = new LongAdder();
    private ScheduledExecutorService sampler;

    MemoryBudget(PooledByteBufAllocator allocator, long budget) {
        this.allocator = allocator;
        this.budget = budget;
        this.refuseAt = budget / 10 * 9;
        this.resumeAt = budget / 10 * 8;
    }

    /**
     * The budget for {@code allocator}: {@code configured} bytes, or with {@code configured <= 0}
     * (auto) three quarters of the JVM's direct memory less one chunk per direct arena.
     */
    public static MemoryBudget of(PooledByteBufAllocator allocator, long configured) {
        return new MemoryBudget(allocator, configured > 0 ? configured : auto(allocator));
    }

    static long auto(PooledByteBufAllocator allocator) {
        long max = PlatformDependent.maxDirectMemory();
        long chunk = allocator.metric().chunkSize();
        long arenas = Math.max(1, allocator.metric().numDirectArenas());
        return Math.max(chunk, max / 4 * 3 - arenas * chunk);
    }

    /** Starts sampling the allocator on a thread of its own. */
    public MemoryBudget start() {
        sampler = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "egress-memory-budget");
            t.setDaemon(true);
            return t;
        });
        sampler.scheduleWithFixedDelay(this::sample, SAMPLE_MILLIS, SAMPLE_MILLIS, TimeUnit.MILLISECONDS);
        return this;
    }

    /**
     * Bytes held in direct buffers now: those pinned to live buffers of the pool, or, when the
     * pool has no direct arenas (Netty creates none for a direct memory under 24 MiB and then
     * allocates each buffer from the JVM), all the direct memory the JVM has handed out.
     */
    long heldNow() {
        if (allocator.metric().numDirectArenas() > 0) {
            return allocator.pinnedDirectMemory();
        }
        long used = PlatformDependent.usedDirectMemory();
        return used >= 0 ? used : JVM_DIRECT.getMemoryUsed();
    }

    /** Reads the allocator once and moves between admitting, refusing and pausing. */
    void sample() {
        // Reset first: a read counted from here on may be in the sample too, which only errs on the safe side.
        sinceSample.reset();
        long now = heldNow();
        held = now;
        if (now >= budget && !full) {
            full = true;
            admitting = false;
            log.warn("memory budget full: {} bytes held in buffers of {}; relays whose slow side holds more than {} "
                    + "bytes pause reading and new connections are answered 503 memory_budget until it falls below {}",
                    now, budget, BACKLOG, resumeAt);
        } else if (now >= refuseAt && admitting) {
            admitting = false;
        } else if (now < resumeAt && (full || !admitting)) {
            boolean wasFull = full;
            full = false;
            admitting = true;
            if (wasFull) {
                log.info("memory budget: {} bytes held, below {}: relays read again, new connections admitted",
                        now, resumeAt);
            }
        }
        if (!paused.isEmpty()) {
            // Below 80% everyone reads again; above it only directions whose slow side has drained,
            // whether they paused at a full budget or on reads that outran the last sample. Resuming
            // the others would let each queue another read per sample while the budget stays full.
            resume(now >= resumeAt);
        }
    }

    /**
     * Resumes the paused directions: all, or only those whose slow side has drained. A direction
     * whose channel has closed meanwhile is dropped (a closed slow side never drains).
     */
    private void resume(boolean drainedOnly) {
        for (Map.Entry<Channel, Resumable> e : paused.entrySet()) {
            Channel ch = e.getKey();
            Resumable r = e.getValue();
            if (!ch.isActive()) {
                paused.remove(ch, r);
            } else if ((!drainedOnly || backlog(r.slowSide()) <= BACKLOG) && paused.remove(ch, r)) {
                ch.eventLoop().execute(r::resume);
            }
        }
    }

    /** Bytes queued towards {@code slow} (its write buffer's high water mark when it is full). */
    private static long backlog(Channel slow) {
        return slow == null ? 0 : slow.config().getWriteBufferHighWaterMark() - slow.bytesBeforeUnwritable();
    }

    /**
     * Called by a relay after it has passed on a read from {@code ch} ({@code justQueued} bytes,
     * not flushed yet) or when {@code ch} might read again: if the budget is full and the slow
     * side still holds more than {@link #BACKLOG} bytes besides those, stops reading from
     * {@code ch} until that side has drained or the budget has room ({@code r.resume()} then runs
     * on {@code ch}'s event loop) and returns true.
     */
    public boolean pauseIfFull(Channel ch, Resumable r, int justQueued) {
        if (justQueued > 0) {
            sinceSample.add(justQueued);
        }
        if (backlog(r.slowSide()) - justQueued <= BACKLOG || !(full || held + sinceSample.sum() >= budget)) {
            return false;
        }
        ch.config().setAutoRead(false);
        paused.put(ch, r);
        pauses.increment();
        // If a sample resumed the others between the check and the put, the next one resumes this.
        return true;
    }

    /** False from 90% of the budget until below 80%: new connections are answered 503. */
    public boolean admitting() {
        return admitting;
    }

    /** The budget in bytes. */
    public long budget() {
        return budget;
    }

    /** Bytes held in the allocator's buffers at the last sample. */
    public long held() {
        return held;
    }

    /** Reads paused for the budget since start. */
    public long pauses() {
        return pauses.sum();
    }

    public String describe() {
        return "memory budget " + (budget >> 20) + " MiB of " + (PlatformDependent.maxDirectMemory() >> 20)
                + " MiB direct memory (new connections refused from " + (refuseAt >> 20) + " MiB, reads pause at "
                + (budget >> 20) + " MiB)";
    }

    @Override
    public void close() {
        if (sampler != null) {
            sampler.shutdownNow();
        }
    }
}
