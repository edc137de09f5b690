package dev.egressproxy.handler;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpVersion;
import java.nio.charset.StandardCharsets;

/**
 * Builds the proxy's own answers. The reason phrase says in words what happened and names the
 * destination, because Go clients (podman, skopeo) print only the phrase of a failed CONNECT. The
 * {@value #REASON_HEADER} header carries the machine-readable code, the body repeats the phrase
 * with a hint. Every answer closes the connection.
 */
public final class ErrorResponses {

    /** Header with the stable reason code (same as the metric label and access-log field). */
    public static final String REASON_HEADER = "X-Egress-Proxy-Reason";

    private ErrorResponses() {
    }

    /**
     * A complete response. {@code phrase} must already be built from validated values only; any
     * character outside printable ASCII is replaced all the same, so that nothing a client sent can
     * end a status line or start a header.
     */
    public static FullHttpResponse response(HttpResponseStatus status, String phrase, String reasonCode, String hint) {
        String safePhrase = printable(phrase);
        String body = safePhrase + "\n" + (hint == null || hint.isEmpty() ? "" : printable(hint) + "\n");
        ByteBuf content = Unpooled.copiedBuffer(body, StandardCharsets.US_ASCII);
        FullHttpResponse res = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1,
                new HttpResponseStatus(status.code(), safePhrase), content);
        res.headers()
                .set(HttpHeaderNames.CONTENT_TYPE, "text/plain; charset=us-ascii")
                .setInt(HttpHeaderNames.CONTENT_LENGTH, content.readableBytes())
                .set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE)
                .set(REASON_HEADER, printable(reasonCode))
                .set(HttpHeaderNames.VIA, Via.VALUE);
        return res;
    }

    static String printable(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        for (int i = 0; i < s.length() && i < 512; i++) {
            char c = s.charAt(i);
            sb.append(c >= 0x20 && c <= 0x7e ? c : '?');
        }
        return sb.toString();
    }
}
