package dev.egressproxy.upstream;

import io.netty.handler.codec.dns.DnsResponseCode;
import io.netty.resolver.dns.DnsErrorCauseException;
import io.netty.resolver.dns.DnsNameResolverTimeoutException;
import java.net.UnknownHostException;

/** How a name lookup ended: the {@code result} label of {@code egress_proxy_dns_seconds}. */
public enum DnsResult {
    /** Addresses came back (from the servers, the cache or /etc/hosts). */
    OK("ok"),
    /** The name does not exist (NXDOMAIN) or has no address record. */
    NOT_FOUND("not_found"),
    /** No answer within {@code dns.query-timeout}. */
    TIMEOUT("timeout"),
    /** The servers failed (SERVFAIL) or the lookup failed otherwise. */
    ERROR("error");

    private final String label;

    DnsResult(String label) {
        this.label = label;
    }

    public String label() {
        return label;
    }

    /** The result of a lookup that failed with {@code cause}. */
    static DnsResult ofFailure(Throwable cause) {
        boolean unknownHost = false;
        for (Throwable t = cause; t != null; t = t.getCause()) {
            if (t instanceof DnsNameResolverTimeoutException) {
                return TIMEOUT;
            }
            if (t instanceof DnsErrorCauseException e) {
                return e.getCode() == DnsResponseCode.NXDOMAIN ? NOT_FOUND : ERROR;
            }
            unknownHost |= t instanceof UnknownHostException;
        }
        return unknownHost ? NOT_FOUND : ERROR;
    }
}
