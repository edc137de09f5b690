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

    static Stream<Arguments> errors() {
        java.io.UncheckedIOException epollCtl = new java.io.UncheckedIOException(
                new IOException("epoll_ctl(..) failed with error(-2): No such file or directory"));
        ClosedChannelException afterTimeout = new ClosedChannelException();
        afterTimeout.initCause(new IOException("readAddress(..) failed: Connection timed out"));
        return Stream.of(
                Arguments.of(new IOException("recvAddress(..) failed with error(-110): Connection timed out"),
                        "connection_timed_out"),
                Arguments.of(new IOException("io_uring read(..) failed with error(-103): Software caused connection abort"),
                        "software_caused_connection_abort"),
                Arguments.of(new IOException("connect(..) failed with error(-113):No route to host"), "no_route_to_host"),
                Arguments.of(new IOException("recvAddress(..) failed: Connection timed out"), "connection_timed_out"),
                Arguments.of(new java.net.SocketException("Connection timed out"), "connection_timed_out"),
                Arguments.of(new java.net.NoRouteToHostException("No route to host: /10.1.2.3:443"), "no_route_to_host"),
                Arguments.of(epollCtl, "no_such_file_or_directory"),
                Arguments.of(afterTimeout, "connection_timed_out"),
                Arguments.of(new java.io.UncheckedIOException(new java.io.FileNotFoundException()), "file_not_found_exception"),
                Arguments.of(new java.nio.channels.NotYetConnectedException(), "not_yet_connected_exception"),
                Arguments.of(new IOException("  "), "io_exception"),
                Arguments.of(new IOException("x".repeat(100) + " y"), "x".repeat(TunnelEnd.ERROR_CODE_MAX)),
                Arguments.of(new IOException("***"), "io_error"));
    }

    @ParameterizedTest(name = "{1}")
    @MethodSource("errors")
    void anErrorIsNamedInTheKernelsWordsOrByItsType(Throwable cause, String code) {
        assertThat(TunnelEnd.errorCode(cause)).isEqualTo(code).matches("[a-z0-9_]{1,40}");
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
