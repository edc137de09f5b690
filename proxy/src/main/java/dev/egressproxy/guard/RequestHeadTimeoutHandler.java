package dev.egressproxy.guard;

import dev.egressproxy.handler.ErrorResponses;
import dev.egressproxy.handler.ExchangeDone;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.metrics.ProxyMetrics.Rejection;
import dev.egressproxy.util.Channels;
import io.netty.channel.ChannelDuplexHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.util.concurrent.ScheduledFuture;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Answers 408 and closes when a complete request head has not arrived within
 * {@code timeouts.request-head} of the connection opening, or of the previous exchange ending
 * ({@link ExchangeDone}). This is what ends slowloris connections that dribble a header byte at a
 * time, which the idle timeout alone would keep alive. Sits after the HTTP decoder; removed when a
 * tunnel starts. Counts {@code rejected_total{reason="request_head_timeout"}}.
 */
public final class RequestHeadTimeoutHandler extends ChannelDuplexHandler {

    private final Duration timeout;
    private final ProxyMetrics metrics;
    private ScheduledFuture<?> timer;

    public RequestHeadTimeoutHandler(Duration timeout, ProxyMetrics metrics) {
        this.timeout = timeout;
        this.metrics = metrics;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        if (ctx.channel().isActive()) {
            arm(ctx);
        }
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
        arm(ctx);
        ctx.fireChannelActive();
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (msg instanceof HttpRequest) {
            disarm();
        }
        ctx.fireChannelRead(msg);
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
        if (evt instanceof ExchangeDone) {
            arm(ctx);
        }
        ctx.fireUserEventTriggered(evt);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        disarm();
        ctx.fireChannelInactive();
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        disarm();
    }

    private void arm(ChannelHandlerContext ctx) {
        disarm();
        timer = ctx.executor().schedule(() -> expire(ctx), timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    private void disarm() {
        if (timer != null) {
            timer.cancel(false);
            timer = null;
        }
    }

    private void expire(ChannelHandlerContext ctx) {
        timer = null;
        if (!ctx.channel().isActive()) {
            return;
        }
        metrics.rejected(Rejection.REQUEST_HEAD_TIMEOUT);
        Channels.answerAndClose(ctx, ErrorResponses.response(HttpResponseStatus.REQUEST_TIMEOUT,
                "request head not received within " + (timeout.toMillis() % 1000 == 0 ? timeout.toSeconds() + "s"
                        : timeout.toMillis() + "ms"), "request_head_timeout", null));
    }
}
