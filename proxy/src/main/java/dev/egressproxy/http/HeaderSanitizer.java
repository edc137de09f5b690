package dev.egressproxy.http;

import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpHeaders;
import io.netty.handler.codec.http.HttpMessage;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.util.AsciiString;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * The one place where plain-HTTP forwarding decides which header fields cross the proxy, with the
 * two lists RFC 9110 (section 7.6.1) implies: what a proxy removes (hop-by-hop fields and the ones a
 * {@code Connection} header names) and what it never removes or lets a client rename, because it
 * frames or routes the message ({@code Content-Length}, {@code Transfer-Encoding}, {@code Host},
 * {@code Trailer}, {@code Via}). A {@code Connection} token list is input, not instruction: a token
 * naming a protected field is ignored, so {@code Connection: content-length} cannot unframe a body
 * and turn it into a second request at the origin.
 *
 * <p>Framing is never copied from the client: the decoder has already decided where the message
 * ends, and {@link #frame} writes exactly that decision ({@code Content-Length}, {@code chunked} or
 * nothing) into the outgoing head.
 */
final class HeaderSanitizer {

    /** Hop-by-hop fields, removed in both directions (RFC 9110 7.6.1, plus the proxy's own). */
    private static final List<AsciiString> HOP_BY_HOP = List.of(
            HttpHeaderNames.CONNECTION, HttpHeaderNames.PROXY_CONNECTION, HttpHeaderNames.PROXY_AUTHORIZATION,
            HttpHeaderNames.PROXY_AUTHENTICATE, HttpHeaderNames.KEEP_ALIVE, HttpHeaderNames.TE,
            HttpHeaderNames.UPGRADE);

    /** Fields that frame or route a message: a Connection token never removes them. */
    private static final Set<String> PROTECTED = Set.of("content-length", "transfer-encoding", "host", "trailer",
            "via");

    /** Fields that may never travel as trailers (RFC 9110 6.5.1), whatever the sender says. */
    private static final Set<String> NOT_TRAILERS = Set.of("content-length", "transfer-encoding", "host", "trailer",
            "connection", "proxy-connection", "keep-alive", "te", "upgrade", "proxy-authorization",
            "proxy-authenticate", "authorization", "cache-control", "expect", "max-forwards", "pragma", "range",
            "content-encoding", "content-type", "content-range", "via");

    private HeaderSanitizer() {
    }

    /**
     * Removes the hop-by-hop fields of {@code h}: every field a {@code Connection} or
     * {@code Proxy-Connection} token names (except the protected ones), then the fixed list.
     */
    static void stripHopByHop(HttpHeaders h) {
        List<String> named = new ArrayList<>();
        collectTokens(h.getAll(HttpHeaderNames.CONNECTION), named);
        collectTokens(h.getAll(HttpHeaderNames.PROXY_CONNECTION), named);
        for (String name : named) {
            if (!PROTECTED.contains(name)) {
                h.remove(name);
            }
        }
        for (AsciiString name : HOP_BY_HOP) {
            h.remove(name);
        }
    }

    private static void collectTokens(List<String> values, List<String> into) {
        for (String value : values) {
            for (String token : value.split(",")) {
                String t = token.trim().toLowerCase(Locale.ROOT);
                if (!t.isEmpty()) {
                    into.add(t);
                }
            }
        }
    }

    /** How a message's body is delimited on the wire. */
    enum Framing {
        /** No body (a request without Content-Length or Transfer-Encoding, a HEAD answer, 204, 304). */
        NONE,
        /** {@code Content-Length}. */
        LENGTH,
        /** {@code Transfer-Encoding: chunked}. */
        CHUNKED,
        /** The sender closes the connection after the body (responses only). */
        CLOSE
    }

    /**
     * The framing the decoder applied to {@code m}. The decoder has already refused a message with
     * both fields, several lengths or a coding other than a final chunked.
     */
    static Framing framingOf(HttpMessage m) {
        if (HttpUtil.isTransferEncodingChunked(m)) {
            return Framing.CHUNKED;
        }
        return m.headers().contains(HttpHeaderNames.CONTENT_LENGTH) ? Framing.LENGTH : Framing.NONE;
    }

    /**
     * Writes {@code framing} into {@code h}: for {@link Framing#LENGTH} the single length the
     * decoder read ({@code length}), for {@link Framing#CHUNKED} {@code Transfer-Encoding: chunked}
     * and no length, otherwise neither field. The encoder then frames the body the same way.
     */
    static void frame(HttpHeaders h, Framing framing, long length) {
        h.remove(HttpHeaderNames.CONTENT_LENGTH);
        h.remove(HttpHeaderNames.TRANSFER_ENCODING);
        switch (framing) {
            case LENGTH -> h.set(HttpHeaderNames.CONTENT_LENGTH, length);
            case CHUNKED -> h.set(HttpHeaderNames.TRANSFER_ENCODING, HttpHeaderValues.CHUNKED);
            default -> {
                // NONE and CLOSE carry neither field.
            }
        }
    }

    /** Removes the trailer fields that must not be trailers, and the hop-by-hop ones. */
    static void sanitiseTrailers(HttpHeaders trailers) {
        if (trailers.isEmpty()) {
            return;
        }
        List<String> drop = new ArrayList<>();
        for (String name : trailers.names()) {
            if (NOT_TRAILERS.contains(name.toLowerCase(Locale.ROOT))) {
                drop.add(name);
            }
        }
        for (String name : drop) {
            trailers.remove(name);
        }
    }

    /**
     * Adds the proxy to {@code Via} (RFC 9110 7.6.3), keeping every value earlier proxies added, in
     * order, with ours last.
     */
    static void addVia(HttpHeaders h, HttpVersion receivedWith) {
        h.add(HttpHeaderNames.VIA, receivedWith.majorVersion() + "." + receivedWith.minorVersion() + " egress-proxy");
    }
}
