package dev.egressproxy.handler;

import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.metrics.ProxyMetrics.Rejection;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.timeout.IdleStateEvent;
import io.netty.handler.timeout.IdleStateHandler;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Closes a client connection (and with it any tunnel or upstream connection) after
 * {@code timeouts.idle} with no bytes read or written on it. Tunnelled bytes in both directions
 * pass through the client channel, so this one timer covers the whole tunnel. Counts
 * {@code rejected_total{reason="idle_timeout"}}.
 */
public final class IdleCloseHandler extends IdleStateHandler {

    private final ProxyMetrics metrics;

    public IdleCloseHandler(Duration idle, ProxyMetrics metrics) {
        super(0, 0, idle.toMillis(), TimeUnit.MILLISECONDS);
        this.metrics = metrics;
    }

    @Override
    protected void channelIdle(ChannelHandlerContext ctx, IdleStateEvent evt) {
        metrics.rejected(Rejection.IDLE_TIMEOUT);
        ctx.close();
    }
}
