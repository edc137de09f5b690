package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.params.provider.Arguments.argumentSet;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.policy.AddressText;
import dev.egressproxy.policy.Allowlist;
import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.policy.AuthorityParser;
import dev.egressproxy.policy.Decision;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.Target;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TestProxy;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The entry a refusal tells the client to ask for must be one the operator can paste: for each
 * refused destination of the table, the hint in the proxy's real 403 answer is loaded from a config
 * file by the real loader, where it must be the whole allowlist, keep its text as the rule name,
 * allow the refused destination and not its neighbours; and {@code --check-config} of the jar
 * accepts all the hints together and lists each as written.
 */
class RefusalHintIT {

    private static final Pattern HINT = Pattern.compile("ask the proxy operator to add \"([^\"]+)\" to egress-proxy\\.allowlist\\.hosts\\.");

    @TempDir
    static Path dir;
    static TestProxy proxy;

    @BeforeAll
    static void start() throws Exception {
        // A few entries so that some refusals are port_not_allowed rather than not listed at all.
        proxy = TestProxy.start("""
                allowlist.hosts = ["registry.example.com", "192.0.2.0/24:8443", "[2001:db8:1::]/48:8443"]
                """);
    }

    @AfterAll
    static void stop() {
        proxy.close();
    }

    static Stream<Arguments> refusals() {
        return Stream.of(
                argumentSet("IPv4, CONNECT default port", "CONNECT 203.0.113.9:443", "203.0.113.9/32", "ip_literal_not_allowed"),
                argumentSet("IPv4, CONNECT other port", "CONNECT 203.0.113.9:8443", "203.0.113.9/32:8443", "ip_literal_not_allowed"),
                argumentSet("IPv4, HTTP default port", "GET http://198.51.100.7/", "198.51.100.7/32", "ip_literal_not_allowed"),
                argumentSet("IPv4, HTTP other port", "GET http://198.51.100.7:8080/x", "198.51.100.7/32:8080",
                        "ip_literal_not_allowed"),
                argumentSet("IPv4 on a port its block does not allow", "CONNECT 192.0.2.1:443", "192.0.2.1/32", "port_not_allowed"),
                argumentSet("IPv6 loopback, other port (the issue's case)", "CONNECT [::1]:41443", "[::1]/128:41443",
                        "ip_literal_not_allowed"),
                argumentSet("IPv6 loopback written in full, default port", "CONNECT [0:0:0:0:0:0:0:1]:443", "::1/128",
                        "ip_literal_not_allowed"),
                argumentSet("IPv6 global in upper case, default port", "CONNECT [2001:DB8::1]:443", "2001:db8::1/128",
                        "ip_literal_not_allowed"),
                argumentSet("IPv6 global written in full, other port", "CONNECT [2606:4700:0:0:0:0:0:1111]:8443",
                        "[2606:4700::1111]/128:8443", "ip_literal_not_allowed"),
                argumentSet("IPv6 global, HTTP default port", "GET http://[2606:4700::1111]/", "2606:4700::1111/128",
                        "ip_literal_not_allowed"),
                argumentSet("IPv6 global, HTTP other port", "GET http://[2606:4700::1111]:8080/", "[2606:4700::1111]/128:8080",
                        "ip_literal_not_allowed"),
                argumentSet("IPv6 on a port its block does not allow", "CONNECT [2001:db8:1::5]:443", "2001:db8:1::5/128",
                        "port_not_allowed"),
                argumentSet("IPv4-mapped, judged as IPv4, default port", "CONNECT [::ffff:198.51.100.9]:443", "198.51.100.9/32",
                        "ip_literal_not_allowed"),
                argumentSet("IPv4-mapped in hex, other port", "CONNECT [::ffff:cb00:710a]:8443", "203.0.113.10/32:8443",
                        "ip_literal_not_allowed"),
                argumentSet("name, CONNECT other port", "CONNECT mirror.example.com:5000", "mirror.example.com:5000",
                        "host_not_allowlisted"),
                argumentSet("name in capitals with a trailing dot, default port", "CONNECT Mirror.Example.COM.:443",
                        "mirror.example.com", "host_not_allowlisted"),
                argumentSet("name, HTTP other port", "GET http://mirror.example.com:8080/v2/", "mirror.example.com:8080",
                        "host_not_allowlisted"),
                argumentSet("allowlisted name on another port", "CONNECT registry.example.com:8443", "registry.example.com:8443",
                        "port_not_allowed"),
                argumentSet("allowlisted name, HTTP to 443", "GET http://registry.example.com:443/", "registry.example.com:443",
                        "port_not_allowed"));
    }

    /** Sends the request and returns the entry the 403 answer asks for. */
    private static String hintFor(String request, String reason) throws Exception {
        String authority = request.startsWith("CONNECT ") ? request.substring(8) : "x";
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(request + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
            RawClient.Head head = raw.readHead();
            String body = new String(raw.readToEnd(), StandardCharsets.US_ASCII);
            assertThat(head.status()).as(head.statusLine()).isEqualTo(403);
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo(reason);
            assertThat(head.statusLine() + body).doesNotContain("0:0:0");
            Matcher m = HINT.matcher(body);
            assertThat(m.find()).as(body).isTrue();
            return m.group(1);
        }
    }

    private static Kind kind(String request) {
        return request.startsWith("CONNECT ") ? Kind.CONNECT : Kind.HTTP;
    }

    private static Target target(String request) throws Exception {
        String destination = request.substring(request.indexOf(' ') + 1);
        return request.startsWith("CONNECT ") ? AuthorityParser.parseConnectAuthority(destination)
                : AuthorityParser.parseAbsoluteUri(destination).target();
    }

    private static Path configFile(String name, List<String> hosts) throws Exception {
        StringBuilder list = new StringBuilder();
        for (String h : hosts) {
            list.append(list.length() == 0 ? "" : ", ").append('"').append(h).append('"');
        }
        Path file = dir.resolve(name);
        Files.writeString(file, "egress-proxy {\n  allowlist {\n    presets = []\n    hosts = [" + list + "]\n  }\n}\n");
        return file;
    }

    /** The same destination one address further on (an IP literal) or in a subdomain (a name). */
    private static Target neighbour(Target t) throws Exception {
        if (!t.isIpLiteral()) {
            return new Target("other." + t.host(), t.port(), null);
        }
        byte[] b = t.ipLiteral().getAddress();
        b[b.length - 1] ^= 1;
        return new Target(AddressText.of(b), t.port(), InetAddress.getByAddress(b));
    }

    @ParameterizedTest(name = "{argumentSetName}")
    @MethodSource("refusals")
    void hintIsAnEntryTheConfigLoaderAcceptsAndThatAllowsTheRefusedDestination(String request, String expectedHint,
            String reason) throws Exception {
        String hint = hintFor(request, reason);
        assertThat(hint).isEqualTo(expectedHint);

        ProxyConfig config = ConfigLoader.load(configFile("hint.conf", List.of(hint)), Map.of());

        List<AllowlistEntry> entries = config.allowlist().entries();
        assertThat(entries).extracting(AllowlistEntry::text).containsExactly(hint);
        Allowlist allowlist = new Allowlist(entries);
        Target target = target(request);
        Kind kind = kind(request);
        Decision allowed = allowlist.decide(target, kind);
        assertThat(allowed.allowed()).as("%s after adding %s", target, hint).isTrue();
        assertThat(allowed.rule()).isEqualTo(hint);
        Target otherPort = new Target(target.host(), target.port() + 1, target.ipLiteral());
        assertThat(allowlist.decide(otherPort, kind).allowed()).as("%s after adding %s", otherPort, hint).isFalse();
        Target next = neighbour(target);
        assertThat(allowlist.decide(next, kind).allowed()).as("%s after adding %s", next, hint).isFalse();
    }

    @Test
    void checkConfigAcceptsEveryHintAsWrittenAndListsIt() throws Exception {
        List<String> hints = new ArrayList<>();
        for (Arguments row : refusals().toList()) {
            Object[] args = row.get();
            hints.add(hintFor((String) args[0], (String) args[2]));
        }
        Path file = configFile("all-hints.conf", hints);

        Processes.Result r = Processes.run(List.of(JarIT.java(), "-jar", JarIT.jar(), "--check-config", file.toString()),
                null, 60);

        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(r.output()).contains("allowlist (" + hints.size() + " entries):");
        for (String hint : hints) {
            assertThat(r.output()).contains("\n  " + hint + "\n");
        }
    }
}
