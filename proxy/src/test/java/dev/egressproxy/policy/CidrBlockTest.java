package dev.egressproxy.policy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.params.provider.Arguments.argumentSet;

import java.net.InetAddress;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link CidrBlock#anyContains}: how {@code clients.allow} and {@code admin.clients.allow} match a
 * client address, with the default list of both.
 */
class CidrBlockTest {

    private static final List<CidrBlock> DEFAULT_CLIENTS = Stream.of("127.0.0.0/8", "::1/128", "10.0.0.0/8",
            "172.16.0.0/12", "192.168.0.0/16", "fc00::/7").map(CidrBlock::parse).toList();

    static Stream<Arguments> clients() {
        return Stream.of(
                argumentSet("loopback", "127.0.0.1", true),
                argumentSet("other loopback address", "127.0.0.2", true),
                argumentSet("IPv6 loopback", "::1", true),
                argumentSet("pod address in 10/8", "10.128.3.7", true),
                argumentSet("last address of 172.16/12", "172.31.255.255", true),
                argumentSet("just past 172.16/12", "172.32.0.0", false),
                argumentSet("unique-local IPv6", "fd12:3456::1", true),
                argumentSet("CGNAT node address", "100.64.0.10", false),
                argumentSet("public IPv4", "203.0.113.9", false),
                argumentSet("public IPv6", "2001:db8::1", false));
    }

    @ParameterizedTest
    @MethodSource("clients")
    void defaultClientListHoldsLoopbackAndPrivateRangesOnly(String address, boolean allowed) throws Exception {
        assertThat(CidrBlock.anyContains(DEFAULT_CLIENTS, InetAddress.getByName(address))).isEqualTo(allowed);
    }

    @ParameterizedTest
    @MethodSource("clients")
    void emptyListHoldsNoAddress(String address, boolean ignored) throws Exception {
        assertThat(CidrBlock.anyContains(List.of(), InetAddress.getByName(address))).isFalse();
    }
}
