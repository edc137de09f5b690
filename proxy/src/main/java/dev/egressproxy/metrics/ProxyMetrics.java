package dev.egressproxy.metrics;

import dev.egressproxy.guard.ProxyAuth;
import dev.egressproxy.policy.Decision;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.Reason;
import dev.egressproxy.policy.Verdict;
import dev.egressproxy.tls.HandshakeFailure;
import dev.egressproxy.tls.SniReason;
import dev.egressproxy.upstream.DnsResult;
import dev.egressproxy.upstream.FailureCause;
import dev.egressproxy.upstream.ParentFailure;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * Every meter the proxy publishes, defined once. Handlers call the methods here and never build
 * meter names. Names are dotted; the Prometheus registry renders them in snake case with
 * {@code _total} on counters and {@code _seconds} on timers (docs/metrics.md lists them all).
 *
 * <p>Labels are bounded: {@code kind}, {@code decision}, {@code reason}, {@code cause} and
 * {@code direction} are enums. The {@code host} label on the gap metrics is the exception that is
 * the product's point; it is capped by {@link HostLabels}.
 */
public final class ProxyMetrics {

    /** {@code egress_proxy_requests_total{kind,decision,reason}}: every request or CONNECT decided. */
    public static final String REQUESTS = "egress.proxy.requests";
    /** {@code egress_proxy_denied_total{host,reason}}: refusals, by the refused host (capped). */
    public static final String DENIED = "egress.proxy.denied";
    /**
     * {@code egress_proxy_would_deny_total{host,reason}}: requests {@code allowlist.mode = report}
     * let through that enforcing would refuse, by host (capped) and refusal reason.
     */
    public static final String WOULD_DENY = "egress.proxy.would.deny";
    /** {@code egress_proxy_allowlist_enforced}: 1 when every allowlist (top level, policies) enforces, 0 when one reports. */
    public static final String ALLOWLIST_ENFORCED = "egress.proxy.allowlist.enforced";
    /** {@code egress_proxy_sni_mismatch_total{host,reason}}: tunnels whose ClientHello failed the SNI check, by CONNECT host (capped). */
    public static final String SNI_MISMATCH = "egress.proxy.sni.mismatch";
    /** {@code egress_proxy_host_labels_overflow_total{metric}}: host labels folded into _other_. */
    public static final String HOST_LABELS_OVERFLOW = "egress.proxy.host.labels.overflow";
    /** {@code egress_proxy_upstream_failures_total{host,cause}}: allowed hosts the proxy could not reach. */
    public static final String UPSTREAM_FAILURES = "egress.proxy.upstream.failures";
    /**
     * {@code egress_proxy_parent_failures_total{host,cause}}: allowed destinations routed through
     * the parent proxy (upstream-proxy) that it could not be reached for, by destination host
     * (capped) and cause: the parent unreachable, or its non-2xx answer.
     */
    public static final String PARENT_FAILURES = "egress.proxy.parent.failures";
    /**
     * {@code egress_proxy_upstream_fast_fail{host}}: 1 while every address of the host is skipped
     * after connect timeouts (in its fast-fail cool-down or waiting for its trial), else 0.
     */
    public static final String UPSTREAM_FAST_FAIL = "egress.proxy.upstream.fast.fail";
    /**
     * {@code egress_proxy_upstream_connect_seconds{host}}: time to connect upstream over TCP, from
     * the first attempt to the connection that won; DNS is in {@link #DNS}.
     */
    public static final String UPSTREAM_CONNECT = "egress.proxy.upstream.connect";
    /** {@code egress_proxy_dns_seconds{result}}: time to resolve a destination's name, by result. */
    public static final String DNS = "egress.proxy.dns";
    /** {@code egress_proxy_tunnels_active}: CONNECT tunnels open now. */
    public static final String TUNNELS_ACTIVE = "egress.proxy.tunnels.active";
    /** {@code egress_proxy_connections_active}: client connections open now. */
    public static final String CONNECTIONS_ACTIVE = "egress.proxy.connections.active";
    /**
     * {@code egress_proxy_connections_limit}: the max-connections in force: the configured one, or
     * less when the open-file limit cannot hold it.
     */
    public static final String CONNECTIONS_LIMIT = "egress.proxy.connections.limit";
    /** {@code egress_proxy_rejected_total{reason}}: connections refused or closed by a limit. */
    public static final String REJECTED = "egress.proxy.rejected";
    /**
     * {@code egress_proxy_admin_rejected_total}: admin requests refused because the client's
     * address is outside {@code admin.clients.allow}.
     */
    public static final String ADMIN_REJECTED = "egress.proxy.admin.rejected";
    /** {@code egress_proxy_admin_host_rejected_total}: admin requests refused (403) for a Host outside admin.hosts. */
    public static final String ADMIN_HOST_REJECTED = "egress.proxy.admin.host.rejected";
    /** {@code egress_proxy_memory_budget_bytes}: direct memory relays may hold before they pause. */
    public static final String MEMORY_BUDGET = "egress.proxy.memory.budget";
    /** {@code egress_proxy_memory_held_bytes}: direct memory held in buffers at the last sample. */
    public static final String MEMORY_HELD = "egress.proxy.memory.held";
    /** {@code egress_proxy_memory_budget_pauses_total}: reads paused because the memory budget was full. */
    public static final String MEMORY_PAUSES = "egress.proxy.memory.budget.pauses";
    /** {@code egress_proxy_bytes_total{direction}}: payload bytes relayed. */
    public static final String BYTES = "egress.proxy.bytes";
    /** {@code egress_proxy_tunnel_splices_total}: tunnel directions that moved to splice(2). */
    public static final String TUNNEL_SPLICES = "egress.proxy.tunnel.splices";
    /** {@code egress_proxy_tunnel_duration_seconds}: lifetime of CONNECT tunnels. */
    public static final String TUNNEL_DURATION = "egress.proxy.tunnel.duration";
    /** {@code egress_proxy_config_reloads_total{result}}: config reloads, successful or refused. */
    public static final String CONFIG_RELOADS = "egress.proxy.config.reloads";
    /** {@code egress_proxy_allowlist_entries}: entries in the allowlist in force (presets expanded). */
    public static final String ALLOWLIST_ENTRIES = "egress.proxy.allowlist.entries";
    /**
     * {@code egress_proxy_tls_handshake_failures_total{reason}}: client connections to the TLS
     * listener ({@code listen.tls}) closed because their handshake failed, by reason.
     */
    public static final String TLS_HANDSHAKE_FAILURES = "egress.proxy.tls.handshake.failures";
    /**
     * {@code egress_proxy_auth_failures_total{reason}}: requests that did not authenticate
     * ({@code auth.basic}), by reason ({@code missing}, {@code malformed}, {@code unknown_user},
     * {@code bad_password}, {@code rate_limited}, {@code busy}); never by user.
     */
    public static final String AUTH_FAILURES = "egress.proxy.auth.failures";
    /** {@code egress_proxy_build_info{version}}: always 1; carries the version label. */
    public static final String BUILD_INFO = "egress.proxy.build.info";

    /** Histogram buckets for connect latency: loopback to a slow intercontinental handshake. */
    private static final Duration[] CONNECT_BUCKETS = {
        Duration.ofMillis(1), Duration.ofMillis(5), Duration.ofMillis(10), Duration.ofMillis(25),
        Duration.ofMillis(50), Duration.ofMillis(100), Duration.ofMillis(250), Duration.ofMillis(500),
        Duration.ofSeconds(1), Duration.ofMillis(2500), Duration.ofSeconds(5), Duration.ofSeconds(10)};

    /** Histogram buckets for tunnel lifetime: a token fetch to a multi-gigabyte layer. */
    private static final Duration[] TUNNEL_BUCKETS = {
        Duration.ofMillis(10), Duration.ofMillis(100), Duration.ofSeconds(1), Duration.ofSeconds(10),
        Duration.ofSeconds(60), Duration.ofMinutes(5), Duration.ofMinutes(30), Duration.ofHours(2)};

    /** Rejection reasons, pre-registered so their series exist at zero. */
    public enum Rejection {
        CONNECTION_LIMIT("connection_limit"),
        CLIENT_NOT_ALLOWED("client_not_allowed"),
        PER_CLIENT_LIMIT("per_client_limit"),
        REQUEST_HEAD_TIMEOUT("request_head_timeout"),
        HEAD_TOO_LARGE("head_too_large"),
        URI_TOO_LONG("uri_too_long"),
        IDLE_TIMEOUT("idle_timeout"),
        MEMORY_BUDGET("memory_budget"),
        ACCEPT_FAILED("accept_failed"),
        /** listen.proxy-protocol: the TCP peer is outside listen.proxy-protocol-from. */
        PROXY_PROTOCOL_UNTRUSTED("proxy_protocol_untrusted"),
        /** listen.proxy-protocol: no valid PROXY header (garbage, a plain request, a truncated or oversized header). */
        PROXY_PROTOCOL_MALFORMED("proxy_protocol_malformed"),
        /** listen.proxy-protocol: a valid header of a version the listener does not accept. */
        PROXY_PROTOCOL_WRONG_VERSION("proxy_protocol_wrong_version"),
        /** listen.proxy-protocol: no complete header within timeouts.request-head. */
        PROXY_PROTOCOL_TIMEOUT("proxy_protocol_timeout");

        private final String label;

        Rejection(String label) {
            this.label = label;
        }

        public String label() {
            return label;
        }
    }

    private final MeterRegistry registry;
    private final Map<Kind, Map<Reason, Counter>> requests = new EnumMap<>(Kind.class);
    private final Map<Rejection, Counter> rejected = new EnumMap<>(Rejection.class);
    private final Map<HandshakeFailure, Counter> tlsFailures = new EnumMap<>(HandshakeFailure.class);
    private final HostLabels deniedHosts;
    private final HostLabels wouldDenyHosts;
    private final HostLabels failureHosts;
    private final HostLabels sniHosts;
    private final HostLabels parentHosts;
    private final Map<String, Counter> deniedCounters = new ConcurrentHashMap<>();
    private final Map<String, Counter> wouldDenyCounters = new ConcurrentHashMap<>();
    /** The would_deny series of requests_total, by kind and reportable reason. */
    private final Map<Kind, Map<Reason, Counter>> wouldDenyRequests = new EnumMap<>(Kind.class);
    private final AtomicInteger allowlistEnforced = new AtomicInteger(1);
    private final Map<String, Counter> failureCounters = new ConcurrentHashMap<>();
    private final Map<String, Counter> sniCounters = new ConcurrentHashMap<>();
    private final Map<String, Counter> parentCounters = new ConcurrentHashMap<>();
    private final Map<String, Timer> connectTimers = new ConcurrentHashMap<>();
    private final Map<String, Gauge> fastFailGauges = new ConcurrentHashMap<>();
    private volatile Supplier<Set<String>> fastFailHosts = Set::of;
    private final Map<DnsResult, Timer> dnsTimers = new EnumMap<>(DnsResult.class);
    private final Counter bytesToUpstream;
    private final Counter bytesToClient;
    private final Counter tunnelSplices;
    private final Timer tunnelDuration;
    private final AtomicInteger tunnelsActive = new AtomicInteger();
    private final AtomicInteger connectionsActive = new AtomicInteger();
    private final AtomicInteger connectionsLimit = new AtomicInteger();
    private final AtomicInteger allowlistEntries = new AtomicInteger();
    private final Counter reloadSuccess;
    private final Counter reloadFailure;
    private final Counter adminRejected;
    private final Counter adminHostRejected;
    private final Map<String, Counter> authFailures = new ConcurrentHashMap<>();

    public ProxyMetrics(MeterRegistry registry, int maxHostLabels, String version) {
        this.registry = registry;
        for (Kind kind : Kind.values()) {
            Map<Reason, Counter> byReason = new EnumMap<>(Reason.class);
            for (Reason reason : Reason.values()) {
                boolean allowed = reason == Reason.HOST_ALLOWLISTED || reason == Reason.CIDR_ALLOWLISTED;
                byReason.put(reason, Counter.builder(REQUESTS)
                        .description("Requests and CONNECTs decided, by kind, decision and reason")
                        .tag("kind", kind.label())
                        .tag("decision", allowed ? "allowed" : "denied")
                        .tag("reason", reason.label())
                        .register(registry));
            }
            requests.put(kind, byReason);
            Map<Reason, Counter> reported = new EnumMap<>(Reason.class);
            for (Reason reason : Reason.values()) {
                if (reason.reportable()) {
                    reported.put(reason, Counter.builder(REQUESTS)
                            .description("Requests and CONNECTs decided, by kind, decision and reason")
                            .tag("kind", kind.label())
                            .tag("decision", Verdict.WOULD_DENY.label())
                            .tag("reason", reason.label())
                            .register(registry));
                }
            }
            wouldDenyRequests.put(kind, reported);
        }
        for (Rejection r : Rejection.values()) {
            rejected.put(r, Counter.builder(REJECTED)
                    .description("Client connections refused or closed by a limit, by reason")
                    .tag("reason", r.label())
                    .register(registry));
        }
        for (HandshakeFailure f : HandshakeFailure.values()) {
            tlsFailures.put(f, Counter.builder(TLS_HANDSHAKE_FAILURES)
                    .description("Client connections to the TLS listener closed because the handshake failed, by reason")
                    .tag("reason", f.label())
                    .register(registry));
        }
        deniedHosts = new HostLabels(maxHostLabels, overflowCounter("denied"));
        wouldDenyHosts = new HostLabels(maxHostLabels, overflowCounter("would_deny"));
        failureHosts = new HostLabels(maxHostLabels, overflowCounter("upstream_failures"));
        sniHosts = new HostLabels(maxHostLabels, overflowCounter("sni_mismatch"));
        parentHosts = new HostLabels(maxHostLabels, overflowCounter("parent_failures"));
        for (DnsResult result : DnsResult.values()) {
            dnsTimers.put(result, Timer.builder(DNS)
                    .description("Time to resolve a destination's name (cache and /etc/hosts included), by result")
                    .tag("result", result.label())
                    .serviceLevelObjectives(CONNECT_BUCKETS)
                    .register(registry));
        }
        bytesToUpstream = bytesCounter("client_to_upstream");
        bytesToClient = bytesCounter("upstream_to_client");
        tunnelSplices = Counter.builder(TUNNEL_SPLICES)
                .description("Tunnel directions that moved their bytes to splice(2): after relay.splice-after"
                        + " bytes, on a read of relay.splice-min-read bytes or more")
                .register(registry);
        tunnelDuration = Timer.builder(TUNNEL_DURATION)
                .description("Lifetime of CONNECT tunnels")
                .serviceLevelObjectives(TUNNEL_BUCKETS)
                .register(registry);
        Gauge.builder(TUNNELS_ACTIVE, tunnelsActive, AtomicInteger::get)
                .description("CONNECT tunnels open now").register(registry);
        Gauge.builder(CONNECTIONS_ACTIVE, connectionsActive, AtomicInteger::get)
                .description("Client connections open now").register(registry);
        Gauge.builder(CONNECTIONS_LIMIT, connectionsLimit, AtomicInteger::get)
                .description("Client connections held at most: limits.max-connections, or less if the open-file limit "
                        + "cannot hold it").register(registry);
        Gauge.builder(ALLOWLIST_ENTRIES, allowlistEntries, AtomicInteger::get)
                .description("Entries in the allowlist in force, presets expanded").register(registry);
        Gauge.builder(ALLOWLIST_ENFORCED, allowlistEnforced, AtomicInteger::get)
                .description("1 when allowlist.mode is enforce; 0 in report mode, where destinations the allowlist "
                        + "does not name are let through").register(registry);
        reloadSuccess = Counter.builder(CONFIG_RELOADS).description("Configuration reloads, by result")
                .tag("result", "success").register(registry);
        reloadFailure = Counter.builder(CONFIG_RELOADS).description("Configuration reloads, by result")
                .tag("result", "failure").register(registry);
        adminRejected = Counter.builder(ADMIN_REJECTED)
                .description("Admin requests refused (403) because the client address is outside admin.clients.allow")
                .register(registry);
        adminHostRejected = Counter.builder(ADMIN_HOST_REJECTED)
                .description("Admin requests refused (403) because their Host is none of the listener's names (admin.hosts)")
                .register(registry);
        for (ProxyAuth.Failure failure : ProxyAuth.Failure.values()) {
            authFailures.put(failure.label(), Counter.builder(AUTH_FAILURES)
                    .description("Requests that did not authenticate (auth.basic), by reason")
                    .tag("reason", failure.label())
                    .register(registry));
        }
        Gauge.builder(BUILD_INFO, () -> 1)
                .description("Build information; the value is always 1")
                .tag("version", version)
                .register(registry);
    }

    private Counter overflowCounter(String metric) {
        return Counter.builder(HOST_LABELS_OVERFLOW)
                .description("Host label values folded into _other_ because metrics.max-host-labels was reached")
                .tag("metric", metric)
                .register(registry);
    }

    private Counter bytesCounter(String direction) {
        return Counter.builder(BYTES)
                .description("Payload bytes relayed, by direction")
                .tag("direction", direction)
                .baseUnit("bytes")
                .register(registry);
    }

    public MeterRegistry registry() {
        return registry;
    }

    /**
     * Creates the per-host series of the allowlisted exact hosts at zero, so that {@code rate()}
     * and alerts work before the first failure.
     */
    public void registerAllowlistedHosts(List<String> hosts) {
        for (String host : hosts) {
            failureHosts.admit(host);
            for (FailureCause cause : FailureCause.values()) {
                failureCounter(host, cause);
            }
            connectTimer(host);
            fastFailGauge(host);
        }
    }

    /** Where the fast-fail gauges read which hosts are down (the upstream connector's state). */
    public void watchFastFail(Supplier<Set<String>> downHosts) {
        this.fastFailHosts = downHosts;
    }

    /** Makes sure {@code host} has its fast-fail gauge: it has just gone down. */
    public void upstreamFastFail(String host) {
        fastFailGauge(failureHosts.label(host));
    }

    private void fastFailGauge(String hostLabel) {
        fastFailGauges.computeIfAbsent(hostLabel, h -> Gauge.builder(UPSTREAM_FAST_FAIL, () -> fastFailValue(h))
                .description("1 while every address of the host is skipped after connect timeouts (upstream.fast-fail),"
                        + " by host (capped)")
                .tag("host", h)
                .register(registry));
    }

    private int fastFailValue(String hostLabel) {
        Set<String> down = fastFailHosts.get();
        if (down.isEmpty()) {
            return 0;
        }
        if (HostLabels.OTHER.equals(hostLabel)) {
            return down.stream().anyMatch(h -> !failureHosts.has(h)) ? 1 : 0;
        }
        return down.contains(hostLabel) ? 1 : 0;
    }

    /** A client's TLS handshake on the proxy listener failed. */
    public void tlsHandshakeFailed(HandshakeFailure reason) {
        tlsFailures.get(reason).increment();
    }

    public void setAllowlistEntries(int n) {
        allowlistEntries.set(n);
    }

    /** Whether the allowlist in force is enforced ({@code allowlist.mode}). */
    public void setAllowlistEnforced(boolean enforced) {
        allowlistEnforced.set(enforced ? 1 : 0);
    }

    /** Counts a reload attempt: {@code success} when the new config is in force. */
    public void configReload(boolean success) {
        (success ? reloadSuccess : reloadFailure).increment();
    }

    public void setConnectionsLimit(int limit) {
        connectionsLimit.set(limit);
    }

    /** Registers the memory budget's gauges and its pause counter (guard.MemoryBudget's numbers). */
    public void registerMemoryBudget(LongSupplier budget, LongSupplier held, LongSupplier pauses) {
        Gauge.builder(MEMORY_BUDGET, budget::getAsLong).baseUnit("bytes")
                .description("Direct memory the proxy's buffers may hold before relays pause reading "
                        + "(limits.memory-budget)").register(registry);
        Gauge.builder(MEMORY_HELD, held::getAsLong).baseUnit("bytes")
                .description("Direct memory held in the proxy's buffers (sampled every 10 ms)").register(registry);
        FunctionCounter.builder(MEMORY_PAUSES, pauses, LongSupplier::getAsLong)
                .description("Reads paused because the memory budget was full").register(registry);
    }

    public void request(Kind kind, Reason reason) {
        requests.get(kind).get(reason).increment();
    }

    /**
     * Counts a decided request under its decision: a would-be denial of report mode under
     * {@code decision="would_deny"}, others as {@link #request(Kind, Reason)}.
     */
    public void request(Kind kind, Decision decision) {
        if (decision.verdict() == Verdict.WOULD_DENY) {
            wouldDenyRequests.get(kind).get(decision.reason()).increment();
        } else {
            request(kind, decision.reason());
        }
    }

    /** Counts a request report mode let through that enforcing would refuse for {@code reason}. */
    public void wouldDeny(String host, Reason reason, String policy) {
        hostReasonCounter(wouldDenyCounters, WOULD_DENY, "Requests allowlist.mode = report let through that"
                + " enforcing would refuse, by host (capped, see metrics.max-host-labels), reason and policy",
                wouldDenyHosts.label(host), reason.label(), policy).increment();
    }

    /** A refusal by {@code policy}'s allowlist ({@code default}: the top-level one). */
    public void denied(String host, Reason reason, String policy) {
        hostReasonCounter(deniedCounters, DENIED,
                "Requests refused, by refused host (capped, see metrics.max-host-labels), reason and policy",
                deniedHosts.label(host), reason.label(), policy).increment();
    }

    /**
     * The counter {@code name{host, reason[, policy]}} kept in {@code counters}, registered on first
     * use; {@code policy} null leaves the label out. Policies are few (the operator writes them).
     */
    private Counter hostReasonCounter(Map<String, Counter> counters, String name, String description, String host,
            String reason, String policy) {
        return counters.computeIfAbsent(host + '\n' + reason + '\n' + policy, k -> {
            Counter.Builder b = Counter.builder(name).description(description).tag("host", host).tag("reason", reason);
            return (policy == null ? b : b.tag("policy", policy)).register(registry);
        });
    }

    /**
     * Counts a tunnel whose ClientHello failed the SNI check, under the CONNECT host (never the
     * name the client sent, which is free text).
     */
    public void sniMismatch(String host, SniReason reason) {
        hostReasonCounter(sniCounters, SNI_MISMATCH, "CONNECT tunnels whose TLS ClientHello failed the SNI check"
                + " (tunnels.sni-check), by CONNECT host (capped, see metrics.max-host-labels) and reason",
                sniHosts.label(host), reason.label(), null).increment();
    }

    public void upstreamFailure(String host, FailureCause cause) {
        failureCounter(failureHosts.label(host), cause).increment();
    }

    private Counter failureCounter(String hostLabel, FailureCause cause) {
        return hostCauseCounter(failureCounters, UPSTREAM_FAILURES,
                "Allowed destinations the proxy could not reach, by host (capped) and cause", hostLabel, cause.label());
    }

    /** The counter {@code name{host, cause}} kept in {@code counters}, registered on first use. */
    private Counter hostCauseCounter(Map<String, Counter> counters, String name, String description, String hostLabel,
            String cause) {
        return counters.computeIfAbsent(hostLabel + '\n' + cause, k -> Counter.builder(name)
                .description(description)
                .tag("host", hostLabel)
                .tag("cause", cause)
                .register(registry));
    }

    /**
     * Counts a destination routed through the parent proxy that the parent failed for, under the
     * destination's host (the parent is one, named in the answer and the log).
     */
    public void parentFailure(String host, ParentFailure failure) {
        hostCauseCounter(parentCounters, PARENT_FAILURES, "Allowed destinations routed through the parent proxy"
                + " (upstream-proxy) that could not be reached through it, by destination host (capped) and cause",
                parentHosts.label(host), failure.label()).increment();
    }

    /** Records a name lookup that took {@code nanos} and ended with {@code result}. */
    public void dnsResolved(DnsResult result, long nanos) {
        dnsTimers.get(result).record(nanos, TimeUnit.NANOSECONDS);
    }

    /** Records a TCP connect that took {@code nanos}, from its first attempt; DNS not included. */
    public void upstreamConnected(String host, long nanos) {
        connectTimer(failureHosts.label(host)).record(nanos, TimeUnit.NANOSECONDS);
    }

    private Timer connectTimer(String hostLabel) {
        return connectTimers.computeIfAbsent(hostLabel, h -> Timer.builder(UPSTREAM_CONNECT)
                .description("Time to connect to an allowed upstream over TCP (DNS not included), by host")
                .tag("host", h)
                .serviceLevelObjectives(CONNECT_BUCKETS)
                .register(registry));
    }

    public void rejected(Rejection rejection) {
        rejected.get(rejection).increment();
    }

    /** Counts a request that did not authenticate, by its {@link ProxyAuth.Failure#label()}. */
    public void authFailure(String reason) {
        authFailures.get(reason).increment();
    }

    /** Counts an admin request refused for its client address. */
    public void adminRejected() {
        adminRejected.increment();
    }

    /** Counts an admin request refused for its Host header (admin.hosts). */
    public void adminHostRejected() {
        adminHostRejected.increment();
    }

    public void bytesToUpstream(long n) {
        bytesToUpstream.increment(n);
    }

    public void bytesToClient(long n) {
        bytesToClient.increment(n);
    }

    public void tunnelSpliced() {
        tunnelSplices.increment();
    }

    public void tunnelOpened() {
        tunnelsActive.incrementAndGet();
    }

    public void tunnelClosed(long nanos) {
        tunnelsActive.decrementAndGet();
        tunnelDuration.record(nanos, TimeUnit.NANOSECONDS);
    }

    public void connectionOpened() {
        connectionsActive.incrementAndGet();
    }

    public void connectionClosed() {
        connectionsActive.decrementAndGet();
    }

    public int connectionsActive() {
        return connectionsActive.get();
    }

    public int tunnelsActive() {
        return tunnelsActive.get();
    }
}
