package dev.egressproxy.guard;

/**
 * Fired by {@link ProxyProtocolHandler} once a listener with {@code listen.proxy-protocol} has
 * read and accepted a connection's PROXY header and set the client address on {@link
 * ClientIdentity}. {@link ClientGuardHandler} decides the connection on it (instead of in {@code
 * channelActive}, when the client was not known yet) and, when it refuses, says so through {@link
 * #refuse()}, so that the bytes that came after the header in the same read are dropped, not
 * forwarded. One instance per connection; used on its event loop only.
 */
public final class ProxyHeaderRead {

    private boolean refused;

    /** The connection was refused: nothing that follows the header may pass. */
    public void refuse() {
        refused = true;
    }

    public boolean refused() {
        return refused;
    }
}
