package dev.egressproxy.handler;

import dev.egressproxy.config.ConfigSnapshot;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.ClientIdentity;
import dev.egressproxy.guard.ProxyAuth;
import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.metrics.DeniedReport;
import dev.egressproxy.metrics.ProxyMetrics.Rejection;
import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.policy.AuthorityParser;
import dev.egressproxy.policy.Decision;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.MalformedTargetException;
import dev.egressproxy.policy.Reason;
import dev.egressproxy.policy.Target;
import dev.egressproxy.policy.Verdict;
import dev.egressproxy.util.Channels;
import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.DecoderResult;
import io.netty.handler.codec.TooLongFrameException;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpContent;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.LastHttpContent;
import io.netty.handler.codec.http.TooLongHttpHeaderException;
import io.netty.handler.codec.http.TooLongHttpLineException;
import io.netty.util.ReferenceCountUtil;
import java.util.ArrayDeque;
import java.util.List;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Decides every request. Consumes decoded {@link HttpRequest}s; refuses malformed ones (400, 414,
 * 431), origin-form ones (400: the Host header never picks a destination), with {@code auth.basic}
 * those without valid proxy credentials (407, 429, 503: see {@link ProxyAuth}; checked before the
 * allowlist, off the event loop unless recently verified, with reading paused meanwhile) and destinations the
 * allowlist does not name (403, with the host in the reason phrase); passes allowed ones, and in
 * {@code allowlist.mode = report} the ones the allowlist does not name, on as a {@link ProxyRequest}, followed by their body ({@link HttpContent}) for plain HTTP. After a CONNECT
 * the HTTP decoder is gone and raw {@link ByteBuf}s pass through to the tunnel handler.
 *
 * <p>Owns {@code requests_total} for denials, {@code denied_total}, {@code would_deny_total}, the
 * {@code /denied} report's refusals and would-be refusals and the access-log line of refused requests
 * (with the authenticated user, which it also puts on the record of an allowed one).
 */
public final class RequestPolicyHandler extends ChannelInboundHandlerAdapter {

    private static final Logger log = LoggerFactory.getLogger(RequestPolicyHandler.class);

    private final ProxyServices services;
    private String connectionId;
    private int exchanges;
    /** True while the body of an allowed plain-HTTP request is passing through. */
    private boolean forwardingBody;
    /** True once an answer that closes the connection was sent: drop everything after it. */
    private boolean closing;
    /** True while a request's credentials are checked off the event loop ({@link ProxyAuth}). */
    private boolean authPending;
    /** What arrived while {@link #authPending} (normally nothing: reading is paused then). */
    private final ArrayDeque<Object> held = new ArrayDeque<>();

    public RequestPolicyHandler(ProxyServices services) {
        this.services = services;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (authPending) {
            held.add(msg);
            return;
        }
        if (msg instanceof HttpRequest request) {
            onRequest(ctx, request);
        } else if (msg instanceof HttpContent content) {
            if (forwardingBody && !closing) {
                if (content instanceof LastHttpContent) {
                    forwardingBody = false;
                }
                ctx.fireChannelRead(content);
            } else {
                content.release();
            }
        } else if (msg instanceof ByteBuf && !closing) {
            // Bytes behind a CONNECT head, released by the removed HTTP decoder.
            ctx.fireChannelRead(msg);
        } else {
            ReferenceCountUtil.release(msg);
        }
    }

    private void onRequest(ChannelHandlerContext ctx, HttpRequest request) {
        if (connectionId == null) {
            connectionId = services.nextConnectionId();
        }
        AccessRecord record = AccessRecord.of(connectionId + "-" + (++exchanges), ClientIdentity.of(ctx.channel()));
        if (closing) {
            ReferenceCountUtil.release(request);
            return;
        }
        DecoderResult result = request.decoderResult();
        if (result.isFailure()) {
            ReferenceCountUtil.release(request);
            rejectUnparsable(ctx, record, result.cause());
            return;
        }
        boolean connect = HttpMethod.CONNECT.equals(request.method());
        Kind kind = connect ? Kind.CONNECT : Kind.HTTP;
        record.method(request.method().name());
        HttpVersion version = request.protocolVersion();
        if (version.majorVersion() != 1 || !"HTTP".equals(version.protocolName())) {
            ReferenceCountUtil.release(request);
            refuse(ctx, record, kind, Reason.UNSUPPORTED_HTTP_VERSION, HttpResponseStatus.HTTP_VERSION_NOT_SUPPORTED,
                    "HTTP version not supported; egress-proxy speaks HTTP/1.1 and HTTP/1.0", null);
            return;
        }
        String upgrade = connect ? null : refusedUpgrade(request);
        if (upgrade != null) {
            ReferenceCountUtil.release(request);
            refuse(ctx, record, kind, Reason.UPGRADE_NOT_SUPPORTED, HttpResponseStatus.BAD_REQUEST,
                    "protocol upgrade to " + upgrade + " is not forwarded over plain HTTP; use CONNECT",
                    "A WebSocket or other upgraded connection goes through a tunnel: send CONNECT host:port "
                            + "first (browsers and most clients do so for ws:// and wss:// through a proxy).");
            return;
        }
        String framing = framingProblem(request, connect);
        if (framing != null) {
            ReferenceCountUtil.release(request);
            refuse(ctx, record, kind, Reason.MALFORMED_REQUEST, HttpResponseStatus.BAD_REQUEST, framing, null);
            return;
        }
        String uri = request.uri();
        Target target;
        String pathAndQuery = "";
        try {
            if (connect) {
                target = AuthorityParser.parseConnectAuthority(uri);
            } else if (uri.startsWith("/") || uri.equals("*")) {
                ReferenceCountUtil.release(request);
                refuse(ctx, record, kind, Reason.ORIGIN_FORM_REQUEST, HttpResponseStatus.BAD_REQUEST,
                        "egress-proxy is a forward proxy and needs an absolute URL",
                        "Send absolute-form requests (GET http://host/path) or CONNECT host:port; "
                                + "the Host header never picks a destination.");
                return;
            } else {
                AuthorityParser.AbsoluteUri parsed = AuthorityParser.parseAbsoluteUri(uri);
                target = parsed.target();
                pathAndQuery = parsed.pathAndQuery();
            }
        } catch (MalformedTargetException e) {
            ReferenceCountUtil.release(request);
            refuse(ctx, record, kind, Reason.MALFORMED_REQUEST, HttpResponseStatus.BAD_REQUEST,
                    "bad destination: " + e.getMessage(), null);
            return;
        }
        record.target(target.authority());
        if (!connect) {
            int q = pathAndQuery.indexOf('?');
            record.url("http://" + target.hostForAuthority() + (target.port() == 80 ? "" : ":" + target.port())
                    + (q < 0 ? pathAndQuery : pathAndQuery.substring(0, q)));
        }
        ConfigSnapshot live = services.live().get();
        ProxyConfig.Auth auth = live.config().auth();
        String user = null;
        if (auth.enabled()) {
            // Before the allowlist: a client that has not authenticated learns nothing about it.
            AuthPending pending = new AuthPending(request, record, kind, target, pathAndQuery, live);
            ProxyAuth.Outcome now = services.auth().check(auth, proxyAuthorization(request),
                    ClientIdentity.of(ctx.channel()).ip(), ctx.executor(), outcome -> authChecked(ctx, pending, outcome));
            if (now == null) {
                // The hash is being checked off the event loop: read nothing more until it is done
                // (the flow-control handler holds what was already decoded).
                authPending = true;
                ctx.channel().config().setAutoRead(false);
                return;
            }
            if (!now.allowed()) {
                refuseAuth(ctx, pending, now.failure());
                return;
            }
            user = now.user();
        }
        decide(ctx, request, record, kind, target, pathAndQuery, live, user);
    }

    /**
     * The allowlist decision for a request that passed authentication; {@code user} is the
     * authenticated user, or null without {@code auth.basic}.
     */
    private void decide(ChannelHandlerContext ctx, HttpRequest request, AccessRecord record, Kind kind, Target target,
            String pathAndQuery, ConfigSnapshot live, String user) {
        boolean connect = kind == Kind.CONNECT;
        record.user(user);
        ConfigSnapshot.ClientPolicy policy = live.policyFor(ClientIdentity.of(ctx.channel()), user);
        Decision decision = policy.engine().decide(target, kind);
        record.policy(policy.name());
        if (decision.refused()) {
            ReferenceCountUtil.release(request);
            deny(ctx, record, kind, target, decision.reason(), policy.name());
            return;
        }
        if (decision.verdict() == Verdict.WOULD_DENY) {
            // Report mode: counted here, once, whatever the upstream then does; requests_total
            // counts it when the exchange is answered, as for an allowed request.
            services.metrics().wouldDeny(target.host(), decision.reason(), policy.name());
            services.deniedReport().record(DeniedReport.Type.DENIED, false, target.authority(), decision.reason().label(),
                    AllowlistEntry.covering(target, kind), policy.name(), record.client());
        }
        record.decision(decision.verdict().label(), decision.reason().label(), decision.rule());
        forwardingBody = !connect;
        ctx.fireChannelRead(new ProxyRequest(kind, request, target, pathAndQuery, decision, record, live));
    }

    /** A request waiting for its credentials to be checked. */
    private record AuthPending(HttpRequest request, AccessRecord record, Kind kind, Target target,
            String pathAndQuery, ConfigSnapshot live) {
    }

    /**
     * The request's one {@code Proxy-Authorization} value; null without one. Several are
     * ambiguous and answered as a malformed credential (an empty value never parses).
     */
    private static String proxyAuthorization(HttpRequest request) {
        List<String> values = request.headers().getAll(HttpHeaderNames.PROXY_AUTHORIZATION);
        return values.isEmpty() ? null : values.size() == 1 ? values.get(0) : "";
    }

    /** The outcome of a check that ran off the event loop; runs on the connection's event loop. */
    private void authChecked(ChannelHandlerContext ctx, AuthPending pending, ProxyAuth.Outcome outcome) {
        authPending = false;
        if (!ctx.channel().isActive() || closing) {
            ReferenceCountUtil.release(pending.request());
            releaseHeld();
            return;
        }
        if (outcome.allowed()) {
            // The handler the request goes to (or the refusal) decides when reading resumes.
            decide(ctx, pending.request(), pending.record(), pending.kind(), pending.target(), pending.pathAndQuery(),
                    pending.live(), outcome.user());
        } else {
            refuseAuth(ctx, pending, outcome.failure());
        }
        // Normally empty: reading was paused. What did arrive follows the request, in order.
        Object msg;
        while ((msg = held.poll()) != null) {
            if (ctx.isRemoved()) {
                ctx.fireChannelRead(msg);
            } else {
                channelRead(ctx, msg);
            }
        }
    }

    /**
     * Answers a request that did not authenticate: 407 with the Basic challenge (missing, garbled
     * or wrong credentials alike, so that an unknown user and a wrong password look the same), 429
     * for a rate-limited address, 503 when the verification queue is full. A 407 to a bodiless
     * plain-HTTP request that asked for keep-alive leaves the connection open for the retry with
     * credentials; any other answer closes it (after a CONNECT head a client may already have sent
     * its tunnel's first bytes, which are not a next request).
     */
    private void refuseAuth(ChannelHandlerContext ctx, AuthPending pending, ProxyAuth.Failure failure) {
        HttpRequest request = pending.request();
        AccessRecord record = pending.record();
        HttpResponseStatus status;
        String phrase;
        String code;
        String hint;
        switch (failure) {
            case RATE_LIMITED -> {
                status = HttpResponseStatus.TOO_MANY_REQUESTS;
                phrase = "too many failed proxy authentication attempts from your address";
                code = "auth_rate_limited";
                hint = "Wait a minute and try again with the right user name and password.";
            }
            case BUSY -> {
                status = HttpResponseStatus.SERVICE_UNAVAILABLE;
                phrase = "proxy authentication is overloaded, try again";
                code = "auth_busy";
                hint = null;
            }
            default -> {
                status = HttpResponseStatus.PROXY_AUTHENTICATION_REQUIRED;
                phrase = "proxy authentication required";
                code = "auth_required";
                hint = "egress-proxy needs a user name and password (HTTP Basic), e.g. curl -U user:password, "
                        + "or http://user:password@proxy:port in HTTPS_PROXY.";
            }
        }
        boolean keepAlive = failure != ProxyAuth.Failure.RATE_LIMITED && failure != ProxyAuth.Failure.BUSY
                && pending.kind() == Kind.HTTP && bodiless(request) && HttpUtil.isKeepAlive(request)
                && request.protocolVersion().minorVersion() == 1;
        ReferenceCountUtil.release(request);
        record.decision("denied", code, "-").status(status.code()).error(failure.label());
        FullHttpResponse response = ErrorResponses.response(status, phrase, code, hint);
        if (status == HttpResponseStatus.PROXY_AUTHENTICATION_REQUIRED) {
            response.headers().set(HttpHeaderNames.PROXY_AUTHENTICATE,
                    "Basic realm=\"" + ProxyAuth.REALM + "\", charset=\"UTF-8\"");
        }
        if (!keepAlive) {
            respondAndClose(ctx, record, response);
            return;
        }
        response.headers().remove(HttpHeaderNames.CONNECTION);
        forwardingBody = false;
        services.accessLog().log(record);
        ctx.writeAndFlush(response);
        // The exchange is over: the head timer runs again for the retry, and reading resumes if a
        // check had paused it (what is left of this request, its empty last content, is dropped).
        ctx.pipeline().fireUserEventTriggered(ExchangeDone.INSTANCE);
        ctx.channel().config().setAutoRead(true);
    }

    private static boolean bodiless(HttpRequest request) {
        if (request.headers().contains(HttpHeaderNames.TRANSFER_ENCODING)) {
            return false;
        }
        String length = request.headers().get(HttpHeaderNames.CONTENT_LENGTH);
        return length == null || length.trim().equals("0");
    }

    private void releaseHeld() {
        Object msg;
        while ((msg = held.poll()) != null) {
            ReferenceCountUtil.release(msg);
        }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        releaseHeld();
        ctx.fireChannelInactive();
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        releaseHeld();
    }

    /**
     * Body framing the decoder accepts but a strict proxy should not (the decoder already refuses
     * Content-Length together with Transfer-Encoding, several Content-Lengths, bare LF and malformed
     * header names): any Transfer-Encoding but a single {@code chunked}, Transfer-Encoding in an
     * HTTP/1.0 request (RFC 9112 6.1), and a CONNECT with a body.
     */
    static String framingProblem(HttpRequest request, boolean connect) {
        List<String> te = request.headers().getAll(HttpHeaderNames.TRANSFER_ENCODING);
        if (!te.isEmpty() && (te.size() != 1 || !te.get(0).trim().equalsIgnoreCase("chunked"))) {
            return "Transfer-Encoding other than a single chunked is not accepted";
        }
        if (!te.isEmpty() && request.protocolVersion().minorVersion() == 0) {
            // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            return "Transfer-Encoding is not defined for HTTP/1.0";
        }
        String length = request.headers().get(HttpHeaderNames.CONTENT_LENGTH);
        if (connect && (!te.isEmpty() || (length != null && !length.trim().equals("0")))) {
            return "a CONNECT request has no body";
        }
        if (request.headers().getAll(HttpHeaderNames.HOST).size() > 1) {
            return "more than one Host header";
        }
        return null;
    }

    /**
     * The protocol a plain-HTTP request asks to upgrade to, when the proxy refuses it, else null.
     * An offer of {@code h2c} is optional (the origin may ignore it, and the proxy removes it as
     * hop-by-hop); any other {@code Upgrade} (WebSocket) would need the connection to be carried
     * end to end, which only a tunnel does.
     */
    static String refusedUpgrade(HttpRequest request) {
        for (String value : request.headers().getAll(HttpHeaderNames.UPGRADE)) {
            for (String token : value.split(",")) {
                String t = token.trim();
                int slash = t.indexOf('/');
                String protocol = (slash < 0 ? t : t.substring(0, slash)).toLowerCase(Locale.ROOT);
                if (!protocol.isEmpty() && !protocol.equals("h2c")) {
                    return protocol.matches("[a-z0-9.+_-]{1,32}") ? protocol : "another protocol";
                }
            }
        }
        return null;
    }

    static String denyPhrase(Target target, Kind kind, Reason reason) {
        String who = target.authority();
        return switch (reason) {
            case PORT_NOT_ALLOWED -> who + " is not in the egress allowlist (the host is, on other ports)";
            case IP_LITERAL_NOT_ALLOWED -> who + " is an IP address not in the egress allowlist";
            default -> who + " is not in the egress allowlist";
        };
    }

    static String denyHint(Target target, Kind kind, Reason reason, String policy) {
        // An entry the config accepts as written, and the text the allow decision will show as its rule.
        String entry = AllowlistEntry.covering(target, kind);
        boolean byDefault = ProxyConfig.DEFAULT_POLICY.equals(policy);
        return "Refused by egress-proxy (" + kind.label() + ", reason " + reason.label()
                + (byDefault ? "" : ", policy " + policy) + "). If this destination is legitimate, ask the proxy "
                + "operator to add \"" + entry + "\" to "
                + (byDefault ? "egress-proxy.allowlist.hosts." : "the allowlist of policy \"" + policy + "\" (egress-proxy.policies).");
    }

    private void rejectUnparsable(ChannelHandlerContext ctx, AccessRecord record, Throwable cause) {
        HttpResponseStatus status;
        String phrase;
        String code;
        if (cause instanceof TooLongHttpLineException) {
            status = HttpResponseStatus.REQUEST_URI_TOO_LONG;
            phrase = "request line longer than " + services.config().limits().maxRequestHead() + " bytes";
            code = "uri_too_long";
            services.metrics().rejected(Rejection.URI_TOO_LONG);
        } else if (cause instanceof TooLongHttpHeaderException || cause instanceof TooLongFrameException) {
            status = HttpResponseStatus.REQUEST_HEADER_FIELDS_TOO_LARGE;
            phrase = "request headers larger than " + services.config().limits().maxRequestHead() + " bytes";
            code = "head_too_large";
            services.metrics().rejected(Rejection.HEAD_TOO_LARGE);
        } else {
            status = HttpResponseStatus.BAD_REQUEST;
            phrase = "malformed HTTP request";
            code = Reason.MALFORMED_REQUEST.label();
            services.metrics().request(Kind.HTTP, Reason.MALFORMED_REQUEST);
            log.debug("malformed request from {}: {}", record.client(), String.valueOf(cause));
        }
        record.decision("denied", code, "-").status(status.code());
        respondAndClose(ctx, record, ErrorResponses.response(status, phrase, code, null));
    }

    /** 403 for a destination {@code policy}'s allowlist refuses; counted by host, reason and policy. */
    private void deny(ChannelHandlerContext ctx, AccessRecord record, Kind kind, Target target, Reason reason,
            String policy) {
        services.metrics().denied(target.host(), reason, policy);
        services.deniedReport().record(DeniedReport.Type.DENIED, true, target.authority(), reason.label(),
                reason.reportable() ? AllowlistEntry.covering(target, kind) : null, policy, record.client());
        refuse(ctx, record, kind, reason, HttpResponseStatus.FORBIDDEN, denyPhrase(target, kind, reason),
                denyHint(target, kind, reason, policy));
    }

    private void refuse(ChannelHandlerContext ctx, AccessRecord record, Kind kind, Reason reason,
            HttpResponseStatus status, String phrase, String hint) {
        services.metrics().request(kind, reason);
        record.decision("denied", reason.label(), "-").status(status.code());
        respondAndClose(ctx, record, ErrorResponses.response(status, phrase, reason.label(), hint));
    }

    private void respondAndClose(ChannelHandlerContext ctx, AccessRecord record, Object response) {
        closing = true;
        forwardingBody = false;
        services.accessLog().log(record);
        Channels.answerAndClose(ctx, response);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        log.debug("client connection {} failed: {}", connectionId, String.valueOf(cause));
        ctx.close();
    }
}
