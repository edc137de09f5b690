package dev.egressproxy.guard;

import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.metrics.ProxyMetrics.Rejection;
import io.netty.channel.Channel;
import io.netty.channel.ChannelDuplexHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelPromise;
import io.netty.util.concurrent.ScheduledFuture;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * Closes a client connection (and with it any tunnel or upstream connection) after
 * {@code timeouts.idle} with no bytes read or written on it. Tunnelled bytes in both directions
 * pass through the client channel, so this one timer covers the whole tunnel. Counts
 * {@code rejected_total{reason="idle_timeout"}}. Fires {@link IdleTimeoutEvent} through the
 * pipeline just before the close, so that a tunnel's access-log line says {@code end=idle_timeout}.
 *
 * <p>Activity is a read from the client or a write handed to it, noted as a timestamp. One timer
 * per connection runs at the moment the connection would become idle; if there was activity since,
 * it re-arms itself for the time left. Netty's {@code IdleStateHandler} does the same job but adds
 * a listener to every write's promise to note when the write completes: an allocation and a
 * listener call per relayed chunk, on the hottest path of a tunnel. Here a write counts when it is
 * handed over; a peer that stops reading stops the writes too (the relay's backpressure), so a
 * stalled tunnel still goes idle.
 *
 * <p>Before closing, it asks whether bytes handed over earlier are still leaving, to the client
 * or, for a tunnel, to the origin ({@link #watchSends}): a slow reader drains megabytes of kernel
 * send buffer for minutes with no new write handed over, and is not idle ({@link SendProgress}).
 */
public final class IdleCloseHandler extends ChannelDuplexHandler {

    private final long idleNanos;
    private final ProxyMetrics metrics;
    private long lastActivity;
    private ScheduledFuture<?> timer;
    private boolean stopped;
    /** Activity the pipeline does not see (a tunnel's splice), asked before closing; may be null. */
    private BooleanSupplier unseenActivity;
    /** Bytes still leaving the client's socket, or a tunnel's upstream socket; asked before closing. */
    private SendProgress clientSends;
    private SendProgress otherSends;

    public IdleCloseHandler(Duration idle, ProxyMetrics metrics) {
        this.idleNanos = idle.toNanos();
        this.metrics = metrics;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        if (ctx.channel().isActive()) {
            start(ctx);
        }
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
        start(ctx);
        ctx.fireChannelActive();
    }

    private void start(ChannelHandlerContext ctx) {
        if (timer != null || stopped || idleNanos <= 0) {
            return;
        }
        lastActivity = System.nanoTime();
        timer = ctx.executor().schedule(() -> check(ctx), idleNanos, TimeUnit.NANOSECONDS);
    }

    private void check(ChannelHandlerContext ctx) {
        if (stopped || !ctx.channel().isOpen()) {
            return;
        }
        long quiet = System.nanoTime() - lastActivity;
        if (quiet >= idleNanos && (unseenActivity != null && unseenActivity.getAsBoolean() || stillSending(ctx))) {
            lastActivity = System.nanoTime();
            quiet = 0;
        }
        if (quiet >= idleNanos) {
            metrics.rejected(Rejection.IDLE_TIMEOUT);
            ctx.fireUserEventTriggered(IdleTimeoutEvent.INSTANCE);
            ctx.close();
            return;
        }
        timer = ctx.executor().schedule(() -> check(ctx), idleNanos - quiet, TimeUnit.NANOSECONDS);
    }

    private boolean stillSending(ChannelHandlerContext ctx) {
        if (clientSends == null) {
            clientSends = new SendProgress(ctx.channel());
        }
        // Both asked, so that each notes where it stands now.
        boolean client = clientSends.sentWithin(idleNanos);
        boolean other = otherSends != null && otherSends.sentWithin(idleNanos);
        return client || other;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        lastActivity = System.nanoTime();
        ctx.fireChannelRead(msg);
    }

    @Override
    public void write(ChannelHandlerContext ctx, Object msg, ChannelPromise promise) {
        lastActivity = System.nanoTime();
        ctx.write(msg, promise);
    }

    /** Notes activity the pipeline does not see: bytes a tunnel moved with splice(2). */
    public void touch() {
        lastActivity = System.nanoTime();
    }

    /**
     * Also counts as activity whatever {@code moved} reports (true: bytes moved since it was last
     * asked); asked only when the connection would otherwise be closed as idle.
     */
    public void alsoWatch(BooleanSupplier moved) {
        unseenActivity = moved;
    }

    /**
     * Also counts bytes still leaving {@code other} (a tunnel's upstream channel, on the same event
     * loop) as activity: an upload to a slow origin.
     */
    public void watchSends(Channel other) {
        otherSends = new SendProgress(other);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        stop();
        ctx.fireChannelInactive();
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        stop();
    }

    private void stop() {
        stopped = true;
        if (timer != null) {
            timer.cancel(false);
            timer = null;
        }
    }
}
