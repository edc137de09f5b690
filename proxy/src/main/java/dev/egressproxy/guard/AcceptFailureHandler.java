package dev.egressproxy.guard;

import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.metrics.ProxyMetrics.Rejection;
import dev.egressproxy.util.LogThrottle;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import java.io.IOException;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * On the proxy listener's own pipeline: counts accepts that failed ({@code accept(2)} with EMFILE
 * when the process ran out of descriptors despite the {@link FdBudget}, ENOBUFS, ...) as
 * {@code rejected_total{reason="accept_failed"}} and logs them at most once every ten seconds with
 * how many there were, then stops accepting for {@value #PAUSE_MILLIS} ms (instead of spinning on
 * a connection it cannot take) and accepts again: the listener keeps serving. Netty's own acceptor
 * would pause a whole second and log every failure at WARN; the failure stops here.
 */
@Sharable
public final class AcceptFailureHandler extends ChannelInboundHandlerAdapter {

    private static final Logger log = LoggerFactory.getLogger(AcceptFailureHandler.class);
    static final long PAUSE_MILLIS = 100;

    private final ProxyMetrics metrics;
    private final FdBudget fds;
    private final LogThrottle logThrottle = new LogThrottle(10, TimeUnit.SECONDS);

    public AcceptFailureHandler(ProxyMetrics metrics, FdBudget fds) {
        this.metrics = metrics;
        this.fds = fds;
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        if (cause instanceof IOException) {
            metrics.rejected(Rejection.ACCEPT_FAILED);
            LogThrottle.Due due = logThrottle.event();
            if (due != null) {
                log.warn("accept failed {} time(s) in the last {} s ({}), {} connections and {} splice pipes open, {}; "
                        + "accepting again in {} ms", due.events(), due.seconds(),
                        cause.getMessage(), metrics.connectionsActive(), fds.pipesInUse(), fds.describe(),
                        PAUSE_MILLIS);
            }
            Channel listener = ctx.channel();
            if (listener.config().isAutoRead()) {
                listener.config().setAutoRead(false);
                listener.eventLoop().schedule(() -> listener.config().setAutoRead(true), PAUSE_MILLIS,
                        TimeUnit.MILLISECONDS);
            }
            return;
        }
        ctx.fireExceptionCaught(cause);
    }
}
