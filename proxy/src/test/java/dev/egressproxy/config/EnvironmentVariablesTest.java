package dev.egressproxy.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueType;
import dev.egressproxy.policy.CidrBlock;
import dev.egressproxy.policy.Target;
import dev.egressproxy.testing.TestPki;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The environment variables of {@link ConfigLoader#ENV_KEYS} for proxy authentication, the TLS
 * listener, PROXY protocol and the parent proxy: each sets its key over the file, list variables
 * are comma-separated and replace the list, and a bad value names the variable. The files they
 * point at (users, PEM, password) are real, since the loader reads them when it loads.
 */
class EnvironmentVariablesTest {

    /** An htpasswd entry made with {@code openssl passwd -5}; the loader only checks its form. */
    private static final String SHA256 = "$5$Qe7pLm2xVb9$H79ZmQA.aU65xNInHBTuR96UMDoYNq3vW9guzQMpDx9";

    @TempDir
    static Path dir;
    static TestPki ca;
    static TestPki.Issued server;

    @BeforeAll
    static void certificates() throws Exception {
        ca = TestPki.create(dir, "env");
        server = ca.server("server");
    }

    static Stream<Arguments> everyVariable() {
        return ConfigLoader.ENV_KEYS.entrySet().stream().map(e -> Arguments.of(e.getKey(), e.getValue()));
    }

    @ParameterizedTest(name = "{0} sets egress-proxy.{1}, a key of reference.conf")
    @MethodSource("everyVariable")
    void everyVariableNamesAKeyOfTheReference(String variable, String key) {
        Config reference = ConfigFactory.parseResources(ConfigLoader.class, "/reference.conf");

        assertThat(variable).matches("EGRESS_PROXY_[A-Z_]+");
        assertThat(reference.hasPath(ConfigLoader.ROOT + "." + key)).as(key).isTrue();
        assertThat(reference.getValue(ConfigLoader.ROOT + "." + key).valueType())
                .isNotIn(ConfigValueType.OBJECT, ConfigValueType.NULL);
    }

    @Test
    void usersFileTurnsOnAuthentication() throws Exception {
        Path users = Files.write(dir.resolve("users"), List.of("alice:" + SHA256));

        ProxyConfig.Auth auth = ConfigLoader.load(null, Map.of("EGRESS_PROXY_USERS_FILE", users.toString())).auth();

        assertThat(auth.enabled()).isTrue();
        assertThat(auth.users().hashOf("alice")).isNotNull();
    }

    @Test
    void tlsVariablesTurnOnTheMutualTlsListener() throws Exception {
        ProxyConfig config = ConfigLoader.load(null, Map.of(
                "EGRESS_PROXY_TLS_CERTIFICATE", server.cert().toString(),
                "EGRESS_PROXY_TLS_PRIVATE_KEY", " " + server.key() + " ",
                "EGRESS_PROXY_TLS_CLIENT_CA", ca.caCert().toString()));

        ProxyConfig.ListenTls tls = config.listen().tls();
        assertThat(tls.enabled()).isTrue();
        assertThat(tls.mutual()).isTrue();
        assertThat(tls.certificate()).isEqualTo(server.cert());
        assertThat(tls.privateKey()).isEqualTo(server.key());
        assertThat(tls.chain().get(0).getSubjectX500Principal().getName()).isEqualTo("CN=egress-proxy server");
    }

    @Test
    void proxyProtocolFromIsACommaSeparatedListThatReplacesTheFile() throws Exception {
        Path file = Files.writeString(dir.resolve("pp.conf"), """
                egress-proxy.listen { proxy-protocol = v1, proxy-protocol-from = ["192.0.2.0/24"] }
                """);

        ProxyConfig config = ConfigLoader.load(file, Map.of(
                "EGRESS_PROXY_PROXY_PROTOCOL", "v2",
                "EGRESS_PROXY_PROXY_PROTOCOL_FROM", "10.0.0.0/24, 10.1.0.7,,"));

        assertThat(config.listen().proxyProtocol().mode()).isEqualTo(ProxyConfig.ProxyProtocolMode.V2);
        assertThat(config.listen().proxyProtocol().from()).extracting(CidrBlock::text)
                .containsExactly("10.0.0.0/24", "10.1.0.7/32");
    }

    @Test
    void upstreamProxyVariablesSetTheParentAndItsCredentials() throws Exception {
        Path password = Files.writeString(dir.resolve("parent-password"), "s3cret\n");

        ProxyConfig.UpstreamProxy parent = ConfigLoader.load(null, Map.of(
                "EGRESS_PROXY_UPSTREAM_PROXY_URL", "http://corp-proxy.example:8080",
                "EGRESS_PROXY_UPSTREAM_PROXY_USER", "egress",
                "EGRESS_PROXY_UPSTREAM_PROXY_PASSWORD_FILE", password.toString(),
                "EGRESS_PROXY_UPSTREAM_PROXY_BYPASS", "*.internal.example, 10.0.0.0/8")).upstreamProxy();

        assertThat(parent.enabled()).isTrue();
        assertThat(parent.address().authority()).isEqualTo("corp-proxy.example:8080");
        assertThat(parent.proxyAuthorization()).isEqualTo("Basic ZWdyZXNzOnMzY3JldA==");
        assertThat(parent.routes(new Target("cdn02.quay.io", 443, null))).isTrue();
        assertThat(parent.routes(new Target("git.internal.example", 443, null))).isFalse();
    }

    @Test
    void rejectsAnUnknownProxyProtocolVersionAndNamesTheVariable() {
        ConfigException e = catchThrowableOfType(ConfigException.class,
                () -> ConfigLoader.load(null, Map.of("EGRESS_PROXY_PROXY_PROTOCOL", "v3",
                        "EGRESS_PROXY_PROXY_PROTOCOL_FROM", "10.0.0.0/24")));

        assertThat(e).isNotNull();
        assertThat(e.problems()).singleElement().asString().isEqualTo("egress-proxy.listen.proxy-protocol (environment"
                + " variable EGRESS_PROXY_PROXY_PROTOCOL): 'v3' is not one of off, v1, v2, any");
    }

    @Test
    void rejectsProxyProtocolWithoutPeersAndNamesTheVariableThatTurnedItOn() {
        ConfigException e = catchThrowableOfType(ConfigException.class,
                () -> ConfigLoader.load(null, Map.of("EGRESS_PROXY_PROXY_PROTOCOL", "any")));

        assertThat(e).isNotNull();
        assertThat(e.problems()).singleElement().asString()
                .startsWith("egress-proxy.listen.proxy-protocol-from (environment variable EGRESS_PROXY_PROXY_PROTOCOL):")
                .contains("empty while listen.proxy-protocol = any");
    }

    @Test
    void rejectsAnUnreadableKeyFileAndNamesTheVariable() {
        Path missing = dir.resolve("missing.key");
        ConfigException e = catchThrowableOfType(ConfigException.class, () -> ConfigLoader.load(null, Map.of(
                "EGRESS_PROXY_TLS_CERTIFICATE", server.cert().toString(),
                "EGRESS_PROXY_TLS_PRIVATE_KEY", missing.toString())));

        assertThat(e).isNotNull();
        assertThat(e.problems()).singleElement().asString()
                .startsWith("egress-proxy.listen.tls.private-key (environment variable EGRESS_PROXY_TLS_PRIVATE_KEY)")
                .contains(missing + ": cannot be read");
    }

    @Test
    void rejectsAParentPasswordFileWithoutUserAndNamesTheKey() throws Exception {
        Path password = Files.writeString(dir.resolve("lonely-password"), "s3cret\n");
        ConfigException e = catchThrowableOfType(ConfigException.class, () -> ConfigLoader.load(null, Map.of(
                "EGRESS_PROXY_UPSTREAM_PROXY_URL", "http://corp-proxy.example:8080",
                "EGRESS_PROXY_UPSTREAM_PROXY_PASSWORD_FILE", password.toString())));

        assertThat(e).isNotNull();
        assertThat(e.problems()).singleElement().asString().contains("egress-proxy.upstream-proxy.")
                .contains("give both or neither").doesNotContain("s3cret");
    }
}
