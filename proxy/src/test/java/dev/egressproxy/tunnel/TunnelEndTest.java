package dev.egressproxy.tunnel;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.SocketException;
import java.nio.channels.ClosedChannelException;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class TunnelEndTest {

    static Stream<Arguments> failures() {
        ClosedChannelException afterReset = new ClosedChannelException();
        afterReset.initCause(new IOException("writevAddresses(..) failed: Connection reset by peer"));
        return Stream.of(
                Arguments.of("epoll read after RST", new IOException("recvAddress(..) failed: Connection reset by peer"), true),
                Arguments.of("NIO read after RST", new SocketException("Connection reset"), true),
                Arguments.of("write after RST", new IOException("Broken pipe"), true),
                Arguments.of("closed channel caused by a reset", afterReset, true),
                Arguments.of("timeout", new IOException("recvAddress(..) failed: Connection timed out"), false),
                Arguments.of("no message", new IOException(), false),
                Arguments.of("not I/O", new IllegalStateException("bug"), false));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("failures")
    void aFailureIsAResetOnlyWhenTheKernelSaidSo(String name, Throwable cause, boolean reset) {
        assertThat(TunnelEnd.failed(true, cause)).isEqualTo(reset ? TunnelEnd.CLIENT_RESET : TunnelEnd.CLIENT_ERROR);
        assertThat(TunnelEnd.failed(false, cause)).isEqualTo(reset ? TunnelEnd.UPSTREAM_RESET : TunnelEnd.UPSTREAM_ERROR);
    }

    @Test
    void aClosedChannelSaysWhyOnlyWhenItCarriesACause() {
        ClosedChannelException bare = new ClosedChannelException();
        ClosedChannelException afterTimeout = new ClosedChannelException();
        afterTimeout.initCause(new IOException("Connection timed out"));
        assertThat(TunnelEnd.closedWithoutReason(bare)).isTrue();
        assertThat(TunnelEnd.closedWithoutReason(afterTimeout)).isFalse();
        assertThat(TunnelEnd.closedWithoutReason(new IOException("Broken pipe"))).isFalse();
    }

    @Test
    void onlyACleanCloseIsAPlainTunnelInSquidsTerms() {
        for (TunnelEnd end : TunnelEnd.values()) {
            String expected = switch (end) {
                case CLIENT_CLOSED, UPSTREAM_CLOSED -> "TCP_TUNNEL";
                case IDLE_TIMEOUT -> "TCP_TUNNEL_TIMEDOUT";
                case SNI_REFUSED -> "TCP_DENIED";
                default -> "TCP_TUNNEL_ABORTED";
            };
            assertThat(end.squidCode()).as(end.label()).isEqualTo(expected);
            assertThat(end.label()).isEqualTo(end.name().toLowerCase(java.util.Locale.ROOT));
        }
    }
}
