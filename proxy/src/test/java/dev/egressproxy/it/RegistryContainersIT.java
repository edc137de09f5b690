package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.DockerRequired;
import dev.egressproxy.testing.TestCerts;
import dev.egressproxy.testing.TestProxy;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.util.Base64;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import org.testcontainers.Testcontainers;
import org.testcontainers.containers.Container;
import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.wait.strategy.Wait;
import org.testcontainers.utility.MountableFile;

/**
 * The registry and the client in containers, where a Docker engine exists: a distribution
 * registry serving TLS under the name {@code registry.redhat.io}, and skopeo in a container using
 * the in-process proxy as {@code HTTPS_PROXY}. Skipped with a clear message where there is no
 * Docker engine (our CI machines), where e2e/run.sh covers the same ground with Debian packages.
 */
@ExtendWith(DockerRequired.class)
class RegistryContainersIT {

    @TempDir
    Path dir;

    @Test
    void skopeoThroughTheProxyReachesTheAllowedRegistryAndIsToldWhyAnotherHostIsRefused() throws Exception {
        TestCerts certs = TestCerts.generate(dir);
        Path key = dir.resolve("server.key");
        Path cert = certs.certPem();
        writePrivateKeyPem(dir.resolve("server.p12"), key);
        try (GenericContainer<?> registry = new GenericContainer<>("registry:2")
                .withCopyFileToContainer(MountableFile.forHostPath(cert), "/certs/server.pem")
                .withCopyFileToContainer(MountableFile.forHostPath(key), "/certs/server.key")
                .withEnv("REGISTRY_HTTP_TLS_CERTIFICATE", "/certs/server.pem")
                .withEnv("REGISTRY_HTTP_TLS_KEY", "/certs/server.key")
                .withExposedPorts(5000)
                .waitingFor(Wait.forListeningPort())) {
            registry.start();
            try (TestProxy proxy = TestProxy.start("""
                    listen.host = "0.0.0.0"
                    clients.allow = ["0.0.0.0/0", "::/0"]
                    allowlist.hosts = ["registry.redhat.io"]
                    destinations.connect-to { "registry.redhat.io:443" = "127.0.0.1:%d" }
                    """.formatted(registry.getMappedPort(5000)))) {
                Testcontainers.exposeHostPorts(proxy.port());
                String proxyUrl = "http://host.testcontainers.internal:" + proxy.port();
                try (GenericContainer<?> skopeo = new GenericContainer<>("quay.io/skopeo/stable:latest")
                        .withCopyFileToContainer(MountableFile.forHostPath(cert), "/ca.pem")
                        .withEnv("SSL_CERT_FILE", "/ca.pem")
                        .withEnv("HTTPS_PROXY", proxyUrl)
                        .withCreateContainerCmdModifier(c -> c.withEntrypoint("sleep"))
                        .withCommand("600")) {
                    skopeo.start();
                    Container.ExecResult catalog = skopeo.execInContainer("skopeo", "list-tags",
                            "docker://registry.redhat.io/ubi9/ubi-minimal");
                    // An empty registry answers "name unknown": the request did reach it, through the proxy.
                    assertThat(catalog.getStdout() + catalog.getStderr()).containsAnyOf("Tags", "name unknown",
                            "NAME_UNKNOWN", "repository name not known");
                    Container.ExecResult refused = skopeo.execInContainer("skopeo", "list-tags",
                            "docker://cdn02.quay.io/ubi9/ubi-minimal");
                    assertThat(refused.getExitCode()).isNotZero();
                    assertThat(refused.getStderr()).contains("cdn02.quay.io:443 is not in the egress allowlist");
                }
            }
        }
    }

    private static void writePrivateKeyPem(Path p12, Path out) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(p12)) {
            ks.load(in, "changeit".toCharArray());
        }
        byte[] der = ks.getKey("server", "changeit".toCharArray()).getEncoded();
        String pem = "-----BEGIN PRIVATE KEY-----\n"
                + Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(der) + "\n-----END PRIVATE KEY-----\n";
        Files.writeString(out, pem);
    }
}
