package dev.egressproxy.handler;

/** The {@code Via} header value the proxy adds to forwarded messages (RFC 9110, section 7.6.3). */
final class Via {

    static final String VALUE = "1.1 egress-proxy";

    private Via() {
    }
}
