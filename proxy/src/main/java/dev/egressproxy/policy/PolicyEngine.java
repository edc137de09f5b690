package dev.egressproxy.policy;

import java.net.InetAddress;
import java.util.Optional;

/**
 * The two-stage egress decision, as Smokescreen makes it: first the requested name against the
 * allowlist (before any DNS lookup), then every address that name resolved to against the
 * {@link AddressPolicy} (before connecting). Immutable; a config reload builds a new one.
 */
public final class PolicyEngine {

    private final Allowlist allowlist;
    private final AddressPolicy addressPolicy;
    private final AllowlistMode mode;

    public PolicyEngine(Allowlist allowlist, AddressPolicy addressPolicy, AllowlistMode mode) {
        this.allowlist = allowlist;
        this.addressPolicy = addressPolicy;
        this.mode = mode;
    }

    public Allowlist allowlist() {
        return allowlist;
    }

    public AllowlistMode mode() {
        return mode;
    }

    /**
     * Stage one: may the client ask for this destination at all? In report mode a refusal an
     * allowlist entry would fix becomes {@link Decision#wouldDeny}; stage two still applies to it.
     */
    public Decision decide(Target target, Kind kind) {
        Decision d = allowlist.decide(target, kind);
        if (mode == AllowlistMode.REPORT && d.refused() && d.reason().reportable()) {
            return Decision.wouldDeny(d.reason());
        }
        return d;
    }

    /** Stage two: why this resolved address may not be dialled, or empty when it may. */
    public Optional<String> forbiddenAddress(InetAddress address) {
        return addressPolicy.forbiddenReason(address);
    }
}
