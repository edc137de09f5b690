package dev.egressproxy.policy;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * The set of destinations the proxy may reach. Lookups cost one hash probe per label of the host:
 * exact names and wildcard suffixes are kept in maps, CIDR entries in a list (they only apply to
 * IP-literal destinations, which are rare).
 */
public final class Allowlist {

    private final List<AllowlistEntry> entries;
    private final Map<String, List<AllowlistEntry.Host>> exact = new HashMap<>();
    private final Map<String, List<AllowlistEntry.Host>> wildcards = new HashMap<>();
    private final List<AllowlistEntry.Cidr> cidrs = new ArrayList<>();

    public Allowlist(List<AllowlistEntry> entries) {
        this.entries = List.copyOf(entries);
        for (AllowlistEntry e : this.entries) {
            if (e instanceof AllowlistEntry.Host h) {
                (h.wildcard() ? wildcards : exact).computeIfAbsent(h.name(), k -> new ArrayList<>()).add(h);
            } else if (e instanceof AllowlistEntry.Cidr c) {
                cidrs.add(c);
            }
        }
    }

    public List<AllowlistEntry> entries() {
        return entries;
    }

    /** Exact host names (no wildcards or CIDRs): their metric series are created at start-up. */
    public List<String> exactHosts() {
        return List.copyOf(exact.keySet());
    }

    /** Stage one of the policy: is this destination named by the allowlist? */
    public Decision decide(Target target, Kind kind) {
        return match(target, e -> e.portMatches(target.port(), kind));
    }

    /**
     * Whether an entry names {@code target}, an entry without a port standing for every port (not
     * the kind's default one): how {@code upstream-proxy.hosts} and {@code bypass} read their
     * entries, which route destinations rather than admit them.
     */
    public boolean names(Target target) {
        return match(target, e -> e.port() == AllowlistEntry.ANY_DEFAULT_PORT || e.port() == target.port()).allowed();
    }

    /** The one matcher: exact names, wildcard suffixes and CIDRs, with {@code port} judging each entry that names the host. */
    private Decision match(Target target, Predicate<AllowlistEntry> port) {
        if (target.isIpLiteral()) {
            boolean portMismatch = false;
            for (AllowlistEntry.Cidr c : cidrs) {
                if (c.block().contains(target.ipLiteral())) {
                    if (port.test(c)) {
                        return Decision.allow(Reason.CIDR_ALLOWLISTED, c.text());
                    }
                    portMismatch = true;
                }
            }
            return Decision.deny(portMismatch ? Reason.PORT_NOT_ALLOWED : Reason.IP_LITERAL_NOT_ALLOWED);
        }
        String host = target.host();
        boolean portMismatch = false;
        List<AllowlistEntry.Host> candidates = exact.get(host);
        if (candidates != null) {
            for (AllowlistEntry.Host h : candidates) {
                if (port.test(h)) {
                    return Decision.allow(Reason.HOST_ALLOWLISTED, h.text());
                }
                portMismatch = true;
            }
        }
        // Walk the suffixes after each dot: "a.cdn.quay.io" tries "cdn.quay.io", "quay.io", "io".
        for (int dot = host.indexOf('.'); dot >= 0; dot = host.indexOf('.', dot + 1)) {
            List<AllowlistEntry.Host> wild = wildcards.get(host.substring(dot + 1));
            if (wild != null) {
                for (AllowlistEntry.Host h : wild) {
                    if (port.test(h)) {
                        return Decision.allow(Reason.HOST_ALLOWLISTED, h.text());
                    }
                    portMismatch = true;
                }
            }
        }
        return Decision.deny(portMismatch ? Reason.PORT_NOT_ALLOWED : Reason.HOST_NOT_ALLOWLISTED);
    }
}
