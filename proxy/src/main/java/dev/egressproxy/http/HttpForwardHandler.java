package dev.egressproxy.http;

import dev.egressproxy.config.ConfigSnapshot;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.MemoryBudget;
import dev.egressproxy.handler.DrainEvent;
import dev.egressproxy.handler.ErrorResponses;
import dev.egressproxy.handler.ExchangeDone;
import dev.egressproxy.handler.PipelineNames;
import dev.egressproxy.handler.ProxyRequest;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.handler.UpstreamFailureAnswers;
import dev.egressproxy.http.HeaderSanitizer.Framing;
import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.Target;
import dev.egressproxy.metrics.DeniedReport;
import dev.egressproxy.upstream.ParentFailure;
import dev.egressproxy.upstream.UpstreamConnector;
import dev.egressproxy.upstream.UpstreamException;
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
import io.netty.handler.codec.http.HttpDecoderConfig;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpHeaders;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpObject;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpStatusClass;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.LastHttpContent;
import io.netty.handler.codec.http.TooLongHttpHeaderException;
import io.netty.handler.codec.http.TooLongHttpLineException;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.Future;
import java.io.IOException;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Forwards allowed absolute-form requests ({@code GET http://host/path}, any method) to the origin
 * and streams the answer back, never aggregating a body. The request is rewritten to origin form;
 * {@link HeaderSanitizer} removes hop-by-hop fields in both directions (never the framing or routing
 * ones, whatever {@code Connection} names), writes the framing the decoder decided (so the origin
 * reads exactly one request), sets {@code Host} from the URL's authority and appends to {@code Via}.
 * Redirects go back unchanged: the proxy never follows them, and the client's next request is
 * decided on its own. A request {@code upstream-proxy} routes to the parent proxy goes to it in
 * absolute form with the parent's credentials; its answer is passed on as the origin's, but a 407
 * (the parent refusing our credentials) becomes 502 {@code parent_refused} naming both hops.
 *
 * <p>Keep-alive on both sides: one upstream connection is kept per client connection and reused
 * while requests go to the same host and port. An idempotent request without a body that meets a
 * reused connection closed by the origin before any byte of the answer (the keep-alive race) is
 * sent once more on a new connection. Exchanges are handled one at a time: while a response is
 * outstanding the client channel does not read (the flow-control handler holds any pipelined
 * request); a client that half-closes after pipelining still gets every answer. HTTP/1.0 clients
 * never see chunked coding or 1xx answers: a body of unknown length is delimited by closing.
 * Backpressure is the writability model of {@code RelayHandler} (tunnels), in both directions.
 *
 * <p>Owns {@code requests_total} for plain-HTTP requests that reach stage two, {@code bytes_total}
 * for forwarded bodies, and the access-log line of every forwarded request.
 */
public final class HttpForwardHandler extends ChannelInboundHandlerAdapter {

    private static final Logger log = LoggerFactory.getLogger(HttpForwardHandler.class);

    /** Methods a proxy may send again after a lost keep-alive race (RFC 9110 9.2.2), when bodiless. */
    private static final Set<HttpMethod> IDEMPOTENT = Set.of(HttpMethod.GET, HttpMethod.HEAD, HttpMethod.OPTIONS,
            HttpMethod.TRACE, HttpMethod.PUT, HttpMethod.DELETE);

    private final ProxyServices services;
    private ChannelHandlerContext ctx;
    private Channel upstream;
    private String upstreamAuthority;
    /** The configuration snapshot the kept-alive upstream was dialled under. */
    private ConfigSnapshot upstreamSnapshot;
    /** The parent proxy the kept-alive upstream connection goes to, or null when it is the origin's. */
    private ProxyConfig.UpstreamProxy upstreamParent;
    private Exchange exchange;

    // Reasons the client channel must not read; it reads only when none holds.
    private boolean connecting;
    private boolean awaitingResponse;
    private boolean upstreamBusy;
    /** Reading the request body waits for the memory budget ({@link MemoryBudget#pauseIfFull}). */
    private boolean memoryPaused;
    /** The client sent its FIN: answer every request it sent before it, then close. */
    private boolean clientInputShut;
    private boolean cutCheckScheduled;

    /** One request and its response. */
    private static final class Exchange {
        final ProxyRequest request;
        final AccessRecord record;
        final boolean head;
        final boolean http10;
        /** How the request body is delimited, as the decoder read it, and its length for LENGTH. */
        final Framing framing;
        final long length;
        /** Idempotent and without a body: may be sent again on a new connection. */
        final boolean replayable;
        /** The parent proxy the request goes through (upstream-proxy), or null when it goes to the origin. */
        final ProxyConfig.UpstreamProxy parent;
        boolean clientKeepAlive;
        boolean requestDone;
        boolean responseStarted;
        /** Any part of an answer (even a 1xx) has come from the origin. */
        boolean answered;
        boolean informational;
        boolean upstreamKeepAlive = true;
        /** The response body goes to the client with chunked coding (so its trailers may pass). */
        boolean chunkedToClient;
        /** Sent on an upstream connection an earlier exchange used. */
        boolean reusedUpstream;
        boolean retried;
        boolean counted;

        Exchange(ProxyRequest request) {
            this.request = request;
            this.record = request.record();
            HttpRequest in = request.request();
            this.head = HttpMethod.HEAD.equals(in.method());
            this.http10 = in.protocolVersion().minorVersion() == 0;
            this.clientKeepAlive = HttpUtil.isKeepAlive(in);
            this.framing = HeaderSanitizer.framingOf(in);
            this.length = framing == Framing.LENGTH ? HttpUtil.getContentLength(in, 0L) : 0;
            this.replayable = IDEMPOTENT.contains(in.method())
                    && (framing == Framing.NONE || framing == Framing.LENGTH && length == 0);
            this.parent = UpstreamConnector.parentFor(request.live(), request.target());
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
        Exchange ex = new Exchange(pr);
        exchange = ex;
        // A kept-alive upstream serves the next request to the same destination only under the same
        // configuration and through the same parent proxy (or none): a connection to a parent is
        // never used for a direct request, nor the other way round; after a reload (a new
        // connect-to or upstream-proxy, say) the request is dialled afresh.
        if (upstream != null && upstream.isActive() && pr.target().authority().equals(upstreamAuthority)
                && pr.live() == upstreamSnapshot && ex.parent == upstreamParent) {
            ex.reusedUpstream = true;
            connecting = true;
            updateClientRead();
            upstreamReady();
            return;
        }
        closeUpstream();
        connectUpstream(ex);
    }

    private void connectUpstream(Exchange started) {
        connecting = true;
        updateClientRead();
        Target target = started.request.target();
        Future<Channel> f = services.connector().open(started.request.live(), started.parent, target, Kind.HTTP,
                ctx.channel().eventLoop(), this::upstreamInitializer);
        f.addListener((Future<Channel> done) -> {
            if (exchange != started || !ctx.channel().isActive()) {
                // The client left while we were connecting: the decision still counts.
                countOnce(started);
                if (done.isSuccess()) {
                    done.getNow().close();
                }
                return;
            }
            if (done.isSuccess()) {
                upstream = done.getNow();
                upstreamAuthority = target.authority();
                upstreamSnapshot = started.request.live();
                upstreamParent = started.parent;
                upstream.config().setAutoRead(true);
                upstreamReady();
            } else if (started.retried) {
                upstreamBroken(started, target.authority() + " closed a kept-alive connection before answering, and a "
                        + "new connection failed: " + reasonText(done.cause()), "upstream_closed");
            } else {
                connectFailed(done.cause());
            }
        });
    }

    private ChannelInitializer<Channel> upstreamInitializer() {
        int maxHead = services.config().limits().maxResponseHead();
        HttpDecoderConfig decoder = new HttpDecoderConfig()
                .setMaxInitialLineLength(maxHead)
                .setMaxHeaderSize(maxHead)
                .setMaxChunkSize(64 * 1024)
                .setValidateHeaders(true);
        return new ChannelInitializer<>() {
            @Override
            protected void initChannel(Channel ch) {
                ch.pipeline()
                        .addLast(PipelineNames.UPSTREAM_HTTP_CODEC, new HttpClientCodec(decoder, false, false))
                        .addLast(PipelineNames.UPSTREAM_RESPONSE, new UpstreamResponseHandler());
            }
        };
    }

    /** {@code http://authority/path}; the origin form of an OPTIONS request to the server ({@code *}) has no path. */
    private static String absoluteForm(String authority, String pathAndQuery) {
        return "http://" + authority + (pathAndQuery.startsWith("/") ? pathAndQuery : "/");
    }

    private static String reasonText(Throwable cause) {
        return cause instanceof UpstreamException ue ? ue.clientText() : "the connection failed";
    }

    private void countOnce(Exchange ex) {
        if (!ex.counted) {
            ex.counted = true;
            services.metrics().request(Kind.HTTP, ex.request.decision());
        }
    }

    private void upstreamReady() {
        Exchange ex = exchange;
        countOnce(ex);
        ex.record.upstream(upstream.remoteAddress());
        HttpRequest in = ex.request.request();
        Target t = ex.request.target();
        String hostHeader = t.hostForAuthority() + (t.port() == 80 ? "" : ":" + t.port());
        // A parent proxy gets the absolute form (RFC 9112 3.2.2), the origin the origin form.
        String uri = ex.parent == null ? ex.request.pathAndQuery() : absoluteForm(hostHeader, ex.request.pathAndQuery());
        HttpRequest out = new DefaultHttpRequest(HttpVersion.HTTP_1_1, in.method(), uri);
        HttpHeaders h = out.headers();
        h.set(in.headers());
        // Removes the client's Proxy-Authorization among the hop-by-hop fields: it was for this proxy.
        HeaderSanitizer.stripHopByHop(h);
        h.set(HttpHeaderNames.HOST, hostHeader);
        if (ex.parent != null) {
            ex.record.viaParent();
            String credentials = ex.parent.proxyAuthorization();
            if (credentials != null) {
                h.set(HttpHeaderNames.PROXY_AUTHORIZATION, credentials);
            }
        }
        HeaderSanitizer.frame(h, ex.framing, ex.length);
        if (ex.framing != Framing.CHUNKED) {
            h.remove(HttpHeaderNames.TRAILER);
        }
        HeaderSanitizer.addVia(h, in.protocolVersion());
        upstream.write(out).addListener(closeUpstreamOnWriteFailure);
        if (ex.requestDone) {
            // A retry: the bodiless request was complete before; send its end again.
            upstream.write(LastHttpContent.EMPTY_LAST_CONTENT).addListener(closeUpstreamOnWriteFailure);
        }
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
        if (last) {
            HeaderSanitizer.sanitiseTrailers(((LastHttpContent) content).trailingHeaders());
        }
        upstream.write(content).addListener(closeUpstreamOnWriteFailure);
        if (last) {
            upstream.flush();
            ex.requestDone = true;
            awaitingResponse = true;
        }
        if (!upstream.isWritable()) {
            upstreamBusy = true;
        }
        if (!last && !memoryPaused && services.memory().pauseIfFull(ctx.channel(), resumeClient, n)) {
            memoryPaused = true;
        }
        updateClientRead();
    }

    /** The request body's direction, as the memory budget sees it. */
    private final MemoryBudget.Resumable resumeClient = new MemoryBudget.Resumable() {
        @Override
        public Channel slowSide() {
            return upstream;
        }

        @Override
        public void resume() {
            memoryPaused = false;
            updateClientRead();
        }
    };

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
        // The client drained: read the upstream's answer again (unless the memory budget is full).
        if (upstream != null && ctx.channel().isWritable() && !services.memory().pauseIfFull(upstream, resumeUpstream, 0)) {
            upstream.config().setAutoRead(true);
        }
        ctx.fireChannelWritabilityChanged();
    }

    private void updateClientRead() {
        boolean read = !connecting && !awaitingResponse && !upstreamBusy && !memoryPaused;
        ctx.channel().config().setAutoRead(read);
        if (read && clientInputShut && exchange != null && !exchange.requestDone && !cutCheckScheduled) {
            // Run once the current read has unwound: the flow-control handler may still be handing
            // on the rest of the body it queued.
            cutCheckScheduled = true;
            ctx.executor().execute(this::checkRequestCut);
        }
    }

    /**
     * Reading is on, so nothing is held back any more, the client has sent its FIN, and the body it
     * announced has still not ended: it never will (the decoder emits nothing for a body cut short),
     * and the origin would wait for the rest until the idle timeout. End the exchange now.
     */
    private void checkRequestCut() {
        cutCheckScheduled = false;
        Exchange ex = exchange;
        if (ex == null || ex.requestDone || !ctx.channel().isActive() || !ctx.channel().config().isAutoRead()) {
            return;
        }
        exchange = null;
        closeUpstream();
        ex.record.error("request_truncated");
        if (ex.responseStarted) {
            services.accessLog().log(ex.record);
            ctx.close();
            return;
        }
        ex.record.status(400);
        services.accessLog().log(ex.record);
        Channels.answerAndClose(ctx, ErrorResponses.response(HttpResponseStatus.BAD_REQUEST,
                "request body ended before the length it announced (the client closed its side)",
                "request_truncated", null));
    }

    /** The memory budget has room again: read the upstream's answer on, if the client takes it. */
    private final MemoryBudget.Resumable resumeUpstream = new MemoryBudget.Resumable() {
        @Override
        public Channel slowSide() {
            return ctx.channel();
        }

        @Override
        public void resume() {
            if (upstream != null && upstream.isActive() && ctx.channel().isWritable()) {
                upstream.config().setAutoRead(true);
            }
        }
    };

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
            ex.answered = true;
            if (msg instanceof HttpObject o && o.decoderResult().isFailure()) {
                Throwable cause = o.decoderResult().cause();
                ReferenceCountUtil.release(msg);
                if (cause instanceof TooLongHttpHeaderException || cause instanceof TooLongHttpLineException) {
                    upstreamBroken(ex, ex.request.target().authority() + " sent a response head larger than "
                            + services.config().limits().maxResponseHead() + " bytes (limits.max-response-head)",
                            "response_head_too_large");
                } else {
                    upstreamBroken(ex, ex.request.target().authority() + " sent a malformed HTTP response",
                            "upstream_bad_response");
                }
                return;
            }
            Channel client = ctx.channel();
            if (msg instanceof HttpResponse res) {
                if (ex.parent != null && res.status().code() == HttpResponseStatus.PROXY_AUTHENTICATION_REQUIRED.code()) {
                    // The parent wants other credentials than ours: the client's own would not do
                    // (they are never forwarded), and a 407 would make it think this proxy asks.
                    ReferenceCountUtil.release(msg);
                    parentRefused(ex, 407);
                    return;
                }
                if (res.status().code() == HttpResponseStatus.SWITCHING_PROTOCOLS.code()) {
                    // The proxy never forwards an Upgrade offer, so this answers nothing it sent.
                    ReferenceCountUtil.release(msg);
                    upstreamBroken(ex, ex.request.target().authority()
                            + " switched protocols, which plain-HTTP forwarding does not carry; use CONNECT",
                            "upstream_switched_protocols");
                    return;
                }
                onResponseHead(ex, res);
            }
            if (ex.informational) {
                // RFC 9110 15.2: no 1xx answer goes to an HTTP/1.0 client.
                if (ex.http10) {
                    ReferenceCountUtil.release(msg);
                } else {
                    client.write(msg);
                }
                if (msg instanceof LastHttpContent) {
                    ex.informational = false;
                }
                return;
            }
            int n = 0;
            if (msg instanceof HttpContent content) {
                n = content.content().readableBytes();
                ex.record.addBytesDown(n);
                services.metrics().bytesToClient(n);
                boolean last = msg instanceof LastHttpContent;
                if (last && ex.chunkedToClient) {
                    HeaderSanitizer.sanitiseTrailers(((LastHttpContent) msg).trailingHeaders());
                }
                client.write(msg);
                if (last) {
                    client.flush();
                    finish(ex);
                    return;
                }
            } else if (msg instanceof HttpResponse) {
                client.write(msg);
            } else {
                ReferenceCountUtil.release(msg);
            }
            if (!services.memory().pauseIfFull(uctx.channel(), resumeUpstream, n) && !client.isWritable()) {
                uctx.channel().config().setAutoRead(false);
            }
        }

        private void onResponseHead(Exchange ex, HttpResponse res) {
            HttpResponseStatus status = res.status();
            HttpHeaders h = res.headers();
            ex.informational = status.codeClass() == HttpStatusClass.INFORMATIONAL;
            if (ex.informational) {
                HeaderSanitizer.stripHopByHop(h);
                HeaderSanitizer.addVia(h, res.protocolVersion());
                res.setProtocolVersion(HttpVersion.HTTP_1_1);
                return;
            }
            ex.responseStarted = true;
            ex.upstreamKeepAlive = HttpUtil.isKeepAlive(res);
            ex.record.status(status.code());
            boolean bodyless = ex.head || status.code() == 204 || status.code() == 304;
            Framing in = HeaderSanitizer.framingOf(res);
            long length = HttpUtil.getContentLength(res, 0L);
            HeaderSanitizer.stripHopByHop(h);
            HeaderSanitizer.addVia(h, res.protocolVersion());
            res.setProtocolVersion(HttpVersion.HTTP_1_1);
            if (!bodyless) {
                Framing out;
                if (in == Framing.LENGTH) {
                    out = Framing.LENGTH;
                } else {
                    if (in == Framing.NONE) {
                        // Neither field: the origin delimits this body by closing (RFC 9112 6.3).
                        ex.upstreamKeepAlive = false;
                    }
                    // An HTTP/1.1 client is told where the body ends; an HTTP/1.0 client may not get
                    // chunked coding (RFC 9112 6.1), so its body ends when the proxy closes.
                    out = ex.http10 ? Framing.CLOSE : Framing.CHUNKED;
                    if (ex.http10) {
                        ex.clientKeepAlive = false;
                    }
                }
                HeaderSanitizer.frame(h, out, length);
                ex.chunkedToClient = out == Framing.CHUNKED;
            } else if (ex.http10) {
                h.remove(HttpHeaderNames.TRANSFER_ENCODING);
            }
            if (!ex.chunkedToClient) {
                h.remove(HttpHeaderNames.TRAILER);
            }
            if (!ex.clientKeepAlive) {
                h.set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
            } else if (ex.http10) {
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
            upstreamSnapshot = null;
            upstreamParent = null;
            upstreamBusy = false;
            Exchange ex = exchange;
            if (ex == null) {
                return;
            }
            if (ex.reusedUpstream && !ex.answered && !ex.retried && ex.replayable && ex.requestDone) {
                // The keep-alive race: the origin closed an idle connection just as the request went
                // out. Nothing of an answer came, and the request is safe to send again.
                ex.retried = true;
                ex.reusedUpstream = false;
                log.debug("{} closed a kept-alive connection before answering; sending {} again on a new one",
                        ex.request.target().authority(), ex.record.id());
                connectUpstream(ex);
                return;
            }
            upstreamBroken(ex, ex.request.target().authority() + " closed the connection before answering",
                    "upstream_closed");
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

    /** The parent proxy answered a forwarded request with {@code status}, which is its own refusal. */
    private void parentRefused(Exchange ex, int status) {
        ParentFailure failure = ParentFailure.answered(status);
        Target t = ex.request.target();
        services.metrics().parentFailure(t.host(), failure);
        services.deniedReport().record(DeniedReport.Type.UPSTREAM_FAILURE, t.authority(), "parent_" + failure.label(),
                ex.record.client());
        upstreamBroken(ex, "parent proxy " + ex.parent.address().authority() + " answered " + status + " for "
                + t.authority(), failure.reasonCode());
    }

    private void upstreamBroken(Exchange ex, String text, String code) {
        exchange = null;
        closeUpstream();
        if (ex.responseStarted) {
            // Part of the answer is already with the client; all we can do is cut it short.
            ex.record.error(code);
            services.accessLog().log(ex.record);
            ctx.close();
            return;
        }
        ex.record.status(502).error(code);
        services.accessLog().log(ex.record);
        Channels.answerAndClose(ctx, ErrorResponses.response(HttpResponseStatus.BAD_GATEWAY, text, code, null));
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
        // Fired from the head so that it reaches the request-head timer in front of this handler.
        ctx.pipeline().fireUserEventTriggered(ExchangeDone.INSTANCE);
        // Reading again releases the next pipelined request, if one is queued, at once.
        updateClientRead();
        if (clientInputShut && exchange == null) {
            Channels.closeOnFlush(ctx.channel());
        }
    }

    private void connectFailed(Throwable cause) {
        Exchange ex = exchange;
        exchange = null;
        ex.counted = true;
        Channels.answerAndClose(ctx, UpstreamFailureAnswers.answer(services, ex.request, cause));
    }

    private void closeUpstream() {
        Channel u = upstream;
        upstream = null;
        upstreamAuthority = null;
        upstreamSnapshot = null;
        upstreamParent = null;
        upstreamBusy = false;
        if (u != null) {
            u.close();
        }
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
            // The client will send nothing more. Requests it pipelined before its FIN may still be
            // queued behind the exchange in flight: finish() closes once none is left.
            clientInputShut = true;
            if (exchange == null) {
                Channels.closeOnFlush(ctx.channel());
            } else if (ctx.channel().config().isAutoRead()) {
                updateClientRead(); // checks for a request body cut short by the FIN
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
