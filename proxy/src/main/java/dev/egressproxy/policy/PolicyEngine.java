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

    public PolicyEngine(Allowlist allowlist, AddressPolicy addressPolicy) {
        this.allowlist = allowlist;
        this.addressPolicy = addressPolicy;
    }

    public Allowlist allowlist() {
        return allowlist;
    }

    /** Stage one: may the client ask for this destination at all? */
    public Decision decide(Target target, Kind kind) {
        return allowlist.decide(target, kind);
    }

    /** Stage two: why this resolved address may not be dialled, or empty when it may. */
    public Optional<String> forbiddenAddress(InetAddress address) {
        return addressPolicy.forbiddenReason(address);
    }
}
