package dev.egressproxy.config;

import dev.egressproxy.policy.AddressPolicy;
import dev.egressproxy.policy.Allowlist;
import dev.egressproxy.policy.PolicyEngine;

/**
 * A configuration in force and the policy built from it, published together through one
 * reference. A request reads the snapshot once, when its head is decided, and is decided,
 * dialled ({@code connect-to}, address policy, connect timeout) and, for a tunnel, checked
 * ({@code tunnels}) under that one snapshot: a reload in between applies to the next request,
 * never to half of this one.
 */
public record ConfigSnapshot(ProxyConfig config, PolicyEngine policy) {

    public static ConfigSnapshot of(ProxyConfig config) {
        return new ConfigSnapshot(config, new PolicyEngine(new Allowlist(config.allowlist().entries()),
                new AddressPolicy(config.destinations().allowPrivate()), config.allowlist().mode()));
    }
}
