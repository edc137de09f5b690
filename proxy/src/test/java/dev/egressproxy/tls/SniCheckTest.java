package dev.egressproxy.tls;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.params.provider.Arguments.argumentSet;

import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Table-driven tests of {@link SniCheck#judge}: the server name against the CONNECT host. */
class SniCheckTest {

    static Stream<Arguments> cases() {
        return Stream.of(
                argumentSet("same name", "cdn.quay.io", false, "cdn.quay.io", false, "ok"),
                argumentSet("another name on the same CDN", "cdn.quay.io", false, "www.fronted.example", false, "sni_mismatch"),
                argumentSet("a subdomain of the target is another name", "quay.io", false, "cdn.quay.io", false,
                        "sni_mismatch"),
                argumentSet("no name for a dotted host", "cdn.quay.io", false, null, false, "sni_missing"),
                argumentSet("no name for an IPv4 literal", "203.0.113.7", true, null, false, "ok"),
                argumentSet("no name for an IPv6 literal", "2001:db8::7", true, null, false, "ok"),
                argumentSet("a name for an IP literal", "203.0.113.7", true, "cdn.quay.io", false, "sni_mismatch"),
                argumentSet("no name for a single-label host (the JDK sends none)", "mirror", false, null, false, "ok"),
                argumentSet("another name for a single-label host", "mirror", false, "evil.example", false, "sni_mismatch"),
                argumentSet("ECH whose outer name is the target", "cdn.quay.io", false, "cdn.quay.io", true, "ok"),
                argumentSet("ECH with another outer name", "cdn.quay.io", false, "public.cdn.example", true, "ech"),
                argumentSet("ECH without a name", "cdn.quay.io", false, null, true, "ech"),
                argumentSet("ECH without a name to an IP literal", "203.0.113.7", true, null, true, "ok"));
    }

    @ParameterizedTest(name = "{argumentSetName}")
    @MethodSource("cases")
    void judgesTheServerNameAgainstTheConnectHost(String host, boolean ip, String sni, boolean ech, String expected) {
        SniReason reason = SniCheck.judge(host, ip, new ClientHelloParser.Hello(sni, ech));
        assertThat(reason == null ? "ok" : reason.label()).isEqualTo(expected);
    }
}
