package dev.egressproxy.tunnel;

import java.nio.channels.ClosedChannelException;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * How a tunnel ended: the access log's {@code end} field. A tunnel ends when it closes, and the
 * first cause observed wins: a reset, an error, the idle timeout, the SNI check or the proxy
 * closing it, whichever comes first; without any of those, the side whose input ended first (its
 * FIN, or its close) closed it. A FIN alone does not end a tunnel (the other direction goes on), so
 * a fault after one side's FIN still names the fault.
 *
 * <p>In the Squid format a clean end stays {@code TCP_TUNNEL}, the idle timeout is
 * {@code TCP_TUNNEL_TIMEDOUT}, every other end is {@code TCP_TUNNEL_ABORTED}, and a tunnel the SNI
 * check closed is {@code TCP_DENIED} as before.
 */
public enum TunnelEnd {
    /** The client ended its side cleanly (FIN or close) and the tunnel closed after it. */
    CLIENT_CLOSED("client_closed", "TCP_TUNNEL"),
    /** The origin ended its side cleanly (FIN or close). */
    UPSTREAM_CLOSED("upstream_closed", "TCP_TUNNEL"),
    /** The client's connection was reset (ECONNRESET, or EPIPE writing to it after its reset). */
    CLIENT_RESET("client_reset", "TCP_TUNNEL_ABORTED"),
    /** The origin's connection was reset. */
    UPSTREAM_RESET("upstream_reset", "TCP_TUNNEL_ABORTED"),
    /** Another I/O error on the client's connection. */
    CLIENT_ERROR("client_error", "TCP_TUNNEL_ABORTED"),
    /** Another I/O error on the origin's connection. */
    UPSTREAM_ERROR("upstream_error", "TCP_TUNNEL_ABORTED"),
    /** Closed by {@code timeouts.idle}. */
    IDLE_TIMEOUT("idle_timeout", "TCP_TUNNEL_TIMEDOUT"),
    /** Closed by the SNI check under {@code enforce}. */
    SNI_REFUSED("sni_refused", "TCP_DENIED"),
    /** Closed by the proxy shutting down (after the drain's grace, or without one). */
    PROXY_CLOSED("proxy_closed", "TCP_TUNNEL_ABORTED");

    private final String label;
    private final String squidCode;

    TunnelEnd(String label, String squidCode) {
        this.label = label;
        this.squidCode = squidCode;
    }

    /** The stable snake_case code written as {@code end=}. */
    public String label() {
        return label;
    }

    /** The result code of the Squid format's {@code code/status} field. */
    public String squidCode() {
        return squidCode;
    }

    /** A clean end of {@code clientSide}'s side. */
    static TunnelEnd closed(boolean clientSide) {
        return clientSide ? CLIENT_CLOSED : UPSTREAM_CLOSED;
    }

    /**
     * The end a failure on one side means: a reset when {@code cause}, or a cause behind it (a
     * write after the failure fails with a closed-channel exception that carries it), is the
     * kernel's ECONNRESET or EPIPE, as every transport words them; otherwise an error.
     */
    static TunnelEnd failed(boolean clientSide, Throwable cause) {
        boolean reset = isReset(cause);
        if (clientSide) {
            return reset ? CLIENT_RESET : CLIENT_ERROR;
        }
        return reset ? UPSTREAM_RESET : UPSTREAM_ERROR;
    }

    /** Whether this is {@link #CLIENT_ERROR} or {@link #UPSTREAM_ERROR}, which the log names ({@link #errorCode}). */
    boolean isError() {
        return this == CLIENT_ERROR || this == UPSTREAM_ERROR;
    }

    /** The longest {@link #errorCode}. */
    static final int ERROR_CODE_MAX = 40;
    /** Netty's native errors: {@code "recvAddress(..) failed with error(-110): Connection timed out"}. */
    private static final Pattern NETTY_ERRNO = Pattern.compile("\\(\\.\\.\\) failed(?: with error\\(-?\\d+\\))?: ?(.*)");

    /**
     * The access log's {@code error=} for an end that is an error: the kernel's words for it as
     * the transports report them, Netty's {@code "recvAddress(..) failed with error(-110):
     * Connection timed out"} or NIO's {@code "Connection timed out"} both {@code
     * connection_timed_out}, taken from the innermost cause that has a message (what follows
     * Netty's {@code "failed ...: "}, up to a colon that would start an address); without any
     * message, the innermost cause's type ({@code FileNotFoundException}, Netty's ENOENT, is
     * {@code file_not_found_exception}). Lower case, words joined by {@code _}, at most
     * {@value #ERROR_CODE_MAX} characters.
     */
    static String errorCode(Throwable cause) {
        Throwable innermost = cause;
        String text = null;
        for (Throwable t = cause; t != null; t = t.getCause() == t ? null : t.getCause()) {
            innermost = t;
            String m = t.getMessage();
            // A wrapper's message that only repeats its cause (UncheckedIOException's) says nothing.
            if (m != null && !m.isBlank() && (t.getCause() == null || !m.equals(t.getCause().toString()))) {
                text = m;
            }
        }
        if (text == null) {
            text = innermost.getClass().getSimpleName()
                    .replaceAll("([a-z0-9])([A-Z])", "$1 $2").replaceAll("([A-Z])([A-Z][a-z])", "$1 $2");
        } else {
            Matcher netty = NETTY_ERRNO.matcher(text);
            if (netty.find()) {
                text = netty.group(1);
            }
            int colon = text.indexOf(':');
            if (colon > 0) {
                text = text.substring(0, colon);
            }
        }
        String code = text.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9]+", "_").replaceAll("^_+|_+$", "");
        if (code.length() > ERROR_CODE_MAX) {
            code = code.substring(0, ERROR_CODE_MAX).replaceAll("_+$", "");
        }
        return code.isEmpty() ? "io_error" : code;
    }

    /**
     * Whether {@code cause} only says that the channel was closed (a closed-channel exception with
     * nothing behind it), not why.
     */
    static boolean closedWithoutReason(Throwable cause) {
        Throwable t = cause;
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        return t instanceof ClosedChannelException;
    }

    static boolean isReset(Throwable cause) {
        // By message: the epoll and io_uring transports report strerror's text ("Connection reset by
        // peer", "Broken pipe"), NIO the JDK's ("Connection reset"); Netty's errno constants would
        // need its native library, which the NIO transport does not load.
        for (Throwable t = cause; t != null; t = t.getCause() == t ? null : t.getCause()) {
            String m = t.getMessage();
            if (m != null && (m.contains("Connection reset") || m.contains("Broken pipe"))) {
                return true;
            }
        }
        return false;
    }
}
