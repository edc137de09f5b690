package dev.egressproxy.policy;

import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.util.List;
import java.util.Optional;

/**
 * Stage two of the policy: the address the proxy is about to dial. Loopback, private, link-local
 * (cloud metadata at 169.254.169.254 among them), CGNAT, multicast, reserved and documentation
 * ranges are refused unless an {@code allow-private} CIDR covers them, so that an allowed name
 * whose DNS answer points inside the network (DNS rebinding, a hostile or stale record) cannot be
 * used to reach it. IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are
 * judged by the IPv4 address inside them.
 */
public final class AddressPolicy {

    private record Range(CidrBlock block, String label) {
    }

    private static final List<Range> FORBIDDEN_V4 = List.of(
            range("0.0.0.0/8", "this-network"),
            range("10.0.0.0/8", "private"),
            range("100.64.0.0/10", "cgnat"),
            range("127.0.0.0/8", "loopback"),
            range("169.254.0.0/16", "link-local"),
            range("172.16.0.0/12", "private"),
            range("192.0.0.0/24", "ietf-reserved"),
            range("192.0.2.0/24", "documentation"),
            range("192.88.99.0/24", "6to4-relay"),
            range("192.168.0.0/16", "private"),
            range("198.18.0.0/15", "benchmarking"),
            range("198.51.100.0/24", "documentation"),
            range("203.0.113.0/24", "documentation"),
            range("224.0.0.0/4", "multicast"),
            range("240.0.0.0/4", "reserved"));

    private static final List<Range> FORBIDDEN_V6 = List.of(
            range("::/128", "unspecified"),
            range("::1/128", "loopback"),
            range("100::/64", "discard"),
            range("64:ff9b:1::/48", "nat64-local"),
            range("2001::/32", "teredo"),
            range("2001:db8::/32", "documentation"),
            range("fc00::/7", "unique-local"),
            range("fe80::/10", "link-local"),
            range("fec0::/10", "site-local"),
            range("ff00::/8", "multicast"));

    private static final CidrBlock V4_COMPATIBLE = CidrBlock.parse("::/96");
    private static final CidrBlock UNSPECIFIED_OR_LOOPBACK = CidrBlock.parse("::/127");
    private static final CidrBlock NAT64 = CidrBlock.parse("64:ff9b::/96");
    private static final CidrBlock SIX_TO_FOUR = CidrBlock.parse("2002::/16");

    private final List<CidrBlock> allowPrivate;

    public AddressPolicy(List<CidrBlock> allowPrivate) {
        this.allowPrivate = List.copyOf(allowPrivate);
    }

    private static Range range(String cidr, String label) {
        return new Range(CidrBlock.parse(cidr), label);
    }

    /**
     * Why {@code address} may not be dialled (a short label such as {@code loopback} for the log),
     * or empty when it may.
     */
    public Optional<String> forbiddenReason(InetAddress address) {
        for (CidrBlock allowed : allowPrivate) {
            if (allowed.contains(address)) {
                return Optional.empty();
            }
        }
        if (address instanceof Inet4Address) {
            return classifyV4(address.getAddress());
        }
        byte[] v6 = address.getAddress();
        // The IPv6-only ranges first: :: and ::1 also lie inside the IPv4-compatible ::/96 and must
        // be judged as what they are, not as 0.0.0.0 and 0.0.0.1.
        for (Range r : FORBIDDEN_V6) {
            if (r.block().contains(v6)) {
                return Optional.of(r.label());
            }
        }
        Optional<byte[]> embedded = embeddedIpv4(v6);
        if (embedded.isPresent()) {
            byte[] v4 = embedded.get();
            for (CidrBlock allowed : allowPrivate) {
                if (allowed.contains(v4)) {
                    return Optional.empty();
                }
            }
            Optional<String> inner = classifyV4(v4);
            if (inner.isPresent()) {
                return Optional.of(inner.get() + " (embedded in IPv6)");
            }
            if (V4_COMPATIBLE.contains(v6)) {
                // The deprecated IPv4-compatible form has no legitimate use on the Internet.
                return Optional.of("ipv4-compatible");
            }
        }
        if (address instanceof Inet6Address a6 && a6.getScopeId() != 0) {
            return Optional.of("scoped");
        }
        return Optional.empty();
    }

    private static Optional<String> classifyV4(byte[] v4) {
        for (Range r : FORBIDDEN_V4) {
            if (r.block().contains(v4)) {
                return Optional.of(r.label());
            }
        }
        return Optional.empty();
    }

    /**
     * The IPv4 address carried inside an IPv6 address in the IPv4-mapped ({@code ::ffff:a.b.c.d}),
     * IPv4-compatible ({@code ::a.b.c.d}), NAT64 ({@code 64:ff9b::a.b.c.d}) or 6to4
     * ({@code 2002:aabb:ccdd::}) forms.
     */
    public static Optional<byte[]> embeddedIpv4(byte[] v6) {
        if (v6.length != 16) {
            return Optional.empty();
        }
        boolean mapped = true;
        for (int i = 0; i < 10; i++) {
            mapped &= v6[i] == 0;
        }
        mapped &= (v6[10] & 0xff) == 0xff && (v6[11] & 0xff) == 0xff;
        boolean compatible = V4_COMPATIBLE.contains(v6) && !UNSPECIFIED_OR_LOOPBACK.contains(v6);
        if (mapped || compatible || NAT64.contains(v6)) {
            return Optional.of(new byte[] {v6[12], v6[13], v6[14], v6[15]});
        }
        if (SIX_TO_FOUR.contains(v6)) {
            return Optional.of(new byte[] {v6[2], v6[3], v6[4], v6[5]});
        }
        return Optional.empty();
    }
}
