package dev.egressproxy.policy;

import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;

/**
 * IP addresses as people and Prometheus read them: IPv4 in dotted decimal, IPv6 in the compressed
 * form of RFC 5952 section 4 (lower-case hex, no leading zeros, the longest run of two or more zero
 * groups written {@code ::}, the first such run when two are equally long) and IPv4-mapped
 * addresses as {@code ::ffff:192.0.2.1} (section 5; the other embedded forms, such as NAT64's
 * {@code 64:ff9b::c000:201}, stay hexadecimal). {@link InetAddress#getHostAddress()} writes
 * every group ({@code 0:0:0:0:0:0:0:1}), which is harder to read and differs from what operators
 * write in the config and search for in logs. Every address the proxy shows (targets, CIDR rules,
 * status lines, the access log, the {@code /denied} report, metric labels) is written here, so each
 * address has one spelling everywhere. Pure Java; never resolves anything.
 */
public final class AddressText {

    private AddressText() {
    }

    /**
     * The address's text; an IPv6 address with a scope (a link-local client) keeps it after a
     * {@code %}, as the interface name where known.
     */
    public static String of(InetAddress address) {
        String text = of(address.getAddress());
        if (address instanceof Inet6Address v6) {
            if (v6.getScopedInterface() != null) {
                return text + '%' + v6.getScopedInterface().getName();
            }
            if (v6.getScopeId() != 0) {
                return text + '%' + v6.getScopeId();
            }
        }
        return text;
    }

    /** The text of a 4-byte IPv4 or 16-byte IPv6 address. */
    public static String of(byte[] address) {
        if (address.length == 4) {
            return ipv4(address, 0);
        }
        if (address.length != 16) {
            throw new IllegalArgumentException("an IP address has 4 or 16 bytes, not " + address.length);
        }
        if (isIpv4Mapped(address)) {
            return "::ffff:" + ipv4(address, 12);
        }
        int[] groups = new int[8];
        for (int i = 0; i < 8; i++) {
            groups[i] = (address[2 * i] & 0xff) << 8 | (address[2 * i + 1] & 0xff);
        }
        // The longest run of zero groups, the first of equally long ones; one zero group alone stays "0".
        int bestStart = -1;
        int bestLength = 1;
        for (int i = 0; i < 8; ) {
            if (groups[i] != 0) {
                i++;
                continue;
            }
            int start = i;
            while (i < 8 && groups[i] == 0) {
                i++;
            }
            if (i - start > bestLength) {
                bestStart = start;
                bestLength = i - start;
            }
        }
        StringBuilder sb = new StringBuilder(39);
        for (int i = 0; i < 8; i++) {
            if (i == bestStart) {
                sb.append("::");
                i += bestLength - 1;
                continue;
            }
            if (sb.length() > 0 && sb.charAt(sb.length() - 1) != ':') {
                sb.append(':');
            }
            sb.append(Integer.toHexString(groups[i]));
        }
        return sb.toString();
    }

    /** {@code address:port}, with brackets around an IPv6 address: {@code [2001:db8::1]:443}. */
    public static String withPort(InetAddress address, int port) {
        return withPort(of(address), port);
    }

    /** {@code host:port}, with brackets around a host that is an IPv6 address written without them. */
    public static String withPort(String host, int port) {
        return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
    }

    /**
     * The host of a {@code host:port} text as {@link #withPort} writes it, an IPv6 address without
     * its brackets ({@code [::1]:443} gives {@code ::1}); a text without a port is the host itself.
     */
    public static String hostOf(String hostPort) {
        int colon = hostPort.lastIndexOf(':');
        String host = colon > 0 ? hostPort.substring(0, colon) : hostPort;
        return host.length() > 1 && host.charAt(0) == '[' && host.charAt(host.length() - 1) == ']'
                ? host.substring(1, host.length() - 1) : host;
    }

    /**
     * A socket address as {@link #withPort}; an unresolved one as its host name and port; anything
     * else (a test's embedded address) as its own text.
     */
    public static String of(SocketAddress address) {
        if (address instanceof InetSocketAddress isa) {
            return isa.getAddress() != null ? withPort(isa.getAddress(), isa.getPort())
                    : isa.getHostString() + ":" + isa.getPort();
        }
        return String.valueOf(address);
    }

    private static boolean isIpv4Mapped(byte[] a) {
        for (int i = 0; i < 10; i++) {
            if (a[i] != 0) {
                return false;
            }
        }
        return (a[10] & 0xff) == 0xff && (a[11] & 0xff) == 0xff;
    }

    private static String ipv4(byte[] a, int at) {
        return (a[at] & 0xff) + "." + (a[at + 1] & 0xff) + "." + (a[at + 2] & 0xff) + "." + (a[at + 3] & 0xff);
    }
}
