package dev.egressproxy.guard;

import dev.egressproxy.handler.ErrorResponses;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.metrics.ProxyMetrics.Rejection;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import java.nio.charset.StandardCharsets;

/**
 * First handler of every client connection. Counts open connections in the
 * {@code connections_active} gauge and answers 503 and closes at once, before reading a byte, when
 * the connection does not fit:
 * <ul>
 *   <li>past the connection cap ({@code limits.max-connections}, lowered by the open-file limit,
 *       {@link FdBudget}) or when its descriptors do not fit beside the splice pipes open now:
 *       {@code rejected_total{reason="connection_limit"}};
 *   <li>while the direct-memory budget is nearly full ({@link MemoryBudget#admitting()}):
 *       {@code rejected_total{reason="memory_budget"}}.
 * </ul>
 * Either way the client gets an answer naming the reason instead of a connection left in the
 * listen backlog, and the connections already open keep their descriptors and memory. Shared by
 * all connections of one server: its only state is the server's counters.
 */
@Sharable
public final class ConnectionLimitHandler extends ChannelInboundHandlerAdapter {

    private static final byte[] FULL = refusal("is at its connection limit", "connection_limit",
            "egress-proxy connection limit hit.\n");
    private static final byte[] NO_MEMORY = refusal("is at its memory budget", "memory_budget",
            "egress-proxy memory budget hit: too many bytes in flight; retry shortly.\n");

    private final ProxyMetrics metrics;
    private final FdBudget fds;
    private final MemoryBudget memory;

    public ConnectionLimitHandler(ProxyMetrics metrics, FdBudget fds, MemoryBudget memory) {
        this.metrics = metrics;
        this.fds = fds;
        this.memory = memory;
    }

    private static byte[] refusal(String phrase, String reason, String body) {
        return ("HTTP/1.1 503 egress-proxy " + phrase + "\r\n"
                + "Content-Type: text/plain\r\nContent-Length: " + body.length() + "\r\nConnection: close\r\n"
                + ErrorResponses.REASON_HEADER + ": " + reason + "\r\n\r\n" + body).getBytes(StandardCharsets.US_ASCII);
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
        metrics.connectionOpened();
        if (!fds.admits(metrics.connectionsActive())) {
            refuse(ctx, Rejection.CONNECTION_LIMIT, FULL);
        } else if (!memory.admitting()) {
            refuse(ctx, Rejection.MEMORY_BUDGET, NO_MEMORY);
        } else {
            ctx.fireChannelActive();
        }
    }

    private void refuse(ChannelHandlerContext ctx, Rejection reason, byte[] answer) {
        metrics.rejected(reason);
        ctx.channel().config().setAutoRead(false);
        ctx.writeAndFlush(Unpooled.wrappedBuffer(answer)).addListener(ChannelFutureListener.CLOSE);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        metrics.connectionClosed();
        ctx.fireChannelInactive();
    }
}
