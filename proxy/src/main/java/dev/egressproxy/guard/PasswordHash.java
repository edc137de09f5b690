package dev.egressproxy.guard;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.commons.codec.digest.Md5Crypt;
import org.apache.commons.codec.digest.Sha2Crypt;
import org.springframework.security.crypto.bcrypt.BCrypt;

/**
 * One password hash of a users file, in a scheme the proxy accepts: bcrypt ({@code $2y$},
 * {@code $2b$}, {@code $2a$}), SHA-256-crypt ({@code $5$}) and SHA-512-crypt ({@code $6$}), and,
 * only when {@code auth.basic.allow-md5-crypt} says so, MD5-crypt ({@code $apr1$}, {@code $1$}).
 * The hashing itself is the libraries' (Spring Security's {@code BCrypt}, Commons Codec's
 * {@code Sha2Crypt} and {@code Md5Crypt}); this class only recognises the format, refuses what it
 * must, and compares in constant time. Checking is slow on purpose: never call {@link #matches}
 * on an event loop.
 */
public final class PasswordHash {

    /** The schemes accepted. */
    public enum Scheme {
        BCRYPT, SHA256_CRYPT, SHA512_CRYPT, MD5_CRYPT, APR1
    }

    private static final Pattern BCRYPT = Pattern.compile("\\$2[aby]\\$(\\d\\d)\\$[./A-Za-z0-9]{53}");
    private static final Pattern SHA_CRYPT = Pattern.compile(
            "\\$([56])\\$(?:rounds=(\\d{1,9})\\$)?[./A-Za-z0-9]{1,16}\\$([./A-Za-z0-9]+)");
    private static final Pattern MD5_CRYPT = Pattern.compile("\\$(1|apr1)\\$[./A-Za-z0-9]{1,8}\\$[./A-Za-z0-9]{22}");
    private static final Pattern DES_CRYPT = Pattern.compile("[./A-Za-z0-9]{13}");

    private final Scheme scheme;
    private final String text;

    private PasswordHash(Scheme scheme, String text) {
        this.scheme = scheme;
        this.text = text;
    }

    /**
     * Parses the hash part of a users-file line. Throws {@link IllegalArgumentException} with a
     * message that says what the entry is and what to do, never quoting the hash itself.
     */
    public static PasswordHash parse(String text, boolean allowMd5Crypt) {
        Matcher m = BCRYPT.matcher(text);
        if (m.matches()) {
            int cost = Integer.parseInt(m.group(1));
            if (cost < 4 || cost > 31) {
                throw new IllegalArgumentException("bcrypt cost " + cost + " is outside 4..31");
            }
            return new PasswordHash(Scheme.BCRYPT, text);
        }
        m = SHA_CRYPT.matcher(text);
        if (m.matches()) {
            boolean sha256 = m.group(1).equals("5");
            int length = sha256 ? 43 : 86;
            if (m.group(3).length() != length) {
                throw new IllegalArgumentException("a $" + m.group(1) + "$ hash must end in " + length
                        + " characters after the salt; the entry is cut short or damaged");
            }
            if (m.group(2) != null) {
                long rounds = Long.parseLong(m.group(2));
                if (rounds < 1000) {
                    throw new IllegalArgumentException("rounds=" + rounds + " is below the minimum of 1000 that "
                            + "SHA-crypt applies (such an entry can never match)");
                }
            }
            return new PasswordHash(sha256 ? Scheme.SHA256_CRYPT : Scheme.SHA512_CRYPT, text);
        }
        m = MD5_CRYPT.matcher(text);
        if (m.matches()) {
            if (!allowMd5Crypt) {
                throw new IllegalArgumentException("is an MD5-crypt ($" + m.group(1) + "$) hash, which is weak and "
                        + "accepted only with egress-proxy.auth.basic.allow-md5-crypt = true; re-create the entry "
                        + "with 'htpasswd -B' (bcrypt)");
            }
            return new PasswordHash(m.group(1).equals("1") ? Scheme.MD5_CRYPT : Scheme.APR1, text);
        }
        if (text.startsWith("{SHA}")) {
            throw new IllegalArgumentException("is an unsalted SHA-1 ({SHA}) hash, which is not accepted; "
                    + "re-create the entry with 'htpasswd -B' (bcrypt)");
        }
        if (text.startsWith("$")) {
            throw new IllegalArgumentException("has a hash scheme egress-proxy does not accept; use bcrypt "
                    + "('htpasswd -B'), or SHA-256/512-crypt ('openssl passwd -5' or '-6')");
        }
        if (DES_CRYPT.matcher(text).matches()) {
            throw new IllegalArgumentException("looks like a crypt(3) DES hash (or a plaintext password), which "
                    + "is not accepted; re-create the entry with 'htpasswd -B' (bcrypt)");
        }
        throw new IllegalArgumentException("is not a password hash (a plaintext password is not accepted); "
                + "create the entry with 'htpasswd -B' (bcrypt)");
    }

    public Scheme scheme() {
        return scheme;
    }

    /** Whether {@code password} (UTF-8 bytes) is the one hashed. Slow by design. */
    public boolean matches(byte[] password) {
        try {
            return switch (scheme) {
                case BCRYPT -> BCrypt.checkpw(password, text);
                case SHA256_CRYPT -> same(Sha2Crypt.sha256Crypt(password, text));
                case SHA512_CRYPT -> same(Sha2Crypt.sha512Crypt(password, text));
                case MD5_CRYPT -> same(Md5Crypt.md5Crypt(password, text));
                case APR1 -> same(Md5Crypt.apr1Crypt(password, text));
            };
        } catch (IllegalArgumentException e) {
            // A password the library refuses to hash (bcrypt: over 72 bytes) matches nothing.
            return false;
        }
    }

    private boolean same(String computed) {
        return MessageDigest.isEqual(computed.getBytes(StandardCharsets.US_ASCII),
                text.getBytes(StandardCharsets.US_ASCII));
    }

    /** The scheme only: a hash is never printed. */
    @Override
    public String toString() {
        return scheme.name();
    }
}
