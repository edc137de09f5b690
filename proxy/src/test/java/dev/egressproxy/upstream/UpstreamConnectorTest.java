package dev.egressproxy.upstream;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.channel.ConnectTimeoutException;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
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
}
