package dev.egressproxy.tls;

/**
 * Compares the server name of a parsed ClientHello with the host of the CONNECT it arrived in.
 * Pure: no I/O, so it is tested with tables.
 */
public final class SniCheck {

    private SniCheck() {
    }

    /**
     * Judges {@code hello} against the CONNECT target. Returns {@code null} when it passes, or the
     * reason it does not.
     *
     * <ul>
     *   <li>A server name equal to the target host passes (both are lower case without a trailing
     *       dot, so this is the case-insensitive, trailing-dot-blind comparison), with or without
     *       ECH: with ECH the cleartext name is then the target's own.</li>
     *   <li>No server name passes for an IP-literal target (clients send none for addresses) and
     *       for a single-label host such as {@code mirror} (the JDK sends none for a name without
     *       a dot); otherwise it is {@link SniReason#SNI_MISSING}.</li>
     *   <li>Another name is {@link SniReason#SNI_MISMATCH}; with the ECH extension present, a name
     *       other than the target's, or none where one is needed, is {@link SniReason#ECH}.</li>
     * </ul>
     *
     * @param targetHost the normalised CONNECT host (lower case, no trailing dot)
     * @param ipLiteral whether the target is an IP literal
     */
    public static SniReason judge(String targetHost, boolean ipLiteral, ClientHelloParser.Hello hello) {
        String name = hello.serverName();
        if (name == null) {
            if (ipLiteral || targetHost.indexOf('.') < 0) {
                return null;
            }
            return hello.ech() ? SniReason.ECH : SniReason.SNI_MISSING;
        }
        if (!ipLiteral && name.equals(targetHost)) {
            return null;
        }
        return hello.ech() ? SniReason.ECH : SniReason.SNI_MISMATCH;
    }
}
