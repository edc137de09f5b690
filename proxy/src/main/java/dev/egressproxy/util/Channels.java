package dev.egressproxy.util;

import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;

/** Small channel helpers shared by the handlers. */
public final class Channels {

    private Channels() {
    }

    /** Closes {@code ch} once everything already written to it has been flushed. */
    public static void closeOnFlush(Channel ch) {
        if (ch != null && ch.isActive()) {
            ch.writeAndFlush(Unpooled.EMPTY_BUFFER).addListener(ChannelFutureListener.CLOSE);
        } else if (ch != null) {
            ch.close();
        }
    }
}
