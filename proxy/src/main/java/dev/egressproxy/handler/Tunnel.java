package dev.egressproxy.handler;

import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.util.Channels;
import io.netty.channel.Channel;

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

    Tunnel(ProxyServices services, AccessRecord record, Channel client, Channel upstream) {
        this.services = services;
        this.record = record;
        this.client = client;
        this.upstream = upstream;
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

    /** Closes both sides after flushing what is queued, and writes the access-log line once. */
    void close() {
        if (closed) {
            return;
        }
        closed = true;
        Channels.closeOnFlush(client);
        Channels.closeOnFlush(upstream);
        services.metrics().tunnelClosed(System.nanoTime() - openedNanos);
        services.accessLog().log(record);
    }
}
