package dev.egressproxy.policy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;
import static org.junit.jupiter.params.provider.Arguments.argumentSet;

import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.ThrowingSupplier;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Table-driven tests for {@link AuthorityParser}: every form the proxy accepts, and every
 * ambiguous form it refuses, with the part of the message that tells the client why. Refusal
 * messages are sent to clients, so each one is also checked never to echo the raw input.
 */
class AuthorityParserTest {

    private static final String LABEL_63 = "a".repeat(63);
    private static final String LABEL_64 = "a".repeat(64);
    /** 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters, the longest name DNS allows. */
    private static final String HOST_253 = LABEL_63 + "." + LABEL_63 + "." + LABEL_63 + "." + "b".repeat(61);

    // ---------------------------------------------------------------- CONNECT authority, accepted

    static Stream<Arguments> acceptedConnectAuthorities() {
        return Stream.of(
                argumentSet("host and port", "registry.redhat.io:443", "registry.redhat.io", 443, null),
                argumentSet("upper case is folded to lower case", "REGISTRY.RedHat.IO:443", "registry.redhat.io", 443, null),
                argumentSet("one trailing dot is stripped", "registry.redhat.io.:443", "registry.redhat.io", 443, null),
                argumentSet("non-default port is kept", "registry.redhat.io:8443", "registry.redhat.io", 8443, null),
                argumentSet("lowest port 1", "registry.redhat.io:1", "registry.redhat.io", 1, null),
                argumentSet("highest port 65535", "registry.redhat.io:65535", "registry.redhat.io", 65535, null),
                argumentSet("punycode xn-- label is accepted as written", "xn--bcher-kva.example:443", "xn--bcher-kva.example", 443, null),
                argumentSet("upper-case punycode is folded", "XN--BCHER-KVA.Example:443", "xn--bcher-kva.example", 443, null),
                argumentSet("hyphen inside a label", "cdn-01.quay.io:443", "cdn-01.quay.io", 443, null),
                argumentSet("underscore in a label", "my_service.internal.example:443", "my_service.internal.example", 443, null),
                argumentSet("numeric label that is not the last one", "123.example.com:443", "123.example.com", 443, null),
                argumentSet("single-label name", "localhost:8080", "localhost", 8080, null),
                argumentSet("label of exactly 63 characters", LABEL_63 + ".example:443", LABEL_63 + ".example", 443, null),
                argumentSet("host of exactly 253 characters", HOST_253 + ":443", HOST_253, 443, null),
                argumentSet("canonical dotted quad", "203.0.113.7:443", "203.0.113.7", 443, "203.0.113.7"),
                argumentSet("canonical dotted quad with zero octets", "10.0.0.1:8080", "10.0.0.1", 8080, "10.0.0.1"),
                argumentSet("dotted quad with one trailing dot", "127.0.0.1.:443", "127.0.0.1", 443, "127.0.0.1"),
                argumentSet("bracketed IPv6", "[2001:db8::1]:443", "2001:db8::1", 443, "2001:db8::1"),
                argumentSet("bracketed IPv6 in upper-case hex", "[2001:DB8::A]:443", "2001:db8::a", 443, "2001:db8::a"),
                argumentSet("bracketed IPv6 written in full is compressed", "[2001:0DB8:0:0:0:0:0:0001]:443", "2001:db8::1", 443,
                        "2001:db8::1"),
                argumentSet("bracketed IPv6 loopback", "[::1]:8443", "::1", 8443, "::1"),
                argumentSet("bracketed IPv6 loopback written in full", "[0:0:0:0:0:0:0:1]:8443", "::1", 8443, "::1"),
                argumentSet("IPv4-mapped IPv6 in dotted form becomes IPv4", "[::ffff:127.0.0.1]:443", "127.0.0.1", 443, "127.0.0.1"),
                argumentSet("IPv4-mapped IPv6 in hex form becomes IPv4", "[::ffff:7f00:1]:443", "127.0.0.1", 443, "127.0.0.1"),
                argumentSet("IPv4-mapped IPv6 written in full becomes IPv4", "[0:0:0:0:0:ffff:a00:1]:443", "10.0.0.1", 443, "10.0.0.1"));
    }

    @ParameterizedTest(name = "CONNECT, accepted: {argumentSetName}")
    @MethodSource("acceptedConnectAuthorities")
    void acceptsConnectAuthority(String authority, String host, int port, String ipLiteral) throws Exception {
        Target target = AuthorityParser.parseConnectAuthority(authority);

        assertThat(target.host()).isEqualTo(host);
        assertThat(target.port()).isEqualTo(port);
        if (ipLiteral == null) {
            assertThat(target.isIpLiteral()).isFalse();
        } else {
            assertThat(target.ipLiteral()).isEqualTo(InetAddress.getByName(ipLiteral));
        }
    }

    @Test
    void foldsIpv4MappedIpv6ToAnIpv4Target() throws Exception {
        Target target = AuthorityParser.parseConnectAuthority("[::ffff:127.0.0.1]:443");

        assertThat(target.ipLiteral()).isInstanceOf(Inet4Address.class);
        assertThat(target.authority()).isEqualTo("127.0.0.1:443");
    }

    @Test
    void keepsBracketsAroundIpv6InTheNormalisedAuthority() throws Exception {
        Target target = AuthorityParser.parseConnectAuthority("[2001:DB8::1]:443");

        assertThat(target.ipLiteral()).isInstanceOf(Inet6Address.class);
        assertThat(target.hostForAuthority()).isEqualTo("[2001:db8::1]");
        assertThat(target.authority()).isEqualTo("[2001:db8::1]:443");
    }

    @Test
    void parseAuthorityUsesTheDefaultPortOnlyWhenNoneIsGiven() throws Exception {
        assertThat(AuthorityParser.parseAuthority("registry.redhat.io", 80).port()).isEqualTo(80);
        assertThat(AuthorityParser.parseAuthority("registry.redhat.io:8080", 80).port()).isEqualTo(8080);
        assertThat(AuthorityParser.parseAuthority("[::1]", 443).port()).isEqualTo(443);
    }

    // ---------------------------------------------------------------- CONNECT authority, refused

    static Stream<Arguments> refusedConnectAuthorities() {
        return Stream.of(
                argumentSet("userinfo before an evil host", "registry.redhat.io@evil.example:443", "user information ('@')"),
                argumentSet("userinfo with a password", "user:secret@evil.example:443", "user information ('@')"),
                argumentSet("missing port", "registry.redhat.io", "needs a port"),
                argumentSet("missing port after bracketed IPv6", "[2001:db8::1]", "needs a port"),
                argumentSet("port 0", "registry.redhat.io:0", "port out of range (1-65535)"),
                argumentSet("port 65536", "registry.redhat.io:65536", "port out of range (1-65535)"),
                argumentSet("port with six digits", "registry.redhat.io:100443", "port out of range (1-65535)"),
                argumentSet("non-numeric port", "registry.redhat.io:https", "port is not a decimal number"),
                argumentSet("port with a plus sign", "registry.redhat.io:+443", "port is not a decimal number"),
                argumentSet("negative port", "registry.redhat.io:-1", "port is not a decimal number"),
                argumentSet("empty port", "registry.redhat.io:", "empty port"),
                argumentSet("empty host", ":443", "empty host"),
                argumentSet("host that is only a dot", ".:443", "empty host"),
                argumentSet("empty destination", "", "empty destination"),
                argumentSet("percent-encoded dot in host", "registry%2eredhat.io:443", "percent-encoding is not allowed"),
                argumentSet("percent-encoded evil host", "%65vil.example:443", "percent-encoding is not allowed"),
                argumentSet("percent-encoded port", "registry.redhat.io:%34%34%33", "percent-encoding is not allowed"),
                argumentSet("IPv6 zone id", "[fe80::1%25eth0]:443", "percent-encoding is not allowed"),
                argumentSet("backslash in host", "registry.redhat.io\\evil.example:443", "backslash is not allowed"),
                argumentSet("space before the port", "registry.redhat.io :443", "whitespace or control character"),
                argumentSet("tab in host", "registry\t.redhat.io:443", "whitespace or control character"),
                argumentSet("CR LF header injection", "registry.redhat.io:443\r\nX-Evil: 1", "whitespace or control character"),
                argumentSet("NUL byte truncation", "registry.redhat.io\u0000.evil.example:443", "whitespace or control character"),
                // DEL is caught by the "> 0x7e" test first, so it is reported as non-ASCII; either way it is refused.
                argumentSet("DEL character", "registry.redhat.io\u007f:443", "control character in the destination"),
                argumentSet("Cyrillic look-alike e (U+0435)", "r\u0435gistry.redhat.io:443", "non-ASCII characters"),
                argumentSet("ideographic full stop as a dot", "registry\u3002redhat.io:443", "non-ASCII characters"),
                argumentSet("IPv4 as one decimal number", "2130706433:443", "IPv4 address in a non-standard form"),
                argumentSet("IPv4 with an octal octet", "0177.0.0.1:443", "IPv4 address in a non-standard form"),
                argumentSet("IPv4 with hex parts", "0x7f.1:443", "IPv4 address in a non-standard form"),
                argumentSet("IPv4 as one hex number", "0x7f000001:443", "IPv4 address in a non-standard form"),
                argumentSet("IPv4 with a hex last octet", "127.0.0.0x1:443", "IPv4 address in a non-standard form"),
                argumentSet("shortened IPv4", "127.1:443", "IPv4 address in a non-standard form"),
                argumentSet("IPv4 with leading zeros", "127.000.000.001:443", "IPv4 address in a non-standard form"),
                argumentSet("IPv4 with one padded octet", "10.0.0.01:443", "IPv4 address in a non-standard form"),
                argumentSet("IPv4 octet above 255", "256.0.0.1:443", "IPv4 address in a non-standard form"),
                argumentSet("IPv4 with five parts", "1.2.3.4.5:443", "IPv4 address in a non-standard form"),
                argumentSet("name whose last label is numeric", "evil.example.123:443", "IPv4 address in a non-standard form"),
                argumentSet("unbracketed IPv6 loopback", "::1:443", "IPv6 addresses must be written in brackets"),
                argumentSet("unbracketed IPv6 address", "2001:db8::1:443", "IPv6 addresses must be written in brackets"),
                argumentSet("unterminated bracket", "[::1:443", "unterminated '['"),
                argumentSet("port glued to the bracket", "[::1]443", "unexpected characters after ']'"),
                argumentSet("empty brackets", "[]:443", "malformed IPv6 literal"),
                argumentSet("host name in brackets", "[registry.redhat.io]:443", "malformed IPv6 literal"),
                argumentSet("IPv4 in brackets", "[127.0.0.1]:443", "malformed IPv6 literal"),
                argumentSet("IPv6 with two '::'", "[1::2::3]:443", "malformed IPv6 literal"),
                argumentSet("IPv4-mapped with shortened IPv4", "[::ffff:127.1]:443", "IPv4 address in a non-standard form"),
                argumentSet("double dot", "registry..redhat.io:443", "empty label"),
                argumentSet("two trailing dots", "registry.redhat.io..:443", "empty label"),
                argumentSet("leading dot", ".registry.redhat.io:443", "empty label"),
                argumentSet("label of 64 characters", LABEL_64 + ".example:443", "label longer than 63 characters"),
                argumentSet("host of 254 characters", HOST_253 + "b:443", "longer than 253 characters"),
                argumentSet("label starting with '-'", "-registry.redhat.io:443", "starts or ends with '-'"),
                argumentSet("label ending with '-'", "registry-.redhat.io:443", "starts or ends with '-'"),
                argumentSet("wildcard", "*.quay.io:443", "character '*' is not allowed"),
                argumentSet("path after the host", "registry.redhat.io/v2:443", "character '/' is not allowed"));
    }

    @ParameterizedTest(name = "CONNECT, refused: {argumentSetName}")
    @MethodSource("refusedConnectAuthorities")
    void refusesConnectAuthority(String authority, String messageFragment) {
        MalformedTargetException e = refusal(() -> AuthorityParser.parseConnectAuthority(authority));

        assertThat(e.getMessage()).contains(messageFragment);
        assertMessageDoesNotEchoInput(e.getMessage(), authority);
    }
    @Test
    void refusesLeadingZerosInIpv4EmbeddedInIpv6() {
        MalformedTargetException e = refusal(() -> AuthorityParser.parseConnectAuthority("[::ffff:0177.0.0.1]:443"));

        assertThat(e.getMessage()).containsAnyOf("malformed IPv6 literal", "non-standard form");
    }

    // ---------------------------------------------------------------- absolute-form URI, accepted

    static Stream<Arguments> acceptedAbsoluteUris() {
        return Stream.of(
                argumentSet("path is kept and the port defaults to 80", "http://registry.redhat.io/v2/", "registry.redhat.io", 80, "/v2/"),
                argumentSet("no path becomes '/'", "http://registry.redhat.io", "registry.redhat.io", 80, "/"),
                argumentSet("explicit port, path and query are kept", "http://registry.redhat.io:8080/v2/_catalog?n=10",
                        "registry.redhat.io", 8080, "/v2/_catalog?n=10"),
                argumentSet("query without a path gets a leading '/'", "http://registry.redhat.io?x=1", "registry.redhat.io", 80, "/?x=1"),
                argumentSet("scheme and host are case-folded, path case is kept", "HTTP://Registry.RedHat.IO./V2/Path",
                        "registry.redhat.io", 80, "/V2/Path"),
                argumentSet("fragment is dropped", "http://registry.redhat.io/p?q=1#frag", "registry.redhat.io", 80, "/p?q=1"),
                argumentSet("fragment without a path is dropped", "http://registry.redhat.io#top", "registry.redhat.io", 80, "/"),
                argumentSet("'@' hidden in the fragment does not change the host", "http://registry.redhat.io#@evil.example/",
                        "registry.redhat.io", 80, "/"),
                argumentSet("'@' in the query does not change the host", "http://registry.redhat.io?@evil.example/",
                        "registry.redhat.io", 80, "/?@evil.example/"),
                argumentSet("percent-encoding in the path is kept as data", "http://registry.redhat.io/a%20b/%2e%2e/c",
                        "registry.redhat.io", 80, "/a%20b/%2e%2e/c"),
                argumentSet("backslash in the path is kept as data", "http://registry.redhat.io/a\\b", "registry.redhat.io", 80, "/a\\b"),
                argumentSet("canonical dotted quad with port", "http://203.0.113.7:8080/x", "203.0.113.7", 8080, "/x"),
                argumentSet("bracketed IPv6", "http://[2001:db8::1]/x", "2001:db8::1", 80, "/x"),
                argumentSet("IPv4-mapped IPv6 becomes IPv4", "http://[::ffff:127.0.0.1]:8080/", "127.0.0.1", 8080, "/"));
    }

    @ParameterizedTest(name = "URL, accepted: {argumentSetName}")
    @MethodSource("acceptedAbsoluteUris")
    void acceptsAbsoluteUri(String uri, String host, int port, String pathAndQuery) throws Exception {
        AuthorityParser.AbsoluteUri parsed = AuthorityParser.parseAbsoluteUri(uri);

        assertThat(parsed.target().host()).isEqualTo(host);
        assertThat(parsed.target().port()).isEqualTo(port);
        assertThat(parsed.pathAndQuery()).isEqualTo(pathAndQuery);
    }

    // ---------------------------------------------------------------- absolute-form URI, refused

    static Stream<Arguments> refusedAbsoluteUris() {
        return Stream.of(
                argumentSet("https URL (must use CONNECT)", "https://registry.redhat.io/v2/", "tunnelled with CONNECT"),
                argumentSet("upper-case HTTPS URL", "HTTPS://registry.redhat.io/v2/", "tunnelled with CONNECT"),
                argumentSet("ftp scheme", "ftp://registry.redhat.io/pub/", "only http:// URLs"),
                argumentSet("ws scheme", "ws://registry.redhat.io/socket", "only http:// URLs"),
                argumentSet("file scheme", "file:///etc/passwd", "only http:// URLs"),
                argumentSet("scheme-relative URL", "//registry.redhat.io/v2/", "only http:// URLs"),
                argumentSet("origin-form path", "/v2/", "only http:// URLs"),
                argumentSet("one slash after the scheme", "http:/registry.redhat.io/v2/", "only http:// URLs"),
                argumentSet("backslash before '@' in the host", "http://registry.redhat.io\\@evil.example/",
                        "backslash is not allowed in the URL's host"),
                argumentSet("userinfo before an evil host", "http://registry.redhat.io@evil.example/", "user information ('@')"),
                argumentSet("userinfo with a password", "http://user:secret@registry.redhat.io/", "user information ('@')"),
                argumentSet("percent-encoded host", "http://registry%2eredhat.io/", "percent-encoding is not allowed"),
                argumentSet("empty authority", "http:///v2/", "empty destination"),
                argumentSet("empty host with a port", "http://:8080/", "empty host"),
                argumentSet("port 0", "http://registry.redhat.io:0/", "port out of range (1-65535)"),
                argumentSet("port 65536", "http://registry.redhat.io:65536/", "port out of range (1-65535)"),
                argumentSet("non-numeric port", "http://registry.redhat.io:http/", "port is not a decimal number"),
                argumentSet("empty port", "http://registry.redhat.io:/", "empty port"),
                argumentSet("space in the path", "http://registry.redhat.io/a b", "whitespace or control character in the URL"),
                argumentSet("CR LF in the path", "http://registry.redhat.io/\r\nHost: evil.example", "whitespace or control character"),
                argumentSet("Cyrillic look-alike in the host", "http://r\u0435gistry.redhat.io/", "non-ASCII characters in the URL"),
                argumentSet("non-ASCII in the path", "http://registry.redhat.io/caf\u00e9", "non-ASCII characters in the URL"),
                argumentSet("IPv4 as one decimal number", "http://2130706433/", "IPv4 address in a non-standard form"),
                argumentSet("IPv4 with hex parts", "http://0x7f.1/", "IPv4 address in a non-standard form"),
                argumentSet("unbracketed IPv6", "http://::1/", "IPv6 addresses must be written in brackets"),
                argumentSet("unterminated IPv6 bracket", "http://[::1/", "unterminated '['"),
                argumentSet("double dot in the host", "http://registry..redhat.io/", "empty label"));
    }

    @ParameterizedTest(name = "URL, refused: {argumentSetName}")
    @MethodSource("refusedAbsoluteUris")
    void refusesAbsoluteUri(String uri, String messageFragment) {
        MalformedTargetException e = refusal(() -> AuthorityParser.parseAbsoluteUri(uri));

        assertThat(e.getMessage()).contains(messageFragment);
        assertMessageDoesNotEchoInput(e.getMessage(), uri);
    }

    // ---------------------------------------------------------------- parseHost

    static Stream<Arguments> acceptedHosts() {
        return Stream.of(
                argumentSet("name is normalised", "Registry.RedHat.IO.", "registry.redhat.io", false),
                argumentSet("dotted quad is an IP literal", "192.0.2.1", "192.0.2.1", true),
                argumentSet("bracketed IPv6 is an IP literal", "[2001:db8::1]", "2001:db8::1", true),
                argumentSet("bracketed IPv4-mapped IPv6 is IPv4", "[::ffff:10.0.0.1]", "10.0.0.1", true));
    }

    @ParameterizedTest(name = "parseHost, accepted: {argumentSetName}")
    @MethodSource("acceptedHosts")
    void parseHostNormalisesAndPairsWithPort(String raw, String host, boolean ipLiteral) throws Exception {
        Target target = AuthorityParser.parseHost(raw, 8443);

        assertThat(target.host()).isEqualTo(host);
        assertThat(target.port()).isEqualTo(8443);
        assertThat(target.isIpLiteral()).isEqualTo(ipLiteral);
    }

    static Stream<Arguments> refusedHosts() {
        return Stream.of(
                argumentSet("empty host", "", "empty host"),
                argumentSet("lone opening bracket", "[", "malformed IPv6 literal"),
                argumentSet("bracket never closed", "[::1", "malformed IPv6 literal"),
                argumentSet("shortened IPv4", "127.1", "IPv4 address in a non-standard form"),
                argumentSet("host with a colon", "evil.example:443", "character ':' is not allowed"));
    }

    @ParameterizedTest(name = "parseHost, refused: {argumentSetName}")
    @MethodSource("refusedHosts")
    void parseHostRefuses(String raw, String messageFragment) {
        MalformedTargetException e = refusal(() -> AuthorityParser.parseHost(raw, 443));

        assertThat(e.getMessage()).contains(messageFragment);
        assertMessageDoesNotEchoInput(e.getMessage(), raw);
    }

    // ---------------------------------------------------------------- normaliseHostName

    static Stream<Arguments> normalisedNames() {
        return Stream.of(
                argumentSet("lower case stays", "quay.io", "quay.io"),
                argumentSet("mixed case is folded", "Quay.IO", "quay.io"),
                argumentSet("one trailing dot is stripped", "quay.io.", "quay.io"),
                argumentSet("punycode is kept as written", "xn--bcher-kva.example", "xn--bcher-kva.example"),
                argumentSet("digits, hyphen and underscore", "cdn-01_a.quay.io", "cdn-01_a.quay.io"));
    }

    @ParameterizedTest(name = "normaliseHostName, accepted: {argumentSetName}")
    @MethodSource("normalisedNames")
    void normalisesHostName(String raw, String expected) throws Exception {
        assertThat(AuthorityParser.normaliseHostName(raw)).isEqualTo(expected);
    }

    static Stream<Arguments> refusedNames() {
        return Stream.of(
                argumentSet("empty name", "", "empty host"),
                argumentSet("only a dot", ".", "empty host"),
                argumentSet("two trailing dots", "quay.io..", "empty label"),
                argumentSet("double dot", "quay..io", "empty label"),
                argumentSet("label of 64 characters", LABEL_64 + ".io", "label longer than 63 characters"),
                argumentSet("label starting with '-'", "-quay.io", "starts or ends with '-'"),
                argumentSet("label ending with '-'", "quay-.io", "starts or ends with '-'"),
                argumentSet("space", "quay io", "whitespace or control character in the host"),
                argumentSet("percent-encoding", "quay%2eio", "percent-encoding is not allowed in the host"),
                argumentSet("backslash", "quay\\io", "backslash is not allowed in the host"),
                argumentSet("Cyrillic look-alike", "r\u0435gistry.redhat.io", "non-ASCII characters in the host"),
                argumentSet("wildcard", "*.quay.io", "character '*' is not allowed"));
    }

    @ParameterizedTest(name = "normaliseHostName, refused: {argumentSetName}")
    @MethodSource("refusedNames")
    void normaliseHostNameRefuses(String raw, String messageFragment) {
        MalformedTargetException e = refusal(() -> AuthorityParser.normaliseHostName(raw));

        assertThat(e.getMessage()).contains(messageFragment);
        assertMessageDoesNotEchoInput(e.getMessage(), raw);
    }

    // ---------------------------------------------------------------- helpers

    private static MalformedTargetException refusal(ThrowingSupplier<?> parse) {
        MalformedTargetException e = catchThrowableOfType(MalformedTargetException.class, parse::get);
        assertThat(e).as("expected the input to be refused").isNotNull();
        return e;
    }

    /**
     * The message goes back to the client in a status line and a header, so it must describe the
     * problem without repeating what the client sent.
     */
    private static void assertMessageDoesNotEchoInput(String message, String input) {
        assertThat(message).isNotBlank().doesNotContainIgnoringCase("evil").doesNotContain("redhat");
        assertThat(message.chars()).allMatch(c -> c >= 0x20 && c <= 0x7e);
        if (input.length() > 3) {
            assertThat(message).doesNotContain(input);
        }
    }
}
