package dev.egressproxy.policy;

import java.net.Inet6Address;
import java.net.InetAddress;
import java.util.Objects;

/**
 * A validated destination. {@code host} is normalised (lower case, no trailing dot; an IP literal in
 * its canonical textual form without brackets), so it is safe to echo in a status line or header.
 *
 * @param host normalised host name or IP literal
 * @param port 1..65535
 * @param ipLiteral the address when the host is an IP literal, otherwise {@code null}
 */
public record Target(String host, int port, InetAddress ipLiteral) {

    public Target {
        Objects.requireNonNull(host, "host");
        if (port < 1 || port > 65535) {
            throw new IllegalArgumentException("port out of range: " + port);
        }
    }

    public boolean isIpLiteral() {
        return ipLiteral != null;
    }

    /** {@code host:port}, with brackets around an IPv6 literal. */
    public String authority() {
        return hostForAuthority() + ":" + port;
    }

    /** The host as it appears in an authority or Host header: IPv6 literals get brackets. */
    public String hostForAuthority() {
        return ipLiteral instanceof Inet6Address ? "[" + host + "]" : host;
    }

    @Override
    public String toString() {
        return authority();
    }
}
