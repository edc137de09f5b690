package dev.egressproxy.tls;

import static org.assertj.core.api.Assertions.assertThat;

import javax.security.auth.x500.X500Principal;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The subject CN a certificate identity names (the SANs are covered by TlsListenerIT with real certificates). */
class CertificateIdentitiesTest {

    @ParameterizedTest(name = "{0} -> {1}")
    @CsvSource(delimiter = '|', nullValues = "NONE", value = {
        "CN=builder,O=Build|builder",
        "CN=Doe\\, John,O=Acme|Doe, John",
        "CN=most specific,CN=less specific,O=Acme|most specific",
        "O=Acme,C=DE|NONE"})
    void commonNameIsTheMostSpecificCn(String subject, String expected) {
        assertThat(CertificateIdentities.commonName(new X500Principal(subject))).isEqualTo(expected);
    }
}
