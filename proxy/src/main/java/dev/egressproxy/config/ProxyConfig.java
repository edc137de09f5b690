package dev.egressproxy.config;

import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.policy.AllowlistMode;
import dev.egressproxy.policy.CidrBlock;
import dev.egressproxy.policy.Target;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * The whole configuration, validated and immutable. Built once by {@link ConfigLoader}; nothing
 * else reads Typesafe Config. Each nested record mirrors one block of {@code reference.conf}.
 */
public record ProxyConfig(
        String transport,
        int ioThreads,
        Listen listen,
        Admin admin,
        Clients clients,
        Allowlist allowlist,
        Destinations destinations,
        Dns dns,
        Timeouts timeouts,
        Limits limits,
        Relay relay,
        Tunnels tunnels,
        Metrics metrics,
        Logging logging,
        Shutdown shutdown,
        Reload reload,
        Upstream upstream,
        Check check,
        UpstreamProxy upstreamProxy) {

    public ProxyConfig {
        Objects.requireNonNull(listen, "listen");
        Objects.requireNonNull(admin, "admin");
        Objects.requireNonNull(clients, "clients");
        Objects.requireNonNull(allowlist, "allowlist");
        Objects.requireNonNull(destinations, "destinations");
        Objects.requireNonNull(dns, "dns");
        Objects.requireNonNull(timeouts, "timeouts");
        Objects.requireNonNull(limits, "limits");
        Objects.requireNonNull(relay, "relay");
        Objects.requireNonNull(tunnels, "tunnels");
        Objects.requireNonNull(metrics, "metrics");
        Objects.requireNonNull(logging, "logging");
        Objects.requireNonNull(shutdown, "shutdown");
        Objects.requireNonNull(reload, "reload");
        Objects.requireNonNull(upstream, "upstream");
        Objects.requireNonNull(check, "check");
        Objects.requireNonNull(upstreamProxy, "upstreamProxy");
    }

    /** {@code egress-proxy.shutdown}: how long a drain may take. */
    public record Shutdown(Duration grace) {
    }

    /** {@code egress-proxy.reload}: whether the config file is watched. */
    public record Reload(boolean watch) {
    }

    /** This configuration with {@code upstream} in place of its own. */
    public ProxyConfig withUpstream(Upstream next) {
        return new ProxyConfig(transport, ioThreads, listen, admin, clients, allowlist, destinations, dns, timeouts,
                limits, relay, tunnels, metrics, logging, shutdown, reload, next, check, upstreamProxy);
    }

    /** {@code egress-proxy.upstream}: how the proxy treats upstream addresses that failed. */
    public record Upstream(FastFail fastFail) {
        public Upstream {
            Objects.requireNonNull(fastFail, "fastFail");
        }
    }

    /**
     * {@code egress-proxy.upstream.fast-fail}: an address whose connects timed out {@code timeouts}
     * times within {@code window} is not dialled for {@code coolDown}, except for one trial
     * connection after it (see {@code upstream.FastFail}).
     */
    public record FastFail(boolean enabled, int timeouts, Duration window, Duration coolDown) {
    }

    /**
     * {@code egress-proxy.upstream-proxy}: the parent proxy that allowed destinations are reached
     * through, or {@link #NONE} when {@code url} is empty. A destination goes through it when
     * {@code hosts} names it ({@code allHosts}: "*") and {@code bypass} does not; entries without a
     * port stand for every port ({@link dev.egressproxy.policy.Allowlist#names}).
     *
     * @param address the parent's {@code host:port} (a name is resolved when it is dialled)
     * @param user the parent's user name, or null when the parent gets no credentials
     * @param password read from {@code password-file}; null exactly when {@code user} is
     */
    public record UpstreamProxy(Target address, String user, String password, boolean allHosts,
            dev.egressproxy.policy.Allowlist hosts, boolean bypassAll, dev.egressproxy.policy.Allowlist bypass) {

        /** No parent: every destination is dialled directly. */
        public static final UpstreamProxy NONE = new UpstreamProxy(null, null, null, false,
                new dev.egressproxy.policy.Allowlist(List.of()), false, new dev.egressproxy.policy.Allowlist(List.of()));

        public UpstreamProxy {
            Objects.requireNonNull(hosts, "hosts");
            Objects.requireNonNull(bypass, "bypass");
            if ((user == null) != (password == null)) {
                throw new IllegalArgumentException("user and password go together");
            }
        }

        public boolean enabled() {
            return address != null;
        }

        /** Whether a request to {@code destination} goes through the parent. */
        public boolean routes(Target destination) {
            return enabled() && (allHosts || hosts.names(destination)) && !(bypassAll || bypass.names(destination));
        }

        /** The {@code Proxy-Authorization} value the parent gets, or null without credentials. */
        public String proxyAuthorization() {
            if (user == null) {
                return null;
            }
            return "Basic " + Base64.getEncoder().encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
        }

        /** Never the password. */
        @Override
        public String toString() {
            return enabled() ? "UpstreamProxy[" + address.authority() + (user == null ? "" : ", user " + user) + "]"
                    : "UpstreamProxy[none]";
        }
    }

    /**
     * {@code egress-proxy.check}: settings of {@code egress-proxy check hosts}.
     *
     * @param samples normalised host names dialled for the wildcard entries that cover them
     */
    public record Check(List<String> samples) {
        public Check {
            samples = List.copyOf(samples);
        }
    }

    /** {@code egress-proxy.listen}: where clients connect. */
    public record Listen(String host, int port) {
    }

    /**
     * {@code egress-proxy.admin}: the metrics and health listener, and who may read it beyond the
     * probe paths ({@code clients.allow}).
     */
    public record Admin(boolean enabled, String host, int port, List<CidrBlock> clientsAllow) {
        public Admin {
            clientsAllow = List.copyOf(clientsAllow);
        }

        /** Whether {@code other} binds the same listener (a difference there needs a restart). */
        public boolean sameListener(Admin other) {
            return enabled == other.enabled && host.equals(other.host) && port == other.port;
        }
    }

    /** {@code egress-proxy.clients}: who may use the proxy, and how much of it. */
    public record Clients(List<CidrBlock> allow, int maxConnectionsPerClient) {
        public Clients {
            allow = List.copyOf(allow);
        }
    }

    /**
     * {@code egress-proxy.allowlist}: presets named and every entry (presets expanded), whether a
     * destination it does not name is refused or only reported ({@code mode}), and the preset each
     * entry came from ({@code presetOf}, by {@link AllowlistEntry#text()}; an entry absent from it
     * was listed in {@code allowlist.hosts}). An entry both a preset and {@code hosts} name counts
     * as the first preset's.
     */
    public record Allowlist(List<String> presets, List<AllowlistEntry> entries, AllowlistMode mode,
            Map<String, String> presetOf) {
        public Allowlist {
            presets = List.copyOf(presets);
            entries = List.copyOf(entries);
            Objects.requireNonNull(mode, "mode");
            presetOf = Map.copyOf(presetOf);
        }

        /** The preset {@code entry} came from, or null when {@code allowlist.hosts} lists it. */
        public String presetOf(AllowlistEntry entry) {
            return presetOf.get(entry.text());
        }
    }

    /**
     * {@code egress-proxy.destinations}.
     *
     * @param allowPrivate CIDRs exempt from the private-address guard
     * @param connectTo normalised {@code host:port} to the address dialled instead of resolving it
     */
    public record Destinations(List<CidrBlock> allowPrivate, Map<String, InetSocketAddress> connectTo) {
        public Destinations {
            allowPrivate = List.copyOf(allowPrivate);
            connectTo = Map.copyOf(connectTo);
        }
    }

    /** {@code egress-proxy.dns}: the asynchronous resolver. Empty {@code servers}: resolv.conf. */
    public record Dns(List<InetSocketAddress> servers, Duration queryTimeout, Duration minTtl, Duration maxTtl,
            Duration negativeTtl) {
        public Dns {
            servers = List.copyOf(servers);
        }
    }

    /** {@code egress-proxy.timeouts}. */
    public record Timeouts(Duration connect, Duration requestHead, Duration idle, Duration connectAttemptDelay) {
    }

    /** {@code egress-proxy.limits}. Sizes in bytes. */
    public record Limits(int maxConnections, int maxRequestHead, int maxResponseHead, int writeBufferHigh,
            int writeBufferLow, long memoryBudget) {
    }

    /**
     * {@code egress-proxy.relay}: whether a tunnel direction moves to splice(2) on the epoll
     * transport, after how many bytes, and on a read of at least how many bytes (sizes in bytes).
     */
    public record Relay(boolean splice, long spliceAfter, int spliceMinRead) {
    }

    /**
     * {@code egress-proxy.tunnels}: the check of the TLS ClientHello a client sends first in a
     * CONNECT tunnel to one of {@code tlsPorts}.
     *
     * @param sniCheck whether the server name must match the CONNECT host, and what a mismatch does
     * @param tlsPorts the CONNECT ports the check applies to
     * @param clientHelloTimeout how long the tunnel waits for a complete ClientHello
     */
    public record Tunnels(SniCheckMode sniCheck, Set<Integer> tlsPorts, Duration clientHelloTimeout) {
        public Tunnels {
            Objects.requireNonNull(sniCheck, "sniCheck");
            tlsPorts = Set.copyOf(tlsPorts);
            Objects.requireNonNull(clientHelloTimeout, "clientHelloTimeout");
        }

        /** Whether a CONNECT to {@code port} gets the check. */
        public boolean checks(int port) {
            return sniCheck != SniCheckMode.OFF && tlsPorts.contains(port);
        }
    }

    /**
     * {@code tunnels.sni-check}: {@code off} (no check), {@code report} (count and log a problem,
     * relay the bytes unchanged) or {@code enforce} (close the tunnel before a client byte reaches
     * the origin).
     */
    public enum SniCheckMode {
        OFF, REPORT, ENFORCE;

        /** The value as written in the configuration. */
        public String label() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /** {@code egress-proxy.metrics}. */
    public record Metrics(int maxHostLabels, int deniedReportSize) {
    }

    /** {@code egress-proxy.logging}. {@code jsonAppLogs}: application logs as JSON lines. */
    public record Logging(AccessLogFormat accessFormat, boolean jsonAppLogs) {
    }

    /** The access-log line formats. */
    public enum AccessLogFormat {
        TEXT, JSON, SQUID
    }
}
