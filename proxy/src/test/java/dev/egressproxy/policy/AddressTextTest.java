package dev.egressproxy.policy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatIllegalArgumentException;
import static org.junit.jupiter.params.provider.Arguments.argumentSet;

import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link AddressText}: the RFC 5952 text of IPv6 addresses, table-driven with the examples of the
 * RFC's sections 2 and 4 and the edge cases of its rules.
 */
class AddressTextTest {

    /** Parses a literal to its 16 bytes without folding IPv4-mapped addresses into IPv4 as Java does. */
    private static byte[] v6(String literal) throws Exception {
        byte[] b = InetAddress.getByName(literal).getAddress();
        if (b.length == 16) {
            return b;
        }
        byte[] mapped = new byte[16];
        mapped[10] = (byte) 0xff;
        mapped[11] = (byte) 0xff;
        System.arraycopy(b, 0, mapped, 12, 4);
        return mapped;
    }

    static Stream<Arguments> rfc5952() {
        return Stream.of(
                // Section 4.1: leading zeros in a group are suppressed.
                argumentSet("4.1 leading zeros", "2001:0db8::0001", "2001:db8::1"),
                argumentSet("4.1 a group of 0000 becomes 0", "2001:db8:0000:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
                // Section 4.2.1: :: shortens as much as possible.
                argumentSet("4.2.1 the whole zero run", "2001:db8:0:0:0:0:2:1", "2001:db8::2:1"),
                argumentSet("4.2.1 not only part of the run", "2001:db8::0:1", "2001:db8::1"),
                // Section 4.2.2: :: never stands for a single zero group.
                argumentSet("4.2.2 one zero group stays 0", "2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
                // Section 4.2.3: the longest run; the first of equally long runs.
                argumentSet("4.2.3 the longer run", "2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
                argumentSet("4.2.3 the first of two equal runs", "2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
                // Section 4.3: lower case.
                argumentSet("4.3 lower case", "2001:DB8::AAAA:1", "2001:db8::aaaa:1"),
                // Section 2 examples: many spellings, one text.
                argumentSet("2.1 leading zeros", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:0001",
                        "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"),
                argumentSet("2.2 zero compression, written long", "2001:db8:0:0:0:0:0:1", "2001:db8::1"),
                argumentSet("2.2 zero compression, written half", "2001:db8:0:0:0::1", "2001:db8::1"),
                argumentSet("2.2 ::1 in the middle", "2001:db8::0:1:0:0:1", "2001:db8::1:0:0:1"),
                argumentSet("2.3 mixed case", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:AaAa",
                        "2001:db8:aaaa:bbbb:cccc:dddd:eeee:aaaa"),
                // Section 5: IPv4-mapped addresses in mixed notation.
                argumentSet("5 IPv4-mapped", "::ffff:192.0.2.1", "::ffff:192.0.2.1"),
                argumentSet("5 IPv4-mapped written in hex", "0:0:0:0:0:ffff:c000:201", "::ffff:192.0.2.1"),
                // Edges of the rules.
                argumentSet("loopback", "0:0:0:0:0:0:0:1", "::1"),
                argumentSet("unspecified", "0:0:0:0:0:0:0:0", "::"),
                argumentSet("run at the end", "2001:db8:0:0:0:0:0:0", "2001:db8::"),
                argumentSet("run of one at the start stays 0", "0:1:1:1:1:1:1:1", "0:1:1:1:1:1:1:1"),
                argumentSet("run of one at the end stays 0", "1:1:1:1:1:1:1:0", "1:1:1:1:1:1:1:0"),
                argumentSet("alternating zeros are not compressed", "1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"),
                argumentSet("run of two at the start", "0:0:1:1:1:1:1:1", "::1:1:1:1:1:1"),
                argumentSet("later run longer than the first", "1:0:0:2:0:0:0:3", "1:0:0:2::3"),
                argumentSet("link-local", "fe80:0:0:0:0:0:0:1", "fe80::1"),
                argumentSet("no zeros", "2606:4700:4700:1111:aaaa:bbbb:cccc:dddd", "2606:4700:4700:1111:aaaa:bbbb:cccc:dddd"),
                argumentSet("IPv4-compatible (deprecated) stays hex", "::c000:201", "::c000:201"),
                argumentSet("NAT64 stays hex", "64:ff9b::c000:201", "64:ff9b::c000:201"));
    }

    @ParameterizedTest(name = "{argumentSetName}")
    @MethodSource("rfc5952")
    void writesIpv6InItsRfc5952Form(String written, String expected) throws Exception {
        assertThat(AddressText.of(v6(written))).isEqualTo(expected);
    }

    @ParameterizedTest(name = "{argumentSetName}")
    @MethodSource("rfc5952")
    void textParsesBackToTheSameAddress(String written, String expected) throws Exception {
        assertThat(v6(expected)).isEqualTo(v6(written));
    }

    @Test
    void writesIpv4InDottedDecimal() throws Exception {
        assertThat(AddressText.of(InetAddress.getByName("192.0.2.1"))).isEqualTo("192.0.2.1");
        assertThat(AddressText.of(new byte[] {(byte) 255, 0, 0, 10})).isEqualTo("255.0.0.10");
    }

    @Test
    void keepsTheScopeOfAScopedAddress() throws Exception {
        Inet6Address scoped = Inet6Address.getByAddress(null, v6("fe80::1"), 3);

        assertThat(AddressText.of(scoped)).isEqualTo("fe80::1%3");
    }

    @Test
    void bracketsIpv6WithAPort() throws Exception {
        assertThat(AddressText.withPort(InetAddress.getByName("::1"), 3128)).isEqualTo("[::1]:3128");
        assertThat(AddressText.withPort(InetAddress.getByName("127.0.0.1"), 3128)).isEqualTo("127.0.0.1:3128");
        assertThat(AddressText.of(new InetSocketAddress(InetAddress.getByName("2001:db8:0:0:0:0:0:1"), 443)))
                .isEqualTo("[2001:db8::1]:443");
        assertThat(AddressText.of(InetSocketAddress.createUnresolved("registry.redhat.io", 443)))
                .isEqualTo("registry.redhat.io:443");
    }

    @Test
    void refusesAByteArrayOfAnotherLength() {
        assertThatIllegalArgumentException().isThrownBy(() -> AddressText.of(new byte[5]))
                .withMessageContaining("4 or 16 bytes");
    }
}
