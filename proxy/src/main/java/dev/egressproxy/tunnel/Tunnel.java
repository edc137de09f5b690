package dev.egressproxy.tunnel;

import dev.egressproxy.guard.IdleCloseHandler;
import dev.egressproxy.guard.MemoryBudget;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.util.Channels;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.DefaultChannelPromise;
import io.netty.channel.socket.SocketChannel;
import io.netty.handler.ssl.SslHandler;
import io.netty.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * The shared state of one CONNECT tunnel: its two channels, which directions have finished, the
 * byte counts, how it ended ({@link TunnelEnd}) and the access record. Both channels run on the
 * same event loop, so no field needs to be volatile.
 *
 * <p>Bytes count when the receiving socket has taken them ({@link #relay}), so that
 * {@code bytes_total} and the access record say what was delivered, also when a side resets with
 * bytes still queued towards it.
 */
final class Tunnel {

    private final ProxyServices services;
    private final AccessRecord record;
    private final long openedNanos = System.nanoTime();
    final Channel client;
    final Channel upstream;
    private boolean clientInputDone;
    private boolean upstreamInputDone;
    private boolean closed;
    /** How the tunnel ended: the first fault seen, or the clean end it closed on. */
    private TunnelEnd end;
    /** The side whose input ended first, as a clean end. */
    private TunnelEnd firstInputEnd;
    /** Closes a side that does not take what is queued for it, once the tunnel is closing. */
    private ScheduledFuture<?> forceClose;
    private final ChannelFutureListener countUp = f -> written(true, f);
    private final ChannelFutureListener countDown = f -> written(false, f);
    /** Splice pipes this tunnel holds in the open-file budget. */
    private int pipes;
    /** Bytes after which a direction moves to splice(2); -1: never. */
    private final long spliceAfter;
    /** ...on a read of at least this many bytes. */
    private final int spliceMinRead;
    private SpliceRelay clientSplice;
    private SpliceRelay upstreamSplice;
    /** The client connection's idle timer (null without timeouts.idle). */
    private final IdleCloseHandler idle;

    Tunnel(ProxyServices services, AccessRecord record, Channel client, Channel upstream) {
        this.services = services;
        this.record = record;
        this.client = client;
        this.upstream = upstream;
        // On the TLS listener the client's socket carries TLS records, which only the SslHandler
        // can read: bytes spliced socket to socket would reach the origin still encrypted.
        boolean clientTls = client.pipeline().get(SslHandler.class) != null;
        this.spliceAfter = services.config().relay().splice() && !clientTls ? services.config().relay().spliceAfter() : -1;
        this.spliceMinRead = services.config().relay().spliceMinRead();
        services.metrics().tunnelOpened();
        idle = client.pipeline().get(IdleCloseHandler.class);
        if (idle != null) {
            // An upload draining slowly to the origin keeps the tunnel as busy as a download, and
            // bytes a splice moves count although the pipeline does not see them.
            idle.watchSends(upstream);
            idle.alsoWatch(this::splicedSinceAsked);
        }
    }

    Channel peerOf(Channel ch) {
        return ch == client ? upstream : client;
    }

    /**
     * Writes {@code buf}, read from {@code from}, to the peer (not flushed). Its bytes count once
     * the peer's socket has taken them; a failed write ends the tunnel with the peer's side named.
     * One promise per write, with one listener per direction.
     */
    void relay(Channel from, ByteBuf buf) {
        Channel to = peerOf(from);
        to.write(buf, new Counted(to, buf.readableBytes()).addListener(from == client ? countUp : countDown));
    }

    private void written(boolean up, ChannelFuture f) {
        if (f.isSuccess()) {
            countBytes(up ? client : upstream, ((Counted) f).bytes);
        } else {
            failed(up ? upstream : client, f.cause());
        }
    }

    /** A write promise that knows its size. */
    private static final class Counted extends DefaultChannelPromise {
        final int bytes;

        Counted(Channel ch, int bytes) {
            super(ch);
            this.bytes = bytes;
        }
    }

    void countBytes(Channel from, long n) {
        if (from == client) {
            record.addBytesUp(n);
            services.metrics().bytesToUpstream(n);
        } else {
            record.addBytesDown(n);
            services.metrics().bytesToClient(n);
        }
    }

    MemoryBudget memoryBudget() {
        return services.memory();
    }

    /** The splice relay of the direction from {@code ch}, or null while it relays through user space. */
    SpliceRelay splice(Channel ch) {
        return ch == client ? clientSplice : upstreamSplice;
    }

    /**
     * Moves the direction from {@code ch} to splice(2) if it has carried enough bytes, the read
     * that just arrived ({@code readBytes}) was a large one, and splicing is on and possible here.
     * Through a pipe a small message costs more than through user space (two splice calls and
     * Netty's splice bookkeeping instead of one read and one write), so only a direction that
     * streams is moved.
     */
    void maybeSplice(Channel ch, int readBytes) {
        if (spliceAfter < 0 || readBytes < spliceMinRead || closed) {
            return;
        }
        long carried = ch == client ? record.bytesUp() : record.bytesDown();
        if (carried < spliceAfter || !SpliceRelay.possible(ch, peerOf(ch))) {
            return;
        }
        // A pipe costs two descriptors until the tunnel closes: only if the open-file budget has them.
        if (!services.fds().tryAcquirePipe(services.metrics().connectionsActive())) {
            return;
        }
        pipes++;
        SpliceRelay relay = SpliceRelay.start(this, ch, peerOf(ch));
        if (ch == client) {
            clientSplice = relay;
        } else {
            upstreamSplice = relay;
        }
        services.metrics().tunnelSpliced();
    }

    private boolean splicedSinceAsked() {
        // Both asked, so that each notes where it stands now.
        boolean up = clientSplice != null && clientSplice.progressed();
        boolean down = upstreamSplice != null && upstreamSplice.progressed();
        return up || down;
    }

    /** Bytes moved where the pipeline does not see them count as activity for the idle timeout. */
    void activity() {
        if (idle != null) {
            idle.touch();
        }
    }

    /**
     * The input from {@code ch} has ended and everything it sent has been handed to the peer: once
     * that is flushed, shut the peer's output down (passing the half-close on), or close the tunnel
     * when the other direction has ended too.
     */
    void inputEnded(Channel ch) {
        Channel peer = peerOf(ch);
        if (inputDone(ch)) {
            close();
        } else if (peer.isActive()) {
            peer.writeAndFlush(Unpooled.EMPTY_BUFFER).addListener(f -> {
                if (peer instanceof SocketChannel sc && sc.isActive()) {
                    Channels.shutdownOutput(sc);
                }
            });
        }
    }

    /** Records that {@code ch} will send nothing more; returns true when both directions are done. */
    boolean inputDone(Channel ch) {
        if (firstInputEnd == null) {
            firstInputEnd = TunnelEnd.closed(ch == client);
        }
        if (ch == client) {
            clientInputDone = true;
        } else {
            upstreamInputDone = true;
        }
        return clientInputDone && upstreamInputDone;
    }

    boolean isInputDone(Channel ch) {
        return ch == client ? clientInputDone : upstreamInputDone;
    }

    /**
     * Records {@code cause} as the tunnel's end unless one was recorded already (the first wins)
     * or the tunnel is closing; the close follows from the caller. Returns whether it was recorded.
     */
    boolean ended(TunnelEnd cause) {
        if (closed || end != null) {
            return false;
        }
        end = cause;
        return true;
    }

    /** {@code side} failed ({@code cause}: a reset or another error): the tunnel ends. */
    void failed(Channel side, Throwable cause) {
        if (TunnelEnd.closedWithoutReason(cause)) {
            // Something closed the channel under a write or a splice. Whatever closed it reports
            // why (its own exception, or its close: channelInactive), and Netty fails the writes
            // queued before the close with that exception first: it, not this, names the end.
            return;
        }
        TunnelEnd failure = TunnelEnd.failed(side == client, cause);
        if (ended(failure) && failure.isError()) {
            // A reset says what happened; another error says it in error=.
            record.error(TunnelEnd.errorCode(cause));
        }
        close();
    }

    /** {@code side} closed without a fault (it became inactive): the tunnel ends cleanly. */
    void sideClosed(Channel side) {
        ended(firstInputEnd != null ? firstInputEnd : TunnelEnd.closed(side == client));
        close();
    }

    /**
     * Closes both sides after flushing what is queued, and writes the access-log line once both
     * have closed, when every write has been counted (or failed). A side that does not take what is
     * queued for it is closed regardless after {@code timeouts.idle}: the client's idle timer,
     * which would otherwise bound it, may be gone with the client.
     */
    void close() {
        if (closed) {
            return;
        }
        if (end == null) {
            // Both directions ended: the side that ended first closed the tunnel.
            end = firstInputEnd != null ? firstInputEnd : TunnelEnd.CLIENT_CLOSED;
        }
        closed = true;
        // What a splice moved since its last whole chunk, while the channel can still tell.
        if (clientSplice != null) {
            clientSplice.settle();
        }
        if (upstreamSplice != null) {
            upstreamSplice.settle();
        }
        Channels.closeOnFlush(client);
        Channels.closeOnFlush(upstream);
        long idleNanos = services.config().timeouts().idle().toNanos();
        if (idleNanos > 0 && (client.isOpen() || upstream.isOpen())) {
            forceClose = client.eventLoop().schedule(() -> {
                client.close();
                upstream.close();
            }, idleNanos, TimeUnit.NANOSECONDS);
        }
        // A write (or a spliced chunk) still on its way out completes, and is counted, by the time
        // its channel has flushed and closed: the access-log line waits for both.
        client.closeFuture().addListener(c -> upstream.closeFuture().addListener(u -> finish()));
    }

    private void finish() {
        if (forceClose != null) {
            forceClose.cancel(false);
        }
        // Both channels have closed, and with them the pipes of their splices.
        for (; pipes > 0; pipes--) {
            services.fds().releasePipe();
        }
        services.metrics().tunnelClosed(System.nanoTime() - openedNanos);
        services.accessLog().log(record.end(end.label(), end.squidCode()));
    }
}
