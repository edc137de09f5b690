package dev.egressproxy.config;

import dev.egressproxy.guard.UsersFile;
import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.policy.AllowlistMode;
import dev.egressproxy.policy.CidrBlock;
import dev.egressproxy.policy.Target;
import dev.egressproxy.util.BasicCredentials;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.time.Duration;
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
        List<Policy> policies,
        Auth auth,
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
        Objects.requireNonNull(auth, "auth");
        policies = List.copyOf(policies);
    }

    /** The name of the policy made of the top-level {@code allowlist}, for clients no policy selects. */
    public static final String DEFAULT_POLICY = "default";

    /**
     * One element of {@code egress-proxy.policies}: the clients it selects and the allowlist they
     * get instead of the top-level one. A client is selected when every selector the policy states
     * matches: its address is in {@code clients}, its authenticated user is one of {@code users},
     * one of its certificate identities is one of {@code identities}. An empty selector list states
     * nothing; a policy states at least one.
     */
    public record Policy(String name, List<CidrBlock> clients, List<String> users, List<String> identities,
            Allowlist allowlist) {
        public Policy {
            Objects.requireNonNull(name, "name");
            clients = List.copyOf(clients);
            users = List.copyOf(users);
            identities = List.copyOf(identities);
            Objects.requireNonNull(allowlist, "allowlist");
        }
    }

    /** Every preset named by the top-level allowlist or a policy's, each once, in order. */
    public List<String> presetsInUse() {
        Set<String> names = new java.util.LinkedHashSet<>(allowlist.presets());
        policies.forEach(p -> names.addAll(p.allowlist().presets()));
        return List.copyOf(names);
    }

    /** {@code egress-proxy.shutdown}: how long a drain may take. */
    public record Shutdown(Duration grace) {
    }

    /**
     * {@code egress-proxy.reload}: whether the config file is watched; and the files it pulled in
     * with HOCON {@code include} (absolute, those that existed), which are watched with it.
     */
    public record Reload(boolean watch, List<Path> includes) {
        public Reload {
            includes = List.copyOf(includes);
        }
    }

    /** This configuration with {@code upstream} in place of its own. */
    public ProxyConfig withUpstream(Upstream next) {
        return new ProxyConfig(transport, ioThreads, listen, admin, clients, allowlist, destinations, dns, timeouts,
                limits, relay, tunnels, metrics, logging, shutdown, reload, next, check, policies, auth, upstreamProxy);
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
     * @param passwordFile where {@code password} was read (the reloader watches it); null exactly when {@code user} is
     */
    public record UpstreamProxy(Target address, String user, String password, Path passwordFile, boolean allHosts,
            dev.egressproxy.policy.Allowlist hosts, boolean bypassAll, dev.egressproxy.policy.Allowlist bypass) {

        /** No parent: every destination is dialled directly. */
        public static final UpstreamProxy NONE = new UpstreamProxy(null, null, null, null, false,
                new dev.egressproxy.policy.Allowlist(List.of()), false, new dev.egressproxy.policy.Allowlist(List.of()));

        public UpstreamProxy {
            Objects.requireNonNull(hosts, "hosts");
            Objects.requireNonNull(bypass, "bypass");
            if ((user == null) != (password == null) || (user == null) != (passwordFile == null)) {
                throw new IllegalArgumentException("user, password and password file go together");
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
            return BasicCredentials.header(user, password);
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

    /**
     * {@code egress-proxy.auth.basic}: proxy authentication with HTTP Basic against an htpasswd
     * file. {@code users} is null when {@code users-file} is unset: no authentication.
     *
     * @param users the users file, read and checked when this configuration was loaded
     * @param maxFailures failed attempts from one client address within {@code failureWindow}
     *     after which its further attempts get 429 until the window ends
     * @param cacheTtl how long a verified {@code Proxy-Authorization} value is taken without
     *     checking its hash again (zero: always checked)
     * @param verifyThreads threads that check password hashes, off the I/O threads
     * @param verifyQueue checks that may wait for a thread; past it, 503
     */
    public record Auth(UsersFile users, boolean allowMd5Crypt, int maxFailures, Duration failureWindow,
            Duration cacheTtl, int verifyThreads, int verifyQueue) {
        public Auth {
            Objects.requireNonNull(failureWindow, "failureWindow");
            Objects.requireNonNull(cacheTtl, "cacheTtl");
        }

        /** Whether requests must authenticate. */
        public boolean enabled() {
            return users != null;
        }
    }

    /**
     * {@code egress-proxy.listen}: where clients connect, whether each connection starts with a
     * PROXY protocol header from a load balancer ({@code proxyProtocol}), and whether clients speak
     * TLS to the proxy ({@code tls}).
     */
    public record Listen(String host, int port, ProxyProtocol proxyProtocol, ListenTls tls) {
        public Listen {
            Objects.requireNonNull(proxyProtocol, "proxyProtocol");
            Objects.requireNonNull(tls, "tls");
        }

        /** A plain listener without PROXY protocol. */
        public Listen(String host, int port) {
            this(host, port, ProxyProtocol.OFF, ListenTls.OFF);
        }

        /**
         * Whether {@code other} binds the same listener speaking the same protocol (host, port, TLS
         * on or off; a difference there needs a restart). The TLS files are re-read on every
         * reload; the PROXY protocol is compared on its own ({@code listen.proxy-protocol}).
         */
        public boolean sameListener(Listen other) {
            return host.equals(other.host) && port == other.port && tls.enabled() == other.tls.enabled();
        }
    }

    /**
     * {@code listen.proxy-protocol} and {@code listen.proxy-protocol-from}: the header versions a
     * connection must begin with ({@link ProxyProtocolMode#OFF}: none, no header is read), and the
     * TCP peers (the load balancers) that may send one; any other peer is refused. Not empty
     * unless the mode is off ({@link ConfigLoader} checks).
     */
    public record ProxyProtocol(ProxyProtocolMode mode, List<CidrBlock> from) {
        /** No PROXY protocol: the TCP peer is the client. */
        public static final ProxyProtocol OFF = new ProxyProtocol(ProxyProtocolMode.OFF, List.of());

        public ProxyProtocol {
            Objects.requireNonNull(mode, "mode");
            from = List.copyOf(from);
        }

        public boolean enabled() {
            return mode != ProxyProtocolMode.OFF;
        }
    }

    /** {@code listen.proxy-protocol}: {@code off}, {@code v1}, {@code v2} or {@code any} (v1 or v2). */
    public enum ProxyProtocolMode {
        OFF, V1, V2, ANY;

        /** The value as written in the configuration. */
        public String label() {
            return name().toLowerCase(Locale.ROOT);
        }

        /** Whether a header of protocol version {@code version} (1 or 2) is accepted. */
        public boolean accepts(int version) {
            return switch (this) {
                case OFF -> false;
                case V1 -> version == 1;
                case V2 -> version == 2;
                case ANY -> version == 1 || version == 2;
            };
        }
    }

    /**
     * {@code egress-proxy.listen.tls}: the proxy listener speaks TLS when {@code certificate} and
     * {@code privateKey} are set, and asks for a client certificate that chains to
     * {@code clientCa} when that is set too. The files are read (and checked) when the
     * configuration is loaded, so a reload re-reads them and a broken file refuses the reload.
     *
     * @param chain the server certificate first, then its intermediates; empty when TLS is off
     * @param key the private key of {@code chain.get(0)}; null when TLS is off
     * @param clientCas the CAs a client certificate must chain to; empty: no client certificate asked for
     */
    public record ListenTls(Path certificate, Path privateKey, Path clientCa, List<X509Certificate> chain,
            PrivateKey key, List<X509Certificate> clientCas) {

        /** TLS off: the listener speaks plain HTTP. */
        public static final ListenTls OFF = new ListenTls(null, null, null, List.of(), null, List.of());

        public ListenTls {
            chain = List.copyOf(chain);
            clientCas = List.copyOf(clientCas);
        }

        public boolean enabled() {
            return !chain.isEmpty();
        }

        /** Whether clients must present a certificate that chains to {@code client-ca}. */
        public boolean mutual() {
            return !clientCas.isEmpty();
        }

        /** The files only: the key material stays out of logs and messages. */
        @Override
        public String toString() {
            return enabled() ? "ListenTls[certificate=" + certificate + ", private-key=" + privateKey
                    + ", client-ca=" + clientCa + "]" : "ListenTls[off]";
        }
    }

    /**
     * {@code egress-proxy.admin}: the metrics and health listener, who may read it beyond the
     * probe paths ({@code clients.allow}) and the names it answers to besides its addresses
     * ({@code hosts}, lower case, without a trailing dot).
     */
    public record Admin(boolean enabled, String host, int port, List<CidrBlock> clientsAllow, List<String> hosts) {
        public Admin {
            clientsAllow = List.copyOf(clientsAllow);
            hosts = List.copyOf(hosts);
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
     * transport, after how many bytes, and on a read of at least how many bytes; how many unsent
     * bytes a socket's send queue takes ({@code notsentLowat}, TCP_NOTSENT_LOWAT, 0: the kernel's
     * default); how many reads an upstream socket gets each time it is ready ({@code
     * upstreamReadsPerEvent}). Sizes in bytes.
     */
    public record Relay(boolean splice, long spliceAfter, int spliceMinRead, int notsentLowat, int upstreamReadsPerEvent) {
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
