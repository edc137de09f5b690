package dev.egressproxy.check;

import java.time.Instant;
import java.util.List;

/**
 * What {@code check hosts} found for one allowlisted destination.
 *
 * @param entry the allowlist entry checked, as written
 * @param host the host dialled (the entry's name, or a sample of a wildcard entry; null for a SKIP
 *     that names no host)
 * @param port the port dialled
 * @param via {@code dns} or {@code connect-to}
 * @param addresses the addresses the name resolved to (or the connect-to address)
 * @param dnsMillis the lookup's duration, -1 when there was none
 * @param connectMillis the connect's duration, -1 when there was none
 * @param connectedTo the address that answered, or null
 * @param tls the handshake's outcome, null for a port that is not a TLS port
 * @param reason why it failed or was skipped, or a short note when it passed
 */
public record HostResult(String entry, String host, int port, String via, List<String> addresses, long dnsMillis,
        long connectMillis, String connectedTo, Tls tls, Verdict verdict, String reason) {

    public HostResult {
        addresses = List.copyOf(addresses);
    }

    /** PASS: reachable (and the handshake done); FAIL: a client through the proxy would fail; SKIP: not checkable. */
    public enum Verdict {
        PASS, FAIL, SKIP
    }

    /**
     * A TLS handshake with SNI: its protocol and the server certificate's subject, issuer and
     * notAfter (also when the certificate did not validate), or the error.
     */
    public record Tls(boolean ok, String protocol, String subject, String issuer, Instant notAfter, String error) {
    }

    /** {@code host:port}, or the entry when no host was dialled. */
    public String destination() {
        return host == null ? entry : host + ":" + port;
    }

    static HostResult skip(String entry, String reason) {
        return new HostResult(entry, null, 0, null, List.of(), -1, -1, null, null, Verdict.SKIP, reason);
    }
}
