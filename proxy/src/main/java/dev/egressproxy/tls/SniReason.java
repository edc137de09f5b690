package dev.egressproxy.tls;

/**
 * Why a tunnel's first bytes failed the SNI check ({@code tunnels.sni-check}). The {@link #label()}
 * is the single code that the {@code reason} label of {@code egress_proxy_sni_mismatch_total}, the
 * access log's {@code sni_check} field (and, under {@code enforce}, its {@code error} field) carry.
 */
public enum SniReason {
    /** The ClientHello names another host than the CONNECT target (domain fronting). */
    SNI_MISMATCH("sni_mismatch"),
    /** A well-formed ClientHello without a server name, for a CONNECT to a dotted host name. */
    SNI_MISSING("sni_missing"),
    /**
     * The ClientHello carries an Encrypted Client Hello extension and its outer (cleartext) server
     * name is not the CONNECT target: the real destination is encrypted and cannot be checked.
     */
    ECH("ech"),
    /**
     * The first bytes are TLS handshake records, but not a ClientHello the parser accepts: broken
     * lengths, a truncated message, a server name that is not a valid DNS name (an IP address,
     * non-LDH bytes), two names, or a hello larger than the proxy holds.
     */
    MALFORMED_CLIENT_HELLO("malformed_client_hello"),
    /** The first bytes on a TLS port are not a TLS handshake record (plain HTTP, SSH, SSLv2). */
    NOT_TLS("not_tls"),
    /** No complete ClientHello arrived within {@code tunnels.client-hello-timeout}. */
    CLIENT_HELLO_TIMEOUT("client_hello_timeout");

    private final String label;

    SniReason(String label) {
        this.label = label;
    }

    /** Stable snake_case code for the metric label and the log fields. */
    public String label() {
        return label;
    }
}
