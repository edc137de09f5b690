package dev.egressproxy.policy;

import java.net.Inet6Address;

/**
 * One allowlist entry as written by the operator: an exact host ({@code registry.redhat.io}), a
 * wildcard suffix ({@code *.quay.io}, which matches {@code cdn01.quay.io} but not {@code quay.io}),
 * or a CIDR block for IP-literal destinations; each with an optional port. Without a port the entry
 * stands for 443 on CONNECT and 80 on plain HTTP.
 */
public sealed interface AllowlistEntry permits AllowlistEntry.Host, AllowlistEntry.Cidr {

    int ANY_DEFAULT_PORT = -1;

    /** The entry as the operator wrote it, normalised; used as the {@code rule} in decisions. */
    String text();

    /** The port, or {@link #ANY_DEFAULT_PORT} for the kind's default port. */
    int port();

    default boolean portMatches(int requestPort, Kind kind) {
        return port() == ANY_DEFAULT_PORT ? requestPort == kind.defaultPort() : requestPort == port();
    }

    /** An exact name or a {@code *.suffix} wildcard. */
    record Host(String name, boolean wildcard, int port, String text) implements AllowlistEntry {
        /** Whether the (normalised) host name is covered, whatever the port. */
        public boolean nameMatches(String host) {
            if (!wildcard) {
                return host.equals(name);
            }
            return host.length() > name.length() + 1 && host.endsWith(name)
                    && host.charAt(host.length() - name.length() - 1) == '.';
        }
    }

    /**
     * A CIDR block that allows IP-literal destinations inside it. Its text is {@code 10.0.0.0/8},
     * {@code 10.0.0.0/8:8443}, {@code 2001:db8::/32} or, with a port, {@code [2001:db8::]/32:443}.
     */
    record Cidr(CidrBlock block, int port, String text) implements AllowlistEntry {
    }

    /**
     * The narrowest entry that allows {@code target} for {@code kind}, written as {@link #parse}
     * accepts it and as that entry's {@link #text()}: the host name, an IPv4 literal as
     * {@code a.b.c.d/32} or an IPv6 literal as {@code 2001:db8::1/128}, with {@code :port} when the
     * port is not the kind's default (an IPv6 block then in brackets, {@code [2001:db8::1]/128:8443}).
     * The refusal answers name it, so an operator can paste it.
     */
    static String covering(Target target, Kind kind) {
        String port = target.port() == kind.defaultPort() ? "" : ":" + target.port();
        return target.isIpLiteral() ? singleAddress(target, port) : target.host() + port;
    }

    /** The single-address CIDR entry of an IP-literal target, with {@code port} ("" or ":n"). */
    private static String singleAddress(Target target, String port) {
        boolean ipv6 = target.ipLiteral() instanceof Inet6Address;
        return cidrText(ipv6, target.host() + (ipv6 ? "/128" : "/32"), port);
    }

    /** A CIDR entry's text; an IPv6 block followed by a port goes in brackets, so its colons stay apart. */
    private static String cidrText(boolean ipv6, String block, String port) {
        if (!ipv6 || port.isEmpty()) {
            return block + port;
        }
        int slash = block.indexOf('/');
        return "[" + block.substring(0, slash) + "]" + block.substring(slash) + port;
    }

    /**
     * Parses an entry, with error messages that name the entry and suggest the fix.
     *
     * @throws IllegalArgumentException if the entry is not valid
     */
    static AllowlistEntry parse(String raw) {
        String s = raw.trim();
        if (s.isEmpty()) {
            throw new IllegalArgumentException("empty entry");
        }
        if (s.contains("://")) {
            String hint = s.substring(s.indexOf("://") + 3);
            int slash = hint.indexOf('/');
            if (slash >= 0) {
                hint = hint.substring(0, slash);
            }
            throw new IllegalArgumentException(
                    "'" + raw + "' looks like a URL; write the host only, e.g. '" + hint + "'");
        }
        if (s.indexOf('/') >= 0) {
            return parseCidr(raw, s);
        }
        String hostPart = s;
        int port = ANY_DEFAULT_PORT;
        int colon = s.lastIndexOf(':');
        if (colon >= 0) {
            if (s.indexOf(':') != colon) {
                throw new IllegalArgumentException("'" + raw + "': IPv6 addresses are allowed with a CIDR entry such as '"
                        + ipv6Example(s) + "'");
            }
            hostPart = s.substring(0, colon);
            port = parsePort(raw, s.substring(colon + 1));
        }
        boolean wildcard = false;
        if (hostPart.equals("*")) {
            throw new IllegalArgumentException("'" + raw + "' would allow every host and make an open proxy; list the hosts instead");
        }
        if (hostPart.startsWith("*.")) {
            wildcard = true;
            hostPart = hostPart.substring(2);
        } else if (hostPart.startsWith("*")) {
            throw new IllegalArgumentException("'" + raw + "' is not a valid pattern; use '*."
                    + hostPart.replaceFirst("^[*.]+", "") + "'");
        }
        if (hostPart.indexOf('*') >= 0) {
            throw new IllegalArgumentException("'" + raw + "' is not a valid pattern; a wildcard may only be a leading '*.'");
        }
        String name;
        try {
            name = AuthorityParser.normaliseHostName(hostPart);
        } catch (MalformedTargetException e) {
            throw new IllegalArgumentException("'" + raw + "' is not a valid host: " + e.getMessage());
        }
        if (name.matches("[0-9.]+")) {
            throw new IllegalArgumentException("'" + raw + "' is an IP address; write it as a CIDR entry such as '" + name + "/32"
                    + (port == ANY_DEFAULT_PORT ? "" : ":" + port) + "'");
        }
        if (wildcard && name.indexOf('.') < 0) {
            throw new IllegalArgumentException("'" + raw + "' would allow a whole top-level domain; name a longer suffix such as '*.example." + name + "'");
        }
        String text = (wildcard ? "*." : "") + name + (port == ANY_DEFAULT_PORT ? "" : ":" + port);
        return new Host(name, wildcard, port, text);
    }

    private static AllowlistEntry parseCidr(String raw, String s) {
        String blockPart = s;
        int port = ANY_DEFAULT_PORT;
        int slash = s.indexOf('/');
        int colon = s.indexOf(':', slash);
        if (colon >= 0) {
            blockPart = s.substring(0, colon);
            port = parsePort(raw, s.substring(colon + 1));
        }
        CidrBlock block = CidrBlock.parse(blockPart);
        String text = cidrText(block.network().length == 16, block.text(), port == ANY_DEFAULT_PORT ? "" : ":" + port);
        return new Cidr(block, port, text);
    }

    /**
     * The entry to suggest for an IPv6 address written as a host ({@code 2001:db8::1},
     * {@code [2001:db8::1]:8443}): that address as a single-host block with the port written, or a
     * generic example when it is not an address at all.
     */
    private static String ipv6Example(String s) {
        boolean withPort = s.startsWith("[") && s.indexOf("]:") > 0;
        try {
            Target t = withPort ? AuthorityParser.parseAuthority(s, -1)
                    : AuthorityParser.parseHost(s.startsWith("[") ? s : "[" + s + "]", Kind.CONNECT.defaultPort());
            if (t.isIpLiteral()) {
                // An IPv4-mapped address is judged as IPv4, so its entry is the IPv4 one.
                return singleAddress(t, withPort ? ":" + t.port() : "");
            }
        } catch (MalformedTargetException e) {
            // Not an address: fall back to the example.
        }
        return "2001:db8::1/128";
    }

    private static int parsePort(String raw, String p) {
        if (!p.matches("\\d{1,5}")) {
            throw new IllegalArgumentException("'" + raw + "' has a port that is not a number");
        }
        int port = Integer.parseInt(p);
        if (port < 1 || port > 65535) {
            throw new IllegalArgumentException("'" + raw + "' has a port outside 1-65535");
        }
        return port;
    }
}
