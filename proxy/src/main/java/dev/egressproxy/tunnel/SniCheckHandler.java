package dev.egressproxy.tunnel;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.policy.Target;
import dev.egressproxy.tls.ClientHelloParser;
import dev.egressproxy.tls.SniCheck;
import dev.egressproxy.tls.SniReason;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.ScheduledFuture;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The SNI check of one tunnel ({@code tunnels.sni-check}, for CONNECTs to {@code tunnels.tls-ports}).
 * Sits on the client side in front of the {@link RelayHandler} from the moment the {@code 200} is
 * written until it has a verdict; the upstream side relays from the start, so a protocol whose
 * server speaks first is not held up.
 *
 * <p>Consumes the client's bytes ({@link ByteBuf}s: first those it sent before the 200, handed on
 * by {@link ConnectTunnelHandler}, then what it reads) and holds them, feeding a
 * {@link ClientHelloParser}, until the ClientHello is complete, the bytes are found not to be one,
 * {@code tunnels.client-hello-timeout} passes, or the client's input ends. The held bytes are
 * bounded by the parser ({@value ClientHelloParser#MAX_RECORD_BYTES} bytes of records) plus the
 * read that crossed it. Then {@link SniCheck#judge} compares the server name with the CONNECT host:
 *
 * <ul>
 *   <li>it passes, or fails under {@code report}: the held bytes go on to the relay unchanged and
 *       in order, and the handler removes itself;</li>
 *   <li>it fails under {@code enforce}: the held bytes are dropped, the client gets a fatal TLS
 *       {@code access_denied} alert (unless it does not speak TLS), and the tunnel closes on both
 *       sides; no client byte has reached the origin. The handler stays as a sink until the close.</li>
 * </ul>
 *
 * <p>A client that ends its input, or closes, before sending a byte is not a problem
 * ({@code no_bytes}); one that ends inside a ClientHello sent a malformed one.
 *
 * <p>Owns {@code sni_mismatch_total{host,reason}} and the access-log fields {@code sni} and
 * {@code sni_check} (and {@code error} when it closes the tunnel).
 */
final class SniCheckHandler extends ChannelInboundHandlerAdapter {

    private static final Logger log = LoggerFactory.getLogger(SniCheckHandler.class);

    /**
     * A fatal {@code access_denied} alert record: content type 21, record version TLS 1.2 (what
     * TLS 1.3 peers put on records too), length 2, level fatal (2), description 49.
     */
    private static final byte[] ACCESS_DENIED_ALERT = {21, 3, 3, 0, 2, 2, 49};

    private final Tunnel tunnel;
    private final Target target;
    private final AccessRecord record;
    private final ProxyMetrics metrics;
    private final boolean enforce;
    private final long timeoutNanos;
    private final ClientHelloParser parser = new ClientHelloParser();
    private final ArrayDeque<ByteBuf> held = new ArrayDeque<>();
    private ScheduledFuture<?> timer;
    /** A verdict was reached. */
    private boolean decided;
    /** ...and it closed the tunnel (enforce): the handler is a sink until the close. */
    private boolean refused;

    SniCheckHandler(Tunnel tunnel, Target target, AccessRecord record, ProxyMetrics metrics,
            ProxyConfig.Tunnels settings) {
        this.tunnel = tunnel;
        this.target = target;
        this.record = record;
        this.metrics = metrics;
        this.enforce = settings.sniCheck() == ProxyConfig.SniCheckMode.ENFORCE;
        this.timeoutNanos = settings.clientHelloTimeout().toNanos();
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        timer = ctx.executor().schedule(() -> {
            if (!decided) {
                decide(ctx, null, SniReason.CLIENT_HELLO_TIMEOUT, "no complete ClientHello in time");
            }
        }, timeoutNanos, TimeUnit.NANOSECONDS);
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (refused || !(msg instanceof ByteBuf buf)) {
            // After a refusal nothing more goes anywhere; leftover HTTP markers carry no bytes.
            ReferenceCountUtil.release(msg);
            return;
        }
        held.add(buf);
        ClientHelloParser.Result result = feed(buf);
        if (!(result instanceof ClientHelloParser.NeedMore)) {
            judge(ctx, result);
        }
    }

    private ClientHelloParser.Result feed(ByteBuf buf) {
        if (buf.nioBufferCount() < 1) {
            return parser.feed(ByteBufUtil.getBytes(buf));
        }
        ClientHelloParser.Result result = parser.result();
        // Views of the readable bytes: the parser moves their positions, never the buffer's indexes.
        for (ByteBuffer view : buf.nioBuffers()) {
            result = parser.feed(view);
        }
        return result;
    }

    private void judge(ChannelHandlerContext ctx, ClientHelloParser.Result result) {
        if (result instanceof ClientHelloParser.Hello hello) {
            decide(ctx, hello.serverName(), SniCheck.judge(target.host(), target.isIpLiteral(), hello), null);
        } else if (result instanceof ClientHelloParser.Refused refused) {
            decide(ctx, null, refused.reason(), refused.detail());
        }
    }

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) {
        // Still here: no byte was handed on (held, or dropped after a refusal), nothing to flush.
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
        if (evt instanceof ChannelInputShutdownEvent && !decided) {
            inputEnded(ctx);
        }
        if (refused) {
            // The tunnel is closing: the relay must not pass a half-close on.
            ReferenceCountUtil.release(evt);
            return;
        }
        ctx.fireUserEventTriggered(evt);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        if (!decided) {
            inputEnded(ctx);
        }
        ctx.fireChannelInactive();
    }

    private void inputEnded(ChannelHandlerContext ctx) {
        ClientHelloParser.Result result = parser.end();
        if (result instanceof ClientHelloParser.NeedMore) {
            // Nothing was sent, so nothing can have named another host.
            decided = true;
            cancelTimer();
            record.sniCheck(null, "no_bytes");
            ctx.pipeline().remove(this);
        } else {
            judge(ctx, result);
        }
    }

    /** Records the verdict, counts a problem, then passes the held bytes on or closes the tunnel. */
    private void decide(ChannelHandlerContext ctx, String serverName, SniReason reason, String detail) {
        decided = true;
        cancelTimer();
        record.sniCheck(serverName, reason == null ? "ok" : reason.label());
        if (reason == null) {
            pass(ctx);
            return;
        }
        metrics.sniMismatch(target.host(), reason);
        if (log.isDebugEnabled()) {
            log.debug("tunnel {} to {}: SNI check {} ({}){}", record.id(), target, reason.label(),
                    enforce ? "closing" : "reported", detail == null ? "" : ": " + detail);
        }
        if (enforce) {
            refuse(ctx, reason);
        } else {
            pass(ctx);
        }
    }

    private void pass(ChannelHandlerContext ctx) {
        boolean any = !held.isEmpty();
        ByteBuf buf;
        while ((buf = held.poll()) != null) {
            ctx.fireChannelRead(buf);
        }
        if (any) {
            ctx.fireChannelReadComplete();
        }
        ctx.pipeline().remove(this);
    }

    private void refuse(ChannelHandlerContext ctx, SniReason reason) {
        refused = true;
        record.error(reason.label());
        releaseHeld();
        if (reason != SniReason.NOT_TLS && ctx.channel().isActive()) {
            // A TLS client prints this ("tlsv1 alert access denied") instead of a bare reset; a
            // client that does not speak TLS would only read it as garbage.
            ctx.writeAndFlush(Unpooled.wrappedBuffer(ACCESS_DENIED_ALERT));
        }
        tunnel.ended(TunnelEnd.SNI_REFUSED);
        tunnel.close();
    }

    private void cancelTimer() {
        if (timer != null) {
            timer.cancel(false);
            timer = null;
        }
    }

    private void releaseHeld() {
        ByteBuf buf;
        while ((buf = held.poll()) != null) {
            buf.release();
        }
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        cancelTimer();
        releaseHeld();
    }
}
