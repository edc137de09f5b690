package dev.egressproxy.metrics;

import io.micrometer.core.instrument.Counter;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Bounds the distinct values of a {@code host} label. The first {@code cap} hosts keep their own
 * name; later ones become {@value #OTHER} and bump an overflow counter. Refused hosts come from
 * clients, so without a cap a scanner could create one time series per name it tries.
 */
final class HostLabels {

    static final String OTHER = "_other_";

    private final int cap;
    private final Set<String> known = ConcurrentHashMap.newKeySet();
    private final AtomicInteger size = new AtomicInteger();
    private final Counter overflow;

    HostLabels(int cap, Counter overflow) {
        this.cap = cap;
        this.overflow = overflow;
    }

    /** Pre-admits a host (an allowlisted name) so its series exist from the start. */
    void admit(String host) {
        if (known.add(host)) {
            size.incrementAndGet();
        }
    }

    /** Whether {@code host} has its own label. */
    boolean has(String host) {
        return known.contains(host);
    }

    String label(String host) {
        if (known.contains(host)) {
            return host;
        }
        // Reserve a slot first so concurrent callers never push the set past the cap.
        if (size.incrementAndGet() <= cap) {
            if (known.add(host)) {
                return host;
            }
            size.decrementAndGet();
            return host;
        }
        size.decrementAndGet();
        overflow.increment();
        return OTHER;
    }
}
