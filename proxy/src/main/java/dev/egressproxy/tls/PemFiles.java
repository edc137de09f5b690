package dev.egressproxy.tls;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

/**
 * Reads the PEM files of {@code listen.tls}: certificates (a chain or a CA bundle) and an
 * unencrypted PKCS#8 private key ({@code -----BEGIN PRIVATE KEY-----}, what {@code openssl genpkey}
 * and {@code openssl req -newkey} write), and checks that a key belongs to a certificate. Each
 * failure is an {@link IllegalArgumentException} whose message says what is wrong with the file
 * and how to fix it; the config loader puts the key path and origin in front.
 */
public final class PemFiles {

    private static final String BEGIN = "-----BEGIN ";

    private PemFiles() {
    }

    /** The certificates in {@code file}, in order; at least one. */
    public static List<X509Certificate> certificates(Path file) {
        byte[] bytes = read(file);
        String text = new String(bytes, StandardCharsets.US_ASCII);
        if (!text.contains(BEGIN + "CERTIFICATE-----")) {
            throw new IllegalArgumentException(file + ": holds no certificate (expected -----BEGIN CERTIFICATE-----"
                    + (text.contains("PRIVATE KEY-----") ? "; this looks like a private key" : "") + ")");
        }
        List<X509Certificate> certs = new ArrayList<>();
        try {
            CertificateFactory factory = CertificateFactory.getInstance("X.509");
            for (var c : factory.generateCertificates(new ByteArrayInputStream(bytes))) {
                certs.add((X509Certificate) c);
            }
        } catch (CertificateException e) {
            throw new IllegalArgumentException(file + ": not a PEM certificate file (" + e.getMessage() + ")", e);
        }
        if (certs.isEmpty()) {
            throw new IllegalArgumentException(file + ": holds no certificate (expected -----BEGIN CERTIFICATE-----)");
        }
        return List.copyOf(certs);
    }

    /** The private key in {@code file}: one unencrypted PKCS#8 PEM block (RSA, EC or Ed25519). */
    public static PrivateKey privateKey(Path file) {
        String text = new String(read(file), StandardCharsets.US_ASCII);
        String label = "PRIVATE KEY";
        int begin = text.indexOf(BEGIN + label + "-----");
        if (begin < 0) {
            if (text.contains(BEGIN + "RSA PRIVATE KEY") || text.contains(BEGIN + "EC PRIVATE KEY")) {
                throw new IllegalArgumentException(file + ": the key is in the traditional (PKCS#1/SEC1) form; "
                        + "convert it to PKCS#8 with 'openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8' "
                        + "(cert-manager: privateKey.encoding: PKCS8)");
            }
            if (text.contains(BEGIN + "ENCRYPTED PRIVATE KEY")) {
                throw new IllegalArgumentException(file + ": the key is encrypted, and the proxy takes no passphrase; "
                        + "decrypt it with 'openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8'");
            }
            throw new IllegalArgumentException(file + ": holds no private key (expected -----BEGIN PRIVATE KEY-----)");
        }
        int start = text.indexOf('\n', begin);
        int end = text.indexOf("-----END " + label + "-----", begin);
        if (start < 0 || end < 0 || end < start) {
            throw new IllegalArgumentException(file + ": the private key's PEM block is not closed");
        }
        byte[] der;
        try {
            der = Base64.getMimeDecoder().decode(text.substring(start, end));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(file + ": the private key's PEM block is not base64", e);
        }
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(der);
        for (String algorithm : List.of("RSA", "EC", "Ed25519", "RSASSA-PSS")) {
            try {
                return KeyFactory.getInstance(algorithm).generatePrivate(spec);
            } catch (GeneralSecurityException e) {
                // Try the next algorithm.
            }
        }
        throw new IllegalArgumentException(file + ": not an RSA, EC or Ed25519 private key the JDK can read");
    }

    /**
     * Whether {@code key} is the private half of {@code certificate}'s public key: a test message
     * signed with one verifies with the other. A key of an algorithm not listed here is assumed to match.
     */
    public static boolean matches(PrivateKey key, X509Certificate certificate) {
        PublicKey pub = certificate.getPublicKey();
        String algorithm = switch (key.getAlgorithm()) {
            case "RSA" -> "SHA256withRSA";
            case "EC" -> "SHA256withECDSA";
            case "Ed25519", "EdDSA" -> "Ed25519";
            default -> null;
        };
        if (algorithm == null) {
            return true;
        }
        if (!key.getAlgorithm().equals(pub.getAlgorithm())
                && !(key.getAlgorithm().startsWith("Ed") && pub.getAlgorithm().startsWith("Ed"))) {
            return false;
        }
        try {
            byte[] message = new byte[32];
            new SecureRandom().nextBytes(message);
            Signature signer = Signature.getInstance(algorithm);
            signer.initSign(key);
            signer.update(message);
            byte[] signature = signer.sign();
            Signature verifier = Signature.getInstance(algorithm);
            verifier.initVerify(pub);
            verifier.update(message);
            return verifier.verify(signature);
        } catch (GeneralSecurityException e) {
            return false;
        }
    }

    private static byte[] read(Path file) {
        try {
            return Files.readAllBytes(file);
        } catch (IOException e) {
            throw new IllegalArgumentException(file + ": cannot be read (" + e + ")", e);
        }
    }
}
