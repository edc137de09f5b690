package dev.egressproxy.policy;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Locale;

/**
 * Strict parser for the destinations clients name: the authority of a {@code CONNECT} request and
 * the URI of an absolute-form request. Anything ambiguous is refused rather than guessed at, since
 * a proxy that reads a host differently from the allowlist is a way around it: userinfo,
 * percent-encoding, backslashes, whitespace and control characters, non-ASCII letters (punycode
 * {@code xn--} labels are accepted as written), IPv4 in decimal, octal, hex or shortened forms,
 * and unbracketed IPv6. Pure Java with no I/O: IP literals are parsed, never resolved.
 */
public final class AuthorityParser {

    private static final int MAX_HOST_LENGTH = 253;
    private static final int MAX_LABEL_LENGTH = 63;

    private AuthorityParser() {
    }

    /**
     * Parses the authority of a {@code CONNECT} request, which must carry a port.
     */
    public static Target parseConnectAuthority(String authority) throws MalformedTargetException {
        return parseAuthority(authority, -1);
    }

    /**
     * Parses an authority; {@code defaultPort} is used when it has none, or {@code -1} to require one.
     */
    public static Target parseAuthority(String authority, int defaultPort) throws MalformedTargetException {
        if (authority == null || authority.isEmpty()) {
            throw new MalformedTargetException("empty destination");
        }
        checkCharacters(authority, "destination", false);
        if (authority.contains("://")) {
            throw new MalformedTargetException("a URL is not a destination here; send host:port");
        }
        if (authority.indexOf('@') >= 0) {
            throw new MalformedTargetException("user information ('@') is not allowed in the destination");
        }
        String hostPart;
        String portPart;
        if (authority.charAt(0) == '[') {
            int close = authority.indexOf(']');
            if (close < 0) {
                throw new MalformedTargetException("unterminated '[' in IPv6 destination");
            }
            hostPart = authority.substring(0, close + 1);
            String rest = authority.substring(close + 1);
            if (rest.isEmpty()) {
                portPart = null;
            } else if (rest.charAt(0) == ':') {
                portPart = rest.substring(1);
            } else {
                throw new MalformedTargetException("unexpected characters after ']' in destination");
            }
        } else {
            int colon = authority.indexOf(':');
            if (colon >= 0 && authority.indexOf(':', colon + 1) >= 0) {
                throw new MalformedTargetException("IPv6 addresses must be written in brackets, e.g. [2001:db8::1]:443");
            }
            hostPart = colon < 0 ? authority : authority.substring(0, colon);
            portPart = colon < 0 ? null : authority.substring(colon + 1);
        }
        int port;
        if (portPart == null) {
            if (defaultPort < 0) {
                throw new MalformedTargetException("the destination needs a port, e.g. host:443");
            }
            port = defaultPort;
        } else {
            port = parsePort(portPart);
        }
        return parseHost(hostPart, port);
    }

    /** A parsed absolute-form request target: the destination and the origin-form path to forward. */
    public record AbsoluteUri(Target target, String pathAndQuery) {
    }

    /**
     * Parses an absolute-form request URI ({@code http://host[:port]/path?query}). Only the
     * {@code http} scheme is forwarded; {@code https} URLs must be tunnelled with CONNECT.
     */
    public static AbsoluteUri parseAbsoluteUri(String uri) throws MalformedTargetException {
        String lower = uri.toLowerCase(Locale.ROOT);
        if (lower.startsWith("https://")) {
            throw new MalformedTargetException("https URLs are tunnelled with CONNECT, not forwarded");
        }
        if (!lower.startsWith("http://")) {
            throw new MalformedTargetException("only http:// URLs are forwarded");
        }
        checkCharacters(uri, "URL", true);
        int start = "http://".length();
        int end = start;
        while (end < uri.length() && "/?#".indexOf(uri.charAt(end)) < 0) {
            end++;
        }
        String authority = uri.substring(start, end);
        if (authority.indexOf('\\') >= 0) {
            throw new MalformedTargetException("backslash is not allowed in the URL's host");
        }
        Target target = parseAuthority(authority, Kind.HTTP.defaultPort());
        String rest = uri.substring(end);
        int hash = rest.indexOf('#');
        if (hash >= 0) {
            rest = rest.substring(0, hash);
        }
        if (rest.isEmpty()) {
            rest = "/";
        } else if (rest.charAt(0) == '?') {
            rest = "/" + rest;
        }
        return new AbsoluteUri(target, rest);
    }

    /**
     * Normalises and validates a host (name, dotted-quad IPv4, or bracketed IPv6) and pairs it with
     * {@code port}.
     */
    public static Target parseHost(String rawHost, int port) throws MalformedTargetException {
        if (rawHost.isEmpty()) {
            throw new MalformedTargetException("empty host");
        }
        if (rawHost.charAt(0) == '[') {
            if (rawHost.length() < 3 || rawHost.charAt(rawHost.length() - 1) != ']') {
                throw new MalformedTargetException("malformed IPv6 literal");
            }
            InetAddress address = parseIpv6(rawHost.substring(1, rawHost.length() - 1));
            return new Target(AddressText.of(address), port, address);
        }
        String host = normaliseHostName(rawHost);
        if (looksNumeric(host)) {
            return new Target(host, port, parseCanonicalIpv4(host));
        }
        return new Target(host, port, null);
    }

    /**
     * Normalises a DNS host name: ASCII letters, digits, hyphen and underscore in dot-separated
     * labels; lower-cased; one trailing dot removed. Shared with the allowlist so that both sides of
     * a comparison are normalised the same way.
     */
    public static String normaliseHostName(String raw) throws MalformedTargetException {
        checkCharacters(raw, "host", false);
        String host = raw.toLowerCase(Locale.ROOT);
        if (host.endsWith(".")) {
            host = host.substring(0, host.length() - 1);
        }
        if (host.isEmpty()) {
            throw new MalformedTargetException("empty host");
        }
        if (host.length() > MAX_HOST_LENGTH) {
            throw new MalformedTargetException("host name longer than 253 characters");
        }
        int labelStart = 0;
        for (int i = 0; i <= host.length(); i++) {
            if (i == host.length() || host.charAt(i) == '.') {
                int len = i - labelStart;
                if (len == 0) {
                    throw new MalformedTargetException("empty label in host name");
                }
                if (len > MAX_LABEL_LENGTH) {
                    throw new MalformedTargetException("label longer than 63 characters in host name");
                }
                if (host.charAt(labelStart) == '-' || host.charAt(i - 1) == '-') {
                    throw new MalformedTargetException("host name label starts or ends with '-'");
                }
                labelStart = i + 1;
                continue;
            }
            char c = host.charAt(i);
            boolean ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
            if (!ok) {
                throw new MalformedTargetException("character '" + describe(c) + "' is not allowed in a host name");
            }
        }
        return host;
    }

    /**
     * Refuses characters that no safe authority contains. In a URL's path and query, percent-encoding
     * and backslashes are ordinary data ({@code inPath}); its authority is checked again on its own.
     */
    private static void checkCharacters(String s, String what, boolean inPath) throws MalformedTargetException {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c <= 0x20 || c == 0x7f) {
                throw new MalformedTargetException("whitespace or control character in the " + what);
            }
            if (c > 0x7e) {
                throw new MalformedTargetException(
                        "non-ASCII characters in the " + what + " (write international names in their xn-- form)");
            }
            if (c == '%' && !inPath) {
                throw new MalformedTargetException("percent-encoding is not allowed in the " + what);
            }
            if (c == '\\' && !inPath) {
                throw new MalformedTargetException("backslash is not allowed in the " + what);
            }
        }
    }

    private static String describe(char c) {
        return c >= 0x21 && c <= 0x7e ? String.valueOf(c) : String.format("\\u%04x", (int) c);
    }

    private static int parsePort(String s) throws MalformedTargetException {
        if (s.isEmpty()) {
            throw new MalformedTargetException("empty port");
        }
        if (s.length() > 5) {
            throw new MalformedTargetException("port out of range (1-65535)");
        }
        int port = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') {
                throw new MalformedTargetException("port is not a decimal number");
            }
            port = port * 10 + (c - '0');
        }
        if (port < 1 || port > 65535) {
            throw new MalformedTargetException("port out of range (1-65535)");
        }
        return port;
    }

    /**
     * As in the URL standard, a host whose last label is numeric (decimal or 0x-hex) is an IPv4
     * address, and then only the canonical dotted-quad form is accepted.
     */
    private static boolean looksNumeric(String host) {
        int dot = host.lastIndexOf('.');
        String last = host.substring(dot + 1);
        if (last.startsWith("0x")) {
            return true;
        }
        for (int i = 0; i < last.length(); i++) {
            if (last.charAt(i) < '0' || last.charAt(i) > '9') {
                return false;
            }
        }
        return true;
    }

    private static InetAddress parseCanonicalIpv4(String host) throws MalformedTargetException {
        String[] parts = host.split("\\.", -1);
        if (parts.length != 4) {
            throw nonCanonicalIpv4();
        }
        byte[] bytes = new byte[4];
        for (int i = 0; i < 4; i++) {
            String p = parts[i];
            if (p.isEmpty() || p.length() > 3 || (p.length() > 1 && p.charAt(0) == '0')) {
                throw nonCanonicalIpv4();
            }
            int v = 0;
            for (int j = 0; j < p.length(); j++) {
                char c = p.charAt(j);
                if (c < '0' || c > '9') {
                    throw nonCanonicalIpv4();
                }
                v = v * 10 + (c - '0');
            }
            if (v > 255) {
                throw nonCanonicalIpv4();
            }
            bytes[i] = (byte) v;
        }
        try {
            return InetAddress.getByAddress(bytes);
        } catch (UnknownHostException e) {
            throw nonCanonicalIpv4();
        }
    }

    private static MalformedTargetException nonCanonicalIpv4() {
        return new MalformedTargetException(
                "IPv4 address in a non-standard form; write it as four decimal numbers a.b.c.d");
    }

    private static InetAddress parseIpv6(String s) throws MalformedTargetException {
        if (s.isEmpty() || s.indexOf(':') < 0) {
            throw new MalformedTargetException("malformed IPv6 literal");
        }
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            boolean ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':'
                    || c == '.';
            if (!ok) {
                throw new MalformedTargetException("malformed IPv6 literal");
            }
        }
        int lastColon = s.lastIndexOf(':');
        if (s.indexOf('.') >= 0) {
            // An embedded dotted quad follows the same rule as a plain one: canonical form only.
            parseCanonicalIpv4(s.substring(lastColon + 1));
        }
        try {
            // Only hex digits, ':' and '.' reach here, so this parses a literal and never does DNS.
            // An IPv4-mapped address (::ffff:a.b.c.d or ::ffff:7f00:1) comes back as IPv4, so the
            // allowlist and the address policy judge the IPv4 address it stands for.
            return InetAddress.getByName(s);
        } catch (UnknownHostException e) {
            throw new MalformedTargetException("malformed IPv6 literal");
        }
    }
}
