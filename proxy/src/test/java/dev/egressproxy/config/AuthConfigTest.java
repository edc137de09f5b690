package dev.egressproxy.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code auth.basic}: off by default, and a users file that cannot be used stops the start naming its line. */
class AuthConfigTest {

    private static final String BASE = "egress-proxy.allowlist.hosts = [\"registry.redhat.io\"]\n";
    private static final String SHA256 = "$5$Qe7pLm2xVb9$H79ZmQA.aU65xNInHBTuR96UMDoYNq3vW9guzQMpDx9";

    @Test
    void offByDefault() throws Exception {
        ProxyConfig.Auth auth = ConfigLoader.fromString(BASE).auth();
        assertThat(auth.enabled()).isFalse();
        assertThat(auth.maxFailures()).isEqualTo(10);
        assertThat(auth.failureWindow()).isEqualTo(Duration.ofSeconds(60));
    }

    @Test
    void readsTheUsersFile(@TempDir Path dir) throws Exception {
        Path users = dir.resolve("users");
        Files.write(users, List.of("alice:" + SHA256));
        ProxyConfig.Auth auth = ConfigLoader.fromString(BASE + "egress-proxy.auth.basic.users-file = \"" + users + "\"").auth();
        assertThat(auth.enabled()).isTrue();
        assertThat(auth.users().hashOf("alice")).isNotNull();
    }

    @Test
    void anUnusableLineIsAConfigErrorNamingTheKeyTheFileAndTheLine(@TempDir Path dir) throws Exception {
        Path users = dir.resolve("users");
        Files.write(users, List.of("alice:" + SHA256, "bob:hunter2"));
        assertThatThrownBy(() -> ConfigLoader.fromString(BASE + "egress-proxy.auth.basic.users-file = \"" + users + "\""))
                .isInstanceOf(ConfigException.class)
                .hasMessageContaining("egress-proxy.auth.basic.users-file (config: 2): " + users + ":2: the entry of user"
                        + " 'bob' is not a password hash")
                .hasMessageNotContaining("hunter2");
    }

    @Test
    void aMissingUsersFileIsAConfigError(@TempDir Path dir) {
        assertThatThrownBy(() -> ConfigLoader.fromString(BASE + "egress-proxy.auth.basic.users-file = \"" + dir.resolve("nope")
                + "\"")).isInstanceOf(ConfigException.class).hasMessageContaining("does not exist");
    }
}
