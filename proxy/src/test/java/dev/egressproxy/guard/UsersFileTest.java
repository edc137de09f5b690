package dev.egressproxy.guard;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.springframework.security.crypto.bcrypt.BCrypt;

/**
 * The users file of {@code auth.basic}: which entries are accepted, and that every refused line
 * is named with its file and line. The hashes below were made for these tests with
 * {@code openssl passwd -5/-6/-1} and {@code htpasswd -B/-m}.
 */
class UsersFileTest {

    private static final Path FILE = Path.of("/etc/egress-proxy/users");

    static final String SHA256 = "$5$Qe7pLm2xVb9$H79ZmQA.aU65xNInHBTuR96UMDoYNq3vW9guzQMpDx9"; // tunnel-Pass5
    static final String SHA512 = "$6$Zk3wR8yTn1$JNwaoI/v3k20xcbIKv4vfBM5/dJ5PiCKigaRMa.Sw8Pt9pswpAAOId5TwM0km4PTOgRSSARw"
            + ".3FVTReyt54vi1"; // tunnel-Pass6
    static final String BCRYPT_2Y = "$2y$04$XbAsrThX6ocfstEPilwgGug0L7PBaRZM1Hve8ZxrGkMBiaDvMEA/S"; // bcrypt-Pass
    static final String APR1 = "$apr1$ocDBnFi7$5LbrcS0MF7pY0cz4KkvTN."; // md5-pass
    static final String MD5 = "$1$abcd$jsRMEdD/ZVFzfvgrhk7Cg."; // md5-one

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void acceptsBcryptAndShaCryptEntriesAndChecksTheirPasswords() throws Exception {
        String bcrypt2b = BCrypt.hashpw("made-here", BCrypt.gensalt("$2b", 4));
        UsersFile users = UsersFile.parse(FILE, "# proxy users\n\nalice:" + SHA256 + "\nbob:" + SHA512 + "\r\ncarol:"
                + BCRYPT_2Y + "\nerin:" + bcrypt2b + "\n", false);
        assertThat(users.size()).isEqualTo(4);
        assertThat(users.hashOf("alice").matches(utf8("tunnel-Pass5"))).isTrue();
        assertThat(users.hashOf("alice").matches(utf8("tunnel-Pass6"))).isFalse();
        assertThat(users.hashOf("bob").matches(utf8("tunnel-Pass6"))).isTrue();
        assertThat(users.hashOf("bob").matches(utf8("tunnel-pass6"))).isFalse();
        assertThat(users.hashOf("carol").matches(utf8("bcrypt-Pass"))).isTrue();
        assertThat(users.hashOf("carol").matches(utf8("bcrypt-Pas"))).isFalse();
        assertThat(users.hashOf("erin").matches(utf8("made-here"))).isTrue();
        assertThat(users.hashOf("mallory")).isNull();
        assertThat(users.dummy()).isNotNull();
    }

    @Test
    void md5CryptOnlyWithTheOptIn() throws Exception {
        String text = "dave:" + APR1 + "\nfrank:" + MD5 + "\n";
        assertThatThrownBy(() -> UsersFile.parse(FILE, text, false)).isInstanceOf(UsersFile.Invalid.class)
                .satisfies(e -> assertThat(((UsersFile.Invalid) e).problems()).containsExactly(
                        FILE + ":1: the entry of user 'dave' is an MD5-crypt ($apr1$) hash, which is weak and accepted"
                                + " only with egress-proxy.auth.basic.allow-md5-crypt = true; re-create the entry with"
                                + " 'htpasswd -B' (bcrypt)",
                        FILE + ":2: the entry of user 'frank' is an MD5-crypt ($1$) hash, which is weak and accepted"
                                + " only with egress-proxy.auth.basic.allow-md5-crypt = true; re-create the entry with"
                                + " 'htpasswd -B' (bcrypt)"));
        UsersFile users = UsersFile.parse(FILE, text, true);
        assertThat(users.hashOf("dave").matches(utf8("md5-pass"))).isTrue();
        assertThat(users.hashOf("dave").matches(utf8("md5-pasS"))).isFalse();
        assertThat(users.hashOf("frank").matches(utf8("md5-one"))).isTrue();
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "plaintext password | alice:secret | is not a password hash",
        "unsalted SHA-1 | alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ= | is an unsalted SHA-1 ({SHA}) hash",
        "crypt(3) DES | alice:rqXexS6ZhobKA | looks like a crypt(3) DES hash",
        "unknown scheme | alice:$7$CU..../....abc$xyz | has a hash scheme egress-proxy does not accept",
        "bcrypt cut short | alice:$2y$04$XbAsrThX6ocfstEPilwgGug0L7PBaRZM1Hve8ZxrGkMBiaDvMEA | has a hash scheme",
        "SHA-256-crypt cut short | alice:$5$Qe7pLm2xVb9$H79ZmQA.aU65xNInHBTuR96UMDoYN | must end in 43 characters",
        "rounds below the minimum | alice:$5$rounds=10$salt$H79ZmQA.aU65xNInHBTuR96UMDoYNq3vW9guzQMpDx9 | is below the minimum",
        "no colon | alice | expected user:hash",
        "empty user | :$5$Qe7pLm2xVb9$H79ZmQA.aU65xNInHBTuR96UMDoYNq3vW9guzQMpDx9 | the user name is empty",
    })
    void refusesAnUnusableLineNamingIt(String name, String line, String expected) {
        assertThatThrownBy(() -> UsersFile.parse(FILE, "# header\n" + line + "\n", false))
                .isInstanceOf(UsersFile.Invalid.class)
                .satisfies(e -> assertThat(((UsersFile.Invalid) e).problems()).singleElement().asString()
                        .startsWith(FILE + ":2: ").contains(expected).doesNotContain("H79ZmQA").doesNotContain("secret"));
    }

    @Test
    void refusesAUserNamedTwice() {
        assertThatThrownBy(() -> UsersFile.parse(FILE, "alice:" + SHA256 + "\nalice:" + SHA512 + "\n", false))
                .isInstanceOf(UsersFile.Invalid.class)
                .hasMessage(FILE + ":2: user 'alice' is already defined on line 1");
    }

    @Test
    void collectsEveryProblemOfTheFile() {
        assertThatThrownBy(() -> UsersFile.parse(FILE, "a:plain\nb:" + SHA256 + "\nc:{SHA}x\n", false))
                .isInstanceOf(UsersFile.Invalid.class)
                .satisfies(e -> assertThat(((UsersFile.Invalid) e).problems()).hasSize(2)
                        .anySatisfy(p -> assertThat(p).startsWith(FILE + ":1: "))
                        .anySatisfy(p -> assertThat(p).startsWith(FILE + ":3: ")));
    }

    @Test
    void refusesAFileWithoutEntries() {
        assertThatThrownBy(() -> UsersFile.parse(FILE, "# nobody yet\n\n", false))
                .isInstanceOf(UsersFile.Invalid.class).hasMessageContaining("has no user:hash entries");
    }

    @Test
    void refusesAMissingOrNonUtf8File(@TempDir Path dir) throws Exception {
        assertThatThrownBy(() -> UsersFile.load(dir.resolve("absent"), false))
                .isInstanceOf(UsersFile.Invalid.class).hasMessageContaining("does not exist");
        Path latin1 = dir.resolve("latin1");
        Files.write(latin1, new byte[] {'j', (byte) 0xe9, ':', 'x', '\n'});
        assertThatThrownBy(() -> UsersFile.load(latin1, false))
                .isInstanceOf(UsersFile.Invalid.class).hasMessageContaining("is not UTF-8 text");
    }

    @Test
    void everyLoadHasItsOwnGeneration(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("users");
        Files.write(f, List.of("alice:" + SHA256));
        assertThat(UsersFile.load(f, false).generation()).isNotEqualTo(UsersFile.load(f, false).generation());
    }
}
