package dev.egressproxy.upstream;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.channel.ConnectTimeoutException;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

class UpstreamConnectorTest {

    @Test
    void causeTextDropsTheAddressNettyAppendsInJavasLongIpv6Form() throws Exception {
        InetSocketAddress address = new InetSocketAddress(InetAddress.getByName("::1"), 41443);
        // Netty annotates a failed connect as "<message>: <address>".
        ConnectException refused = new ConnectException("finishConnect(..) failed: Connection refused: " + address);

        assertThat(UpstreamConnector.causeText(refused, address)).isEqualTo("finishConnect(..) failed: Connection refused");
        assertThat(UpstreamConnector.causeText(new ConnectTimeoutException("connection timed out after 10000 ms: " + address),
                address)).isEqualTo("connection timed out after 10000 ms");
    }

    @Test
    void causeTextKeepsAMessageThatDoesNotEndWithTheAddress() throws Exception {
        InetSocketAddress address = new InetSocketAddress(InetAddress.getByName("192.0.2.1"), 443);

        assertThat(UpstreamConnector.causeText(new ConnectException("Network is unreachable"), address))
                .isEqualTo("Network is unreachable");
        assertThat(UpstreamConnector.causeText(new ConnectException(), address)).isEqualTo("null");
    }

    private static List<InetSocketAddress> addresses(String spaceSeparated) {
        return Arrays.stream(spaceSeparated.split(" ")).filter(a -> !a.isEmpty()).map(a -> {
            try {
                return new InetSocketAddress(InetAddress.getByName(a), 443);
            } catch (UnknownHostException e) {
                throw new IllegalArgumentException(a, e);
            }
        }).toList();
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', textBlock = """
            one address                        | 192.0.2.1                                  | 192.0.2.1
            one family keeps its order         | 192.0.2.1 192.0.2.2 192.0.2.3              | 192.0.2.1 192.0.2.2 192.0.2.3
            IPv4 first, as the resolver puts it | 192.0.2.1 192.0.2.2 2001:db8::1 2001:db8::2 | 192.0.2.1 2001:db8::1 192.0.2.2 2001:db8::2
            IPv6 first when it comes first     | 2001:db8::1 192.0.2.1 192.0.2.2            | 2001:db8::1 192.0.2.1 192.0.2.2
            more of the second family          | 192.0.2.1 2001:db8::1 2001:db8::2 2001:db8::3 | 192.0.2.1 2001:db8::1 2001:db8::2 2001:db8::3
            """)
    void interleavesTheFamiliesStartingWithTheFirstAddress(String name, String resolved, String dialled) {
        assertThat(UpstreamConnector.interleaveFamilies(addresses(resolved))).isEqualTo(addresses(dialled));
    }
}
