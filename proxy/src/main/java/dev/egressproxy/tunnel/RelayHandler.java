package dev.egressproxy.tunnel;

import dev.egressproxy.guard.IdleTimeoutEvent;
import dev.egressproxy.guard.MemoryBudget;
import dev.egressproxy.handler.ProxyClosingEvent;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelDuplexHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.channel.socket.DuplexChannel;
import io.netty.util.ReferenceCountUtil;
import java.io.IOException;
import java.io.UncheckedIOException;
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
 * <p>The memory budget: while all connections together hold as many bytes as {@code
 * limits.memory-budget} allows, this side also stops reading when the peer still holds a backlog
 * ({@link MemoryBudget#pauseIfFull}), and a peer that drains below its low water mark does not
 * start it again; the budget resumes it ({@link #resume}) once the peer has drained or the budget
 * has room.
 *
 * <p>Half-close: when this side's input ends (FIN), whatever is queued is flushed to the peer and the
 * peer's output is shut down; the tunnel closes when both directions have ended, or when either
 * side closes or fails (a reset, an error, a failed write to it), which closes the other side at
 * once after flushing what is queued for it.
 *
 * <p>How the tunnel ended ({@link TunnelEnd}) is recorded here: the failure or close of this side,
 * and on the client side {@link IdleTimeoutEvent} and {@link ProxyClosingEvent}, which come just
 * before the idle timer or the shutdown closes the connection.
 *
 * <p>Splice: once a direction has carried {@code relay.splice-after} bytes and then brings a read of
 * at least {@code relay.splice-min-read} bytes (while its peer is writable) it moves to a
 * {@link SpliceRelay}, which keeps the same backpressure, half-close and byte counts without the
 * bytes passing through the proxy's memory ({@link Tunnel#maybeSplice}).
 *
 * <p>Reading stops for good once this side is shut both ways (its input ended and the proxy shut its
 * output): a request to read (turning auto-read on calls one) is not passed on then ({@link #read}).
 *
 * <p>Owns {@code bytes_total} (through the tunnel) and no other metric.
 */
final class RelayHandler extends ChannelDuplexHandler implements MemoryBudget.Resumable {

    private static final Logger log = LoggerFactory.getLogger(RelayHandler.class);

    private final Tunnel tunnel;
    private final Channel self;
    private final Channel peer;
    private final MemoryBudget memory;

    RelayHandler(Tunnel tunnel, Channel self) {
        this.tunnel = tunnel;
        this.self = self;
        this.peer = tunnel.peerOf(self);
        this.memory = tunnel.memoryBudget();
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
        Channel self = ctx.channel();
        int n = buf.readableBytes();
        // Counted once the peer's socket has taken it; a failed write ends the tunnel.
        tunnel.relay(self, buf);
        if (tunnel.splice(self) != null) {
            // A read between two splice chunks: Netty's splice keeps the backpressure.
            return;
        }
        if (memory.pauseIfFull(self, this, n)) {
            // Whether or not the peer is full: reads wait for the budget first (resume checks the peer).
            return;
        } else if (!peer.isWritable()) {
            self.config().setAutoRead(false);
        } else {
            // Only while both sides flow: a direction that splices never pauses through auto-read here.
            tunnel.maybeSplice(self, n);
        }
    }


    @Override
    public Channel slowSide() {
        return peer;
    }

    /** The memory budget has room again: read on unless the peer is still full or our input ended. */
    @Override
    public void resume() {
        if (self.isActive() && peer.isWritable() && tunnel.splice(self) == null && !tunnel.isInputDone(self)) {
            self.config().setAutoRead(true);
        }
    }

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) {
        peer.flush();
    }

    @Override
    public void channelWritabilityChanged(ChannelHandlerContext ctx) {
        // Our channel drained below its low water mark: the peer may read again (a spliced peer
        // reads under Netty's own backpressure, or is relaying the rest after its end of input).
        if (ctx.channel().isWritable()) {
            SpliceRelay spliced = tunnel.splice(peer);
            if (spliced != null) {
                spliced.writable();
            } else if (!tunnel.isInputDone(peer)) {
                RelayHandler peerRelay = peer.pipeline().get(RelayHandler.class);
                // While the memory budget is full the peer waits for it, not for us.
                if (peerRelay == null || !memory.pauseIfFull(peer, peerRelay, 0)) {
                    peer.config().setAutoRead(true);
                }
            }
        }
        ctx.fireChannelWritabilityChanged();
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
        if (evt instanceof IdleTimeoutEvent) {
            // The idle timer closes the client connection right after this.
            tunnel.ended(TunnelEnd.IDLE_TIMEOUT);
        } else if (evt instanceof ProxyClosingEvent) {
            tunnel.ended(TunnelEnd.PROXY_CLOSED);
        } else if (evt instanceof ChannelInputShutdownEvent) {
            SpliceRelay spliced = tunnel.splice(ctx.channel());
            if (spliced != null) {
                spliced.inputEnded();
            } else {
                tunnel.inputEnded(ctx.channel());
            }
            return;
        }
        ctx.fireUserEventTriggered(evt);
    }

    /**
     * Passes a request to read on unless this side is shut both ways. Netty's splice turns
     * auto-read back on on the source of a chunk once the chunk has left the pipe, even when the
     * source's input has ended meanwhile; a socket whose input has ended and whose output the proxy
     * has shut down is out of Netty's epoll set by then, so the read's epoll_ctl failed (ENOENT) and
     * Netty closed the socket, with whatever it still held unread, and the tunnel ended
     * upstream_error (docs/architecture.md, "Netty bugs we work around", 4). What the receive
     * buffer still holds {@link SpliceRelay#inputEnded} reads. With the output still open the read
     * goes on: the socket is still in the epoll set, and a reset that came with the end of input is
     * reported through that read (dropping it there too left such a spliced tunnel open until the
     * client closed it: 2 of 25 resets in a run under CPU load).
     */
    @Override
    public void read(ChannelHandlerContext ctx) {
        if (ctx.channel() instanceof DuplexChannel d && d.isInputShutdown() && d.isOutputShutdown()) {
            return;
        }
        ctx.read();
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        tunnel.sideClosed(self);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        if (cause instanceof IOException || cause instanceof UncheckedIOException) {
            // I/O on a socket that failed or closed under the relay, including Netty's splice
            // task turning auto-read off on a source channel already closed (epoll_ctl: ENOENT,
            // thrown unchecked): the tunnel ends with its cause; nothing for the operator.
            log.debug("tunnel channel {} failed: {}", ctx.channel(), cause.toString());
        } else {
            log.warn("tunnel channel {} failed", ctx.channel(), cause);
        }
        tunnel.failed(ctx.channel(), cause);
    }
}
