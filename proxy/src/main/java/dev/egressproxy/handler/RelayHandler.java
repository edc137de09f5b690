package dev.egressproxy.handler;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.channel.socket.SocketChannel;
import io.netty.util.ReferenceCountUtil;
import java.io.IOException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Relays raw bytes from its channel to the peer channel of a {@link Tunnel}; one instance on each
 * side, the last handler of its pipeline.
 *
 * <p>Backpressure (the writability model): after writing to the peer, if the peer's outbound buffer
 * is above its high water mark this side stops reading (auto-read off); when the peer drains below
 * its low water mark, its relay handler turns reading back on here. So at most one read's worth of
 * bytes beyond the high water mark is ever queued towards a slow reader.
 *
 * <p>Half-close: when this side's input ends (FIN), whatever is queued is flushed to the peer and the
 * peer's output is shut down; the tunnel closes when both directions have ended, or when either
 * side closes or fails.
 *
 * <p>Owns {@code bytes_total} (through the tunnel) and no other metric.
 */
final class RelayHandler extends ChannelInboundHandlerAdapter {

    private static final Logger log = LoggerFactory.getLogger(RelayHandler.class);

    private final Tunnel tunnel;
    private final Channel peer;

    RelayHandler(Tunnel tunnel, Channel self) {
        this.tunnel = tunnel;
        this.peer = tunnel.peerOf(self);
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (!(msg instanceof ByteBuf buf)) {
            // Leftover HTTP markers from the removed codec carry no bytes.
            ReferenceCountUtil.release(msg);
            return;
        }
        if (!peer.isActive()) {
            buf.release();
            return;
        }
        tunnel.countBytes(ctx.channel(), buf.readableBytes());
        // No promise and no listener per chunk: a failed write is fired as an exception into the
        // peer's pipeline, whose relay handler closes the tunnel (exceptionCaught below).
        peer.write(buf, peer.voidPromise());
        if (!peer.isWritable()) {
            ctx.channel().config().setAutoRead(false);
        }
    }


    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) {
        peer.flush();
    }

    @Override
    public void channelWritabilityChanged(ChannelHandlerContext ctx) {
        // Our channel drained below its low water mark: the peer may read again.
        if (ctx.channel().isWritable() && !tunnel.isInputDone(peer)) {
            peer.config().setAutoRead(true);
        }
        ctx.fireChannelWritabilityChanged();
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
        if (evt instanceof ChannelInputShutdownEvent) {
            boolean bothDone = tunnel.inputDone(ctx.channel());
            if (bothDone) {
                tunnel.close();
            } else if (peer.isActive()) {
                peer.writeAndFlush(Unpooled.EMPTY_BUFFER).addListener(f -> {
                    if (peer instanceof SocketChannel sc && sc.isActive()) {
                        sc.shutdownOutput();
                    }
                });
            }
            return;
        }
        ctx.fireUserEventTriggered(evt);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        tunnel.close();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        if (cause instanceof IOException) {
            log.debug("tunnel channel {} failed: {}", ctx.channel(), cause.toString());
        } else {
            log.warn("tunnel channel {} failed", ctx.channel(), cause);
        }
        tunnel.close();
    }
}
