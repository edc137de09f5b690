package dev.egressproxy.tunnel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ch.qos.logback.classic.Level;
import dev.egressproxy.testing.LogCapture;
import dev.egressproxy.util.NettyInternals;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollSocketChannel;
import org.junit.jupiter.api.Test;

/** How {@link SpliceRelay} finds Netty's splice internals, and what it says when one is missing. */
class SpliceRelayAccessTest {

    @Test
    void eachMissingMemberIsNamed() {
        String netty = " not found on " + NettyInternals.nettyVersion();
        assertThat(SpliceRelay.Access.find("spliceQueueRenamed", "SpliceInTask", "len", "promise").missing())
                .isEqualTo("io.netty.channel.epoll.AbstractEpollStreamChannel#spliceQueueRenamed" + netty);
        assertThat(SpliceRelay.Access.find("spliceQueue", "SpliceTask", "len", "promise").missing())
                .isEqualTo("class io.netty.channel.epoll.AbstractEpollStreamChannel$SpliceTask" + netty);
        assertThat(SpliceRelay.Access.find("spliceQueue", "SpliceInTask", "length", "promise").missing())
                .isEqualTo("io.netty.channel.epoll.AbstractEpollStreamChannel$SpliceInTask#length" + netty);
        assertThat(SpliceRelay.Access.find("spliceQueue", "SpliceInTask", "len", "future").missing())
                .isEqualTo("io.netty.channel.epoll.AbstractEpollStreamChannel$SpliceInTask#future" + netty);
    }

    @Test
    void theSpliceQueueOfARealEpollChannelCanBeRead() throws Exception {
        assumeTrue(Epoll.isAvailable(), "the epoll transport is not available here");
        SpliceRelay.Access access = SpliceRelay.Access.find("spliceQueue", "SpliceInTask", "len", "promise");
        EpollSocketChannel ch = new EpollSocketChannel();
        try {
            // Created on the first spliceTo: none yet.
            assertThat(access.queue().get(ch)).isNull();
        } finally {
            ch.unsafe().closeForcibly();
        }
    }

    @Test
    void missingSpliceInternalsAreReportedAtWarnOnceWhereSpliceWouldBeUsed() {
        SpliceRelay.Access missing = SpliceRelay.Access.find("spliceQueue", "SpliceInTask", "lenRenamed", "promise");
        try (LogCapture log = new LogCapture(SpliceRelay.class)) {
            assertThat(missing.warnIfMissing("nio", true)).isFalse();
            assertThat(missing.warnIfMissing("epoll", false)).as("relay.splice = false").isFalse();
            assertThat(missing.warnIfMissing("epoll", true)).isTrue();
            assertThat(missing.warnIfMissing("epoll", true)).isFalse();
            assertThat(SpliceRelay.Access.find("spliceQueue", "SpliceInTask", "len", "promise").warnIfMissing("epoll", true))
                    .isFalse();
            assertThat(log.at(Level.WARN)).singleElement().asString()
                    .startsWith("splice unavailable: io.netty.channel.epoll.AbstractEpollStreamChannel$SpliceInTask"
                            + "#lenRenamed not found on Netty ")
                    .contains("tunnels relay in user space");
        }
    }
}
