package dev.egressproxy.guard;

import java.net.InetAddress;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Connections held now per client address, shared by every event loop of a server. Each change is
 * one {@link ConcurrentHashMap#compute} on the address's entry, which the map runs atomically:
 * the check against the limit, the increment, the decrement and the removal at zero can never
 * interleave with another thread's. (Taking a counter out of the map and incrementing it after the
 * map call returns lets another thread remove that counter at zero in between, and the increment is
 * then lost: the count drifts low and the limit can be exceeded.) The map holds only addresses with
 * at least one connection, so it stays as small as the set of connected clients.
 */
final class ClientCounts {

    private final ConcurrentHashMap<InetAddress, Integer> open = new ConcurrentHashMap<>();

    /**
     * Counts one more connection from {@code client} if it holds fewer than {@code max}; returns
     * whether it did. A refused connection is not counted, so it never holds a slot while it closes.
     */
    boolean tryAcquire(InetAddress client, int max) {
        boolean[] acquired = new boolean[1];
        open.compute(client, (address, held) -> {
            int n = held == null ? 0 : held;
            if (n >= max) {
                return held;
            }
            acquired[0] = true;
            return n + 1;
        });
        return acquired[0];
    }

    /** Counts one connection from {@code client} gone; removes the address when none is left. */
    void release(InetAddress client) {
        open.computeIfPresent(client, (address, held) -> held <= 1 ? null : held - 1);
    }

    /** Connections held now from {@code client}. */
    int openFrom(InetAddress client) {
        return open.getOrDefault(client, 0);
    }

    /** Addresses holding at least one connection. */
    int addresses() {
        return open.size();
    }
}
