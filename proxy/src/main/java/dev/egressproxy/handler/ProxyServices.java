package dev.egressproxy.handler;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.FdBudget;
import dev.egressproxy.guard.MemoryBudget;
import dev.egressproxy.log.AccessLog;
import dev.egressproxy.metrics.DeniedReport;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.policy.PolicyEngine;
import dev.egressproxy.upstream.UpstreamConnector;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * The server-wide services a connection's handlers use. One instance per running server;
 * {@code policy} is a supplier so that a reloaded allowlist applies to the next request;
 * {@code fds} and {@code memory} are the budgets every connection shares.
 */
public record ProxyServices(
        ProxyConfig config,
        Supplier<PolicyEngine> policy,
        ProxyMetrics metrics,
        DeniedReport deniedReport,
        AccessLog accessLog,
        UpstreamConnector connector,
        AtomicLong connectionIds,
        FdBudget fds,
        MemoryBudget memory) {

    /** A short id for a new client connection, used in log lines and access records. */
    public String nextConnectionId() {
        return Long.toString(connectionIds.incrementAndGet(), 36);
    }
}
