package dev.egressproxy.policy;

/**
 * Why a request was allowed or refused. The {@link #label()} is the single code that the metric
 * label, the access-log field and the {@code X-Egress-Proxy-Reason} response header all carry, so
 * the three always agree.
 */
public enum Reason {
    /** The host matched an allowlist name or wildcard entry. */
    HOST_ALLOWLISTED("host_allowlisted"),
    /** The IP-literal destination matched an allowlist CIDR entry. */
    CIDR_ALLOWLISTED("cidr_allowlisted"),
    /** No allowlist entry names the host. */
    HOST_NOT_ALLOWLISTED("host_not_allowlisted"),
    /** The host is allowlisted, but not on the requested port. */
    PORT_NOT_ALLOWED("port_not_allowed"),
    /** The destination is an IP literal that no allowlist CIDR entry covers. */
    IP_LITERAL_NOT_ALLOWED("ip_literal_not_allowed"),
    /** The host is allowed, but every address it resolved to is private, loopback or reserved. */
    ADDRESS_NOT_ALLOWED("address_not_allowed"),
    /** The request or its authority could not be parsed safely. */
    MALFORMED_REQUEST("malformed_request"),
    /** An origin-form request ({@code GET /}): the proxy never routes by the Host header. */
    ORIGIN_FORM_REQUEST("origin_form_request"),
    /** A request line with an HTTP version other than 1.0 or 1.1 (answered 505). */
    UNSUPPORTED_HTTP_VERSION("unsupported_http_version"),
    /** A plain-HTTP request asking for a protocol upgrade (WebSocket and the like): use CONNECT. */
    UPGRADE_NOT_SUPPORTED("upgrade_not_supported");

    private final String label;

    Reason(String label) {
        this.label = label;
    }

    /**
     * Whether {@code allowlist.mode = report} lets a request refused for this reason through, as a
     * would-be denial: only the refusals that an allowlist entry would fix (the host, its port or an
     * IP literal not named). Malformed requests, the address policy and every other refusal stay
     * refused.
     */
    public boolean reportable() {
        return this == HOST_NOT_ALLOWLISTED || this == PORT_NOT_ALLOWED || this == IP_LITERAL_NOT_ALLOWED;
    }

    /** Stable snake_case code for metrics, logs and the reason header. */
    public String label() {
        return label;
    }
}
