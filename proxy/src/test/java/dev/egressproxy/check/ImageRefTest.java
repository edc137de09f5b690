package dev.egressproxy.check;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** {@link ImageRef}: references as podman and skopeo read them, and the ones they refuse. */
class ImageRefTest {

    private static final String DIGEST = "sha256:" + "0123456789abcdef".repeat(4);

    @ParameterizedTest(name = "{0} -> {1} / {2} : {3}")
    @CsvSource(delimiter = '|', textBlock = """
            busybox                                          | registry-1.docker.io   | library/busybox          | latest
            busybox:1.36                                     | registry-1.docker.io   | library/busybox          | 1.36
            library/busybox                                  | registry-1.docker.io   | library/busybox          | latest
            bitnami/redis:7.2                                | registry-1.docker.io   | bitnami/redis            | 7.2
            docker.io/busybox                                | registry-1.docker.io   | library/busybox          | latest
            docker.io/library/busybox:stable                 | registry-1.docker.io   | library/busybox          | stable
            index.docker.io/library/busybox                  | registry-1.docker.io   | library/busybox          | latest
            docker://docker.io/bitnami/redis                 | registry-1.docker.io   | bitnami/redis            | latest
            registry.redhat.io/ubi9/ubi-minimal:latest       | registry.redhat.io     | ubi9/ubi-minimal         | latest
            registry.redhat.io/redhat/redhat-operator-index:v4.12 | registry.redhat.io | redhat/redhat-operator-index | v4.12
            quay.io/org/team/image:1.0-rc.1                  | quay.io                | org/team/image           | 1.0-rc.1
            Quay.IO/org/image                                | quay.io                | org/image                | latest
            registry.test:5000/team/app:v2                   | registry.test:5000     | team/app                 | v2
            registry.test:5000/app                           | registry.test:5000     | app                      | latest
            localhost/app:dev                                | localhost              | app                      | dev
            localhost:5000/app                               | localhost:5000         | app                      | latest
            127.0.0.1:5000/app:V_1.2                         | 127.0.0.1:5000         | app                      | V_1.2
            [::1]:5000/app                                   | [::1]:5000             | app                      | latest
            example.com/a__b/c--d/e.f_g                      | example.com            | a__b/c--d/e.f_g          | latest
            """)
    void parsesRegistryRepositoryAndTag(String text, String registry, String repository, String reference) {
        ImageRef ref = ImageRef.parse(text);
        assertThat(ref).isEqualTo(new ImageRef(registry, repository, reference));
        assertThat(ref.byDigest()).isFalse();
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"registry.test:5000/team/app@", "registry.test:5000/team/app:v2@"})
    void aDigestNamesTheImageAndATagBesideItIsIgnored(String prefix) {
        ImageRef ref = ImageRef.parse(prefix + DIGEST);
        assertThat(ref).isEqualTo(new ImageRef("registry.test:5000", "team/app", DIGEST));
        assertThat(ref.byDigest()).isTrue();
        assertThat(ref.toString()).isEqualTo("registry.test:5000/team/app@" + DIGEST);
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', textBlock = """
            busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef | registry-1.docker.io | library/busybox
            docker.io/busybox:1.36@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef | registry-1.docker.io | library/busybox
            """)
    void dockerHubShortNamesWithADigest(String text, String registry, String repository) {
        assertThat(ImageRef.parse(text)).isEqualTo(new ImageRef(registry, repository, DIGEST));
    }

    @ParameterizedTest(name = "{0} prints as {1}")
    @CsvSource(delimiter = '|', textBlock = """
            busybox                     | registry-1.docker.io/library/busybox:latest
            registry.test:5000/app:v2   | registry.test:5000/app:v2
            """)
    void printsTheFullReference(String text, String printed) {
        assertThat(ImageRef.parse(text).toString()).isEqualTo(printed);
    }

    @ParameterizedTest(name = "{0}: {1}")
    @CsvSource(delimiter = '|', textBlock = """
            registry.test:5000/app      | registry.test:5000
            registry.redhat.io/ubi9/ubi | registry.redhat.io:443
            [::1]/app                   | [::1]:443
            [::1]:5000/app              | [::1]:5000
            """)
    void registryAuthorityDefaultsTo443(String text, String authority) {
        assertThat(ImageRef.parse(text).registryAuthority()).isEqualTo(authority);
    }

    @ParameterizedTest(name = "''{0}'' is refused: {1}")
    @CsvSource(delimiter = '|', quoteCharacter = '`', textBlock = """
            ``                                                  | is not an image reference
            `   `                                               | is not an image reference
            https://registry.redhat.io/ubi9/ubi                 | is not an image reference
            registry.redhat.io/ubi9 ubi                         | is not an image reference
            registry.redhat.io/                                 | is not a repository name
            registry.redhat.io/UBI9/ubi                         | 'UBI9/ubi' is not a repository name
            registry.redhat.io/ubi9//ubi                        | is not a repository name
            registry.redhat.io/ubi9/ubi-                        | is not a repository name
            registry.redhat.io/ubi9/ubi:                        | '' is not a tag
            registry.redhat.io/ubi9/ubi:.hidden                 | '.hidden' is not a tag
            registry.redhat.io/ubi9/ubi:a+b                     | 'a+b' is not a tag
            registry.redhat.io/ubi9/ubi@sha256:abc              | 'sha256:abc' is not a digest
            registry.redhat.io/ubi9/ubi@latest                  | 'latest' is not a digest
            registry.redhat.io/ubi9/ubi@sha256:0123456789abcdef0123456789abcdef | is not a digest
            registry.test:port/app                              | 'registry.test:port' is not a registry host[:port]
            registry.test:70000/app                             | 'registry.test:70000' is not a registry host[:port]
            registry_test.example/app                           | is not a registry host[:port]
            """)
    void refusesWhatIsNotAReference(String text, String message) {
        assertThatThrownBy(() -> ImageRef.parse(text)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(message);
    }

    @Test
    void aTagIsAtMost128Characters() {
        assertThat(ImageRef.parse("a/b:" + "t".repeat(128)).reference()).hasSize(128);
        assertThatThrownBy(() -> ImageRef.parse("a/b:" + "t".repeat(129))).hasMessageContaining("is not a tag");
    }
}
