package dev.egressproxy.guard;

import dev.egressproxy.handler.ErrorResponses;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.metrics.ProxyMetrics.Rejection;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import java.nio.charset.StandardCharsets;

/**
 * First handler of every client connection. Counts open connections in the
 * {@code connections_active} gauge and, past {@code limits.max-connections}, answers 503 and closes
 * at once, counting {@code rejected_total{reason="connection_limit"}}, so one flood cannot exhaust
 * the process's file descriptors. Shared by all connections of one server: its only state is the
 * server's counter.
 */
@Sharable
public final class ConnectionLimitHandler extends ChannelInboundHandlerAdapter {

    private static final byte[] FULL = ("HTTP/1.1 503 egress-proxy is at its connection limit\r\n"
            + "Content-Type: text/plain\r\nContent-Length: 35\r\nConnection: close\r\n"
            + ErrorResponses.REASON_HEADER + ": connection_limit\r\n\r\n"
            + "egress-proxy connection limit hit.\n").getBytes(StandardCharsets.US_ASCII);

    private final ProxyMetrics metrics;
    private final int max;

    public ConnectionLimitHandler(ProxyMetrics metrics, int max) {
        this.metrics = metrics;
        this.max = max;
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
        metrics.connectionOpened();
        if (metrics.connectionsActive() > max) {
            metrics.rejected(Rejection.CONNECTION_LIMIT);
            ctx.channel().config().setAutoRead(false);
            ctx.writeAndFlush(Unpooled.wrappedBuffer(FULL)).addListener(ChannelFutureListener.CLOSE);
            return;
        }
        ctx.fireChannelActive();
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        metrics.connectionClosed();
        ctx.fireChannelInactive();
    }
}
