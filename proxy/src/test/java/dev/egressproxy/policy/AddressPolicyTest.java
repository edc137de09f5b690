package dev.egressproxy.policy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.params.provider.Arguments.argumentSet;

import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Table-driven tests for {@link AddressPolicy#forbiddenReason}: stage two of the policy, which
 * judges the address about to be dialled. Addresses are IP literals only, so
 * {@link InetAddress#getByName} parses them and never does DNS.
 */
class AddressPolicyTest {

    private static final AddressPolicy STRICT = new AddressPolicy(List.of());

    static Stream<Arguments> forbiddenAddresses() {
        return Stream.of(
                argumentSet("IPv4 loopback", "127.0.0.1", "loopback"),
                argumentSet("IPv4 loopback, not .1", "127.53.0.9", "loopback"),
                argumentSet("RFC 1918 10/8", "10.0.0.1", "private"),
                argumentSet("RFC 1918 10/8, last address", "10.255.255.255", "private"),
                argumentSet("RFC 1918 172.16/12, first", "172.16.0.1", "private"),
                argumentSet("RFC 1918 172.16/12, last", "172.31.255.254", "private"),
                argumentSet("RFC 1918 192.168/16", "192.168.1.1", "private"),
                argumentSet("cloud metadata (link-local)", "169.254.169.254", "link-local"),
                argumentSet("CGNAT", "100.64.0.1", "cgnat"),
                argumentSet("this network 0.0.0.0", "0.0.0.0", "this-network"),
                argumentSet("multicast", "224.0.0.1", "multicast"),
                argumentSet("limited broadcast", "255.255.255.255", "reserved"),
                argumentSet("reserved class E", "240.0.0.1", "reserved"),
                argumentSet("benchmarking", "198.18.0.1", "benchmarking"),
                argumentSet("IETF protocol assignments", "192.0.0.8", "ietf-reserved"),
                argumentSet("TEST-NET-1 documentation", "192.0.2.1", "documentation"),
                argumentSet("TEST-NET-3 documentation", "203.0.113.7", "documentation"),
                argumentSet("6to4 relay anycast", "192.88.99.1", "6to4-relay"),
                argumentSet("IPv6 link-local", "fe80::1", "link-local"),
                argumentSet("IPv6 unique-local fc00::/7, fc half", "fc00::1", "unique-local"),
                argumentSet("IPv6 unique-local fc00::/7, fd half", "fd12::1", "unique-local"),
                argumentSet("IPv6 multicast", "ff02::1", "multicast"),
                argumentSet("IPv6 site-local (deprecated)", "fec0::1", "site-local"),
                argumentSet("IPv6 discard prefix", "100::1", "discard"),
                argumentSet("IPv6 documentation", "2001:db8::1", "documentation"),
                argumentSet("Teredo", "2001::1", "teredo"),
                argumentSet("local-use NAT64 prefix", "64:ff9b:1::808:808", "nat64-local"),
                argumentSet("IPv4-mapped private (Java folds it to IPv4)", "::ffff:10.0.0.1", "private"),
                argumentSet("IPv4-compatible loopback", "::127.0.0.1", "loopback (embedded in IPv6)"),
                argumentSet("IPv4-compatible public address (deprecated form)", "::8.8.8.8", "ipv4-compatible"),
                argumentSet("NAT64 of the metadata address", "64:ff9b::a9fe:a9fe", "link-local (embedded in IPv6)"),
                argumentSet("NAT64 of a private address", "64:ff9b::10.1.2.3", "private (embedded in IPv6)"),
                argumentSet("6to4 of loopback", "2002:7f00:1::", "loopback (embedded in IPv6)"),
                argumentSet("6to4 of a private address", "2002:c0a8:101::1", "private (embedded in IPv6)"));
    }

    @ParameterizedTest(name = "forbids {argumentSetName} as {1}")
    @MethodSource("forbiddenAddresses")
    void forbidsInternalAndReservedAddressesWithLabel(String literal, String label) throws Exception {
        assertThat(STRICT.forbiddenReason(literal(literal))).contains(label);
    }

    static Stream<Arguments> forbiddenWhateverTheLabel() {
        return Stream.of(
                argumentSet("IPv6 loopback ::1", "::1"),
                argumentSet("IPv6 unspecified ::", "::"));
    }

    /** See {@link #labelsIpv6LoopbackAndUnspecifiedByTheirOwnRanges()} for the label these get today. */
    @ParameterizedTest(name = "forbids {argumentSetName}")
    @MethodSource("forbiddenWhateverTheLabel")
    void forbidsIpv6LoopbackAndUnspecified(String literal) throws Exception {
        assertThat(STRICT.forbiddenReason(literal(literal))).isPresent();
    }
    @Test
    void labelsIpv6LoopbackAndUnspecifiedByTheirOwnRanges() throws Exception {
        assertThat(STRICT.forbiddenReason(literal("::1"))).contains("loopback");
        assertThat(STRICT.forbiddenReason(literal("::"))).contains("unspecified");
        assertThat(new AddressPolicy(List.of(CidrBlock.parse("0.0.0.0/8"))).forbiddenReason(literal("::1"))).isPresent();
    }

    static Stream<Arguments> allowedAddresses() {
        return Stream.of(
                argumentSet("Cloudflare DNS", "1.1.1.1"),
                argumentSet("Google DNS", "8.8.8.8"),
                argumentSet("just below 172.16/12", "172.15.255.255"),
                argumentSet("just above 172.16/12", "172.32.0.1"),
                argumentSet("just above CGNAT", "100.128.0.1"),
                argumentSet("public IPv6", "2606:4700::1111"),
                argumentSet("NAT64 of a public address", "64:ff9b::808:808"),
                argumentSet("IPv4-mapped public address", "::ffff:8.8.8.8"),
                argumentSet("6to4 of a public address", "2002:808:808::1"));
    }

    @ParameterizedTest(name = "allows {argumentSetName}")
    @MethodSource("allowedAddresses")
    void allowsPublicAddresses(String literal) throws Exception {
        assertThat(STRICT.forbiddenReason(literal(literal))).isEmpty();
    }

    @Test
    void javaFoldsIpv4MappedAddressesToIpv4() throws Exception {
        // The policy relies on this: ::ffff:a.b.c.d arrives as an Inet4Address and is judged as IPv4.
        assertThat(literal("::ffff:10.0.0.1")).isInstanceOf(Inet4Address.class);
    }

    static Stream<Arguments> allowPrivateLiftsTheGuard() {
        return Stream.of(
                argumentSet("IPv4 inside the allowed block", "10.1.2.3", true),
                argumentSet("IPv4-mapped form of an address inside the block", "::ffff:10.1.2.3", true),
                argumentSet("NAT64 form of an address inside the block", "64:ff9b::a01:203", true),
                argumentSet("IPv4-compatible form of an address inside the block", "::10.1.2.3", true),
                argumentSet("6to4 form of an address inside the block", "2002:a01:203::1", true),
                argumentSet("IPv6 inside the allowed IPv6 block", "fd00:1234::5", true),
                argumentSet("other private range stays forbidden", "192.168.1.1", false),
                argumentSet("loopback stays forbidden", "127.0.0.1", false),
                argumentSet("metadata stays forbidden", "169.254.169.254", false),
                argumentSet("other unique-local block stays forbidden", "fd00:9999::1", false));
    }

    @ParameterizedTest(name = "allow-private [10.0.0.0/8, fd00:1234::/32]: {argumentSetName}")
    @MethodSource("allowPrivateLiftsTheGuard")
    void allowPrivateLiftsTheGuardOnlyForItsBlocks(String literal, boolean allowed) throws Exception {
        AddressPolicy policy = new AddressPolicy(cidrs("10.0.0.0/8", "fd00:1234::/32"));

        assertThat(policy.forbiddenReason(literal(literal)).isEmpty()).isEqualTo(allowed);
    }

    @Test
    void allowPrivateOfOneAddressAllowsOnlyThatAddress() throws Exception {
        AddressPolicy policy = new AddressPolicy(cidrs("127.0.0.1/32"));

        assertThat(policy.forbiddenReason(literal("127.0.0.1"))).isEmpty();
        assertThat(policy.forbiddenReason(literal("127.0.0.2"))).contains("loopback");
    }

    // ---------------------------------------------------------------- helpers

    private static InetAddress literal(String ip) throws UnknownHostException {
        // Guard against a typo turning a literal into a DNS lookup.
        assertThat(ip).matches("[0-9a-fA-F:.]+");
        return InetAddress.getByName(ip);
    }

    private static List<CidrBlock> cidrs(String... blocks) {
        return Arrays.stream(blocks).map(CidrBlock::parse).toList();
    }
}
