package dev.egressproxy.upstream;

import dev.egressproxy.config.ProxyConfig;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.LongSupplier;

/**
 * The upstream addresses (IP and port) whose connects timed out recently, and the hosts all of
 * whose addresses did: what {@code upstream.fast-fail} skips. Shared by every event loop.
 *
 * <p>Only connect timeouts count. A timeout spans several SYN retransmissions without an answer,
 * which is what a firewall that drops the traffic looks like; a refusal, a reset or an ICMP
 * unreachable is an answer, fails within a round trip anyway, and clears the address.
 *
 * <p>Per address: after {@code timeouts} timeouts within {@code window} the address is <em>down</em>:
 * it is skipped for {@code cool-down}. Once the cool-down is over, one request at a time may dial
 * it (the trial; the other requests still skip it while the trial runs). A trial that connects, or
 * that gets any other answer, clears the address at once; one that times out starts another
 * cool-down; one that loses the Happy Eyeballs race to another address of the host starts another
 * cool-down too (the address did not answer within the attempt delay while another did), and one
 * abandoned otherwise (the client went away, or the race was won before the trial was dialled)
 * leaves it waiting for the next trial. A down address nobody asks for is forgotten {@code window}
 * after its cool-down ended.
 *
 * <p>Bounded: at most {@value #MAX_ADDRESSES} addresses (past it the expired ones are swept, then
 * the one that timed out longest ago is dropped) and {@value #MAX_HOSTS} host records. On the hot
 * path, with nothing recorded, {@link #select} is one {@code isEmpty()} and allocates nothing;
 * otherwise it is one map lookup per address.
 */
public final class FastFail {

    static final int MAX_ADDRESSES = 4096;
    static final int MAX_HOSTS = 1024;

    /** {@link #select}'s answer when nothing is known about the addresses: dial them all. */
    public static final Selection UNCHANGED = new Selection(List.of(), List.of(), 0, 0, 0);

    /**
     * One address's state (nanoTime values). {@code down}: skipped until {@code coolDownEnd}, then
     * one trial at a time ({@code trialSince} non-zero while one runs); forgotten after
     * {@code expires}. Not down: {@code timeouts} counted since {@code windowStart}.
     */
    private record State(int timeouts, long windowStart, long lastTimeout, boolean down, long coolDownEnd,
            long expires, long trialSince) {
    }

    /** The addresses a host resolved to, kept while they are all down (for the gauge). */
    private record HostRecord(String host, List<InetSocketAddress> addresses) {
    }

    /**
     * What to dial of a host's addresses.
     *
     * @param dial the addresses to dial, in the given order, trials included (empty: fast-fail)
     * @param trials the addresses this request claimed a trial of; it must report each one's end
     * @param skipped how many addresses were skipped
     * @param sinceTimeout for an empty {@code dial}: nanoseconds since the latest timeout of a skipped address
     * @param untilRetry for an empty {@code dial}: nanoseconds until the next trial may start (0: one runs now)
     */
    public record Selection(List<InetSocketAddress> dial, List<InetSocketAddress> trials, int skipped,
            long sinceTimeout, long untilRetry) {
    }

    private final Map<InetSocketAddress, State> states = new ConcurrentHashMap<>();
    private final Map<String, HostRecord> hosts = new ConcurrentHashMap<>();
    private final LongSupplier nanoTime;

    public FastFail() {
        this(System::nanoTime);
    }

    /** @param nanoTime the clock ({@link System#nanoTime} but in tests) */
    public FastFail(LongSupplier nanoTime) {
        this.nanoTime = nanoTime;
    }

    /**
     * Picks the addresses to dial. Returns {@link #UNCHANGED} when none of them is down; otherwise
     * the addresses not skipped, trials claimed for this request included.
     */
    public Selection select(List<InetSocketAddress> addresses, ProxyConfig.FastFail settings) {
        if (!settings.enabled()) {
            if (!states.isEmpty() || !hosts.isEmpty()) {
                // Turned off by a reload: what was learnt meanwhile must not resurface if it is turned on again.
                states.clear();
                hosts.clear();
            }
            return UNCHANGED;
        }
        if (states.isEmpty()) {
            return UNCHANGED;
        }
        long now = nanoTime.getAsLong();
        List<InetSocketAddress> dial = null;
        List<InetSocketAddress> trials = List.of();
        int skipped = 0;
        long sinceTimeout = Long.MAX_VALUE;
        long untilRetry = Long.MAX_VALUE;
        for (int i = 0; i < addresses.size(); i++) {
            InetSocketAddress a = addresses.get(i);
            State s = states.get(a);
            boolean skip = false;
            boolean trial = false;
            if (s != null && s.down()) {
                if (now - s.expires() > 0) {
                    states.remove(a, s);
                } else if (now - s.coolDownEnd() < 0) {
                    skip = true;
                    untilRetry = Math.min(untilRetry, s.coolDownEnd() - now);
                } else if (claimTrial(a, now)) {
                    trial = true;
                } else {
                    // Another request is trying it now.
                    skip = true;
                    untilRetry = 0;
                }
                if (skip) {
                    sinceTimeout = Math.min(sinceTimeout, now - s.lastTimeout());
                }
            }
            if (skip || trial) {
                if (dial == null) {
                    dial = new ArrayList<>(addresses.subList(0, i));
                }
                if (trial) {
                    trials = trials.isEmpty() ? new ArrayList<>(2) : trials;
                    trials.add(a);
                    dial.add(a);
                } else {
                    skipped++;
                }
            } else if (dial != null) {
                dial.add(a);
            }
        }
        if (dial == null) {
            return UNCHANGED;
        }
        return new Selection(dial, trials, skipped, dial.isEmpty() ? sinceTimeout : 0, dial.isEmpty() ? untilRetry : 0);
    }

    /** Claims the trial of a down address whose cool-down is over, unless one runs already. */
    private boolean claimTrial(InetSocketAddress a, long now) {
        boolean[] claimed = {false};
        states.computeIfPresent(a, (k, s) -> {
            // A trial claimed but never reported (it cannot happen, but a stuck address would be
            // worse than a second trial) lapses when the address would have expired.
            if (s.down() && now - s.coolDownEnd() >= 0 && (s.trialSince() == 0 || now - s.expires() > 0)) {
                claimed[0] = true;
                return new State(s.timeouts(), s.windowStart(), s.lastTimeout(), true, s.coolDownEnd(), s.expires(),
                        now | 1);
            }
            return s;
        });
        return claimed[0];
    }

    /**
     * Records a connect timeout of {@code a}. Returns whether the address is down now. A trial's
     * timeout, or any timeout of a down address, starts a new cool-down.
     */
    public boolean timedOut(InetSocketAddress a, ProxyConfig.FastFail settings) {
        if (!settings.enabled()) {
            return false;
        }
        long now = nanoTime.getAsLong();
        long window = settings.window().toNanos();
        long coolDown = settings.coolDown().toNanos();
        if (!states.containsKey(a) && states.size() >= MAX_ADDRESSES) {
            makeRoom(now);
        }
        State next = states.compute(a, (k, s) -> {
            int timeouts;
            long windowStart;
            if (s == null || (!s.down() && now - s.windowStart() > window) || (s.down() && now - s.expires() > 0)) {
                timeouts = 1;
                windowStart = now;
            } else {
                timeouts = s.timeouts() + 1;
                windowStart = s.windowStart();
            }
            if ((s != null && s.down() && now - s.expires() <= 0) || timeouts >= settings.timeouts()) {
                long end = now + coolDown;
                return new State(timeouts, windowStart, now, true, end, end + window, 0);
            }
            return new State(timeouts, windowStart, now, false, 0, windowStart + window, 0);
        });
        return next.down();
    }

    /**
     * {@code a} answered (connected, refused, reset, unreachable): it is not dropping the traffic,
     * so whatever was recorded about it is cleared.
     */
    public void answered(InetSocketAddress a) {
        if (!states.isEmpty()) {
            states.remove(a);
        }
    }

    /**
     * The trial of {@code a} this request claimed ended without an answer: closed because another
     * address of the host connected first ({@code lostRace}: another cool-down), or never dialled or
     * given up for another reason (the next request may try).
     */
    public void trialAbandoned(InetSocketAddress a, boolean lostRace, ProxyConfig.FastFail settings) {
        long now = nanoTime.getAsLong();
        states.computeIfPresent(a, (k, s) -> {
            if (!s.down() || s.trialSince() == 0) {
                return s;
            }
            if (lostRace) {
                long end = now + settings.coolDown().toNanos();
                return new State(s.timeouts(), s.windowStart(), s.lastTimeout(), true, end,
                        end + settings.window().toNanos(), 0);
            }
            return new State(s.timeouts(), s.windowStart(), s.lastTimeout(), true, s.coolDownEnd(), s.expires(), 0);
        });
    }

    /**
     * Notes that {@code authority} ({@code host:port}) failed with every one of {@code addresses}
     * down, so that {@link #downHosts()} names {@code host} while they stay down. Returns whether
     * the record is new.
     */
    public boolean hostDown(String authority, String host, List<InetSocketAddress> addresses) {
        if (!hosts.containsKey(authority) && hosts.size() >= MAX_HOSTS) {
            hosts.values().removeIf(r -> !allDown(r.addresses(), nanoTime.getAsLong()));
            if (hosts.size() >= MAX_HOSTS) {
                return false;
            }
        }
        return hosts.put(authority, new HostRecord(host, List.copyOf(addresses))) == null;
    }

    /** {@code authority} connected: its host record, if any, goes. */
    public void hostConnected(String authority) {
        if (!hosts.isEmpty()) {
            hosts.remove(authority);
        }
    }

    /** Whether every one of {@code addresses} is down (in cool-down or waiting for its trial). */
    public boolean allDown(List<InetSocketAddress> addresses) {
        return allDown(addresses, nanoTime.getAsLong());
    }

    private boolean allDown(List<InetSocketAddress> addresses, long now) {
        if (addresses.isEmpty()) {
            return false;
        }
        for (InetSocketAddress a : addresses) {
            State s = states.get(a);
            if (s == null || !s.down() || now - s.expires() > 0) {
                return false;
            }
        }
        return true;
    }

    /**
     * The hosts all of whose addresses (of some port) are down now: the {@code
     * egress_proxy_upstream_fast_fail} gauge. Records that are no longer down are dropped.
     */
    public Set<String> downHosts() {
        if (hosts.isEmpty()) {
            return Set.of();
        }
        long now = nanoTime.getAsLong();
        Set<String> down = new HashSet<>();
        for (Map.Entry<String, HostRecord> e : hosts.entrySet()) {
            if (allDown(e.getValue().addresses(), now)) {
                down.add(e.getValue().host());
            } else {
                hosts.remove(e.getKey(), e.getValue());
            }
        }
        return down;
    }

    /**
     * One destination whose every address is skipped now, for {@code /status}.
     *
     * @param sinceTimeoutNanos since the latest connect timeout of one of its addresses
     * @param untilRetryNanos until the next trial of one of them may start (0: one may start now, or runs)
     * @param trialRunning whether a request is trying one of them now
     */
    public record Down(String authority, String host, List<InetSocketAddress> addresses, long sinceTimeoutNanos,
            long untilRetryNanos, boolean trialRunning) {
    }

    /** The destinations all of whose addresses are down now, most recently timed out first. */
    public List<Down> downDestinations() {
        if (hosts.isEmpty()) {
            return List.of();
        }
        long now = nanoTime.getAsLong();
        List<Down> down = new ArrayList<>();
        for (Map.Entry<String, HostRecord> e : hosts.entrySet()) {
            List<InetSocketAddress> addresses = e.getValue().addresses();
            if (!allDown(addresses, now)) {
                continue;
            }
            long sinceTimeout = Long.MAX_VALUE;
            long untilRetry = Long.MAX_VALUE;
            boolean trial = false;
            for (InetSocketAddress a : addresses) {
                State s = states.get(a);
                if (s == null) {
                    continue;
                }
                sinceTimeout = Math.min(sinceTimeout, now - s.lastTimeout());
                untilRetry = Math.min(untilRetry, Math.max(0, s.coolDownEnd() - now));
                trial |= s.trialSince() != 0;
            }
            down.add(new Down(e.getKey(), e.getValue().host(), addresses, sinceTimeout, untilRetry, trial));
        }
        down.sort(Comparator.comparingLong(Down::sinceTimeoutNanos));
        return down;
    }

    /** Addresses recorded now (tests). */
    int size() {
        return states.size();
    }

    /** Sweeps expired states; if none was, drops the one that timed out longest ago. */
    private void makeRoom(long now) {
        states.values().removeIf(s -> now - s.expires() > 0);
        if (states.size() < MAX_ADDRESSES) {
            return;
        }
        InetSocketAddress oldest = null;
        long oldestAge = Long.MIN_VALUE;
        for (Map.Entry<InetSocketAddress, State> e : states.entrySet()) {
            long age = now - e.getValue().lastTimeout();
            if (age > oldestAge) {
                oldestAge = age;
                oldest = e.getKey();
            }
        }
        if (oldest != null) {
            states.remove(oldest);
        }
    }
}
