package dev.egressproxy.guard;

import io.netty.channel.Channel;
import io.netty.util.AttributeKey;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.Objects;

/**
 * Who is at the other end of a client connection, as far as the connection itself proves it: the
 * address (the TCP peer's, or the one a trusted PROXY protocol header names) and the identities of
 * a verified TLS client certificate (subject {@code CN=...}, URI and DNS SANs). Everything that acts
 * on "the client" ({@code clients.allow}, per-client limits, policies, the access log, {@code
 * /denied}) reads it through {@link #of(Channel)}, never {@code channel.remoteAddress()}, so that a
 * PROXY header or a certificate changes all of them at once. A user name from proxy authentication
 * belongs to a request, not to the connection, and is not kept here.
 */
public final class ClientIdentity {

    private static final AttributeKey<ClientIdentity> KEY = AttributeKey.valueOf("egress.client-identity");

    private final InetSocketAddress address;
    private final List<String> certificateIdentities;

    public ClientIdentity(InetSocketAddress address, List<String> certificateIdentities) {
        this.address = Objects.requireNonNull(address, "address");
        this.certificateIdentities = List.copyOf(certificateIdentities);
    }

    /**
     * The connection's identity: the one set on it, else its TCP peer with no certificate, which is
     * then kept on the channel, so that the readers of every request share one instance. A channel
     * whose peer is not an IP socket (a test's embedded channel) gets the loopback address, port 0.
     */
    public static ClientIdentity of(Channel channel) {
        ClientIdentity set = channel.attr(KEY).get();
        if (set != null) {
            return set;
        }
        InetSocketAddress peer = channel.remoteAddress() instanceof InetSocketAddress isa
                ? isa : new InetSocketAddress(InetAddress.getLoopbackAddress(), 0);
        ClientIdentity first = new ClientIdentity(peer, List.of());
        ClientIdentity raced = channel.attr(KEY).setIfAbsent(first);
        return raced == null ? first : raced;
    }

    /** Sets what {@link #of(Channel)} answers from now on for {@code channel}. */
    public static void set(Channel channel, ClientIdentity identity) {
        channel.attr(KEY).set(identity);
    }

    /** This identity with another address (from a PROXY protocol header). */
    public ClientIdentity withAddress(InetSocketAddress next) {
        return new ClientIdentity(next, certificateIdentities);
    }

    /** This identity with the identities of a verified client certificate. */
    public ClientIdentity withCertificateIdentities(List<String> identities) {
        return new ClientIdentity(address, identities);
    }

    public InetSocketAddress address() {
        return address;
    }

    public InetAddress ip() {
        return address.getAddress();
    }

    /** {@code CN=...}, {@code spiffe://...}, DNS names of a verified client certificate; empty without one. */
    public List<String> certificateIdentities() {
        return certificateIdentities;
    }

    @Override
    public String toString() {
        return address + (certificateIdentities.isEmpty() ? "" : " " + certificateIdentities);
    }
}
