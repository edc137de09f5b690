package dev.egressproxy.check;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** {@link ProxyAddress}: the proxy URL of {@code --proxy} and {@code HTTPS_PROXY}, its credentials and TLS. */
class ProxyAddressTest {

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', nullValues = "-", textBlock = """
            http://127.0.0.1:3128              | false | 127.0.0.1      | 3128 | -          | -        | http://127.0.0.1:3128
            127.0.0.1:3128                     | false | 127.0.0.1      | 3128 | -          | -        | http://127.0.0.1:3128
            http://proxy.example               | false | proxy.example  | 80   | -          | -        | http://proxy.example:80
            https://proxy.example              | true  | proxy.example  | 443  | -          | -        | https://proxy.example:443
            HTTPS://proxy.example:3129/        | true  | proxy.example  | 3129 | -          | -        | https://proxy.example:3129
            http://[::1]:3128                  | false | ::1            | 3128 | -          | -        | http://[::1]:3128
            http://alice:secret@proxy:3128     | false | proxy          | 3128 | alice      | secret   | http://alice:***@proxy:3128
            https://alice:secret@proxy:3128    | true  | proxy          | 3128 | alice      | secret   | https://alice:***@proxy:3128
            http://a%40corp:p%40ss%3Aw+rd@proxy:3128 | false | proxy    | 3128 | a@corp     | p@ss:w+rd | http://a@corp:***@proxy:3128
            http://alice@proxy:3128            | false | proxy          | 3128 | alice      | empty    | http://alice@proxy:3128
            """)
    void readsSchemeHostPortAndCredentials(String text, boolean tls, String host, int port, String user, String password,
            String printed) {
        ProxyAddress p = ProxyAddress.parse(text);
        assertThat(p.tls()).isEqualTo(tls);
        assertThat(p.host()).isEqualTo(host);
        assertThat(p.port()).isEqualTo(port);
        assertThat(p.user()).isEqualTo(user);
        assertThat(p.password()).isEqualTo("empty".equals(password) ? "" : password);
        assertThat(p.toString()).isEqualTo(printed);
        if (user == null) {
            assertThat(p.proxyAuthorization()).isNull();
        } else {
            assertThat(p.proxyAuthorization()).isEqualTo("Basic " + Base64.getEncoder()
                    .encodeToString((user + ":" + p.password()).getBytes(StandardCharsets.UTF_8)));
        }
    }

    @ParameterizedTest(name = "{0}: {1}")
    @CsvSource(delimiter = '|', quoteCharacter = '`', textBlock = """
            socks5://proxy:1080              | is not an http:// or https:// URL
            http://                          | is not a URL
            http://:3128                     | names no host
            http://alice:p@ss@proxy:3128     | percent-encode an @ in the user name or password as %40
            http://alice:p%zzss@proxy:3128   | 'http://alice:***@proxy:3128' is not a URL
            `http://proxy:3128 x`            | is not a URL
            """)
    void refusesWhatIsNotAProxyUrlWithoutPrintingThePassword(String text, String message) {
        assertThatThrownBy(() -> ProxyAddress.parse(text)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(message).hasMessageNotContaining("p@ss").hasMessageNotContaining("zzss");
    }

    @Test
    void theSchemeDefaultsToHttp() {
        assertThat(ProxyAddress.parse("alice:pw@proxy:3128")).isEqualTo(new ProxyAddress(false, "proxy", 3128, "alice", "pw"));
    }
}
