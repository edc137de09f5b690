package dev.egressproxy.tls;

/**
 * Why a client's TLS handshake on the proxy listener ({@code listen.tls}) failed. The
 * {@link #label()} is the {@code reason} label of {@code egress_proxy_tls_handshake_failures_total}
 * and the reason the WARN line names. A small fixed set, so that the series exist at zero.
 */
public enum HandshakeFailure {
    /** No complete handshake within {@code timeouts.request-head} of the connection opening. */
    TIMEOUT("timeout"),
    /** The first bytes are not a TLS record: plain HTTP (or anything else) sent to the TLS listener. */
    NOT_TLS("not_tls"),
    /** {@code client-ca} is set and the client sent no certificate. */
    NO_CLIENT_CERTIFICATE("no_client_certificate"),
    /** The client's certificate does not chain to {@code client-ca} (or its chain is broken). */
    UNTRUSTED_CERTIFICATE("untrusted_certificate"),
    /** The client's certificate (or one in its chain) has expired or is not valid yet. */
    EXPIRED_CERTIFICATE("expired_certificate"),
    /**
     * The client ended the handshake with a fatal alert: most often it does not trust the proxy's
     * certificate (unknown CA, a name that does not match the proxy URL, expired).
     */
    CLIENT_ALERT("client_alert"),
    /** The client closed or reset the connection before the handshake completed. */
    CLOSED("closed"),
    /** Anything else: no common protocol version or cipher, a malformed message, an alert from the client. */
    PROTOCOL("protocol");

    private final String label;

    HandshakeFailure(String label) {
        this.label = label;
    }

    /** Stable snake_case code for the metric label and the log line. */
    public String label() {
        return label;
    }
}
