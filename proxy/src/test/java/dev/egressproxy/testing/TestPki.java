package dev.egressproxy.testing;

import dev.egressproxy.tls.PemFiles;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * A small certificate authority made with {@code openssl} for one test: a self-signed CA and the
 * certificates it issues (EC P-256, unencrypted PKCS#8 keys), as PEM files, the form the proxy's
 * {@code listen.tls} and curl's {@code --proxy-cert} take. An issued certificate may be expired
 * ({@code openssl ca} sets its dates).
 */
public final class TestPki {

    /** A certificate and its key, as PEM files. */
    public record Issued(Path cert, Path key) {
    }

    private static final AtomicInteger SERIAL = new AtomicInteger(1000);

    private final Path dir;
    private final String name;
    private final Path caCert;
    private final Path caKey;

    private TestPki(Path dir, String name) {
        this.dir = dir;
        this.name = name;
        this.caCert = dir.resolve(name + "-ca.pem");
        this.caKey = dir.resolve(name + "-ca.key");
    }

    /**
     * A new CA named {@code name} whose files live in {@code dir}; skips the test without openssl
     * (fails it in CI: {@link Required}).
     */
    public static TestPki create(Path dir, String name) throws Exception {
        Processes.Result version;
        try {
            version = Processes.run(List.of("openssl", "version"), null, 30);
        } catch (java.io.IOException e) {
            version = null;
        }
        Required.program(version != null && version.exitCode() == 0,
                "openssl is not installed, so the TLS listener tests are skipped (apt-get install openssl)");
        TestPki pki = new TestPki(dir, name);
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                pki.caKey.toString(), "-out", pki.caCert.toString(), "-days", "3", "-subj", "/CN=" + name + " test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        return pki;
    }

    /** The CA certificate (PEM), for {@code client-ca}, {@code --proxy-cacert} and trust stores. */
    public Path caCert() {
        return caCert;
    }

    /** A server certificate for {@code 127.0.0.1} and {@code localhost}, valid for three days. */
    public Issued server(String file) throws Exception {
        return issue(file, "/CN=egress-proxy " + file, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                + "extendedKeyUsage=serverAuth\n", null);
    }

    /** A client certificate with {@code subject} (such as {@code /O=Build/CN=builder}) and {@code sans}. */
    public Issued client(String file, String subject, String sans) throws Exception {
        return issue(file, subject, (sans.isEmpty() ? "" : "subjectAltName=" + sans + "\n")
                + "extendedKeyUsage=clientAuth\n", null);
    }

    /** A client certificate that expired yesterday. */
    public Issued expiredClient(String file, String subject) throws Exception {
        return issue(file, subject, "extendedKeyUsage=clientAuth\n", "expired");
    }

    private Issued issue(String file, String subject, String extensions, String expired) throws Exception {
        Path key = dir.resolve(file + ".key");
        Path csr = dir.resolve(file + ".csr");
        Path cert = dir.resolve(file + ".pem");
        Path ext = dir.resolve(file + ".ext");
        Files.writeString(ext, "basicConstraints=CA:FALSE\n" + extensions);
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key.toString(),
                "-out", csr.toString(), "-subj", subject);
        if (expired == null) {
            openssl("x509", "-req", "-in", csr.toString(), "-CA", caCert.toString(), "-CAkey", caKey.toString(),
                    "-set_serial", String.valueOf(SERIAL.incrementAndGet()), "-days", "3", "-extfile", ext.toString(),
                    "-out", cert.toString());
        } else {
            // openssl ca is the one openssl 3.0 command that takes start and end dates.
            Path db = Files.createDirectories(dir.resolve(name + "-ca-db"));
            Path index = db.resolve("index.txt");
            if (!Files.exists(index)) {
                Files.writeString(index, "");
            }
            Path conf = dir.resolve(file + ".cnf");
            Files.writeString(conf, "[ca]\ndefault_ca = test\n[test]\ndatabase = " + index + "\nnew_certs_dir = " + db
                    + "\nserial = " + db.resolve("serial") + "\ndefault_md = sha256\npolicy = any\nunique_subject = no\n"
                    + "[any]\ncommonName = supplied\n");
            Files.writeString(db.resolve("serial"), String.format("%08X", SERIAL.incrementAndGet()) + "\n");
            openssl("ca", "-batch", "-config", conf.toString(), "-cert", caCert.toString(), "-keyfile", caKey.toString(),
                    "-in", csr.toString(), "-out", cert.toString(), "-notext", "-extfile", ext.toString(),
                    "-startdate", "20200101000000Z", "-enddate", "20200102000000Z");
        }
        return new Issued(cert, key);
    }

    /** A client context that trusts {@code trusted} (PEM CA files) and presents {@code identity} if not null. */
    public static SSLContext clientContext(Issued identity, Path... trusted) throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        int i = 0;
        for (Path p : trusted) {
            for (X509Certificate c : PemFiles.certificates(p)) {
                trust.setCertificateEntry("ca" + i++, c);
            }
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        KeyManagerFactory kmf = null;
        if (identity != null) {
            KeyStore keys = KeyStore.getInstance("PKCS12");
            keys.load(null, null);
            char[] password = "changeit".toCharArray();
            keys.setKeyEntry("client", PemFiles.privateKey(identity.key()), password,
                    PemFiles.certificates(identity.cert()).toArray(X509Certificate[]::new));
            kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(keys, password);
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf == null ? null : kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        return ctx;
    }

    private static void openssl(String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of("openssl"));
        command.addAll(List.of(args));
        Processes.Result r = Processes.run(command, null, 60);
        if (r.exitCode() != 0) {
            throw new IllegalStateException(String.join(" ", command) + " failed: " + r.output());
        }
    }
}
