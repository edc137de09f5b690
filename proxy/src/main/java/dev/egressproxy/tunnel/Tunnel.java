package dev.egressproxy.tunnel;

import dev.egressproxy.guard.IdleCloseHandler;
import dev.egressproxy.guard.MemoryBudget;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.util.Channels;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.socket.SocketChannel;

/**
 * The shared state of one CONNECT tunnel: its two channels, which directions have finished, the
 * byte counts and the access record. Both channels run on the same event loop, so no field needs
 * to be volatile.
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
    /** Splice pipes this tunnel holds in the open-file budget. */
    private int pipes;
    /** Bytes after which a direction moves to splice(2); -1: never. */
    private final long spliceAfter;
    /** ...on a read of at least this many bytes. */
    private final int spliceMinRead;
    private SpliceRelay clientSplice;
    private SpliceRelay upstreamSplice;
    /** The client connection's idle timer, looked up when the first direction splices. */
    private IdleCloseHandler idle;

    Tunnel(ProxyServices services, AccessRecord record, Channel client, Channel upstream) {
        this.services = services;
        this.record = record;
        this.client = client;
        this.upstream = upstream;
        this.spliceAfter = services.config().relay().splice() ? services.config().relay().spliceAfter() : -1;
        this.spliceMinRead = services.config().relay().spliceMinRead();
        services.metrics().tunnelOpened();
    }

    Channel peerOf(Channel ch) {
        return ch == client ? upstream : client;
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
        if (idle == null) {
            idle = client.pipeline().get(IdleCloseHandler.class);
            if (idle != null) {
                idle.alsoWatch(this::splicedSinceAsked);
            }
        }
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
     * Closes both sides after flushing what is queued, and writes the access-log line once (for a
     * tunnel that spliced, once both sides have closed).
     */
    void close() {
        if (closed) {
            return;
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
        if (clientSplice == null && upstreamSplice == null) {
            finish();
        } else {
            // A spliced chunk still on its way out completes (and is counted) by the time its
            // channel has flushed and closed: the access-log line waits for both.
            client.closeFuture().addListener(c -> upstream.closeFuture().addListener(u -> finish()));
        }
    }

    private void finish() {
        // Both channels have closed, and with them the pipes of their splices.
        for (; pipes > 0; pipes--) {
            services.fds().releasePipe();
        }
        services.metrics().tunnelClosed(System.nanoTime() - openedNanos);
        services.accessLog().log(record);
    }
}
