package dev.egressproxy.guard;

import io.netty.channel.Channel;
import io.netty.channel.ChannelOutboundBuffer;
import io.netty.channel.epoll.EpollSocketChannel;
import java.util.concurrent.TimeUnit;

/**
 * Whether a channel's bytes still reach its peer, asked when the connection would be closed as
 * idle. Bytes handed to a socket can take minutes to leave: the kernel's send buffer of a
 * loopback-fast socket grows to megabytes, and a client reading 4 KiB/s drains that slowly, with
 * no write handed to the proxy's channel all that while. On epoll the kernel says when it last
 * sent data on the socket ({@code TCP_INFO} {@code tcpi_last_data_sent}); a peer that stopped
 * reading (zero window) gets no data, so it still goes idle. Elsewhere the channel's own outbound
 * buffer is watched: bytes it still holds that moved since the last look count as progress.
 * One per channel; used on that channel's event loop.
 */
final class SendProgress {

    private final Channel channel;
    private long pending = -1;
    private Object current;
    private long progress;

    SendProgress(Channel channel) {
        this.channel = channel;
    }

    /** True if bytes left {@code channel} towards its peer within the last {@code nanos}. */
    boolean sentWithin(long nanos) {
        if (!channel.isActive()) {
            return false;
        }
        if (channel instanceof EpollSocketChannel epoll) {
            try {
                return TimeUnit.MILLISECONDS.toNanos(epoll.tcpInfo().lastDataSent()) < nanos;
            } catch (RuntimeException e) {
                // The socket closed under us, or TCP_INFO is refused: no evidence of progress.
                return false;
            }
        }
        return outboundMoved();
    }

    private boolean outboundMoved() {
        ChannelOutboundBuffer out = channel.unsafe().outboundBuffer();
        if (out == null) {
            return false;
        }
        long nowPending = out.totalPendingWriteBytes();
        Object nowCurrent = out.current();
        long nowProgress = out.currentProgress();
        boolean moved = nowPending > 0 && pending >= 0
                && (nowPending != pending || nowCurrent != current || nowProgress != progress);
        pending = nowPending;
        current = nowCurrent;
        progress = nowProgress;
        return moved;
    }
}
