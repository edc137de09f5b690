package dev.egressproxy.tunnel;

import dev.egressproxy.util.NettyInternals;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.epoll.AbstractEpollStreamChannel;
import io.netty.channel.unix.FileDescriptor;
import java.io.IOException;
import java.lang.reflect.Field;
import java.util.Queue;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One direction of a tunnel moved with splice(2): socket to a kernel pipe to socket, the bytes
 * never copied into the proxy's memory. A {@link RelayHandler} hands its direction over once it
 * has carried {@code relay.splice-after} bytes and streams ({@code relay.splice-min-read}; see
 * {@link Tunnel#maybeSplice}); on the epoll transport only.
 *
 * <p>Netty's {@code spliceTo} does the moving, in chunks of {@link #CHUNK} bytes: each chunk's
 * completion counts its bytes ({@code bytes_total}, the access record), notes activity for the
 * idle timeout and asks for the next. Its backpressure is Netty's: while the pipe cannot be
 * emptied into the slow side, reading the fast side stops (so the proxy holds at most one pipe,
 * 64 KiB, per direction, in the kernel).
 *
 * <p>End of input is where Netty's splice falls short: on the peer's FIN it splices what fits in
 * the pipe and shuts the input down, leaving the rest in the socket's receive buffer (lost, and a
 * reset when the socket closes). So here, when the input ends, the proxy stops Netty's read loop,
 * reads the rest of the receive buffer itself, through pooled buffers, as fast as the other side
 * takes it, counts what the current chunk moved, and then passes the half-close on. Reading the
 * current chunk's progress needs three of Netty's private fields (the splice queue, a task's
 * remaining length and its promise, {@link Access}); where they cannot be read, splicing is off,
 * the start-up log says so at WARN ({@link #warnIfUnavailable}) and tunnels relay through user
 * space as before. {@code NettyInternalsTest} fails the build when they are missing.
 */
public final class SpliceRelay {

    private static final Logger log = LoggerFactory.getLogger(SpliceRelay.class);

    /** Bytes per splice request: the granularity of byte counts and of idle-timeout activity. */
    static final int CHUNK = 64 * 1024;

    /** Netty's private members this class reads, looked up once. */
    private static final Access ACCESS = Access.find("spliceQueue", "SpliceInTask", "len", "promise");

    /**
     * The three private members of Netty's epoll transport that tell a splice chunk's progress:
     * {@code AbstractEpollStreamChannel.spliceQueue} (the queue of pending chunks), and a queued
     * {@code SpliceInTask}'s {@code len} (bytes still to move into the pipe) and {@code promise}
     * (to find the current chunk). {@code missing} names the first one not found, and is null
     * when all were. The names are parameters so that a test can look up one that is not there.
     */
    record Access(Field queue, Field left, Field promise, String missing, AtomicBoolean warned) {

        static Access find(String queueField, String taskClass, String lenField, String promiseField) {
            try {
                Field queue = NettyInternals.field(AbstractEpollStreamChannel.class, queueField, Queue.class);
                Class<?> task = NettyInternals.type(AbstractEpollStreamChannel.class.getName() + "$" + taskClass);
                Field left = NettyInternals.field(task, lenField, int.class);
                Field promise = NettyInternals.field(task, promiseField, ChannelFuture.class);
                return new Access(queue, left, promise, null, new AtomicBoolean());
            } catch (NettyInternals.Missing e) {
                return new Access(null, null, null, e.getMessage(), new AtomicBoolean());
            }
        }

        /**
         * Logs at WARN, once, that splicing is off and why, when it would have been used: the
         * epoll transport with {@code relay.splice = true}. Returns whether it logged.
         */
        boolean warnIfMissing(String transport, boolean spliceConfigured) {
            if (missing == null || !spliceConfigured || !"epoll".equals(transport) || !warned.compareAndSet(false, true)) {
                return false;
            }
            log.warn("splice unavailable: {}; tunnels relay in user space (relay.splice = true has no effect; "
                    + "the proxy's CPU per byte of bulk tunnels about doubles)", missing);
            return true;
        }
    }

    private final Tunnel tunnel;
    private final AbstractEpollStreamChannel from;
    private final AbstractEpollStreamChannel to;
    /** The input of {@code from} has ended (or the tunnel closed): chunks are no longer asked for. */
    private boolean ended;
    /** The current chunk's progress has been counted ({@link #settle}). */
    private boolean settled;
    /** The chunk asked for last (its completion asks for the next). */
    private ChannelFuture current;
    /** The chunk whose progress {@link #settle} counted: its completion must not count it again. */
    private ChannelFuture counted;
    private long chunksDone;
    private long lastMark;
    /** Draining the rest of the receive buffer after end of input, paused until {@code to} drains. */
    private boolean drainPaused;

    private SpliceRelay(Tunnel tunnel, AbstractEpollStreamChannel from, AbstractEpollStreamChannel to) {
        this.tunnel = tunnel;
        this.from = from;
        this.to = to;
    }

    /** Null when splicing can be used; otherwise the Netty member that is missing, for the start-up log. */
    public static String unavailableReason() {
        return ACCESS.missing();
    }

    /**
     * At start-up: a WARN, once per process, when the transport is epoll and {@code relay.splice}
     * is on but Netty's members are missing (splicing is then off).
     */
    public static void warnIfUnavailable(String transport, boolean spliceConfigured) {
        ACCESS.warnIfMissing(transport, spliceConfigured);
    }

    /** True when {@code from} to {@code to} can be spliced: both epoll sockets on one event loop. */
    static boolean possible(Channel from, Channel to) {
        return ACCESS.missing() == null && from instanceof AbstractEpollStreamChannel
                && to instanceof AbstractEpollStreamChannel && from.eventLoop() == to.eventLoop();
    }

    /**
     * Moves {@code from} to {@code to} over to splicing; the caller has checked {@link #possible}.
     * (Netty splices only between level-triggered channels; its 4.2 epoll transport has no other
     * mode.)
     */
    static SpliceRelay start(Tunnel tunnel, Channel from, Channel to) {
        SpliceRelay relay = new SpliceRelay(tunnel, (AbstractEpollStreamChannel) from, (AbstractEpollStreamChannel) to);
        relay.next();
        return relay;
    }

    private void next() {
        current = from.spliceTo(to, CHUNK);
        current.addListener((ChannelFutureListener) this::chunkDone);
    }

    private void chunkDone(ChannelFuture f) {
        if (f.isSuccess()) {
            chunksDone++;
            if (f != counted) {
                tunnel.countBytes(from, CHUNK);
            }
            tunnel.activity();
            if (!ended && from.isActive()) {
                next();
            }
        } else if (!ended) {
            // A socket failed (a reset, a broken pipe) or closed: the tunnel ends. Splicing into
            // the pipe fails on the input side and leaves the output side open; splicing out of it
            // fails on the output side, which Netty closes before it fails the chunk.
            log.debug("splice {} -> {} failed: {}", from, to, String.valueOf(f.cause()));
            tunnel.failed(to.isActive() ? from : to, f.cause());
        }
    }

    /**
     * Counts the bytes the current chunk has moved so far and stops asking for chunks: when the
     * rest of the input has been relayed, or when the tunnel closes while this direction is open.
     */
    void settle() {
        ended = true;
        if (settled) {
            return;
        }
        settled = true;
        int left = currentLeft();
        if (left >= 0) {
            tunnel.countBytes(from, CHUNK - left);
            counted = current;
        }
    }

    /**
     * Whether bytes moved since the last call: the idle timeout asks before it closes the tunnel,
     * since splice progress within a chunk passes no handler.
     */
    boolean progressed() {
        int left = currentLeft();
        long mark = chunksDone * (long) CHUNK + (left < 0 ? CHUNK : CHUNK - left);
        boolean moved = mark != lastMark;
        lastMark = mark;
        return moved;
    }

    /**
     * Bytes the current chunk has still to move into the pipe; -1 when it is no longer queued (all
     * its bytes are in the pipe; its completion counts them). Netty dequeues a finished chunk only
     * after it has reported the end of input, so the current one may sit behind the one before.
     */
    private int currentLeft() {
        try {
            Queue<?> queue = (Queue<?>) ACCESS.queue().get(from);
            if (queue != null) {
                for (Object task : queue) {
                    if (ACCESS.promise().get(task) == current) {
                        return ACCESS.left().getInt(task);
                    }
                }
            }
            return -1;
        } catch (IllegalAccessException e) {
            throw new IllegalStateException("made accessible at class initialisation", e);
        }
    }

    /**
     * The input of {@code from} ended: relay what is still in the socket's receive buffer, count
     * the current chunk, then pass the half-close on ({@link Tunnel#inputEnded}).
     */
    void inputEnded() {
        ended = true;
        // Netty's read loop would otherwise go on splicing what is left in the socket (a shut-down
        // input still hands out what it holds) alongside the drain: stop it here.
        from.config().setAutoRead(false);
        drain();
    }

    /** {@code to} drained below its low water mark: go on relaying the rest, if that was waiting. */
    void writable() {
        if (drainPaused) {
            drainPaused = false;
            // Later, not from inside the flush that made it writable: no recursion per buffer.
            from.eventLoop().execute(this::drain);
        }
    }

    private void drain() {
        FileDescriptor fd = from.fd();
        while (to.isActive()) {
            if (!to.isWritable()) {
                drainPaused = true;
                to.flush();
                return;
            }
            ByteBuf buf = from.alloc().directBuffer(CHUNK);
            int n;
            try {
                n = read(fd, buf);
            } catch (IOException e) {
                buf.release();
                log.debug("reading the rest of {} failed: {}", from, e.toString());
                tunnel.failed(from, e);
                return;
            }
            if (n <= 0) {
                // End of the stream (after the FIN that ended the input, a read never waits).
                buf.release();
                to.flush();
                // Nothing more can be spliced from an input at its end: the current chunk's
                // progress is final.
                settle();
                tunnel.inputEnded(from);
                return;
            }
            buf.writerIndex(buf.writerIndex() + n);
            tunnel.activity();
            tunnel.relay(from, buf);
        }
    }

    private static int read(FileDescriptor fd, ByteBuf buf) throws IOException {
        int at = buf.writerIndex();
        if (buf.hasMemoryAddress()) {
            return fd.readAddress(buf.memoryAddress(), at, buf.capacity());
        }
        java.nio.ByteBuffer nio = buf.internalNioBuffer(at, buf.writableBytes());
        return fd.read(nio, nio.position(), nio.limit());
    }
}
