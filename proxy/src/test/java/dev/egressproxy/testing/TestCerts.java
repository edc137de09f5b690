package dev.egressproxy.testing;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * A self-signed server certificate for the real registry and CDN names, made with the JDK's
 * {@code keytool}, so that test servers speak real TLS and clients verify it (no trust-all).
 */
public final class TestCerts {

    public static final List<String> NAMES = List.of("registry.redhat.io", "registry.access.redhat.com",
            "cdn.quay.io", "cdn01.quay.io", "cdn02.quay.io", "cdn03.quay.io", "localhost");
    private static final char[] PASSWORD = "changeit".toCharArray();

    private final Path keystore;
    private final Path certPem;

    private TestCerts(Path keystore, Path certPem) {
        this.keystore = keystore;
        this.certPem = certPem;
    }

    /** Generates the key pair and certificate into {@code dir}. */
    public static TestCerts generate(Path dir) throws Exception {
        return generate(dir, List.of());
    }

    /** The same, for {@link #NAMES} and {@code moreNames} (such as test hosts of a registry's token service). */
    public static TestCerts generate(Path dir, List<String> moreNames) throws Exception {
        Path ks = dir.resolve("server.p12");
        Path pem = dir.resolve("ca.pem");
        String keytool = Path.of(System.getProperty("java.home"), "bin", "keytool").toString();
        List<String> names = new ArrayList<>(NAMES);
        names.addAll(moreNames);
        StringBuilder san = new StringBuilder("SAN=");
        for (int i = 0; i < names.size(); i++) {
            san.append(i == 0 ? "" : ",").append("dns:").append(names.get(i));
        }
        san.append(",ip:127.0.0.1");
        run(keytool, "-genkeypair", "-alias", "server", "-keyalg", "EC", "-groupname", "secp256r1",
                "-dname", "CN=egress-proxy test", "-ext", san.toString(), "-ext", "BC=ca:true", "-validity", "3",
                "-keystore", ks.toString(), "-storetype", "PKCS12", "-storepass", "changeit", "-keypass", "changeit");
        run(keytool, "-exportcert", "-rfc", "-alias", "server", "-keystore", ks.toString(), "-storepass", "changeit",
                "-file", pem.toString());
        return new TestCerts(ks, pem);
    }

    private static void run(String... command) throws Exception {
        Process p = new ProcessBuilder(new ArrayList<>(List.of(command))).redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes());
        if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IllegalStateException("keytool failed: " + output);
        }
    }

    /** The certificate in PEM form, for {@code curl --cacert} and {@code SSL_CERT_FILE}. */
    public Path certPem() {
        return certPem;
    }

    public SSLContext serverContext() throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(keystore)) {
            ks.load(in, PASSWORD);
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, PASSWORD);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), null, null);
        return ctx;
    }

    /** A client context that trusts exactly this certificate. */
    public SSLContext clientContext() throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(keystore)) {
            ks.load(in, PASSWORD);
        }
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        trust.setCertificateEntry("server", ks.getCertificate("server"));
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }
}
