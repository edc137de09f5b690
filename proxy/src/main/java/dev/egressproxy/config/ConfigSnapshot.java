package dev.egressproxy.config;

import dev.egressproxy.guard.ClientIdentity;
import dev.egressproxy.policy.AddressPolicy;
import dev.egressproxy.policy.Allowlist;
import dev.egressproxy.policy.AllowlistMode;
import dev.egressproxy.policy.CidrBlock;
import dev.egressproxy.policy.PolicyEngine;
import java.util.ArrayList;
import java.util.List;

/**
 * A configuration in force and the policies built from it, published together through one
 * reference. A request reads the snapshot once, when its head is decided, and is decided,
 * dialled ({@code connect-to}, address policy, connect timeout) and, for a tunnel, checked
 * ({@code tunnels}) under that one snapshot: a reload in between applies to the next request,
 * never to half of this one.
 *
 * @param policy the top-level allowlist's engine: the {@code default} policy's
 * @param policies the policies of {@code egress-proxy.policies}, in config order
 * @param fallback the {@code default} policy, of clients no policy selects
 */
public record ConfigSnapshot(ProxyConfig config, PolicyEngine policy, List<ClientPolicy> policies,
        ClientPolicy fallback) {

    /** A policy by name with its engine, and the config element it came from (null for {@code default}). */
    public record ClientPolicy(String name, PolicyEngine engine, ProxyConfig.Policy source) {
    }

    public ConfigSnapshot {
        policies = List.copyOf(policies);
    }

    public static ConfigSnapshot of(ProxyConfig config) {
        AddressPolicy addresses = new AddressPolicy(config.destinations().allowPrivate());
        List<ClientPolicy> policies = new ArrayList<>();
        for (ProxyConfig.Policy p : config.policies()) {
            policies.add(new ClientPolicy(p.name(), engine(p.allowlist(), addresses), p));
        }
        PolicyEngine top = engine(config.allowlist(), addresses);
        return new ConfigSnapshot(config, top, policies, new ClientPolicy(ProxyConfig.DEFAULT_POLICY, top, null));
    }

    private static PolicyEngine engine(ProxyConfig.Allowlist allowlist, AddressPolicy addresses) {
        return new PolicyEngine(new Allowlist(allowlist.entries()), addresses, allowlist.mode());
    }

    /** The exact host names of every policy's allowlist, the default's included, each once. */
    public List<String> exactHosts() {
        java.util.LinkedHashSet<String> hosts = new java.util.LinkedHashSet<>(policy.allowlist().exactHosts());
        policies.forEach(p -> hosts.addAll(p.engine().allowlist().exactHosts()));
        return List.copyOf(hosts);
    }

    /** Whether the top-level allowlist and every policy's enforce (none only reports). */
    public boolean enforcing() {
        return policy.mode() == AllowlistMode.ENFORCE
                && policies.stream().allMatch(p -> p.engine().mode() == AllowlistMode.ENFORCE);
    }

    /**
     * The policy that decides {@code client}'s requests: the first of {@code policies} whose every
     * stated selector matches (address in {@code clients}, {@code user} in {@code users}, a
     * certificate identity in {@code identities}), else {@code default}. {@code user} is the
     * authenticated user of the request, or null.
     */
    public ClientPolicy policyFor(ClientIdentity client, String user) {
        for (ClientPolicy p : policies) {
            if (selects(p.source(), client, user)) {
                return p;
            }
        }
        return fallback;
    }

    private static boolean selects(ProxyConfig.Policy p, ClientIdentity client, String user) {
        if (!p.clients().isEmpty() && !CidrBlock.anyContains(p.clients(), client.ip())) {
            return false;
        }
        if (!p.users().isEmpty() && (user == null || !p.users().contains(user))) {
            return false;
        }
        return p.identities().isEmpty()
                || client.certificateIdentities().stream().anyMatch(p.identities()::contains);
    }
}
