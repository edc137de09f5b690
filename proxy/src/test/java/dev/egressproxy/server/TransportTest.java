package dev.egressproxy.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.netty.channel.epoll.Epoll;
import io.netty.channel.uring.IoUring;
import org.junit.jupiter.api.Test;

class TransportTest {

    @Test
    void autoIsEpollWhereItLoadsAndNeverIoUring() {
        assertThat(Transport.choose("auto").name()).isEqualTo(Epoll.isAvailable() ? "epoll" : "nio");
    }

    @Test
    void ioUringIsUsedWhenAskedForOrRefusedWithTheReason() {
        if (IoUring.isAvailable()) {
            Transport t = Transport.choose("io_uring");
            assertThat(t.name()).isEqualTo("io_uring");
            assertThat(t.socketChannel().getSimpleName()).isEqualTo("IoUringSocketChannel");
        } else {
            assertThatThrownBy(() -> Transport.choose("io_uring")).isInstanceOf(IllegalStateException.class)
                    .hasMessageStartingWith("transport = io_uring, but io_uring is not available here");
        }
    }

    @Test
    void nioIsAlwaysThere() {
        assertThat(Transport.choose("NIO").name()).isEqualTo("nio");
    }
}
