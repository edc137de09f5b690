package dev.egressproxy.guard;

import dev.egressproxy.config.ProxyConfig.ProxyProtocolMode;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.metrics.ProxyMetrics.Rejection;
import dev.egressproxy.policy.AddressText;
import dev.egressproxy.policy.CidrBlock;
import dev.egressproxy.util.LogThrottle;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.DecoderException;
import io.netty.handler.codec.haproxy.HAProxyCommand;
import io.netty.handler.codec.haproxy.HAProxyMessage;
import io.netty.handler.codec.haproxy.HAProxyProtocolVersion;
import io.netty.handler.codec.haproxy.HAProxyProxiedProtocol.AddressFamily;
import io.netty.util.NetUtil;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.ScheduledFuture;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The PROXY protocol ({@code listen.proxy-protocol}): judges the header a load balancer sends
 * before anything else on a connection, and makes its source address the client's. Second in the
 * pipeline, right behind Netty's {@code HAProxyMessageDecoder} (which consumes the header bytes and
 * emits one {@link HAProxyMessage}); a TLS listener's SslHandler goes right behind this one.
 *
 * <ul>
 *   <li>At accept: a TCP peer outside {@code listen.proxy-protocol-from} is closed before a byte
 *       is read ({@code proxy_protocol_untrusted}). Such a connection never reaches the handlers
 *       behind (no {@code channelActive}, no {@code channelInactive}): it was never admitted, so
 *       the connection gauge and the per-client counts never see it. A trusted peer's
 *       {@code channelActive} goes on at once, so the global connection cap counts at accept.
 *   <li>A header that is malformed ({@code proxy_protocol_malformed}: garbage, a plain request,
 *       an oversized header), of a version the listener does not accept
 *       ({@code proxy_protocol_wrong_version}), or not complete within {@code timeouts.request-head}
 *       of the accept ({@code proxy_protocol_timeout}) closes the connection; nothing is forwarded.
 *   <li>An accepted header sets {@link ClientIdentity} to its source address (a v2 LOCAL or v1
 *       UNKNOWN header, the balancer's own health check, keeps the TCP peer), then fires
 *       {@link ProxyHeaderRead}, on which {@link ClientGuardHandler} applies {@code clients.allow}
 *       and the per-client limit and lets {@code channelActive} go on to the HTTP handlers. Then
 *       this handler removes itself; the decoder removes itself and passes on whatever followed
 *       the header. If the guard refused, this handler stays and drops those bytes.
 * </ul>
 *
 * Each refusal counts {@code rejected_total{reason}} and logs a WARN at most every ten seconds
 * (naming the peer and saying how many refusals there were). One instance per connection.
 */
public final class ProxyProtocolHandler extends ChannelInboundHandlerAdapter {

    private static final Logger log = LoggerFactory.getLogger(ProxyProtocolHandler.class);

    private final ProxyProtocolMode mode;
    private final Supplier<List<CidrBlock>> trusted;
    private final Duration timeout;
    private final ProxyMetrics metrics;
    private final LogThrottle logThrottle;
    private ScheduledFuture<?> timer;
    /** The connection is refused: everything read from now on is dropped. */
    private boolean refused;
    /** Refused at accept: the handlers behind never saw the connection open, so they must not see it close. */
    private boolean hidden;

    /**
     * @param trusted read per connection, so a reloaded {@code proxy-protocol-from} applies to the next one
     * @param logThrottle shared by the listener's connections
     */
    public ProxyProtocolHandler(ProxyProtocolMode mode, Supplier<List<CidrBlock>> trusted, Duration timeout,
            ProxyMetrics metrics, LogThrottle logThrottle) {
        this.mode = mode;
        this.trusted = trusted;
        this.timeout = timeout;
        this.metrics = metrics;
        this.logThrottle = logThrottle;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        // Armed when the pipeline is built, before the request-head timer behind (same duration),
        // so a missing header ends as proxy_protocol_timeout, never as an HTTP 408.
        timer = ctx.executor().schedule(() -> expire(ctx), timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
        // The TCP peer here is the load balancer, not the client: the one address that must be the
        // socket's own, whatever ClientIdentity will say.
        SocketAddress peer = ctx.channel().remoteAddress();
        InetAddress ip = peer instanceof InetSocketAddress isa ? isa.getAddress() : null;
        if (ip == null || !CidrBlock.anyContains(trusted.get(), ip)) {
            hidden = true;
            refuse(ctx, Rejection.PROXY_PROTOCOL_UNTRUSTED, "peer not in listen.proxy-protocol-from");
            return;
        }
        ctx.fireChannelActive();
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (refused) {
            ReferenceCountUtil.release(msg);
            return;
        }
        if (msg instanceof HAProxyMessage header) {
            try {
                header(ctx, header);
            } finally {
                header.release();
            }
            return;
        }
        // Nothing else comes before the header: the decoder holds the bytes until it is complete.
        ctx.fireChannelRead(msg);
    }

    private void header(ChannelHandlerContext ctx, HAProxyMessage header) {
        cancelTimer();
        int version = header.protocolVersion() == HAProxyProtocolVersion.V1 ? 1 : 2;
        if (!mode.accepts(version)) {
            refuse(ctx, Rejection.PROXY_PROTOCOL_WRONG_VERSION,
                    "a v" + version + " header, but listen.proxy-protocol = " + mode.label());
            return;
        }
        InetSocketAddress source = source(header);
        if (source != null) {
            ClientIdentity.set(ctx.channel(), ClientIdentity.of(ctx.channel()).withAddress(source));
        }
        ProxyHeaderRead read = new ProxyHeaderRead();
        ctx.fireUserEventTriggered(read);
        if (read.refused()) {
            // The client guard answered and closes; what followed the header must not pass.
            refused = true;
            return;
        }
        ctx.pipeline().remove(this);
    }

    /** The client's address, or null to keep the TCP peer (LOCAL, UNKNOWN, a Unix socket). */
    private static InetSocketAddress source(HAProxyMessage header) {
        if (header.command() == HAProxyCommand.LOCAL) {
            return null;
        }
        AddressFamily family = header.proxiedProtocol().addressFamily();
        if (family != AddressFamily.AF_IPv4 && family != AddressFamily.AF_IPv6) {
            return null;
        }
        // The decoder has checked that it is an IP literal; this parses it without a DNS lookup.
        InetAddress ip = NetUtil.createInetAddressFromIpAddressString(header.sourceAddress());
        return ip == null ? null : new InetSocketAddress(ip, header.sourcePort());
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        if (refused) {
            return;
        }
        if (cause instanceof DecoderException) {
            // HAProxyProtocolException, or a decoder failure wrapped: either way no valid header.
            refuse(ctx, Rejection.PROXY_PROTOCOL_MALFORMED, innermostMessage(cause));
            return;
        }
        ctx.fireExceptionCaught(cause);
    }

    /** What the decoder found wrong: the message of the innermost cause ("invalid IPv4 address: ..."). */
    private static String innermostMessage(Throwable cause) {
        Throwable t = cause;
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        return t.getMessage() != null ? t.getMessage() : t.getClass().getSimpleName();
    }

    private void expire(ChannelHandlerContext ctx) {
        timer = null;
        if (refused || !ctx.channel().isActive()) {
            return;
        }
        refuse(ctx, Rejection.PROXY_PROTOCOL_TIMEOUT, "no complete header within "
                + (timeout.toMillis() % 1000 == 0 ? timeout.toSeconds() + "s" : timeout.toMillis() + "ms")
                + " (timeouts.request-head)");
    }

    private void refuse(ChannelHandlerContext ctx, Rejection reason, String detail) {
        refused = true;
        cancelTimer();
        metrics.rejected(reason);
        LogThrottle.Due due = logThrottle.event();
        if (due != null) {
            log.warn("PROXY protocol: closed the connection from {} ({}: {}); {} such refusal(s) in the last {} s",
                    peerText(ctx), reason.label(), detail, due.events(), due.seconds());
        }
        ctx.channel().config().setAutoRead(false);
        ctx.close();
    }

    private static String peerText(ChannelHandlerContext ctx) {
        return AddressText.of(ctx.channel().remoteAddress());
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        cancelTimer();
        if (!hidden) {
            ctx.fireChannelInactive();
        }
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        cancelTimer();
    }

    private void cancelTimer() {
        if (timer != null) {
            timer.cancel(false);
            timer = null;
        }
    }
}
