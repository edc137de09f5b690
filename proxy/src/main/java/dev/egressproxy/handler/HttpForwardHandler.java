package dev.egressproxy.handler;

import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.Target;
import dev.egressproxy.server.PipelineNames;
import dev.egressproxy.util.Channels;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.handler.codec.http.DefaultHttpRequest;
import io.netty.handler.codec.http.HttpClientCodec;
import io.netty.handler.codec.http.HttpContent;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpHeaders;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.LastHttpContent;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.Future;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Forwards allowed absolute-form requests ({@code GET http://host/path}, any method) to the origin
 * and streams the answer back, never aggregating a body. The request is rewritten to origin form,
 * hop-by-hop headers are removed in both directions (Connection and the headers it names,
 * Proxy-Connection, Proxy-Authorization, Keep-Alive, TE, Trailer, Upgrade), the Host header is set
 * from the URL's authority, and {@code Via} is added. Redirects go back unchanged: the proxy never
 * follows them, and the client's next request is decided on its own.
 *
 * <p>Keep-alive on both sides: one upstream connection is kept per client connection and reused
 * while requests go to the same host and port. Exchanges are handled one at a time: while a
 * response is outstanding the client channel does not read (the flow-control handler holds any
 * pipelined request). Backpressure is the writability model of {@link RelayHandler}, in both
 * directions.
 *
 * <p>Owns {@code requests_total} for plain-HTTP requests that reach stage two, {@code bytes_total}
 * for forwarded bodies, and the access-log line of every forwarded request.
 */
public final class HttpForwardHandler extends ChannelInboundHandlerAdapter {

    private static final Logger log = LoggerFactory.getLogger(HttpForwardHandler.class);

    private static final List<CharSequence> HOP_BY_HOP = List.of(
            HttpHeaderNames.CONNECTION, HttpHeaderNames.PROXY_CONNECTION, HttpHeaderNames.PROXY_AUTHORIZATION,
            HttpHeaderNames.PROXY_AUTHENTICATE, HttpHeaderNames.KEEP_ALIVE, HttpHeaderNames.TE,
            HttpHeaderNames.TRAILER, HttpHeaderNames.UPGRADE);

    private final ProxyServices services;
    private ChannelHandlerContext ctx;
    private Channel upstream;
    private String upstreamAuthority;
    private Exchange exchange;

    // Reasons the client channel must not read; it reads only when none holds.
    private boolean connecting;
    private boolean awaitingResponse;
    private boolean upstreamBusy;

    /** One request and its response. */
    private static final class Exchange {
        final ProxyRequest request;
        final AccessRecord record;
        final boolean head;
        boolean clientKeepAlive;
        boolean requestDone;
        boolean responseStarted;
        boolean informational;
        boolean upstreamKeepAlive = true;

        Exchange(ProxyRequest request) {
            this.request = request;
            this.record = request.record();
            this.head = HttpMethod.HEAD.equals(request.request().method());
            this.clientKeepAlive = HttpUtil.isKeepAlive(request.request());
        }
    }

    public HttpForwardHandler(ProxyServices services) {
        this.services = services;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        this.ctx = ctx;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (msg instanceof ProxyRequest pr && pr.kind() == Kind.HTTP) {
            begin(pr);
        } else if (msg instanceof HttpContent content) {
            requestContent(content);
        } else {
            ctx.fireChannelRead(msg);
        }
    }

    private void begin(ProxyRequest pr) {
        exchange = new Exchange(pr);
        connecting = true;
        updateClientRead();
        if (upstream != null && upstream.isActive() && pr.target().authority().equals(upstreamAuthority)) {
            upstreamReady();
            return;
        }
        closeUpstream();
        Target target = pr.target();
        Future<Channel> f = services.connector().connect(target, ctx.channel().eventLoop(), () -> new ChannelInitializer<Channel>() {
            @Override
            protected void initChannel(Channel ch) {
                ch.pipeline()
                        .addLast(PipelineNames.UPSTREAM_HTTP_CODEC, new HttpClientCodec())
                        .addLast(PipelineNames.UPSTREAM_RESPONSE, new UpstreamResponseHandler());
            }
        });
        Exchange started = exchange;
        f.addListener((Future<Channel> done) -> {
            if (exchange != started || !ctx.channel().isActive()) {
                // The client left while we were connecting: the decision still counts.
                services.metrics().request(Kind.HTTP, started.request.decision().reason());
                if (done.isSuccess()) {
                    done.getNow().close();
                }
                return;
            }
            if (done.isSuccess()) {
                upstream = done.getNow();
                upstreamAuthority = target.authority();
                upstream.config().setAutoRead(true);
                upstreamReady();
            } else {
                connectFailed(done.cause());
            }
        });
    }

    private void upstreamReady() {
        Exchange ex = exchange;
        services.metrics().request(Kind.HTTP, ex.request.decision().reason());
        ex.record.upstream(upstream.remoteAddress());
        HttpRequest in = ex.request.request();
        HttpRequest out = new DefaultHttpRequest(HttpVersion.HTTP_1_1, in.method(), ex.request.pathAndQuery());
        out.headers().set(in.headers());
        stripHopByHop(out.headers());
        Target t = ex.request.target();
        out.headers().set(HttpHeaderNames.HOST, t.hostForAuthority() + (t.port() == 80 ? "" : ":" + t.port()));
        addVia(out.headers(), in.protocolVersion());
        upstream.write(out).addListener(closeUpstreamOnWriteFailure);
        upstream.flush();
        connecting = false;
        updateClientRead();
    }

    private void requestContent(HttpContent content) {
        Exchange ex = exchange;
        if (ex == null || upstream == null || !upstream.isActive()) {
            content.release();
            return;
        }
        int n = content.content().readableBytes();
        ex.record.addBytesUp(n);
        services.metrics().bytesToUpstream(n);
        boolean last = content instanceof LastHttpContent;
        upstream.write(content).addListener(closeUpstreamOnWriteFailure);
        if (last) {
            upstream.flush();
            ex.requestDone = true;
            awaitingResponse = true;
        }
        if (!upstream.isWritable()) {
            upstreamBusy = true;
        }
        updateClientRead();
    }

    private final ChannelFutureListener closeUpstreamOnWriteFailure = f -> {
        if (!f.isSuccess()) {
            log.debug("write to upstream failed: {}", String.valueOf(f.cause()));
            f.channel().close();
        }
    };

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) {
        if (upstream != null) {
            upstream.flush();
        }
        ctx.fireChannelReadComplete();
    }

    @Override
    public void channelWritabilityChanged(ChannelHandlerContext ctx) {
        // The client drained: read the upstream's answer again.
        if (upstream != null && ctx.channel().isWritable()) {
            upstream.config().setAutoRead(true);
        }
        ctx.fireChannelWritabilityChanged();
    }

    private void updateClientRead() {
        ctx.channel().config().setAutoRead(!connecting && !awaitingResponse && !upstreamBusy);
    }

    /** Handles the origin's answer on the upstream channel; one per upstream connection. */
    private final class UpstreamResponseHandler extends ChannelInboundHandlerAdapter {

        @Override
        public void channelRead(ChannelHandlerContext uctx, Object msg) {
            Exchange ex = exchange;
            if (ex == null || uctx.channel() != upstream) {
                // Bytes nobody asked for: the connection is out of step, drop it.
                ReferenceCountUtil.release(msg);
                uctx.close();
                return;
            }
            Channel client = ctx.channel();
            if (msg instanceof HttpResponse res) {
                if (res.decoderResult().isFailure()) {
                    ReferenceCountUtil.release(msg);
                    upstreamBroken(ex, "upstream sent a malformed response");
                    return;
                }
                onResponseHead(ex, res);
            }
            if (msg instanceof HttpContent content) {
                int n = content.content().readableBytes();
                ex.record.addBytesDown(n);
                services.metrics().bytesToClient(n);
                boolean last = msg instanceof LastHttpContent;
                client.write(msg);
                if (last) {
                    if (ex.informational) {
                        ex.informational = false;
                    } else {
                        client.flush();
                        finish(ex);
                        return;
                    }
                }
            } else if (msg instanceof HttpResponse) {
                client.write(msg);
            } else {
                ReferenceCountUtil.release(msg);
            }
            if (!client.isWritable()) {
                uctx.channel().config().setAutoRead(false);
            }
        }

        private void onResponseHead(Exchange ex, HttpResponse res) {
            HttpResponseStatus status = res.status();
            ex.informational = status.codeClass() == io.netty.handler.codec.http.HttpStatusClass.INFORMATIONAL;
            HttpHeaders h = res.headers();
            if (!ex.informational) {
                ex.responseStarted = true;
                ex.upstreamKeepAlive = HttpUtil.isKeepAlive(res);
                ex.record.status(status.code());
            }
            stripHopByHop(h);
            addVia(h, res.protocolVersion());
            res.setProtocolVersion(HttpVersion.HTTP_1_1);
            if (ex.informational) {
                return;
            }
            boolean bodyless = ex.head || status.code() == 204 || status.code() == 304;
            if (!bodyless && !HttpUtil.isContentLengthSet(res) && !HttpUtil.isTransferEncodingChunked(res)) {
                // The origin delimits this body by closing; tell the client where it ends instead.
                if (ex.request.request().protocolVersion().equals(HttpVersion.HTTP_1_1)) {
                    HttpUtil.setTransferEncodingChunked(res, true);
                } else {
                    ex.clientKeepAlive = false;
                }
            }
            if (!ex.clientKeepAlive) {
                h.set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
            } else if (ex.request.request().protocolVersion().equals(HttpVersion.HTTP_1_0)) {
                h.set(HttpHeaderNames.CONNECTION, HttpHeaderValues.KEEP_ALIVE);
            }
        }

        @Override
        public void channelReadComplete(ChannelHandlerContext uctx) {
            ctx.channel().flush();
        }

        @Override
        public void channelWritabilityChanged(ChannelHandlerContext uctx) {
            if (uctx.channel() == upstream) {
                upstreamBusy = !uctx.channel().isWritable();
                if (exchange != null) {
                    updateClientRead();
                }
            }
            uctx.fireChannelWritabilityChanged();
        }

        @Override
        public void userEventTriggered(ChannelHandlerContext uctx, Object evt) {
            // Upstream channels allow half-closure (tunnels need it); for HTTP a FIN from the
            // origin ends the connection. The codec before us has already turned it into the end
            // of a close-delimited body, if there was one.
            if (evt instanceof ChannelInputShutdownEvent) {
                uctx.close();
                return;
            }
            uctx.fireUserEventTriggered(evt);
        }

        @Override
        public void channelInactive(ChannelHandlerContext uctx) {
            if (uctx.channel() != upstream) {
                return;
            }
            upstream = null;
            upstreamAuthority = null;
            upstreamBusy = false;
            Exchange ex = exchange;
            if (ex != null) {
                upstreamBroken(ex, ex.request.target().authority() + " closed the connection before answering");
            }
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext uctx, Throwable cause) {
            if (cause instanceof IOException) {
                log.debug("upstream connection failed: {}", cause.toString());
            } else {
                log.warn("upstream connection failed", cause);
            }
            uctx.close();
        }
    }

    private void upstreamBroken(Exchange ex, String text) {
        exchange = null;
        if (ex.responseStarted) {
            // Part of the answer is already with the client; all we can do is cut it short.
            ex.record.error("upstream_closed");
            services.accessLog().log(ex.record);
            ctx.close();
            return;
        }
        ex.record.status(502).error("upstream_closed");
        services.accessLog().log(ex.record);
        Channels.answerAndClose(ctx,
                ErrorResponses.response(HttpResponseStatus.BAD_GATEWAY, text, "upstream_closed", null));
    }

    private void finish(Exchange ex) {
        exchange = null;
        services.accessLog().log(ex.record);
        if (!ex.upstreamKeepAlive || !ex.requestDone) {
            closeUpstream();
        }
        if (!ex.clientKeepAlive || !ex.requestDone) {
            Channels.closeOnFlush(ctx.channel());
            return;
        }
        awaitingResponse = false;
        upstreamBusy = false;
        ctx.fireUserEventTriggered(ExchangeDone.INSTANCE);
        updateClientRead();
    }

    private void connectFailed(Throwable cause) {
        Exchange ex = exchange;
        exchange = null;
        Channels.answerAndClose(ctx, UpstreamFailureAnswers.answer(services, ex.request, cause));
    }

    private void closeUpstream() {
        Channel u = upstream;
        upstream = null;
        upstreamAuthority = null;
        upstreamBusy = false;
        if (u != null) {
            u.close();
        }
    }

    static void stripHopByHop(HttpHeaders h) {
        List<String> named = new ArrayList<>();
        for (String value : h.getAll(HttpHeaderNames.CONNECTION)) {
            for (String token : value.split(",")) {
                String t = token.trim().toLowerCase(Locale.ROOT);
                if (!t.isEmpty()) {
                    named.add(t);
                }
            }
        }
        for (String name : named) {
            h.remove(name);
        }
        for (CharSequence name : HOP_BY_HOP) {
            h.remove(name);
        }
    }

    private static void addVia(HttpHeaders h, HttpVersion version) {
        String via = (version.majorVersion() + "." + version.minorVersion()) + " egress-proxy";
        String existing = h.get(HttpHeaderNames.VIA);
        h.set(HttpHeaderNames.VIA, existing == null || existing.isEmpty() ? via : existing + ", " + via);
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
        if (evt instanceof DrainEvent) {
            // Draining: finish the exchange in flight, if any, then close.
            if (exchange == null) {
                Channels.closeOnFlush(ctx.channel());
            } else {
                exchange.clientKeepAlive = false;
            }
            return;
        }
        if (evt instanceof ChannelInputShutdownEvent) {
            // The client will send nothing more: answer what is in flight, then close.
            Exchange ex = exchange;
            if (ex == null) {
                Channels.closeOnFlush(ctx.channel());
            } else {
                ex.clientKeepAlive = false;
            }
        }
        ctx.fireUserEventTriggered(evt);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        Exchange ex = exchange;
        exchange = null;
        if (ex != null) {
            ex.record.error("client_closed");
            services.accessLog().log(ex.record);
        }
        closeUpstream();
        ctx.fireChannelInactive();
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        closeUpstream();
    }
}
