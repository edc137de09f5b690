package dev.egressproxy.check;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@link AuthFile}: a containers {@code auth.json} as {@code podman login} writes it, looked up as
 * containers/image looks it up, and the files it cannot use named with the reason.
 */
class AuthFileTest {

    @TempDir
    Path dir;

    private static String b64(String s) {
        return Base64.getEncoder().encodeToString(s.getBytes(StandardCharsets.UTF_8));
    }

    private AuthFile file(String json) throws IOException {
        Path f = dir.resolve("auth.json");
        Files.writeString(f, json);
        return AuthFile.read(f);
    }

    /** The file podman writes, with one entry of each key form. */
    private AuthFile everyForm() throws IOException {
        return file("""
                {
                  "auths": {
                    "registry.redhat.io": {"auth": "%s"},
                    "registry.test:5000": {"auth": "%s", "email": "ignored@example.com"},
                    "https://index.docker.io/v1/": {"auth": "%s"},
                    "http://legacy.example/v1/": {"auth": "%s"},
                    "quay.io": {"auth": "%s"},
                    "quay.io/team": {"auth": "%s"},
                    "quay.io/team/special": {"auth": "%s"},
                    "Mixed.Example": {"auth": "%s"}
                  },
                  "credHelpers": {"gcr.io": "gcloud"}
                }
                """.formatted(b64("rh:rh-pass"), b64("five:thousand"), b64("hub:hub-pass"), b64("old:old-pass"),
                b64("quay:any"), b64("team:team-pass"), b64("special:special-pass"), b64("mixed:case")));
    }

    @ParameterizedTest(name = "{0}/{1} -> {2}")
    @CsvSource(delimiter = '|', textBlock = """
            registry.redhat.io   | ubi9/ubi-minimal     | rh:rh-pass
            REGISTRY.redhat.io   | ubi9/ubi-minimal     | rh:rh-pass
            registry.test:5000   | app                  | five:thousand
            registry-1.docker.io | library/busybox      | hub:hub-pass
            docker.io            | bitnami/redis        | hub:hub-pass
            legacy.example       | any/image            | old:old-pass
            quay.io              | other/image          | quay:any
            quay.io              | team/image           | team:team-pass
            quay.io              | team/special         | special:special-pass
            quay.io              | team/special-not     | team:team-pass
            quay.io              | teamwork/image       | quay:any
            mixed.example        | a/b                  | mixed:case
            """)
    void theMostSpecificKeyCoveringTheImageWins(String registry, String repository, String expected) throws IOException {
        AuthFile.Login login = everyForm().login(registry, repository);
        assertThat(login).isNotNull();
        assertThat(login.user() + ":" + login.password()).isEqualTo(expected);
        assertThat(login.basic()).isEqualTo("Basic " + b64(expected));
    }

    @ParameterizedTest(name = "{0}/{1}: none")
    @CsvSource(delimiter = '|', textBlock = """
            registry.access.redhat.com | ubi9/ubi
            registry.test              | app
            registry.test:5001         | app
            gcr.io                     | project/image
            """)
    void aRegistryTheFileDoesNotNameHasNoLogin(String registry, String repository) throws IOException {
        assertThat(everyForm().login(registry, repository)).isNull();
    }

    @Test
    void aPasswordMayHoldColonsAndTheLoginDoesNotPrintIt() throws IOException {
        AuthFile.Login login = file("{\"auths\": {\"r.example\": {\"auth\": \"" + b64("u:p:a:ss") + "\"}}}").login("r.example", "x");
        assertThat(login.user()).isEqualTo("u");
        assertThat(login.password()).isEqualTo("p:a:ss");
        assertThat(login.toString()).doesNotContain("p:a:ss");
    }

    @Test
    void anEntryWithoutUsableAuthMeansAnonymousAndStopsTheSearchAsInPodman() throws IOException {
        AuthFile f = file("""
                {"auths": {
                  "quay.io": {"auth": "%s"},
                  "quay.io/empty": {"auth": ""},
                  "quay.io/nocolon": {"auth": "%s"},
                  "quay.io/token": {"identitytoken": "refresh-token"},
                  "notanobject.example": "x"
                }}
                """.formatted(b64("quay:any"), b64("justauser")));
        assertThat(f.login("quay.io", "empty/image")).isNull();
        assertThat(f.login("quay.io", "nocolon/image")).isNull();
        assertThat(f.login("quay.io", "token/image")).isNull();
        assertThat(f.login("quay.io", "other/image").user()).isEqualTo("quay");
        assertThat(f.login("notanobject.example", "a")).isNull();
    }

    @Test
    void aFileWithoutAuthsHasNoLogins() throws IOException {
        assertThat(file("{}").login("registry.redhat.io", "ubi9/ubi")).isNull();
        assertThat(file("{\"credHelpers\": {\"registry.redhat.io\": \"secretservice\"}}").login("registry.redhat.io", "ubi9/ubi"))
                .isNull();
        assertThat(AuthFile.none().login("registry.redhat.io", "ubi9/ubi")).isNull();
    }

    @Test
    void aMissingFileIsNamed() {
        Path missing = dir.resolve("nope.json");
        assertThatThrownBy(() -> AuthFile.read(missing)).isInstanceOf(IOException.class)
                .hasMessage("auth file " + missing + " does not exist");
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', quoteCharacter = '`', textBlock = """
            truncated          | {"auths": {"quay.io": {"auth": "eDp5"}                | is not valid JSON: Unexpected end-of-input
            a trailing comma   | {"auths": {"quay.io": {"auth": "eDp5"},}}              | is not valid JSON:
            not JSON at all    | auths: quay.io                                         | is not valid JSON:
            a second document  | {"auths": {}} {"auths": {}}                            | is not valid JSON: unexpected '{' (line 1, column 15)
            an array           | ["quay.io"]                                            | is not a JSON object such as {"auths": {...}}
            empty              | ``                                                     | is not a JSON object such as {"auths": {...}}
            """)
    void malformedJsonIsAnErrorNamingTheFileAndThePlace(String what, String json, String message) throws IOException {
        Path f = dir.resolve("bad.json");
        Files.writeString(f, json);
        assertThatThrownBy(() -> AuthFile.read(f)).isInstanceOf(IOException.class)
                .hasMessageStartingWith("auth file " + f + " ").hasMessageContaining(message);
    }

    @Test
    void malformedJsonNamesTheLine() throws IOException {
        Path f = dir.resolve("bad.json");
        Files.writeString(f, "{\n  \"auths\": {\n    \"quay.io\": {\"auth\": \"eDp5\"\n  }\n");
        assertThatThrownBy(() -> AuthFile.read(f)).hasMessageContaining("(line ");
    }

    @Test
    void anAuthThatIsNotBase64IsAnErrorNamingTheKey() {
        assertThatThrownBy(() -> file("{\"auths\": {\"quay.io/team\": {\"auth\": \"not base64!\"}}}"))
                .isInstanceOf(IOException.class)
                .hasMessageEndingWith(": the \"auth\" of \"quay.io/team\" is not base64 of user:password");
    }

    @ParameterizedTest(name = "{0} -> {1}")
    @CsvSource(delimiter = '|', textBlock = """
            registry.redhat.io            | registry.redhat.io
            https://registry.redhat.io    | registry.redhat.io
            https://index.docker.io/v1/   | docker.io
            http://registry.test:5000/v2/ | registry.test:5000
            registry-1.docker.io          | docker.io
            index.docker.io/library       | docker.io/library
            Quay.IO/Team/                 | quay.io/Team
            """)
    void normalisesKeysAsContainersImage(String key, String normalised) {
        assertThat(AuthFile.normalise(key)).isEqualTo(normalised);
    }
}
