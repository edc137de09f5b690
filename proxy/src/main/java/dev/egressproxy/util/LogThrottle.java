package dev.egressproxy.util;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Counts events that deserve a log line but may come by the thousand (failed accepts, refused
 * admin requests): at most one line per period, saying how many came since the last one. Safe
 * from any thread; allocates only when a line is due.
 */
public final class LogThrottle {

    /** A line is due: {@code events} since the last line (this one included), over {@code seconds}. */
    public record Due(long events, long seconds) {
    }

    private final long everyNanos;
    private final AtomicLong unlogged = new AtomicLong();
    private final AtomicLong lastLog;

    public LogThrottle(long every, TimeUnit unit) {
        this.everyNanos = unit.toNanos(every);
        // The first event logs at once.
        this.lastLog = new AtomicLong(System.nanoTime() - everyNanos);
    }

    /** Counts one event; returns what to log when a line is due now, else null. */
    public Due event() {
        long events = unlogged.incrementAndGet();
        long now = System.nanoTime();
        long last = lastLog.get();
        if (now - last >= everyNanos && lastLog.compareAndSet(last, now)) {
            unlogged.addAndGet(-events);
            return new Due(events, TimeUnit.NANOSECONDS.toSeconds(now - last));
        }
        return null;
    }
}
