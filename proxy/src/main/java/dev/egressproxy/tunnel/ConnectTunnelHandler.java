package dev.egressproxy.tunnel;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.handler.PipelineNames;
import dev.egressproxy.handler.ProxyRequest;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.handler.UpstreamFailureAnswers;
import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.upstream.UpstreamConnector;
import dev.egressproxy.util.Channels;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.Future;
import java.util.ArrayDeque;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Turns an allowed {@code CONNECT} into a tunnel. On the {@link ProxyRequest} it removes the HTTP
 * decoder, then the head guard, which held back from the decoder the bytes the client sent right
 * behind the CONNECT head and now hands them on as raw {@link ByteBuf}s; they are kept, up to
 * 64 KiB before reading pauses. It asks the
 * {@link UpstreamConnector} for a connection on the same event loop (to the destination, or a
 * tunnel through the parent proxy that {@code upstream-proxy} routes it to). When
 * it succeeds: write {@code 200 Connection established}, wait for that write to complete, remove the
 * remaining HTTP handlers and itself, put a {@link RelayHandler} on each side, send the kept bytes
 * upstream and start reading on both sides. For a port in {@code tunnels.tls-ports} with
 * {@code tunnels.sni-check} on, a {@link SniCheckHandler} goes in front of the client's relay and
 * gets the kept bytes instead, to hold them until the ClientHello's server name is judged. When
 * it fails: 403 if the resolved address is forbidden, 502/504 naming the host and the cause
 * otherwise; then close.
 *
 * <p>Owns {@code requests_total} for CONNECTs that reach stage two; a failed connect's answer, its
 * {@code /denied} entry and its access-log line are {@code UpstreamFailureAnswers}'.
 */
public final class ConnectTunnelHandler extends ChannelInboundHandlerAdapter {

    private static final Logger log = LoggerFactory.getLogger(ConnectTunnelHandler.class);
    /**
     * Bytes a client may send behind its CONNECT before the tunnel is up; past this the proxy stops
     * reading from it until the upstream connection is there. The client is not paused before
     * (pausing and resuming costs two epoll_ctl calls per tunnel) because most clients send
     * nothing, or one TLS ClientHello, before the 200.
     */
    private static final int EARLY_LIMIT = 64 * 1024;

    private final ProxyServices services;
    private ProxyRequest request;
    /** The parent proxy {@code upstream-proxy} routes the tunnel through, or null when it is dialled directly. */
    private ProxyConfig.UpstreamProxy parent;
    private final ArrayDeque<ByteBuf> early = new ArrayDeque<>();
    private int earlyBytes;
    private boolean clientGone;
    /** The client sent its FIN before the tunnel was up (e.g. request, payload and EOF at once). */
    private boolean clientInputShut;

    public ConnectTunnelHandler(ProxyServices services) {
        this.services = services;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (msg instanceof ProxyRequest pr && pr.kind() == Kind.CONNECT) {
            start(ctx, pr);
        } else if (request != null) {
            if (msg instanceof ByteBuf buf && buf.isReadable()) {
                early.add(buf);
                earlyBytes += buf.readableBytes();
                if (earlyBytes >= EARLY_LIMIT) {
                    ctx.channel().config().setAutoRead(false);
                }
            } else {
                ReferenceCountUtil.release(msg);
            }
        } else {
            ctx.fireChannelRead(msg);
        }
    }

    private void start(ChannelHandlerContext ctx, ProxyRequest pr) {
        request = pr;
        parent = UpstreamConnector.parentFor(pr.live(), pr.target());
        ReferenceCountUtil.release(pr.request());
        Channel client = ctx.channel();
        ChannelPipeline p = ctx.pipeline();
        removeIfPresent(p, PipelineNames.REQUEST_HEAD_TIMEOUT);
        removeIfPresent(p, PipelineNames.HTTP_FORWARD);
        // The decoder goes first: the head guard held every byte past the CONNECT head, and hands
        // them on as raw ByteBufs when it is removed, which must not pass through a decoder. The
        // flow-control handler passes on what it queued when it is removed.
        HttpServerCodec codec = (HttpServerCodec) p.get(PipelineNames.HTTP_CODEC);
        codec.removeInboundHandler();
        removeIfPresent(p, PipelineNames.FLOW_CONTROL);
        removeIfPresent(p, PipelineNames.HEAD_GUARD);
        removeIfPresent(p, PipelineNames.REQUEST_POLICY);

        Future<Channel> connect = services.connector().open(pr.live(), parent, pr.target(), Kind.CONNECT,
                client.eventLoop(), ChannelInboundHandlerAdapter::new);
        connect.addListener((Future<Channel> f) -> {
            if (f.isSuccess()) {
                connected(ctx, f.getNow());
            } else {
                failed(ctx, f.cause());
            }
        });
    }

    private void connected(ChannelHandlerContext ctx, Channel upstream) {
        AccessRecord record = request.record();
        services.metrics().request(Kind.CONNECT, request.decision());
        if (clientGone || !ctx.channel().isActive()) {
            upstream.close();
            record.status(200).error("client_closed").end(TunnelEnd.CLIENT_CLOSED.label(),
                    TunnelEnd.CLIENT_CLOSED.squidCode());
            services.accessLog().log(record);
            releaseEarly();
            return;
        }
        record.upstream(upstream.remoteAddress()).status(200);
        if (parent != null) {
            record.viaParent();
        }
        // The tunnels settings of the snapshot the CONNECT was decided under.
        ProxyConfig.Tunnels settings = request.live().config().tunnels();
        boolean checkSni = settings.checks(request.target().port());
        Tunnel tunnel = new Tunnel(services, record, ctx.channel(), upstream);
        upstream.pipeline().addLast(PipelineNames.RELAY, new RelayHandler(tunnel, upstream));
        DefaultFullHttpResponse ok = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1,
                new HttpResponseStatus(200, "Connection established"));
        ctx.writeAndFlush(ok).addListener((ChannelFutureListener) w -> {
            if (!w.isSuccess()) {
                releaseEarly();
                tunnel.failed(ctx.channel(), w.cause());
                return;
            }
            ChannelPipeline p = ctx.pipeline();
            // The 200 is out: from here on both sides carry raw bytes only.
            removeIfPresent(p, PipelineNames.HTTP_CODEC);
            p.addLast(PipelineNames.RELAY, new RelayHandler(tunnel, ctx.channel()));
            if (checkSni) {
                // The check sees the kept bytes first, as if just read, and hands them to the relay
                // once the ClientHello passes; the origin's bytes flow at once meanwhile.
                p.addBefore(PipelineNames.RELAY, PipelineNames.SNI_CHECK,
                        new SniCheckHandler(tunnel, request.target(), record, services.metrics(), settings));
                boolean kept = !early.isEmpty();
                ByteBuf buf;
                while ((buf = early.poll()) != null) {
                    ctx.fireChannelRead(buf);
                }
                if (kept) {
                    ctx.fireChannelReadComplete();
                }
            } else {
                ByteBuf buf;
                while ((buf = early.poll()) != null) {
                    tunnel.relay(ctx.channel(), buf);
                }
                upstream.flush();
            }
            p.remove(this);
            upstream.config().setAutoRead(true);
            if (clientInputShut) {
                p.fireUserEventTriggered(ChannelInputShutdownEvent.INSTANCE);
            } else if (!ctx.channel().config().isAutoRead()) {
                ctx.channel().config().setAutoRead(true);
            }
        });
    }

    private void failed(ChannelHandlerContext ctx, Throwable cause) {
        releaseEarly();
        FullHttpResponse answer = UpstreamFailureAnswers.answer(services, request, cause);
        if (ctx.channel().isActive()) {
            Channels.answerAndClose(ctx, answer);
        } else {
            answer.release();
        }
    }

    private void releaseEarly() {
        ByteBuf buf;
        while ((buf = early.poll()) != null) {
            buf.release();
        }
    }

    private static void removeIfPresent(ChannelPipeline p, String name) {
        if (p.get(name) != null) {
            p.remove(name);
        }
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
        if (request != null && evt instanceof ChannelInputShutdownEvent) {
            clientInputShut = true;
            return;
        }
        ctx.fireUserEventTriggered(evt);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        clientGone = true;
        releaseEarly();
        ctx.fireChannelInactive();
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        releaseEarly();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        log.debug("client connection failed while connecting upstream: {}", String.valueOf(cause));
        ctx.close();
    }
}
