package dev.egressproxy.guard;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.handler.ErrorResponses;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.metrics.ProxyMetrics.Rejection;
import dev.egressproxy.policy.CidrBlock;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandler;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.util.AttributeKey;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.util.function.Supplier;

/**
 * Second handler of every client connection, after the connection cap: who may use the proxy at
 * all ({@code clients.allow}; others get 403 and are closed, so a proxy put on a public address by
 * mistake is not an open proxy) and how many connections one address may hold
 * ({@code clients.max-connections-per-client}; past it 429 and close, so one client cannot take
 * every connection). Counts {@code rejected_total{reason="client_not_allowed"|"per_client_limit"}}.
 * Shared by all connections of a server, on every event loop; its state is the per-address counts
 * ({@link ClientCounts}), which stay exact however the loops interleave. A refused connection is not
 * counted.
 *
 * <p>On a listener with {@code listen.proxy-protocol} the client is not known at accept: the
 * pipeline holds {@link #afterProxyHeader()} instead, the same guard with the same counts, which
 * decides on {@link ProxyHeaderRead} and only then lets {@code channelActive} go on. This handler,
 * for the listener without, is unchanged by that.
 */
@Sharable
public final class ClientGuardHandler extends ChannelInboundHandlerAdapter {

    private static final AttributeKey<InetAddress> COUNTED = AttributeKey.valueOf("egress.client-counted");

    private static final byte[] NOT_ALLOWED = response(403, "your address may not use this egress proxy",
            "client_not_allowed");
    private static final byte[] TOO_MANY = response(429, "too many connections from your address",
            "per_client_limit");

    private final Supplier<ProxyConfig.Clients> clients;
    private final ProxyMetrics metrics;
    private final ClientCounts open = new ClientCounts();
    private final ChannelInboundHandler afterProxyHeader = new AfterProxyHeader();

    /** {@code clients} is read per connection, so a reloaded {@code clients} block applies at once. */
    public ClientGuardHandler(Supplier<ProxyConfig.Clients> clients, ProxyMetrics metrics) {
        this.clients = clients;
        this.metrics = metrics;
    }

    private static byte[] response(int status, String phrase, String code) {
        String body = "egress-proxy: " + phrase + "\n";
        return ("HTTP/1.1 " + status + " " + phrase + "\r\nContent-Type: text/plain\r\nContent-Length: "
                + body.length() + "\r\nConnection: close\r\n" + ErrorResponses.REASON_HEADER + ": " + code
                + "\r\n\r\n" + body).getBytes(StandardCharsets.US_ASCII);
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
        if (admit(ctx)) {
            ctx.fireChannelActive();
        }
    }

    /** Applies clients.allow and the per-client limit; false if refused (answered and closing). */
    private boolean admit(ChannelHandlerContext ctx) {
        InetAddress client = ClientIdentity.of(ctx.channel()).ip();
        ProxyConfig.Clients settings = clients.get();
        if (!CidrBlock.anyContains(settings.allow(), client)) {
            reject(ctx, Rejection.CLIENT_NOT_ALLOWED, NOT_ALLOWED);
            return false;
        }
        if (!open.tryAcquire(client, settings.maxConnectionsPerClient())) {
            reject(ctx, Rejection.PER_CLIENT_LIMIT, TOO_MANY);
            return false;
        }
        ctx.channel().attr(COUNTED).set(client);
        return true;
    }

    /**
     * This guard for a listener with {@code listen.proxy-protocol}: it decides when the PROXY
     * header has been read ({@link ProxyHeaderRead}, fired by {@link ProxyProtocolHandler} after
     * it set the client address) rather than at {@code channelActive}, which it holds back until
     * then, so the handlers behind start their timers once the client is known. Shares this
     * guard's counts.
     */
    public ChannelInboundHandler afterProxyHeader() {
        return afterProxyHeader;
    }

    @Sharable
    private final class AfterProxyHeader extends ChannelInboundHandlerAdapter {

        @Override
        public void channelActive(ChannelHandlerContext ctx) {
            // Held: the client is known only once the header is read.
        }

        @Override
        public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
            if (evt instanceof ProxyHeaderRead read) {
                if (admit(ctx)) {
                    ctx.fireChannelActive();
                } else {
                    read.refuse();
                }
                return;
            }
            ctx.fireUserEventTriggered(evt);
        }

        @Override
        public void channelInactive(ChannelHandlerContext ctx) {
            ClientGuardHandler.this.channelInactive(ctx);
        }
    }

    private void reject(ChannelHandlerContext ctx, Rejection rejection, byte[] answer) {
        metrics.rejected(rejection);
        ctx.channel().config().setAutoRead(false);
        ctx.writeAndFlush(Unpooled.wrappedBuffer(answer)).addListener(ChannelFutureListener.CLOSE);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        InetAddress client = ctx.channel().attr(COUNTED).getAndSet(null);
        if (client != null) {
            open.release(client);
        }
        ctx.fireChannelInactive();
    }

    /** Connections counted now from {@code client} (for tests). */
    public int openFrom(InetAddress client) {
        return open.openFrom(client);
    }

    /** Client addresses with at least one counted connection (for tests). */
    public int clientAddresses() {
        return open.addresses();
    }
}
