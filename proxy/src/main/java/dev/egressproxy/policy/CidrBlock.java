package dev.egressproxy.policy;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.List;

/**
 * An IPv4 or IPv6 network in CIDR notation. An IPv4 block never matches an IPv6 address; callers
 * unwrap IPv4-mapped and similar forms first (see {@link AddressPolicy#embeddedIpv4}). Its text is
 * the network in {@link AddressText} form and the prefix length, {@code 2001:db8::/32}.
 */
public record CidrBlock(byte[] network, int prefixLength, String text) {

    /**
     * Parses {@code a.b.c.d/n}, {@code x:y::/n} or {@code [x:y::]/n} (a bare address means a single
     * host).
     *
     * @throws IllegalArgumentException with a message that names the bad part
     */
    public static CidrBlock parse(String text) {
        String s = text.trim();
        int slash = s.indexOf('/');
        String addressPart = slash < 0 ? s : s.substring(0, slash);
        if (addressPart.startsWith("[") && addressPart.endsWith("]")) {
            addressPart = addressPart.substring(1, addressPart.length() - 1);
        }
        byte[] bytes = literalBytes(addressPart, text);
        int max = bytes.length * 8;
        int prefix = max;
        if (slash >= 0) {
            String p = s.substring(slash + 1);
            try {
                prefix = Integer.parseInt(p);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("'" + text + "' has a prefix length that is not a number");
            }
            if (prefix < 0 || prefix > max) {
                throw new IllegalArgumentException(
                        "'" + text + "' has a prefix length outside 0-" + max);
            }
        }
        byte[] network = mask(bytes, prefix);
        if (!java.util.Arrays.equals(network, bytes)) {
            String canonical = toText(network) + "/" + prefix;
            throw new IllegalArgumentException(
                    "'" + text + "' has host bits set; did you mean '" + canonical + "'?");
        }
        return new CidrBlock(network, prefix, toText(network) + "/" + prefix);
    }

    private static byte[] literalBytes(String s, String original) {
        boolean ok = !s.isEmpty();
        boolean hasColon = s.indexOf(':') >= 0;
        for (int i = 0; ok && i < s.length(); i++) {
            char c = s.charAt(i);
            ok = Character.digit(c, 16) >= 0 || c == '.' || c == ':';
        }
        if (!ok || (!hasColon && !s.matches("\\d{1,3}(\\.\\d{1,3}){3}"))) {
            throw new IllegalArgumentException("'" + original + "' is not an IP address or CIDR block");
        }
        try {
            byte[] bytes = InetAddress.getByName(s).getAddress();
            if (hasColon && bytes.length == 4) {
                // Java folds ::ffff:a.b.c.d to IPv4; a CIDR written in IPv6 form should stay IPv6.
                throw new IllegalArgumentException(
                        "'" + original + "' is an IPv4-mapped IPv6 block; write the IPv4 block instead");
            }
            return bytes;
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException("'" + original + "' is not an IP address or CIDR block");
        }
    }

    private static byte[] mask(byte[] bytes, int prefix) {
        byte[] out = bytes.clone();
        for (int i = 0; i < out.length; i++) {
            int bitsHere = Math.max(0, Math.min(8, prefix - i * 8));
            out[i] = (byte) (out[i] & (0xff << (8 - bitsHere)));
        }
        return out;
    }

    private static String toText(byte[] bytes) {
        return AddressText.of(bytes);
    }

    /**
     * Whether {@code address} lies in one of {@code blocks}: the client allowlists
     * ({@code clients.allow}, {@code admin.clients.allow}) match with this.
     */
    public static boolean anyContains(List<CidrBlock> blocks, InetAddress address) {
        byte[] bytes = address.getAddress();
        for (CidrBlock block : blocks) {
            if (block.contains(bytes)) {
                return true;
            }
        }
        return false;
    }

    /** Whether {@code address} lies in this block (same address family only). */
    public boolean contains(InetAddress address) {
        return contains(address.getAddress());
    }

    public boolean contains(byte[] addr) {
        if (addr.length != network.length) {
            return false;
        }
        int full = prefixLength / 8;
        for (int i = 0; i < full; i++) {
            if (addr[i] != network[i]) {
                return false;
            }
        }
        int rest = prefixLength % 8;
        if (rest == 0) {
            return true;
        }
        int m = 0xff << (8 - rest) & 0xff;
        return (addr[full] & m) == (network[full] & m);
    }

    @Override
    public String toString() {
        return text;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof CidrBlock c && c.text.equals(text);
    }

    @Override
    public int hashCode() {
        return text.hashCode();
    }
}
