package dev.egressproxy.util;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ch.qos.logback.classic.Level;
import dev.egressproxy.testing.LogCapture;
import dev.egressproxy.tunnel.SpliceRelay;
import io.netty.channel.epoll.AbstractEpollStreamChannel;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.channel.epoll.Native;
import org.junit.jupiter.api.Test;

/**
 * The build's guard on the private members of Netty that {@link SpliceRelay} and
 * {@link EpollInterest} use: on the Netty version in the pom every one must be there, or the
 * build fails naming the missing member (a Netty upgrade would otherwise turn splice off, and
 * bring back the half-close truncation {@code EpollInterest} prevents, with one WARN line).
 */
class NettyInternalsTest {

    @Test
    void everyNettyMemberSpliceRelayReadsIsThere() {
        assertThat(SpliceRelay.unavailableReason())
                .withFailMessage("splice would be off on %s: %s", NettyInternals.nettyVersion(),
                        SpliceRelay.unavailableReason())
                .isNull();
    }

    @Test
    void everyNettyMemberEpollInterestCallsIsThere() {
        assertThat(EpollInterest.unavailableReason())
                .withFailMessage("sockets would leave Netty's epoll set on %s: %s", NettyInternals.nettyVersion(),
                        EpollInterest.unavailableReason())
                .isNull();
    }

    @Test
    void epollInterestChangesTheInterestSetOfAnUnregisteredEpollChannel() throws Exception {
        assumeTrue(Epoll.isAvailable(), "the epoll transport is not available here");
        EpollSocketChannel ch = new EpollSocketChannel();
        try {
            EpollInterest.Access access = EpollInterest.Access.find("io.netty.channel.epoll.AbstractEpollChannel",
                    "setFlag", "clearFlag");
            // Called directly so that a Netty that throws here fails the test (hold() only logs it).
            access.set().invoke(ch, Native.EPOLLERR);
            assertThat(EpollInterest.hold(ch)).isSameAs(ch);
        } finally {
            ch.unsafe().closeForcibly();
        }
    }

    @Test
    void aMissingFieldIsNamedWithItsClassAndTheNettyVersion() {
        assertThatThrownBy(() -> NettyInternals.field(AbstractEpollStreamChannel.class, "spliceQueueRenamed",
                java.util.Queue.class))
                .isInstanceOf(NettyInternals.Missing.class)
                .hasMessage("io.netty.channel.epoll.AbstractEpollStreamChannel#spliceQueueRenamed not found on "
                        + NettyInternals.nettyVersion());
        assertThat(NettyInternals.nettyVersion()).matches("Netty 4\\.\\d+\\.\\d+\\.Final");
    }

    @Test
    void aFieldOfAnotherTypeIsNamedWithBothTypes() {
        assertThatThrownBy(() -> NettyInternals.field(AbstractEpollStreamChannel.class, "spliceQueue", Long.class))
                .isInstanceOf(NettyInternals.Missing.class)
                .hasMessageStartingWith("io.netty.channel.epoll.AbstractEpollStreamChannel#spliceQueue is a "
                        + "java.util.Queue, not a java.lang.Long, on Netty ");
    }

    @Test
    void aMissingMethodIsNamedWithItsParameters() {
        EpollInterest.Access access = EpollInterest.Access.find("io.netty.channel.epoll.AbstractEpollChannel",
                "setFlagRenamed", "clearFlag");
        assertThat(access.missing()).isEqualTo("io.netty.channel.epoll.AbstractEpollChannel#setFlagRenamed(int) "
                + "not found on " + NettyInternals.nettyVersion());
        assertThat(EpollInterest.Access.find("io.netty.channel.epoll.AbstractEpollChannelRenamed", "setFlag", "clearFlag")
                .missing()).isEqualTo("class io.netty.channel.epoll.AbstractEpollChannelRenamed not found on "
                        + NettyInternals.nettyVersion());
    }

    @Test
    void missingEpollMethodsAreReportedAtWarnOnceOnEpollOnly() {
        EpollInterest.Access missing = EpollInterest.Access.find("io.netty.channel.epoll.AbstractEpollChannel",
                "setFlag", "clearFlagRenamed");
        try (LogCapture log = new LogCapture(EpollInterest.class)) {
            assertThat(missing.warnIfMissing("nio")).isFalse();
            assertThat(missing.warnIfMissing("io_uring")).isFalse();
            assertThat(missing.warnIfMissing("epoll")).isTrue();
            assertThat(missing.warnIfMissing("epoll")).isFalse();
            assertThat(EpollInterest.Access.find("io.netty.channel.epoll.AbstractEpollChannel", "setFlag", "clearFlag")
                    .warnIfMissing("epoll")).isFalse();
            assertThat(log.at(Level.WARN)).singleElement().asString()
                    .startsWith("cannot keep sockets in Netty's epoll set: "
                            + "io.netty.channel.epoll.AbstractEpollChannel#clearFlagRenamed(int) not found on Netty ")
                    .contains("a client that half-closes (sends its FIN) and then downloads more than the socket "
                            + "buffers hold can lose the end of the download");
        }
    }
}
