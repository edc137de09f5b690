package dev.egressproxy.config;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigList;
import com.typesafe.config.ConfigObject;
import com.typesafe.config.ConfigOrigin;
import com.typesafe.config.ConfigParseOptions;
import com.typesafe.config.ConfigResolveOptions;
import com.typesafe.config.ConfigValue;
import com.typesafe.config.ConfigValueFactory;
import com.typesafe.config.ConfigValueType;
import dev.egressproxy.guard.UsersFile;
import dev.egressproxy.policy.AddressPolicy;
import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.policy.AllowlistMode;
import dev.egressproxy.policy.AuthorityParser;
import dev.egressproxy.policy.CidrBlock;
import dev.egressproxy.policy.MalformedTargetException;
import dev.egressproxy.policy.Target;
import dev.egressproxy.tls.PemFiles;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Loads the configuration once and turns it into an immutable {@link ProxyConfig}. The only class
 * that touches {@code com.typesafe.config}.
 *
 * <p>Layers, highest first: environment variables ({@link #ENV_KEYS}), the operator's file, the
 * shipped default {@code egress-proxy.conf} (in the jar), then {@code reference.conf}, which holds
 * every key and its default. Unknown keys are errors (a typo must not silently fall back to a
 * default). Every problem is collected and reported at once.
 */
public final class ConfigLoader {

    /** Root path of all our keys. */
    public static final String ROOT = "egress-proxy";

    /** Environment variables that override common keys, and the key each one sets. */
    public static final Map<String, String> ENV_KEYS = envKeys();

    private static final String SHIPPED_DEFAULT = "egress-proxy.conf";

    /** The keys of {@link #ENV_KEYS} whose value is a list, given as comma-separated items. */
    private static final Set<String> LIST_KEYS = Set.of("allowlist.presets", "allowlist.hosts",
            "destinations.allow-private", "clients.allow", "admin.clients.allow", "admin.hosts",
            "listen.proxy-protocol-from", "upstream-proxy.bypass");

    private final List<String> problems = new ArrayList<>();
    /** The {@code check-samples} of the presets in use (the shipped quay-cdn names its CDN hosts). */
    private final Set<String> presetSamples = new LinkedHashSet<>();
    private final Path presetDir;
    /** The files the config file included (HOCON {@code include}), for {@link ProxyConfig.Reload}. */
    private final List<Path> includes;

    private ConfigLoader(Path presetDir, List<Path> includes) {
        this.presetDir = presetDir;
        this.includes = includes;
    }

    private static Map<String, String> envKeys() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("EGRESS_PROXY_HOST", "listen.host");
        m.put("EGRESS_PROXY_PORT", "listen.port");
        m.put("EGRESS_PROXY_ADMIN_HOST", "admin.host");
        m.put("EGRESS_PROXY_ADMIN_PORT", "admin.port");
        m.put("EGRESS_PROXY_ADMIN_CLIENTS_ALLOW", "admin.clients.allow");
        m.put("EGRESS_PROXY_ADMIN_HOSTS", "admin.hosts");
        m.put("EGRESS_PROXY_PRESETS", "allowlist.presets");
        m.put("EGRESS_PROXY_ALLOW_HOSTS", "allowlist.hosts");
        m.put("EGRESS_PROXY_ALLOWLIST_MODE", "allowlist.mode");
        m.put("EGRESS_PROXY_ALLOW_PRIVATE", "destinations.allow-private");
        m.put("EGRESS_PROXY_CLIENTS_ALLOW", "clients.allow");
        m.put("EGRESS_PROXY_CONNECT_TIMEOUT", "timeouts.connect");
        m.put("EGRESS_PROXY_MAX_CONNECTIONS", "limits.max-connections");
        m.put("EGRESS_PROXY_MEMORY_BUDGET", "limits.memory-budget");
        m.put("EGRESS_PROXY_ACCESS_LOG_FORMAT", "logging.access-format");
        m.put("EGRESS_PROXY_LOG_FORMAT", "logging.format");
        m.put("EGRESS_PROXY_SHUTDOWN_GRACE", "shutdown.grace");
        m.put("EGRESS_PROXY_TRANSPORT", "transport");
        // Paths, not contents: a users file, key or password mounted from a Secret stays out of
        // the environment (and out of `ps e`, /proc/PID/environ and crash reports).
        m.put("EGRESS_PROXY_USERS_FILE", "auth.basic.users-file");
        m.put("EGRESS_PROXY_TLS_CERTIFICATE", "listen.tls.certificate");
        m.put("EGRESS_PROXY_TLS_PRIVATE_KEY", "listen.tls.private-key");
        m.put("EGRESS_PROXY_TLS_CLIENT_CA", "listen.tls.client-ca");
        m.put("EGRESS_PROXY_PROXY_PROTOCOL", "listen.proxy-protocol");
        m.put("EGRESS_PROXY_PROXY_PROTOCOL_FROM", "listen.proxy-protocol-from");
        m.put("EGRESS_PROXY_UPSTREAM_PROXY_URL", "upstream-proxy.url");
        m.put("EGRESS_PROXY_UPSTREAM_PROXY_USER", "upstream-proxy.user");
        m.put("EGRESS_PROXY_UPSTREAM_PROXY_PASSWORD_FILE", "upstream-proxy.password-file");
        m.put("EGRESS_PROXY_UPSTREAM_PROXY_BYPASS", "upstream-proxy.bypass");
        return java.util.Collections.unmodifiableMap(m);
    }

    /**
     * Loads {@code file} (may be {@code null}) over the shipped defaults, with environment overrides.
     */
    public static ProxyConfig load(Path file, Map<String, String> env) throws ConfigException {
        Config fileConfig = ConfigFactory.empty();
        Path presetDir = null;
        IncludeRecorder includes = new IncludeRecorder(null);
        if (file != null) {
            if (!Files.isRegularFile(file)) {
                throw new ConfigException(List.of("config file " + file + " does not exist or is not a file"));
            }
            try {
                fileConfig = ConfigFactory.parseFile(file.toFile(),
                        ConfigParseOptions.defaults().setAllowMissing(false).prependIncluder(includes));
            } catch (com.typesafe.config.ConfigException e) {
                throw new ConfigException(List.of(e.getMessage()));
            }
            presetDir = file.toAbsolutePath().getParent().resolve("presets");
        }
        Config shipped = ConfigFactory.parseResources(ConfigLoader.class, "/" + SHIPPED_DEFAULT);
        Config layered = envOverlay(env).withFallback(fileConfig).withFallback(shipped);
        return new ConfigLoader(presetDir, includes.files()).build(layered);
    }

    /** Loads HOCON text over {@code reference.conf} only (no shipped defaults, no environment). */
    public static ProxyConfig fromString(String hocon) throws ConfigException {
        Config parsed;
        try {
            parsed = ConfigFactory.parseString(hocon, ConfigParseOptions.defaults().setOriginDescription("config"));
        } catch (com.typesafe.config.ConfigException e) {
            throw new ConfigException(List.of(e.getMessage()));
        }
        return new ConfigLoader(null, List.of()).build(parsed);
    }

    private static Config envOverlay(Map<String, String> env) {
        Config overlay = ConfigFactory.empty();
        for (Map.Entry<String, String> e : ENV_KEYS.entrySet()) {
            String value = env.get(e.getKey());
            if (value == null || value.isBlank()) {
                continue;
            }
            String key = ROOT + "." + e.getValue();
            ConfigValue v;
            if (LIST_KEYS.contains(e.getValue())) {
                List<String> items = Arrays.stream(value.split(",")).map(String::trim).filter(s -> !s.isEmpty()).toList();
                v = ConfigValueFactory.fromIterable(items, "environment variable " + e.getKey());
            } else {
                v = ConfigValueFactory.fromAnyRef(value.trim(), "environment variable " + e.getKey());
            }
            overlay = overlay.withValue(key, v);
        }
        return overlay;
    }

    private ProxyConfig build(Config layered) throws ConfigException {
        Config reference = ConfigFactory.parseResources(ConfigLoader.class, "/reference.conf");
        Config config;
        try {
            config = layered.withFallback(reference).resolve(ConfigResolveOptions.defaults().setUseSystemEnvironment(true));
            config.checkValid(reference, ROOT);
        } catch (com.typesafe.config.ConfigException.ValidationFailed e) {
            List<String> list = new ArrayList<>();
            e.problems().forEach(p -> list.add(p.path() + " (" + where(p.origin()) + "): " + p.problem()));
            throw new ConfigException(list);
        } catch (com.typesafe.config.ConfigException e) {
            throw new ConfigException(List.of(e.getMessage()));
        }
        checkUnknownKeys(config, reference);
        Config c = config.getConfig(ROOT);

        ProxyConfig.Listen listen = new ProxyConfig.Listen(nonEmpty(c, "listen.host"), port(c, "listen.port", true),
                proxyProtocol(c), listenTls(c));
        // An empty admin.clients.allow is allowed: it leaves only the probe paths open.
        ProxyConfig.Admin admin = new ProxyConfig.Admin(bool(c, "admin.enabled"), nonEmpty(c, "admin.host"),
                port(c, "admin.port", true), cidrs(c, "admin.clients.allow"), adminHosts(c, "admin.hosts"));
        ProxyConfig.Allowlist allowlist = allowlist(c.getConfig("allowlist"), "allowlist",
                mode(c.getString("allowlist.mode"), ROOT + ".allowlist.mode (" + where(c.getValue("allowlist.mode").origin()) + ")"));
        List<ProxyConfig.Policy> policies = policies(c, allowlist.mode());

        List<CidrBlock> allowPrivate = cidrs(c, "destinations.allow-private");
        ProxyConfig.Clients clients = new ProxyConfig.Clients(cidrs(c, "clients.allow"),
                intAtLeast(c, "clients.max-connections-per-client", 1));
        if (c.getList("clients.allow").isEmpty()) {
            problems.add(ROOT + ".clients.allow (" + where(c.getValue("clients.allow").origin())
                    + "): empty, which would refuse every client; list the networks that may use the proxy");
        }
        ProxyConfig.Destinations destinations = new ProxyConfig.Destinations(allowPrivate,
                connectTo(c.getObject("destinations.connect-to")));

        List<InetSocketAddress> servers = new ArrayList<>();
        List<String> serverTexts = c.getStringList("dns.servers");
        for (int i = 0; i < serverTexts.size(); i++) {
            InetSocketAddress a = literalSocketAddress(serverTexts.get(i), 53);
            if (a == null) {
                problems.add(ROOT + ".dns.servers[" + i + "] (" + where(c.getList("dns.servers").get(i).origin())
                        + "): '" + serverTexts.get(i) + "' is not an IP address with an optional port");
            } else {
                servers.add(a);
            }
        }
        ProxyConfig.Dns dns = new ProxyConfig.Dns(servers, positive(c, "dns.query-timeout"), nonNegative(c, "dns.min-ttl"),
                nonNegative(c, "dns.max-ttl"), nonNegative(c, "dns.negative-ttl"));

        ProxyConfig.Timeouts timeouts = new ProxyConfig.Timeouts(positive(c, "timeouts.connect"),
                positive(c, "timeouts.request-head"), positive(c, "timeouts.idle"),
                nonNegative(c, "timeouts.connect-attempt-delay"));

        int maxConnections = intAtLeast(c, "limits.max-connections", 1);
        int maxHead = bytes(c, "limits.max-request-head", 1024, 1024 * 1024);
        int maxResponseHead = bytes(c, "limits.max-response-head", 1024, 1024 * 1024);
        int high = bytes(c, "limits.write-buffer-high", 1024, 64 * 1024 * 1024);
        int low = bytes(c, "limits.write-buffer-low", 0, 64 * 1024 * 1024);
        if (low > high) {
            problems.add(ROOT + ".limits.write-buffer-low (" + where(c.getValue("limits.write-buffer-low").origin())
                    + "): " + low + " bytes is above write-buffer-high (" + high + " bytes)");
        }
        ProxyConfig.Limits limits = new ProxyConfig.Limits(maxConnections, maxHead, maxResponseHead, high, low,
                memoryBudget(c));
        // A read is at most 64 KiB (Netty's receive buffer), so a larger minimum would never splice.
        ProxyConfig.Relay relay = new ProxyConfig.Relay(bool(c, "relay.splice"),
                bytes(c, "relay.splice-after", 0, Integer.MAX_VALUE), bytes(c, "relay.splice-min-read", 0, 64 * 1024),
                bytes(c, "relay.notsent-lowat", 0, 64 * 1024 * 1024), intBetween(c, "relay.upstream-reads-per-event", 1, 64));
        ProxyConfig.Tunnels tunnels = tunnels(c);
        ProxyConfig.Metrics metrics = new ProxyConfig.Metrics(intAtLeast(c, "metrics.max-host-labels", 1),
                intAtLeast(c, "metrics.denied-report-size", 1));

        String format = c.getString("logging.access-format").toUpperCase(Locale.ROOT);
        ProxyConfig.AccessLogFormat accessFormat = ProxyConfig.AccessLogFormat.TEXT;
        try {
            accessFormat = ProxyConfig.AccessLogFormat.valueOf(format);
        } catch (IllegalArgumentException e) {
            problems.add(ROOT + ".logging.access-format (" + where(c.getValue("logging.access-format").origin()) + "): '"
                    + c.getString("logging.access-format") + "' is not one of text, json, squid");
        }
        ProxyConfig.Shutdown shutdown = new ProxyConfig.Shutdown(nonNegative(c, "shutdown.grace"));
        String appFormat = c.getString("logging.format").toLowerCase(Locale.ROOT);
        if (!appFormat.equals("text") && !appFormat.equals("json")) {
            problems.add(ROOT + ".logging.format (" + where(c.getValue("logging.format").origin()) + "): '" + appFormat
                    + "' is not one of text, json");
        }
        if (admin.enabled() && admin.port() != 0 && admin.port() == listen.port()) {
            problems.add(ROOT + ".admin.port (" + where(c.getValue("admin.port").origin()) + "): " + admin.port()
                    + " is also the proxy port (" + ROOT
                    + ".listen.port); give the admin listener its own port");
        }
        String transport = c.getString("transport").toLowerCase(Locale.ROOT);
        if (!List.of("auto", "epoll", "io_uring", "nio").contains(transport)) {
            problems.add(ROOT + ".transport (" + where(c.getValue("transport").origin()) + "): '" + transport
                    + "' is not one of auto, epoll, io_uring, nio");
        }
        Set<String> samples = new LinkedHashSet<>(samples(c.getList("check.samples"), "check.samples",
                allowlist.entries()));
        samples.addAll(presetSamples);
        ProxyConfig.Check check = new ProxyConfig.Check(List.copyOf(samples));
        int ioThreads = intAtLeast(c, "io-threads", 0);
        boolean watch = bool(c, "reload.watch");
        ProxyConfig.Upstream upstream = new ProxyConfig.Upstream(new ProxyConfig.FastFail(
                bool(c, "upstream.fast-fail.enabled"), intAtLeast(c, "upstream.fast-fail.timeouts", 1),
                positive(c, "upstream.fast-fail.window"), positive(c, "upstream.fast-fail.cool-down")));
        ProxyConfig.Auth auth = auth(c);
        ProxyConfig.UpstreamProxy upstreamProxy = upstreamProxy(c, allowPrivate);
        if (!problems.isEmpty()) {
            throw new ConfigException(problems);
        }
        return new ProxyConfig(transport, ioThreads, listen, admin, clients, allowlist, destinations, dns, timeouts, limits, relay, tunnels,
                metrics,
                new ProxyConfig.Logging(accessFormat, appFormat.equals("json")), shutdown,
                new ProxyConfig.Reload(watch, includes), upstream, check, policies, auth, upstreamProxy);
    }

    /**
     * {@code upstream-proxy}: the parent's {@code http://host:port} (no credentials, path or other
     * scheme), the user with the password read from {@code password-file}, and the host patterns.
     */
    private ProxyConfig.UpstreamProxy upstreamProxy(Config c, List<CidrBlock> allowPrivate) {
        String urlText = c.getString("upstream-proxy.url").trim();
        if (urlText.isEmpty()) {
            return ProxyConfig.UpstreamProxy.NONE;
        }
        String where = ROOT + ".upstream-proxy.url (" + where(c.getValue("upstream-proxy.url").origin()) + "): '" + urlText + "'";
        Target address = null;
        String lower = urlText.toLowerCase(Locale.ROOT);
        if (!lower.startsWith("http://")) {
            problems.add(where + " is not an http:// URL such as \"http://corp-proxy:8080\""
                    + (lower.startsWith("https://") ? " (a TLS connection to the parent is not supported)" : ""));
        } else {
            String rest = urlText.substring("http://".length());
            if (rest.endsWith("/")) {
                rest = rest.substring(0, rest.length() - 1);
            }
            if (rest.contains("@")) {
                problems.add(where + ": put no credentials in the URL; use upstream-proxy.user and upstream-proxy.password-file");
            } else if (rest.contains("/") || rest.contains("?") || rest.contains("#")) {
                problems.add(where + ": write only http://host:port, without a path");
            } else if (!rest.matches(".*:[0-9]+") || rest.endsWith("]")) {
                problems.add(where + " has no port; write the parent's port, e.g. \"http://corp-proxy:3128\"");
            } else {
                try {
                    address = AuthorityParser.parseConnectAuthority(rest);
                } catch (MalformedTargetException e) {
                    problems.add(where + " does not name a host and port: " + e.getMessage());
                }
            }
        }
        if (address != null && address.isIpLiteral()) {
            java.util.Optional<String> why = new AddressPolicy(allowPrivate).forbiddenReason(address.ipLiteral());
            if (why.isPresent()) {
                problems.add(where + ": " + address.host() + " is " + why.get() + ", which the address policy does not"
                        + " dial; add it to " + ROOT + ".destinations.allow-private (e.g. \"" + address.host()
                        + (address.ipLiteral() instanceof java.net.Inet6Address ? "/128" : "/32") + "\")");
            }
        }
        String user = c.getString("upstream-proxy.user");
        String passwordFile = c.getString("upstream-proxy.password-file").trim();
        String password = null;
        String userWhere = ROOT + ".upstream-proxy.user (" + where(c.getValue("upstream-proxy.user").origin()) + ")";
        String fileWhere = ROOT + ".upstream-proxy.password-file (" + where(c.getValue("upstream-proxy.password-file").origin())
                + ")";
        if (user.isEmpty() != passwordFile.isEmpty()) {
            problems.add((user.isEmpty() ? fileWhere + ": set, but upstream-proxy.user is empty"
                    : userWhere + ": set, but upstream-proxy.password-file is empty") + "; give both or neither");
        } else if (!user.isEmpty()) {
            if (user.contains(":") || !user.chars().allMatch(ch -> ch > 0x20 && ch < 0x7f)) {
                problems.add(userWhere + ": '" + user + "' may hold only printable ASCII without spaces or ':'");
            }
            try {
                String text = Files.readString(Path.of(passwordFile), java.nio.charset.StandardCharsets.UTF_8);
                int eol = text.indexOf('\n');
                password = (eol >= 0 ? text.substring(0, eol) : text).replaceAll("\r$", "");
                if (password.isEmpty()) {
                    problems.add(fileWhere + ": " + passwordFile + " holds no password on its first line");
                }
            } catch (java.io.IOException | RuntimeException e) {
                problems.add(fileWhere + ": cannot read " + passwordFile + " (" + e + ")");
            }
        }
        HostPatterns hosts = hostPatterns(c, "upstream-proxy.hosts");
        HostPatterns bypass = hostPatterns(c, "upstream-proxy.bypass");
        if (!hosts.all() && hosts.entries().isEmpty()) {
            problems.add(ROOT + ".upstream-proxy.hosts (" + where(c.getValue("upstream-proxy.hosts").origin())
                    + "): empty, so no destination would go through the parent; use [\"*\"] or list the hosts");
        }
        if (address == null || !problems.isEmpty()) {
            return ProxyConfig.UpstreamProxy.NONE;
        }
        return new ProxyConfig.UpstreamProxy(address, user.isEmpty() ? null : user, user.isEmpty() ? null : password,
                user.isEmpty() ? null : Path.of(passwordFile), hosts.all(), new dev.egressproxy.policy.Allowlist(hosts.entries()),
                bypass.all(), new dev.egressproxy.policy.Allowlist(bypass.entries()));
    }

    /** A list of allowlist patterns where "*" alone stands for every destination. */
    private record HostPatterns(boolean all, List<AllowlistEntry> entries) {
    }

    /**
     * {@code admin.hosts}: names ({@code "metrics.example.internal"}), {@code "*."} and a name,
     * or {@code "*"}; normalised as destination host names are (lower case, without a trailing dot).
     */
    private List<String> adminHosts(Config c, String path) {
        ConfigList list = c.getList(path);
        List<String> out = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            ConfigValue v = list.get(i);
            String where = ROOT + "." + path + "[" + i + "] (" + where(v.origin()) + ")";
            String name = v.valueType() == ConfigValueType.STRING ? ((String) v.unwrapped()).trim() : "";
            String wildcard = name.startsWith("*.") ? "*." : "";
            try {
                out.add(name.equals("*") ? name
                        : wildcard + AuthorityParser.normaliseHostName(name.substring(wildcard.length())));
            } catch (MalformedTargetException e) {
                problems.add(where + ": expected a host name such as \"metrics.example.internal\", "
                        + "\"*.example.internal\" (any name under it) or \"*\" (any name)");
            }
        }
        return out;
    }

    private HostPatterns hostPatterns(Config c, String path) {
        ConfigList list = c.getList(path);
        boolean all = false;
        List<AllowlistEntry> out = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            ConfigValue v = list.get(i);
            String where = ROOT + "." + path + "[" + i + "] (" + where(v.origin()) + ")";
            if (v.valueType() != ConfigValueType.STRING) {
                problems.add(where + ": expected a string such as \"*.example.com\" or \"*\"");
            } else if ("*".equals(((String) v.unwrapped()).trim())) {
                all = true;
            } else {
                try {
                    out.add(AllowlistEntry.parse((String) v.unwrapped()));
                } catch (IllegalArgumentException e) {
                    problems.add(where + ": " + e.getMessage());
                }
            }
        }
        return new HostPatterns(all, out);
    }

    /**
     * {@code auth.basic}: the users file is read and checked here, with the rest of the
     * configuration, so that a reload reads it again and a broken one is refused like any other
     * invalid configuration (the running one, with its users, stays in force).
     */
    private ProxyConfig.Auth auth(Config c) {
        boolean allowMd5 = bool(c, "auth.basic.allow-md5-crypt");
        int maxFailures = intAtLeast(c, "auth.basic.max-failures", 1);
        Duration window = positive(c, "auth.basic.failure-window");
        Duration cacheTtl = nonNegative(c, "auth.basic.cache-ttl");
        int threads = intAtLeast(c, "auth.basic.verify-threads", 1);
        int queue = intAtLeast(c, "auth.basic.verify-queue", 1);
        String file = c.getString("auth.basic.users-file").trim();
        UsersFile users = null;
        if (!file.isEmpty()) {
            String where = ROOT + ".auth.basic.users-file (" + where(c.getValue("auth.basic.users-file").origin()) + ")";
            try {
                users = UsersFile.load(Path.of(file), allowMd5);
            } catch (UsersFile.Invalid e) {
                e.problems().forEach(p -> problems.add(where + ": " + p));
            } catch (java.nio.file.InvalidPathException e) {
                problems.add(where + ": '" + file + "' is not a file path");
            }
        }
        return new ProxyConfig.Auth(users, allowMd5, maxFailures, window, cacheTtl, threads, queue);
    }

    /** {@code text} as an allowlist mode; {@code where} names the key in a problem. */
    private AllowlistMode mode(String text, String where) {
        String t = text.trim().toLowerCase(Locale.ROOT);
        for (AllowlistMode m : AllowlistMode.values()) {
            if (m.label().equals(t)) {
                return m;
            }
        }
        problems.add(where + ": '" + text + "' is not one of enforce, report");
        return AllowlistMode.ENFORCE;
    }

    /**
     * {@code listen.proxy-protocol} and {@code listen.proxy-protocol-from}: with the header on, only
     * the listed peers may send it, so the list must name at least one (an empty list would refuse
     * every connection).
     */
    private ProxyConfig.ProxyProtocol proxyProtocol(Config c) {
        String text = c.getString("listen.proxy-protocol").trim().toLowerCase(Locale.ROOT);
        ProxyConfig.ProxyProtocolMode mode = null;
        for (ProxyConfig.ProxyProtocolMode m : ProxyConfig.ProxyProtocolMode.values()) {
            if (m.label().equals(text)) {
                mode = m;
            }
        }
        if (mode == null) {
            problems.add(ROOT + ".listen.proxy-protocol (" + where(c.getValue("listen.proxy-protocol").origin()) + "): '"
                    + c.getString("listen.proxy-protocol") + "' is not one of off, v1, v2, any");
            mode = ProxyConfig.ProxyProtocolMode.OFF;
        }
        List<CidrBlock> from = cidrs(c, "listen.proxy-protocol-from");
        if (mode != ProxyConfig.ProxyProtocolMode.OFF && c.getList("listen.proxy-protocol-from").isEmpty()) {
            // Where the header was turned on: the empty list is usually reference.conf's default.
            problems.add(ROOT + ".listen.proxy-protocol-from (" + where(c.getValue("listen.proxy-protocol").origin())
                    + "): empty while listen.proxy-protocol = " + mode.label() + ", which would refuse every connection;"
                    + " list the addresses of the load balancers that send the header, such as [\"10.0.0.0/24\"]");
        }
        return new ProxyConfig.ProxyProtocol(mode, from);
    }

    private ProxyConfig.Tunnels tunnels(Config c) {
        String text = c.getString("tunnels.sni-check");
        ProxyConfig.SniCheckMode mode = null;
        for (ProxyConfig.SniCheckMode m : ProxyConfig.SniCheckMode.values()) {
            if (m.label().equals(text)) {
                mode = m;
            }
        }
        if (mode == null) {
            problems.add(ROOT + ".tunnels.sni-check (" + where(c.getValue("tunnels.sni-check").origin()) + "): '" + text
                    + "' is not one of off, report, enforce");
            mode = ProxyConfig.SniCheckMode.REPORT;
        }
        Set<Integer> ports = new LinkedHashSet<>();
        ConfigList list = c.getList("tunnels.tls-ports");
        for (int i = 0; i < list.size(); i++) {
            ConfigValue v = list.get(i);
            Object raw = v.unwrapped();
            if (raw instanceof Integer p && p >= 1 && p <= 65535) {
                ports.add(p);
            } else {
                problems.add(ROOT + ".tunnels.tls-ports[" + i + "] (" + where(v.origin()) + "): '" + raw
                        + "' is not a port in 1-65535");
            }
        }
        if (list.isEmpty() && mode != ProxyConfig.SniCheckMode.OFF) {
            problems.add(ROOT + ".tunnels.tls-ports (" + where(list.origin()) + "): empty, so sni-check = "
                    + mode.label() + " would check no tunnel; list the TLS ports (443) or set sni-check = off");
        }
        return new ProxyConfig.Tunnels(mode, ports, positive(c, "tunnels.client-hello-timeout"));
    }

    /**
     * {@code listen.tls}: certificate and private-key both set or both empty; every file read and
     * checked here (PEM, the key matches the certificate), so that {@code --check-config} and a
     * reload find a broken file before it is used. Relative paths are relative to the working directory.
     */
    private ProxyConfig.ListenTls listenTls(Config c) {
        String cert = c.getString("listen.tls.certificate").trim();
        String key = c.getString("listen.tls.private-key").trim();
        String ca = c.getString("listen.tls.client-ca").trim();
        if (cert.isEmpty() && key.isEmpty()) {
            if (!ca.isEmpty()) {
                problems.add(ROOT + ".listen.tls.client-ca (" + where(c.getValue("listen.tls.client-ca").origin())
                        + "): set without listen.tls.certificate and listen.tls.private-key; client certificates "
                        + "need a TLS listener, so set both or remove client-ca");
            }
            return ProxyConfig.ListenTls.OFF;
        }
        if (cert.isEmpty() || key.isEmpty()) {
            String missing = cert.isEmpty() ? "certificate" : "private-key";
            String set = cert.isEmpty() ? "private-key" : "certificate";
            problems.add(ROOT + ".listen.tls." + missing + " (" + where(c.getValue("listen.tls." + set).origin())
                    + "): empty while listen.tls." + set + " is set; a TLS listener needs both (or neither, for plain HTTP)");
            return ProxyConfig.ListenTls.OFF;
        }
        List<X509Certificate> chain = tlsFile(c, "listen.tls.certificate", PemFiles::certificates);
        PrivateKey privateKey = tlsFile(c, "listen.tls.private-key", PemFiles::privateKey);
        List<X509Certificate> cas = ca.isEmpty() ? List.of() : tlsFile(c, "listen.tls.client-ca", PemFiles::certificates);
        if (chain == null || privateKey == null || cas == null) {
            return ProxyConfig.ListenTls.OFF;
        }
        if (!PemFiles.matches(privateKey, chain.get(0))) {
            problems.add(ROOT + ".listen.tls.private-key (" + where(c.getValue("listen.tls.private-key").origin()) + "): "
                    + key + " is not the key of the certificate in " + cert + " (" + chain.get(0).getSubjectX500Principal()
                    + "); use the key the certificate was issued for");
            return ProxyConfig.ListenTls.OFF;
        }
        return new ProxyConfig.ListenTls(Path.of(cert), Path.of(key), ca.isEmpty() ? null : Path.of(ca), chain,
                privateKey, cas);
    }

    /** Reads the file named at {@code path} with {@code reader}; null (and a problem) when that fails. */
    private <T> T tlsFile(Config c, String path, java.util.function.Function<Path, T> reader) {
        try {
            return reader.apply(Path.of(c.getString(path).trim()));
        } catch (IllegalArgumentException e) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): " + e.getMessage());
            return null;
        }
    }

    private void checkUnknownKeys(Config config, Config reference) {
        if (!config.hasPath(ROOT)) {
            return;
        }
        String connectTo = ROOT + ".destinations.connect-to";
        for (Map.Entry<String, ConfigValue> e : config.getConfig(ROOT).entrySet()) {
            String path = ROOT + "." + e.getKey();
            if (path.startsWith(connectTo + ".") || path.equals(connectTo)) {
                continue;
            }
            if (!reference.hasPathOrNull(path)) {
                String parent = path.substring(0, path.lastIndexOf('.'));
                String known = reference.hasPath(parent) && reference.getValue(parent).valueType() == ConfigValueType.OBJECT
                        ? "; known keys there: " + String.join(", ", new TreeSet<>(reference.getObject(parent).keySet()))
                        : "";
                problems.add(path + " (" + where(e.getValue().origin()) + "): unknown key" + known);
            }
        }
    }

    /**
     * An allowlist block at {@code path} ({@code allowlist}, or a policy's): its presets expanded,
     * its hosts, deduplicated; {@code mode} is the block's mode. An allowlist naming nothing is a
     * problem: it would refuse everything.
     */
    private ProxyConfig.Allowlist allowlist(Config block, String path, AllowlistMode mode) {
        List<String> presets = block.getStringList("presets");
        List<AllowlistEntry> entries = new ArrayList<>();
        Map<String, String> presetOf = new HashMap<>();
        for (String preset : presets) {
            for (AllowlistEntry e : loadPreset(preset, block.getList("presets"), path)) {
                entries.add(e);
                presetOf.putIfAbsent(e.text(), preset);
            }
        }
        entries.addAll(entries(block.getList("hosts"), path + ".hosts"));
        if (entries.isEmpty()) {
            problems.add(ROOT + "." + path + " (" + where(block.getValue("hosts").origin())
                    + "): no hosts allowed (presets and hosts are both empty); "
                    + "the proxy would refuse everything. Name a preset such as \"redhat-registry\" or list hosts.");
        }
        return new ProxyConfig.Allowlist(presets, dedupe(entries), mode, presetOf);
    }

    private static final Set<String> POLICY_KEYS = Set.of("name", "clients", "users", "identities", "allowlist");
    private static final Set<String> POLICY_ALLOWLIST_KEYS = Set.of("presets", "hosts", "mode");

    /**
     * {@code policies}: a list of objects, each with a unique {@code name}, at least one selector
     * ({@code clients} CIDRs, {@code users}, {@code identities}) and an {@code allowlist} block of
     * its own ({@code presets}, {@code hosts}, {@code mode}, the last defaulting to the top-level
     * {@code allowlist.mode}).
     */
    private List<ProxyConfig.Policy> policies(Config c, AllowlistMode defaultMode) {
        List<ProxyConfig.Policy> out = new ArrayList<>();
        ConfigList list = c.getList("policies");
        Set<String> names = new HashSet<>();
        names.add(ProxyConfig.DEFAULT_POLICY);
        for (int i = 0; i < list.size(); i++) {
            ConfigValue v = list.get(i);
            String at = ROOT + ".policies[" + i + "]";
            String loc = " (" + where(v.origin()) + ")";
            String where = at + loc;
            if (v.valueType() != ConfigValueType.OBJECT) {
                problems.add(where + ": expected an object such as { name = \"ci\", clients = [\"10.20.0.0/16\"], "
                        + "allowlist { hosts = [\"github.com\"] } }");
                continue;
            }
            Config p = ((ConfigObject) v).toConfig();
            int before = problems.size();
            for (String key : p.root().keySet()) {
                if (!POLICY_KEYS.contains(key)) {
                    problems.add(where + ": unknown key '" + key + "'; known keys there: "
                            + String.join(", ", new TreeSet<>(POLICY_KEYS)));
                }
            }
            String name = p.hasPath("name") && p.getValue("name").valueType() == ConfigValueType.STRING
                    ? p.getString("name").trim() : "";
            if (!name.matches("[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")) {
                problems.add(where + ": 'name' must be 1-63 letters, digits, '.', '_' or '-' (it becomes a metric label)");
            } else if (!names.add(name)) {
                problems.add(where + ": the name '" + name + "' is taken"
                        + (name.equals(ProxyConfig.DEFAULT_POLICY) ? " by the top-level allowlist" : " by an earlier policy"));
            }
            int selectorProblems = problems.size();
            List<CidrBlock> clients = List.of();
            List<String> users = List.of();
            List<String> identities = List.of();
            try {
                clients = p.hasPath("clients") ? cidrs(p.getList("clients"), "policies[" + i + "].clients") : List.of();
                users = p.hasPath("users") ? p.getStringList("users") : List.of();
                identities = p.hasPath("identities") ? p.getStringList("identities") : List.of();
            } catch (com.typesafe.config.ConfigException e) {
                problems.add(where + ": clients, users and identities are lists of strings (" + e.getMessage() + ")");
            }
            if (clients.isEmpty() && users.isEmpty() && identities.isEmpty() && problems.size() == selectorProblems) {
                problems.add(where + ": selects no client; give it clients, users or identities "
                        + "(clients no policy selects get the top-level allowlist)");
            }
            if (!p.hasPath("allowlist") || p.getValue("allowlist").valueType() != ConfigValueType.OBJECT) {
                problems.add(where + ": has no allowlist block { presets = [...], hosts = [...] }");
                continue;
            }
            for (String key : p.getObject("allowlist").keySet()) {
                if (!POLICY_ALLOWLIST_KEYS.contains(key)) {
                    problems.add(at + ".allowlist" + loc + ": unknown key '" + key + "'; known keys there: "
                            + String.join(", ", new TreeSet<>(POLICY_ALLOWLIST_KEYS)));
                }
            }
            // The policy's allowlist block, with the top-level defaults for what it leaves out.
            Config block = p.getConfig("allowlist").withFallback(ConfigFactory.parseMap(
                    Map.of("presets", List.of(), "hosts", List.of())));
            AllowlistMode mode = block.hasPath("mode") ? mode(block.getString("mode"), at + ".allowlist.mode" + loc)
                    : defaultMode;
            ProxyConfig.Allowlist allowlist = allowlist(block, "policies[" + i + "].allowlist", mode);
            if (problems.size() == before) {
                out.add(new ProxyConfig.Policy(name, clients, users, identities, allowlist));
            }
        }
        return out;
    }

    private List<AllowlistEntry> loadPreset(String name, ConfigList presetList, String path) {
        String where = ROOT + "." + path + ".presets (" + where(presetList.origin()) + ")";
        if (!name.matches("[a-z0-9][a-z0-9-]*")) {
            problems.add(where + ": '" + name + "' is not a preset name (lower-case letters, digits and '-')");
            return List.of();
        }
        Config preset = null;
        if (presetDir != null) {
            Path file = presetDir.resolve(name + ".conf");
            if (Files.isRegularFile(file)) {
                try {
                    preset = ConfigFactory.parseFile(file.toFile());
                } catch (com.typesafe.config.ConfigException e) {
                    problems.add(where + ": preset '" + name + "' (" + file + ") does not parse: " + e.getMessage());
                    return List.of();
                }
                if (!preset.hasPath("hosts")) {
                    problems.add(where + ": preset file " + file + " has no 'hosts' list");
                    return List.of();
                }
                if (preset.getValue("hosts").valueType() != ConfigValueType.LIST) {
                    problems.add(where + ": 'hosts' in preset file " + file + " is not a list");
                    return List.of();
                }
            }
        }
        if (preset == null) {
            Config resource = ConfigFactory.parseResources(ConfigLoader.class, "/presets/" + name + ".conf");
            if (resource.hasPath("hosts")) {
                preset = resource;
            }
        }
        if (preset == null || !preset.hasPath("hosts")) {
            problems.add(where + ": unknown preset '" + name + "'; shipped presets: redhat-registry, quay-cdn"
                    + (presetDir != null ? " (also looked in " + presetDir + ")" : ""));
            return List.of();
        }
        List<AllowlistEntry> entries = entries(preset.getList("hosts"), "allowlist.presets." + name);
        if (preset.hasPath("check-samples")) {
            presetSamples.addAll(samples(preset.getList("check-samples"), "allowlist.presets." + name + ".check-samples",
                    entries));
        }
        return entries;
    }

    private List<AllowlistEntry> entries(ConfigList list, String path) {
        List<AllowlistEntry> out = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            ConfigValue v = list.get(i);
            String where = ROOT + "." + path + "[" + i + "] (" + where(v.origin()) + ")";
            if (v.valueType() != ConfigValueType.STRING) {
                problems.add(where + ": expected a string such as \"registry.redhat.io\" or \"*.quay.io:443\"");
                continue;
            }
            try {
                out.add(AllowlistEntry.parse((String) v.unwrapped()));
            } catch (IllegalArgumentException e) {
                problems.add(where + ": " + e.getMessage());
            }
        }
        return out;
    }

    /**
     * {@code check.samples}: host names, each under a wildcard entry of the allowlist (an exact
     * entry is checked as it is; a name no entry covers would check nothing the proxy allows).
     */
    private List<String> samples(ConfigList list, String path, List<AllowlistEntry> entries) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            ConfigValue v = list.get(i);
            String where = ROOT + "." + path + "[" + i + "] (" + where(v.origin()) + ")";
            if (v.valueType() != ConfigValueType.STRING) {
                problems.add(where + ": expected a host name such as \"cdn01.quay.io\"");
                continue;
            }
            String raw = (String) v.unwrapped();
            String name;
            try {
                if (raw.contains("*") || raw.contains(":")) {
                    throw new MalformedTargetException("write a host name without wildcard or port");
                }
                name = AuthorityParser.normaliseHostName(raw.trim());
            } catch (MalformedTargetException e) {
                problems.add(where + ": '" + raw + "' is not a host name: " + e.getMessage());
                continue;
            }
            boolean covered = entries.stream().anyMatch(e -> e instanceof AllowlistEntry.Host h && h.wildcard()
                    && h.nameMatches(name));
            if (!covered) {
                problems.add(where + ": '" + raw + "' is under no wildcard entry of the allowlist; a sample names a host"
                        + " for a wildcard entry such as \"*." + name.substring(name.indexOf('.') + 1) + "\"");
                continue;
            }
            out.add(name);
        }
        return List.copyOf(new LinkedHashSet<>(out));
    }

    private static List<AllowlistEntry> dedupe(List<AllowlistEntry> entries) {
        Map<String, AllowlistEntry> byText = new LinkedHashMap<>();
        for (AllowlistEntry e : entries) {
            byText.putIfAbsent(e.text(), e);
        }
        return List.copyOf(byText.values());
    }

    private List<CidrBlock> cidrs(Config c, String path) {
        return cidrs(c.getList(path), path);
    }

    /** {@code list} as CIDRs; {@code path} (below {@code egress-proxy}) names it in a problem. */
    private List<CidrBlock> cidrs(ConfigList list, String path) {
        List<CidrBlock> out = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            ConfigValue v = list.get(i);
            String where = ROOT + "." + path + "[" + i + "] (" + where(v.origin()) + ")";
            if (v.valueType() != ConfigValueType.STRING) {
                problems.add(where + ": expected a CIDR string such as \"10.0.0.0/8\"");
                continue;
            }
            try {
                out.add(CidrBlock.parse((String) v.unwrapped()));
            } catch (IllegalArgumentException e) {
                problems.add(where + ": " + e.getMessage());
            }
        }
        return out;
    }

    private Map<String, InetSocketAddress> connectTo(ConfigObject object) {
        Map<String, InetSocketAddress> out = new LinkedHashMap<>();
        for (Map.Entry<String, ConfigValue> e : object.entrySet()) {
            String where = ROOT + ".destinations.connect-to.\"" + e.getKey() + "\" (" + where(e.getValue().origin()) + ")";
            Target from;
            try {
                from = AuthorityParser.parseConnectAuthority(e.getKey());
            } catch (MalformedTargetException ex) {
                problems.add(where + ": key must be \"host:port\": " + ex.getMessage());
                continue;
            }
            if (e.getValue().valueType() != ConfigValueType.STRING) {
                problems.add(where + ": expected \"address:port\" such as \"127.0.0.1:8443\"");
                continue;
            }
            String value = (String) e.getValue().unwrapped();
            InetSocketAddress to = literalSocketAddress(value, -1);
            if (to == null) {
                problems.add(where + ": '" + value + "' is not an IP address and port such as \"127.0.0.1:8443\"");
                continue;
            }
            out.put(from.authority(), to);
        }
        return out;
    }

    /** Parses {@code a.b.c.d[:port]} or {@code [v6][:port]} without any DNS lookup; null if invalid. */
    static InetSocketAddress literalSocketAddress(String text, int defaultPort) {
        try {
            Target t = AuthorityParser.parseAuthority(text, defaultPort);
            if (!t.isIpLiteral()) {
                return null;
            }
            return new InetSocketAddress(InetAddress.getByAddress(t.ipLiteral().getAddress()), t.port());
        } catch (MalformedTargetException | UnknownHostException e) {
            return null;
        }
    }

    private boolean bool(Config c, String path) {
        try {
            return c.getBoolean(path);
        } catch (com.typesafe.config.ConfigException e) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): '" + c.getValue(path).unwrapped()
                    + "' is not true or false");
            return false;
        }
    }

    private String nonEmpty(Config c, String path) {
        String s = c.getString(path).trim();
        if (s.isEmpty()) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): must not be empty");
        }
        return s;
    }

    private int port(Config c, String path, boolean allowZero) {
        int p;
        try {
            p = c.getInt(path);
        } catch (com.typesafe.config.ConfigException e) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): '" + c.getValue(path).unwrapped()
                    + "' is not a port number");
            return 0;
        }
        if (p < (allowZero ? 0 : 1) || p > 65535) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): " + p
                    + " is not a port in 1-65535 (0 picks a free port)");
        }
        return p;
    }

    private int intBetween(Config c, String path, int min, int max) {
        int v = intAtLeast(c, path, min);
        if (v > max) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): " + v + " is above the maximum " + max);
        }
        return v;
    }

    private int intAtLeast(Config c, String path, int min) {
        int v;
        try {
            v = c.getInt(path);
        } catch (com.typesafe.config.ConfigException e) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): '" + c.getValue(path).unwrapped()
                    + "' is not a whole number");
            return min;
        }
        if (v < min) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): " + v + " is below the minimum " + min);
        }
        return v;
    }

    private int bytes(Config c, String path, long min, long max) {
        long v;
        try {
            v = c.getBytes(path);
        } catch (com.typesafe.config.ConfigException e) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): '" + c.getValue(path).unwrapped()
                    + "' is not a size such as 32KiB");
            return (int) min;
        }
        if (v < min || v > max) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): " + v + " bytes is outside "
                    + min + ".." + max);
            return (int) min;
        }
        return (int) v;
    }

    /** {@code limits.memory-budget}: {@code auto} (0 here) or a size of at least 1 MiB. */
    private long memoryBudget(Config c) {
        String path = "limits.memory-budget";
        if (c.getValue(path).unwrapped() instanceof String s && s.trim().equalsIgnoreCase("auto")) {
            return 0;
        }
        try {
            long v = c.getBytes(path);
            if (v >= 1024 * 1024) {
                return v;
            }
        } catch (com.typesafe.config.ConfigException e) {
            // reported below
        }
        problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): '" + c.getValue(path).unwrapped()
                + "' is neither auto nor a size of at least 1MiB such as 192MiB");
        return 0;
    }

    private Duration positive(Config c, String path) {
        Duration d = duration(c, path);
        if (d.isZero() || d.isNegative()) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): must be positive, got " + d);
            return Duration.ofSeconds(1);
        }
        return d;
    }

    private Duration nonNegative(Config c, String path) {
        Duration d = duration(c, path);
        if (d.isNegative()) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): must not be negative, got " + d);
            return Duration.ZERO;
        }
        return d;
    }

    private Duration duration(Config c, String path) {
        try {
            return c.getDuration(path);
        } catch (com.typesafe.config.ConfigException e) {
            problems.add(ROOT + "." + path + " (" + where(c.getValue(path).origin()) + "): '" + c.getValue(path).unwrapped()
                    + "' is not a duration such as 10s or 5m");
            return Duration.ofSeconds(1);
        }
    }

    private static String where(ConfigOrigin origin) {
        if (origin == null) {
            return "unknown origin";
        }
        String name = origin.filename() != null ? origin.filename()
                : origin.resource() != null ? origin.resource() : origin.description();
        if (origin.lineNumber() > 0 && !name.contains(": " + origin.lineNumber())) {
            return name + ":" + origin.lineNumber();
        }
        return name;
    }
}
