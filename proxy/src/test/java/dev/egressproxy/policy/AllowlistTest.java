package dev.egressproxy.policy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatIllegalArgumentException;
import static org.junit.jupiter.params.provider.Arguments.argumentSet;

import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Table-driven tests for {@link AllowlistEntry#parse} (what an operator may write, and the help a
 * mistake gets) and {@link Allowlist#decide} (stage one of the policy). Targets are built through
 * {@link AuthorityParser}, so the comparison sees the same normalisation as production requests.
 */
class AllowlistTest {

    // ---------------------------------------------------------------- AllowlistEntry.parse, valid

    static Stream<Arguments> validHostEntries() {
        return Stream.of(
                argumentSet("exact host", "registry.redhat.io", "registry.redhat.io", false, AllowlistEntry.ANY_DEFAULT_PORT,
                        "registry.redhat.io"),
                argumentSet("exact host is normalised", "  Registry.RedHat.IO.  ", "registry.redhat.io", false,
                        AllowlistEntry.ANY_DEFAULT_PORT, "registry.redhat.io"),
                argumentSet("exact host with port", "registry.redhat.io:8443", "registry.redhat.io", false, 8443,
                        "registry.redhat.io:8443"),
                argumentSet("wildcard", "*.quay.io", "quay.io", true, AllowlistEntry.ANY_DEFAULT_PORT, "*.quay.io"),
                argumentSet("wildcard is normalised", "*.Quay.IO", "quay.io", true, AllowlistEntry.ANY_DEFAULT_PORT, "*.quay.io"),
                argumentSet("wildcard with port", "*.quay.io:443", "quay.io", true, 443, "*.quay.io:443"),
                argumentSet("punycode host", "xn--bcher-kva.example", "xn--bcher-kva.example", false,
                        AllowlistEntry.ANY_DEFAULT_PORT, "xn--bcher-kva.example"));
    }

    @ParameterizedTest(name = "entry, valid: {argumentSetName}")
    @MethodSource("validHostEntries")
    void parsesHostEntry(String raw, String name, boolean wildcard, int port, String text) {
        AllowlistEntry entry = AllowlistEntry.parse(raw);

        assertThat(entry).isInstanceOf(AllowlistEntry.Host.class);
        AllowlistEntry.Host host = (AllowlistEntry.Host) entry;
        assertThat(host.name()).isEqualTo(name);
        assertThat(host.wildcard()).isEqualTo(wildcard);
        assertThat(host.port()).isEqualTo(port);
        assertThat(host.text()).isEqualTo(text);
    }

    static Stream<Arguments> validCidrEntries() {
        return Stream.of(
                argumentSet("IPv4 CIDR", "10.0.0.0/8", "10.0.0.0/8", AllowlistEntry.ANY_DEFAULT_PORT),
                argumentSet("IPv4 single host", "192.0.2.7/32", "192.0.2.7/32", AllowlistEntry.ANY_DEFAULT_PORT),
                argumentSet("IPv4 CIDR with port", "10.0.0.0/8:8443", "10.0.0.0/8:8443", 8443),
                argumentSet("IPv6 CIDR", "2001:db8::/32", "2001:db8::/32", AllowlistEntry.ANY_DEFAULT_PORT),
                argumentSet("IPv6 CIDR written in full is compressed", "2001:0DB8:0:0:0:0:0:0/32", "2001:db8::/32",
                        AllowlistEntry.ANY_DEFAULT_PORT),
                argumentSet("IPv6 single host", "2001:db8::1/128", "2001:db8::1/128", AllowlistEntry.ANY_DEFAULT_PORT),
                argumentSet("IPv6 loopback", "::1/128", "::1/128", AllowlistEntry.ANY_DEFAULT_PORT),
                argumentSet("bracketed IPv6 CIDR without port", "[2001:db8::]/32", "2001:db8::/32",
                        AllowlistEntry.ANY_DEFAULT_PORT),
                argumentSet("IPv6 CIDR with port gets brackets", "2001:db8::/32:443", "[2001:db8::]/32:443", 443),
                argumentSet("bracketed IPv6 CIDR with port", "[2001:db8::]/32:443", "[2001:db8::]/32:443", 443),
                argumentSet("bracketed IPv6 loopback with port", "[::1]/128:41443", "[::1]/128:41443", 41443));
    }

    @ParameterizedTest(name = "entry, valid: {argumentSetName}")
    @MethodSource("validCidrEntries")
    void parsesCidrEntry(String raw, String text, int port) {
        AllowlistEntry entry = AllowlistEntry.parse(raw);

        assertThat(entry).isInstanceOf(AllowlistEntry.Cidr.class);
        assertThat(entry.text()).isEqualTo(text);
        assertThat(entry.port()).isEqualTo(port);
    }

    // ---------------------------------------------------------------- AllowlistEntry.parse, invalid

    static Stream<Arguments> invalidEntries() {
        return Stream.of(
                argumentSet("wildcard without a dot suggests '*.'", "*example.com",
                        "'*example.com' is not a valid pattern; use '*.example.com'"),
                argumentSet("wildcard in the middle", "foo.*.com",
                        "'foo.*.com' is not a valid pattern; a wildcard may only be a leading '*.'"),
                argumentSet("wildcard at the end", "registry.*",
                        "'registry.*' is not a valid pattern; a wildcard may only be a leading '*.'"),
                argumentSet("two leading wildcards", "*.*.example.com",
                        "'*.*.example.com' is not a valid pattern; a wildcard may only be a leading '*.'"),
                argumentSet("bare '*' (open proxy)", "*",
                        "'*' would allow every host and make an open proxy; list the hosts instead"),
                argumentSet("bare '*' with a port", "*:443",
                        "'*:443' would allow every host and make an open proxy; list the hosts instead"),
                argumentSet("top-level-domain wildcard", "*.com",
                        "'*.com' would allow a whole top-level domain; name a longer suffix such as '*.example.com'"),
                argumentSet("URL suggests the host", "https://registry.redhat.io/v2",
                        "'https://registry.redhat.io/v2' looks like a URL; write the host only, e.g. 'registry.redhat.io'"),
                argumentSet("URL without a path suggests the host", "http://cdn.quay.io",
                        "'http://cdn.quay.io' looks like a URL; write the host only, e.g. 'cdn.quay.io'"),
                argumentSet("bare IPv4 address suggests /32", "10.0.0.1",
                        "'10.0.0.1' is an IP address; write it as a CIDR entry such as '10.0.0.1/32'"),
                argumentSet("bare IPv4 address with port suggests /32 with the port", "10.0.0.1:8443",
                        "'10.0.0.1:8443' is an IP address; write it as a CIDR entry such as '10.0.0.1/32:8443'"),
                argumentSet("bare IPv6 address", "2001:db8::1",
                        "'2001:db8::1': IPv6 addresses are allowed with a CIDR entry such as '2001:db8::1/128'"),
                argumentSet("bare IPv6 address written in full suggests the compressed one", "2001:DB8:0:0:0:0:0:7",
                        "'2001:DB8:0:0:0:0:0:7': IPv6 addresses are allowed with a CIDR entry such as '2001:db8::7/128'"),
                argumentSet("bracketed IPv6 address with port suggests the bracketed block with the port", "[::1]:41443",
                        "'[::1]:41443': IPv6 addresses are allowed with a CIDR entry such as '[::1]/128:41443'"),
                argumentSet("bracketed IPv4-mapped address with port suggests the IPv4 block", "[::ffff:10.0.0.1]:8443",
                        "'[::ffff:10.0.0.1]:8443': IPv6 addresses are allowed with a CIDR entry such as '10.0.0.1/32:8443'"),
                argumentSet("something with colons that is no address gets the example", "a:b:c",
                        "'a:b:c': IPv6 addresses are allowed with a CIDR entry such as '2001:db8::1/128'"),
                argumentSet("IPv6 single-host block with host bits beyond a short prefix", "0:0:0:0:0:0:0:1/32:41443",
                        "'0:0:0:0:0:0:0:1/32' has host bits set; did you mean '::/32'?"),
                argumentSet("CIDR with host bits suggests the network", "10.0.0.1/8",
                        "'10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'?"),
                argumentSet("CIDR prefix too long", "10.0.0.0/33", "'10.0.0.0/33' has a prefix length outside 0-32"),
                argumentSet("CIDR prefix not a number", "10.0.0.0/eight",
                        "'10.0.0.0/eight' has a prefix length that is not a number"),
                argumentSet("CIDR of a host name", "registry.redhat.io/32",
                        "'registry.redhat.io/32' is not an IP address or CIDR block"),
                argumentSet("port that is not a number", "registry.redhat.io:https",
                        "'registry.redhat.io:https' has a port that is not a number"),
                argumentSet("empty port", "registry.redhat.io:", "'registry.redhat.io:' has a port that is not a number"),
                argumentSet("port 0", "registry.redhat.io:0", "'registry.redhat.io:0' has a port outside 1-65535"),
                argumentSet("port 70000", "registry.redhat.io:70000", "'registry.redhat.io:70000' has a port outside 1-65535"),
                argumentSet("CIDR with a bad port", "10.0.0.0/8:99999", "'10.0.0.0/8:99999' has a port outside 1-65535"),
                argumentSet("empty entry", "   ", "empty entry"),
                argumentSet("wildcard with nothing after it", "*.", "'*.' is not a valid host: empty host"),
                argumentSet("double dot", "registry..redhat.io",
                        "'registry..redhat.io' is not a valid host: empty label in host name"),
                argumentSet("non-ASCII look-alike", "r\u0435gistry.redhat.io",
                        "is not a valid host: non-ASCII characters in the host"));
    }

    @ParameterizedTest(name = "entry, rejected: {argumentSetName}")
    @MethodSource("invalidEntries")
    void rejectsInvalidEntryWithHelpfulMessage(String raw, String message) {
        assertThatIllegalArgumentException().isThrownBy(() -> AllowlistEntry.parse(raw)).withMessageContaining(message);
    }

    @Test
    void rejectsGlobWithMiddleWildcard() {
        assertThatIllegalArgumentException().isThrownBy(() -> AllowlistEntry.parse("cdn.*.quay.io"))
                .withMessage("'cdn.*.quay.io' is not a valid pattern; a wildcard may only be a leading '*.'");
    }
    @Test
    void suggestsAValidPatternForADoubledWildcard() {
        assertThatIllegalArgumentException().isThrownBy(() -> AllowlistEntry.parse("**.example.com"))
                .withMessage("'**.example.com' is not a valid pattern; use '*.example.com'");
    }

    // ---------------------------------------------------------------- Allowlist.decide

    private static final Allowlist REGISTRY = allowlist(
            "registry.redhat.io",
            "registry.access.redhat.com:8443",
            "*.quay.io",
            "*.mirror.example:8080",
            "10.0.0.0/8",
            "192.0.2.0/24:8443",
            "2001:db8::/32");

    static Stream<Arguments> decisions() {
        return Stream.of(
                // exact names and default ports
                argumentSet("exact host on CONNECT default port 443", "registry.redhat.io:443", Kind.CONNECT,
                        Reason.HOST_ALLOWLISTED, "registry.redhat.io"),
                argumentSet("exact host on HTTP default port 80", "http://registry.redhat.io/v2/", Kind.HTTP,
                        Reason.HOST_ALLOWLISTED, "registry.redhat.io"),
                argumentSet("exact host after case folding and trailing dot", "REGISTRY.RedHat.IO.:443", Kind.CONNECT,
                        Reason.HOST_ALLOWLISTED, "registry.redhat.io"),
                argumentSet("exact host on CONNECT to port 80", "registry.redhat.io:80", Kind.CONNECT,
                        Reason.PORT_NOT_ALLOWED, "-"),
                argumentSet("exact host on HTTP to port 443", "http://registry.redhat.io:443/", Kind.HTTP,
                        Reason.PORT_NOT_ALLOWED, "-"),
                argumentSet("exact host on CONNECT to port 8443", "registry.redhat.io:8443", Kind.CONNECT,
                        Reason.PORT_NOT_ALLOWED, "-"),
                // explicit port
                argumentSet("entry with port on that port (CONNECT)", "registry.access.redhat.com:8443", Kind.CONNECT,
                        Reason.HOST_ALLOWLISTED, "registry.access.redhat.com:8443"),
                argumentSet("entry with port on that port (HTTP)", "http://registry.access.redhat.com:8443/", Kind.HTTP,
                        Reason.HOST_ALLOWLISTED, "registry.access.redhat.com:8443"),
                argumentSet("entry with port on the default port", "registry.access.redhat.com:443", Kind.CONNECT,
                        Reason.PORT_NOT_ALLOWED, "-"),
                // wildcards
                argumentSet("wildcard matches one label below", "cdn01.quay.io:443", Kind.CONNECT,
                        Reason.HOST_ALLOWLISTED, "*.quay.io"),
                argumentSet("wildcard matches two labels below", "a.b.quay.io:443", Kind.CONNECT,
                        Reason.HOST_ALLOWLISTED, "*.quay.io"),
                argumentSet("wildcard after normalisation", "CDN01.Quay.IO.:443", Kind.CONNECT,
                        Reason.HOST_ALLOWLISTED, "*.quay.io"),
                argumentSet("wildcard does not match its own suffix", "quay.io:443", Kind.CONNECT,
                        Reason.HOST_NOT_ALLOWLISTED, "-"),
                argumentSet("wildcard does not match a name ending in the suffix", "evilquay.io:443", Kind.CONNECT,
                        Reason.HOST_NOT_ALLOWLISTED, "-"),
                argumentSet("wildcard does not match the suffix used as a prefix", "quay.io.evil.example:443", Kind.CONNECT,
                        Reason.HOST_NOT_ALLOWLISTED, "-"),
                argumentSet("wildcard on a port it does not allow", "cdn01.quay.io:8443", Kind.CONNECT,
                        Reason.PORT_NOT_ALLOWED, "-"),
                argumentSet("wildcard with port on that port", "a.mirror.example:8080", Kind.CONNECT,
                        Reason.HOST_ALLOWLISTED, "*.mirror.example:8080"),
                argumentSet("wildcard with port on the default port", "http://a.mirror.example/", Kind.HTTP,
                        Reason.PORT_NOT_ALLOWED, "-"),
                // names that only look allowed
                argumentSet("allowed name used as a prefix", "registry.redhat.io.evil.example:443", Kind.CONNECT,
                        Reason.HOST_NOT_ALLOWLISTED, "-"),
                argumentSet("subdomain of an exact entry", "x.registry.redhat.io:443", Kind.CONNECT,
                        Reason.HOST_NOT_ALLOWLISTED, "-"),
                argumentSet("parent of an exact entry", "redhat.io:443", Kind.CONNECT,
                        Reason.HOST_NOT_ALLOWLISTED, "-"),
                argumentSet("unlisted host", "evil.example:443", Kind.CONNECT,
                        Reason.HOST_NOT_ALLOWLISTED, "-"),
                // IP literals
                argumentSet("IPv4 literal inside a CIDR", "10.1.2.3:443", Kind.CONNECT,
                        Reason.CIDR_ALLOWLISTED, "10.0.0.0/8"),
                argumentSet("IPv4 literal inside a CIDR on HTTP", "http://10.1.2.3/", Kind.HTTP,
                        Reason.CIDR_ALLOWLISTED, "10.0.0.0/8"),
                argumentSet("IPv4-mapped IPv6 literal inside an IPv4 CIDR", "[::ffff:10.1.2.3]:443", Kind.CONNECT,
                        Reason.CIDR_ALLOWLISTED, "10.0.0.0/8"),
                argumentSet("IPv4 literal inside a CIDR on a port it does not allow", "10.1.2.3:22", Kind.CONNECT,
                        Reason.PORT_NOT_ALLOWED, "-"),
                argumentSet("IPv4 literal inside a CIDR with port", "192.0.2.9:8443", Kind.CONNECT,
                        Reason.CIDR_ALLOWLISTED, "192.0.2.0/24:8443"),
                argumentSet("IPv4 literal inside a CIDR with port, on the default port", "192.0.2.9:443", Kind.CONNECT,
                        Reason.PORT_NOT_ALLOWED, "-"),
                argumentSet("IPv4 literal outside every CIDR", "203.0.113.7:443", Kind.CONNECT,
                        Reason.IP_LITERAL_NOT_ALLOWED, "-"),
                argumentSet("IPv6 literal inside an IPv6 CIDR", "[2001:db8::5]:443", Kind.CONNECT,
                        Reason.CIDR_ALLOWLISTED, "2001:db8::/32"),
                argumentSet("IPv6 literal outside every CIDR", "[2606:4700::1111]:443", Kind.CONNECT,
                        Reason.IP_LITERAL_NOT_ALLOWED, "-"));
    }

    @ParameterizedTest(name = "decide: {argumentSetName}")
    @MethodSource("decisions")
    void decidesByHostPortAndKind(String destination, Kind kind, Reason reason, String rule) throws Exception {
        Decision decision = REGISTRY.decide(target(destination), kind);

        assertThat(decision.reason()).isEqualTo(reason);
        assertThat(decision.allowed()).isEqualTo(reason == Reason.HOST_ALLOWLISTED || reason == Reason.CIDR_ALLOWLISTED);
        assertThat(decision.verdict()).isEqualTo(decision.allowed() ? Verdict.ALLOW : Verdict.DENY);
        assertThat(decision.rule()).isEqualTo(rule);
    }

    @Test
    void ipLiteralIsRefusedWhenOnlyItsNameWouldBeAllowlisted() throws Exception {
        // A host entry never covers an IP literal, however the address was written.
        Allowlist list = allowlist("registry.redhat.io");

        assertThat(list.decide(target("23.1.2.3:443"), Kind.CONNECT).reason()).isEqualTo(Reason.IP_LITERAL_NOT_ALLOWED);
        assertThat(list.decide(target("[::ffff:23.1.2.3]:443"), Kind.CONNECT).reason())
                .isEqualTo(Reason.IP_LITERAL_NOT_ALLOWED);
    }

    @Test
    void namesMatchesAnEntryWithoutAPortOnEveryPort() throws Exception {
        // How upstream-proxy.hosts and bypass read entries: routing, not admission.
        Allowlist list = allowlist("*.internal.example", "git.example.com:8443", "10.0.0.0/8");

        assertThat(list.names(target("git.internal.example:8443"))).isTrue();
        assertThat(list.names(target("git.internal.example:80"))).isTrue();
        assertThat(list.names(target("internal.example:443"))).isFalse();
        assertThat(list.names(target("git.example.com:8443"))).isTrue();
        assertThat(list.names(target("git.example.com:443"))).isFalse();
        assertThat(list.names(target("10.1.2.3:5000"))).isTrue();
        assertThat(list.names(target("11.1.2.3:5000"))).isFalse();
    }

    @Test
    void ruleIsTheTextOfTheEntryThatMatched() throws Exception {
        Allowlist list = allowlist("registry.redhat.io", "registry.redhat.io:8443", "*.quay.io:8443");

        assertThat(list.decide(target("registry.redhat.io:443"), Kind.CONNECT).rule()).isEqualTo("registry.redhat.io");
        assertThat(list.decide(target("registry.redhat.io:8443"), Kind.CONNECT).rule()).isEqualTo("registry.redhat.io:8443");
        assertThat(list.decide(target("cdn.quay.io:8443"), Kind.CONNECT).rule()).isEqualTo("*.quay.io:8443");
    }

    @Test
    void exactEntryWinsOverWildcardForTheSameHost() throws Exception {
        Allowlist list = allowlist("*.quay.io", "cdn.quay.io");

        assertThat(list.decide(target("cdn.quay.io:443"), Kind.CONNECT).rule()).isEqualTo("cdn.quay.io");
    }

    @Test
    void emptyAllowlistRefusesEverything() throws Exception {
        Allowlist list = new Allowlist(List.of());

        assertThat(list.decide(target("registry.redhat.io:443"), Kind.CONNECT))
                .isEqualTo(Decision.deny(Reason.HOST_NOT_ALLOWLISTED));
        assertThat(list.decide(target("10.0.0.1:443"), Kind.CONNECT)).isEqualTo(Decision.deny(Reason.IP_LITERAL_NOT_ALLOWED));
    }

    @Test
    void exactHostsListsOnlyExactNames() {
        assertThat(REGISTRY.exactHosts()).containsExactlyInAnyOrder("registry.redhat.io", "registry.access.redhat.com");
    }

    // ---------------------------------------------------------------- PolicyEngine, report mode

    static Stream<Arguments> reportModeDecisions() {
        return Stream.of(
                argumentSet("allowlisted host stays allowed", "registry.redhat.io:443", Kind.CONNECT, Verdict.ALLOW,
                        Reason.HOST_ALLOWLISTED),
                argumentSet("unlisted host becomes a would-be denial", "evil.example:443", Kind.CONNECT,
                        Verdict.WOULD_DENY, Reason.HOST_NOT_ALLOWLISTED),
                argumentSet("port not allowed becomes a would-be denial", "registry.redhat.io:8443", Kind.CONNECT,
                        Verdict.WOULD_DENY, Reason.PORT_NOT_ALLOWED),
                argumentSet("HTTP to a CONNECT-only port becomes a would-be denial", "http://registry.redhat.io:443/",
                        Kind.HTTP, Verdict.WOULD_DENY, Reason.PORT_NOT_ALLOWED),
                argumentSet("unlisted IP literal becomes a would-be denial (stage two still checks it)",
                        "203.0.113.7:443", Kind.CONNECT, Verdict.WOULD_DENY, Reason.IP_LITERAL_NOT_ALLOWED),
                argumentSet("loopback IP literal: stage one reports it, stage two refuses it", "127.0.0.1:443",
                        Kind.CONNECT, Verdict.WOULD_DENY, Reason.IP_LITERAL_NOT_ALLOWED));
    }

    @ParameterizedTest(name = "report mode: {argumentSetName}")
    @MethodSource("reportModeDecisions")
    void reportModeLetsThroughOnlyWhatAnEntryWouldFix(String destination, Kind kind, Verdict verdict, Reason reason)
            throws Exception {
        PolicyEngine report = new PolicyEngine(REGISTRY, new AddressPolicy(List.of()), AllowlistMode.REPORT);
        PolicyEngine enforce = new PolicyEngine(REGISTRY, new AddressPolicy(List.of()), AllowlistMode.ENFORCE);

        Decision reported = report.decide(target(destination), kind);
        Decision enforced = enforce.decide(target(destination), kind);

        assertThat(reported.verdict()).isEqualTo(verdict);
        assertThat(reported.reason()).isEqualTo(reason);
        assertThat(reported.refused()).isFalse();
        assertThat(enforced.reason()).isEqualTo(reason);
        assertThat(enforced.verdict()).isEqualTo(verdict == Verdict.ALLOW ? Verdict.ALLOW : Verdict.DENY);
    }

    @Test
    void reportModeKeepsTheAddressPolicy() throws Exception {
        PolicyEngine report = new PolicyEngine(REGISTRY, new AddressPolicy(List.of()), AllowlistMode.REPORT);

        assertThat(report.forbiddenAddress(java.net.InetAddress.getByName("127.0.0.1"))).contains("loopback");
        assertThat(report.forbiddenAddress(java.net.InetAddress.getByName("169.254.169.254"))).contains("link-local");
    }

    @Test
    void onlyAllowlistRefusalsAreReportable() {
        assertThat(Arrays.stream(Reason.values()).filter(Reason::reportable))
                .containsExactlyInAnyOrder(Reason.HOST_NOT_ALLOWLISTED, Reason.PORT_NOT_ALLOWED, Reason.IP_LITERAL_NOT_ALLOWED);
    }

    // ---------------------------------------------------------------- AllowlistEntry.covering

    static Stream<Arguments> coveringEntries() {
        return Stream.of(
                argumentSet("name on CONNECT default port", "cdn02.quay.io:443", Kind.CONNECT, "cdn02.quay.io"),
                argumentSet("name on another port", "mirror.example.com:5000", Kind.CONNECT, "mirror.example.com:5000"),
                argumentSet("name on HTTP default port", "http://mirror.example.com/v2/", Kind.HTTP, "mirror.example.com"),
                argumentSet("name on HTTP to 443", "http://mirror.example.com:443/", Kind.HTTP, "mirror.example.com:443"),
                argumentSet("IPv4 on the default port", "203.0.113.9:443", Kind.CONNECT, "203.0.113.9/32"),
                argumentSet("IPv4 on another port", "203.0.113.9:8443", Kind.CONNECT, "203.0.113.9/32:8443"),
                argumentSet("IPv4 on HTTP", "http://198.51.100.7:8080/", Kind.HTTP, "198.51.100.7/32:8080"),
                argumentSet("IPv6 loopback on another port", "[::1]:41443", Kind.CONNECT, "[::1]/128:41443"),
                argumentSet("IPv6 loopback on the default port", "[::1]:443", Kind.CONNECT, "::1/128"),
                argumentSet("IPv6 global written in full", "[2001:0DB8:0:0:0:0:0:1]:443", Kind.CONNECT, "2001:db8::1/128"),
                argumentSet("IPv6 global on another port", "[2606:4700::1111]:8443", Kind.CONNECT, "[2606:4700::1111]/128:8443"),
                argumentSet("IPv6 on HTTP", "http://[2606:4700::1111]/", Kind.HTTP, "2606:4700::1111/128"),
                argumentSet("IPv4-mapped is an IPv4 entry", "[::ffff:192.0.2.1]:443", Kind.CONNECT, "192.0.2.1/32"),
                argumentSet("IPv4-mapped in hex on another port", "[::ffff:c000:201]:8443", Kind.CONNECT, "192.0.2.1/32:8443"));
    }

    @ParameterizedTest(name = "covering: {argumentSetName}")
    @MethodSource("coveringEntries")
    void coveringEntryParsesToItselfAndAllowsTheTarget(String destination, Kind kind, String expected) throws Exception {
        Target target = target(destination);

        String entry = AllowlistEntry.covering(target, kind);

        assertThat(entry).isEqualTo(expected);
        assertThat(AllowlistEntry.parse(entry).text()).isEqualTo(entry);
        Decision decision = allowlist(entry).decide(target, kind);
        assertThat(decision.allowed()).isTrue();
        assertThat(decision.rule()).isEqualTo(entry);
    }

    // ---------------------------------------------------------------- helpers

    private static Allowlist allowlist(String... entries) {
        return new Allowlist(Arrays.stream(entries).map(AllowlistEntry::parse).toList());
    }

    /** An absolute http:// URL is parsed as a forward-proxy request, anything else as a CONNECT authority. */
    private static Target target(String destination) throws MalformedTargetException {
        return destination.startsWith("http://")
                ? AuthorityParser.parseAbsoluteUri(destination).target()
                : AuthorityParser.parseConnectAuthority(destination);
    }
}
