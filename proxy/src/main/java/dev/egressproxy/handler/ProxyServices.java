package dev.egressproxy.handler;

import dev.egressproxy.config.ConfigSnapshot;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.FdBudget;
import dev.egressproxy.guard.MemoryBudget;
import dev.egressproxy.guard.ProxyAuth;
import dev.egressproxy.log.AccessLog;
import dev.egressproxy.metrics.DeniedReport;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.upstream.UpstreamConnector;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * The server-wide services a connection's handlers use. One instance per running server.
 * {@code config} is the configuration the server started with: read it only for settings that a
 * reload cannot change (limits, timeouts.idle, relay...). {@code live} gives the snapshot in force
 * (configuration and policy of the last reload), read once per request. {@code fds} and
 * {@code memory} are the budgets every connection shares; {@code auth} checks proxy credentials
 * ({@code auth.basic}) off the I/O threads.
 */
public record ProxyServices(
        ProxyConfig config,
        Supplier<ConfigSnapshot> live,
        ProxyMetrics metrics,
        DeniedReport deniedReport,
        AccessLog accessLog,
        UpstreamConnector connector,
        AtomicLong connectionIds,
        FdBudget fds,
        MemoryBudget memory,
        ProxyAuth auth) {

    /** Services without proxy authentication's checker (for tests that never enable {@code auth.basic}). */
    public ProxyServices(ProxyConfig config, Supplier<ConfigSnapshot> live, ProxyMetrics metrics,
            DeniedReport deniedReport, AccessLog accessLog, UpstreamConnector connector, AtomicLong connectionIds,
            FdBudget fds, MemoryBudget memory) {
        this(config, live, metrics, deniedReport, accessLog, connector, connectionIds, fds, memory, null);
    }

    /** A short id for a new client connection, used in log lines and access records. */
    public String nextConnectionId() {
        return Long.toString(connectionIds.incrementAndGet(), 36);
    }
}
