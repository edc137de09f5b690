package dev.egressproxy.guard;

import com.sun.management.UnixOperatingSystemMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.OperatingSystemMXBean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * What the process's open-file limit allows: how many client connections it can hold, and how many
 * splice pipes fit beside them.
 *
 * <p>A client connection costs two descriptors (its socket and the upstream's), a tunnel direction
 * that moved to splice(2) two more (the pipe Netty keeps until the channel closes). Out of the limit
 * (the JVM raises the soft limit to the hard one as it starts) come the descriptors already open
 * when the listener is bound (the jar, logs, event loops, listeners) and a reserve for what comes
 * and goes: a client past the cap accepted to be answered 503, admin-port scrapes, DNS over TCP,
 * config reloads. The rest, halved, is the connection cap; if {@code limits.max-connections} asks
 * for more, the cap wins (the server logs both numbers at WARN).
 *
 * <p>Splice pipes take what connections leave, but never the last {@code reserve} descriptors
 * before the connections' share ends: a new client is admitted only while its two descriptors fit
 * beside the pipes open now, so a proxy short of descriptors answers the next client 503
 * {@code connection_limit} at once instead of failing its accept with EMFILE or its upstream
 * connect.
 */
public final class FdBudget {

    /** The least reserve: a few admin scrapes, DNS and reload files, and clients past the cap. */
    static final int MIN_RESERVE = 64;

    private final long limit;
    private final long openAtStart;
    private final long reserve;
    private final int configured;
    private final int maxConnections;
    private final AtomicInteger pipes = new AtomicInteger();
    /** Second upstream sockets of connections racing two connect attempts (Happy Eyeballs). */
    private final AtomicInteger spares = new AtomicInteger();

    FdBudget(long limit, long openAtStart, int configured) {
        this.limit = limit;
        this.openAtStart = openAtStart;
        this.configured = configured;
        if (limit <= 0) {
            // No limit the JVM can report (not a Unix JVM): nothing to cap.
            this.reserve = 0;
            this.maxConnections = configured;
            return;
        }
        this.reserve = Math.max(MIN_RESERVE, limit / 100);
        long spare = Math.max(0, limit - openAtStart - reserve);
        this.maxConnections = (int) Math.max(1, Math.min(configured, spare / 2));
    }

    /** The budget of this process now: its open-file limit and the descriptors open at this moment. */
    public static FdBudget ofThisProcess(int configuredMaxConnections) {
        OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof UnixOperatingSystemMXBean unix) {
            return new FdBudget(unix.getMaxFileDescriptorCount(), unix.getOpenFileDescriptorCount(),
                    configuredMaxConnections);
        }
        return new FdBudget(-1, 0, configuredMaxConnections);
    }

    /** Client connections held at most: {@code limits.max-connections}, or less if the limit says so. */
    public int maxConnections() {
        return maxConnections;
    }

    /** True when the open-file limit lowered {@code limits.max-connections}. */
    public boolean capsConfigured() {
        return maxConnections < configured;
    }

    /**
     * Whether one more client connection fits: under the cap, and its two descriptors beside the
     * {@code connections - 1} already open and the pipes. {@code connections} counts the new one.
     */
    public boolean admits(int connections) {
        return connections <= maxConnections && (limit <= 0 || used(connections, pipes.get()) <= limit - reserve);
    }

    /**
     * Takes the descriptors of one splice pipe while {@code connections} are open; false when
     * taking them would eat into the last {@code reserve} descriptors that connections may still
     * need (the direction then stays in user space).
     */
    public boolean tryAcquirePipe(int connections) {
        while (true) {
            int n = pipes.get();
            if (limit > 0 && used(connections, n + 1) + spares.get() > limit - 2 * reserve) {
                return false;
            }
            if (pipes.compareAndSet(n, n + 1)) {
                return true;
            }
        }
    }

    /**
     * Takes one descriptor for a second upstream socket while {@code connections} are open: a
     * connection that races a second connect attempt beside a pending one holds three sockets for
     * a moment. False on the same terms as a pipe; the connection then dials in turn.
     */
    public boolean tryAcquireSpare(int connections) {
        while (true) {
            int n = spares.get();
            if (limit > 0 && used(connections, pipes.get()) + n + 1 > limit - 2 * reserve) {
                return false;
            }
            if (spares.compareAndSet(n, n + 1)) {
                return true;
            }
        }
    }

    /** Gives back a descriptor taken by {@link #tryAcquireSpare}. */
    public void releaseSpare() {
        spares.decrementAndGet();
    }

    /** Second upstream sockets held now. */
    public int sparesInUse() {
        return spares.get();
    }

    private long used(int connections, int pipeCount) {
        return openAtStart + 2L * connections + 2L * pipeCount;
    }

    /** Gives back the descriptors of a pipe whose channel has closed. */
    public void releasePipe() {
        pipes.decrementAndGet();
    }

    /** Splice pipes open now. */
    public int pipesInUse() {
        return pipes.get();
    }

    /** The descriptors this budget would need for {@code connections} connections, with no pipe. */
    public long descriptorsFor(int connections) {
        return openAtStart + reserve + 2L * connections;
    }

    /** The start-up log's account of the budget. */
    public String describe() {
        if (limit <= 0) {
            return "open-file limit unknown; limits.max-connections " + configured + " in force";
        }
        return "open-file limit " + limit + ": " + openAtStart + " open at start, " + reserve + " in reserve, "
                + "2 per connection: at most " + maxConnections + " connections"
                + (capsConfigured() ? " (limits.max-connections asks for " + configured + ")" : "");
    }

    /** The WARN when the limit caps {@code limits.max-connections}: both numbers and how to raise the limit. */
    public String capWarning() {
        return "the open-file limit (" + limit + ") allows " + maxConnections + " client connections, not the "
                + configured + " of limits.max-connections (each needs 2 descriptors, " + descriptorsFor(configured)
                + " in all); clients past " + maxConnections + " are answered 503 connection_limit. Raise the limit: "
                + "systemd LimitNOFILE=" + descriptorsFor(configured) + ", podman/docker run --ulimit nofile="
                + descriptorsFor(configured) + ", on Kubernetes the container runtime's default (containerd, CRI-O: "
                + "LimitNOFILE of its service); or lower limits.max-connections to " + maxConnections;
    }
}
