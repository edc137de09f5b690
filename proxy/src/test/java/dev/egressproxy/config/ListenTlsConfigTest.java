package dev.egressproxy.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

import dev.egressproxy.testing.TestPki;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code listen.tls} in {@link ConfigLoader}: the files are read and checked when the config is
 * loaded, and each mistake gets one message naming the key, the file and line, and the fix. The
 * PEM files are made by openssl for the test ({@link TestPki}), so the broken configs are written
 * next to them instead of living in {@code src/test/resources/config/}.
 */
class ListenTlsConfigTest {

    @TempDir
    static Path dir;
    static TestPki ca;
    static TestPki.Issued server;
    static TestPki.Issued other;

    @BeforeAll
    static void certificates() throws Exception {
        ca = TestPki.create(dir, "config");
        server = ca.server("server");
        other = ca.server("other");
    }

    @Test
    void emptyTlsKeysLeaveThePlainListener() throws Exception {
        ProxyConfig config = ConfigLoader.load(write("plain.conf", ""), Map.of());

        assertThat(config.listen().tls()).isEqualTo(ProxyConfig.ListenTls.OFF);
        assertThat(config.listen().tls().enabled()).isFalse();
    }

    @Test
    void certificateKeyAndClientCaAreReadWhenLoaded() throws Exception {
        ProxyConfig config = ConfigLoader.load(write("mutual.conf", tls(server.cert(), server.key(), ca.caCert())), Map.of());

        ProxyConfig.ListenTls tls = config.listen().tls();
        assertThat(tls.enabled()).isTrue();
        assertThat(tls.mutual()).isTrue();
        assertThat(tls.chain()).hasSize(1);
        assertThat(tls.chain().get(0).getSubjectX500Principal().getName()).isEqualTo("CN=egress-proxy server");
        assertThat(tls.clientCas().get(0).getSubjectX500Principal().getName()).isEqualTo("CN=config test CA");
        // The key material stays out of anything that prints the config.
        assertThat(tls.toString()).contains(server.key().toString()).doesNotContainIgnoringCase("private key,");
        assertThat(config.listen().sameListener(new ProxyConfig.Listen("0.0.0.0", 3128))).isFalse();
    }

    @Test
    void rejectsCertificateWithoutPrivateKey() throws Exception {
        assertSingleProblem(write("no-key.conf", "egress-proxy.listen.tls.certificate = \"" + server.cert() + "\"\n"),
                "egress-proxy.listen.tls.private-key (", "no-key.conf:1",
                "empty while listen.tls.certificate is set; a TLS listener needs both");
    }

    @Test
    void rejectsClientCaWithoutATlsListener() throws Exception {
        assertSingleProblem(write("ca-only.conf", "egress-proxy.listen.tls.client-ca = \"" + ca.caCert() + "\"\n"),
                "egress-proxy.listen.tls.client-ca (", "ca-only.conf:1", "set without listen.tls.certificate");
    }

    @Test
    void rejectsAFileThatCannotBeRead() throws Exception {
        Path missing = dir.resolve("missing.pem");
        assertSingleProblem(write("missing.conf", tls(missing, server.key(), null)),
                "egress-proxy.listen.tls.certificate (", "missing.conf:2", missing + ": cannot be read");
    }

    @Test
    void rejectsACertificateFileWithoutCertificate() throws Exception {
        assertSingleProblem(write("key-as-cert.conf", tls(server.key(), server.key(), null)),
                "egress-proxy.listen.tls.certificate (", "key-as-cert.conf:2", "holds no certificate");
    }

    @Test
    void rejectsATraditionalKeyAndSaysHowToConvertIt() throws Exception {
        Path pkcs1 = Files.writeString(dir.resolve("pkcs1.key"),
                "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n");
        assertSingleProblem(write("pkcs1.conf", tls(server.cert(), pkcs1, null)),
                "egress-proxy.listen.tls.private-key (", "pkcs1.conf:3", "traditional (PKCS#1/SEC1) form",
                "openssl pkcs8 -topk8 -nocrypt");
    }

    @Test
    void rejectsTheKeyOfAnotherCertificate() throws Exception {
        assertSingleProblem(write("mismatch.conf", tls(server.cert(), other.key(), null)),
                "egress-proxy.listen.tls.private-key (", "mismatch.conf:3", "is not the key of the certificate in");
    }

    private static String tls(Path cert, Path key, Path clientCa) {
        return "egress-proxy.listen.tls {\n"
                + "  certificate = \"" + cert + "\"\n"
                + "  private-key = \"" + key + "\"\n"
                + (clientCa == null ? "" : "  client-ca = \"" + clientCa + "\"\n")
                + "}\n";
    }

    private static Path write(String name, String content) throws Exception {
        return Files.writeString(dir.resolve(name), content);
    }

    private static void assertSingleProblem(Path file, String keyPath, String where, String... fragments) {
        ConfigException e = catchThrowableOfType(ConfigException.class, () -> ConfigLoader.load(file, Map.of()));
        assertThat(e).as("%s should be rejected", file).isNotNull();
        assertThat(e.problems()).hasSize(1);
        assertThat(e.problems().get(0)).startsWith(keyPath).contains(where).contains(fragments);
    }
}
