package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestDnsServer;
import dev.egressproxy.testing.TestProxy;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * A corpus of hostile and malformed requests, each sent over a real socket to the running proxy
 * with the exact status it must get back, and each checked to have opened no upstream connection:
 * every allowed destination here leads to one sentinel server that counts its connections.
 * Covers ways around the allowlist (userinfo, encodings, look-alike letters, odd IP forms), DNS
 * answers that point inside the network, and request smuggling (Content-Length and
 * Transfer-Encoding games, line folding, bare line ends).
 */
class HostileRequestsIT {

    static TcpServer sentinel;
    static TestDnsServer dns;
    static TestProxy proxy;

    @BeforeAll
    static void start() throws Exception {
        sentinel = TcpServer.echo();
        dns = new TestDnsServer()
                .add("metadata.test", "169.254.169.254")
                .add("internal.test", "10.0.0.5")
                .add("loopback.test", "127.0.0.1")
                .add("cgnat.test", "100.64.0.1")
                .add("zero.test", "0.0.0.0")
                .add("ula.test", "fd00::1")
                .add("nat64.test", "64:ff9b::a9fe:a9fe")
                .add("sixtofour.test", "2002:a00:1::1")
                .add("linklocal6.test", "fe80::1");
        proxy = TestProxy.start("""
                allowlist.hosts = ["registry.redhat.io", "metadata.test", "internal.test", "loopback.test",
                                   "cgnat.test", "zero.test", "ula.test", "nat64.test", "sixtofour.test",
                                   "linklocal6.test"]
                destinations.connect-to {
                  "registry.redhat.io:443" = "127.0.0.1:%d"
                  "registry.redhat.io:80" = "127.0.0.1:%d"
                }
                dns { servers = ["%s"], query-timeout = 2s }
                """.formatted(sentinel.port(), sentinel.port(), dns.address()));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        dns.close();
        sentinel.close();
    }

    static String connect(String authority) {
        return "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n";
    }

    static String get(String uri) {
        return "GET " + uri + " HTTP/1.1\r\nHost: registry.redhat.io\r\n\r\n";
    }

    static String post(String headers, String body) {
        return "POST http://registry.redhat.io/v2/ HTTP/1.1\r\nHost: registry.redhat.io\r\n" + headers + "\r\n" + body;
    }

    static Arguments c(String name, String request, int status) {
        return Arguments.of(name, request, status);
    }

    static Stream<Arguments> corpus() {
        List<Arguments> all = new ArrayList<>();
        // Ways around the allowlist through the CONNECT authority.
        all.add(c("userinfo before an evil host", connect("registry.redhat.io@evil.example:443"), 400));
        all.add(c("credentials in the authority", connect("user:pass@registry.redhat.io:443"), 400));
        all.add(c("allowed name as a prefix of an evil domain", connect("registry.redhat.io.evil.example:443"), 403));
        all.add(c("allowed name as a suffix label", connect("evilregistry.redhat.io:443"), 403));
        all.add(c("subdomain of an exact entry", connect("a.registry.redhat.io:443"), 403));
        all.add(c("missing port", connect("registry.redhat.io"), 400));
        all.add(c("port zero", connect("registry.redhat.io:0"), 400));
        all.add(c("port above 65535", connect("registry.redhat.io:65536"), 400));
        all.add(c("port far out of range", connect("registry.redhat.io:4294967739"), 400));
        all.add(c("port with letters", connect("registry.redhat.io:443a"), 400));
        all.add(c("port with a sign", connect("registry.redhat.io:+443"), 400));
        all.add(c("empty port", connect("registry.redhat.io:"), 400));
        all.add(c("empty host", connect(":443"), 400));
        all.add(c("percent-encoded dot", connect("registry%2eredhat.io:443"), 400));
        all.add(c("percent-encoded letter", connect("%72egistry.redhat.io:443"), 400));
        all.add(c("backslash and at sign", connect("registry.redhat.io\\@evil.example:443"), 400));
        all.add(c("control character in host", connect("registry.redhat.io\u0001:443"), 400));
        all.add(c("tab in host", connect("registry\t.redhat.io:443"), 400));
        all.add(c("cyrillic e look-alike", connect("r\u0435gistry.redhat.io:443"), 400));
        all.add(c("latin-1 letter", connect("b\u00fccher.example:443"), 400));
        all.add(c("punycode is taken as written and refused", connect("xn--rgistry-8xf.redhat.io:443"), 403));
        all.add(c("decimal IPv4", connect("2130706433:443"), 400));
        all.add(c("octal IPv4", connect("0177.0.0.1:443"), 400));
        all.add(c("hex IPv4 with a short form", connect("0x7f.1:443"), 400));
        all.add(c("hex IPv4 as one number", connect("0x7f000001:443"), 400));
        all.add(c("shortened IPv4", connect("127.1:443"), 400));
        all.add(c("IPv4 with leading zeros", connect("127.000.000.001:443"), 400));
        all.add(c("IPv4 with an octet over 255", connect("256.1.1.1:443"), 400));
        all.add(c("unbracketed IPv6", connect("::1:443"), 400));
        all.add(c("IPv6 without a port", connect("[::1]"), 400));
        all.add(c("IPv6 with a zone id", connect("[fe80::1%25eth0]:443"), 400));
        all.add(c("IPv4 in brackets", connect("[127.0.0.1]:443"), 400));
        all.add(c("IPv6 loopback literal", connect("[::1]:443"), 403));
        all.add(c("IPv4-mapped loopback", connect("[::ffff:127.0.0.1]:443"), 403));
        all.add(c("IPv4-mapped loopback in hex", connect("[::ffff:7f00:1]:443"), 403));
        all.add(c("unspecified IPv6", connect("[::]:443"), 403));
        all.add(c("loopback literal", connect("127.0.0.1:443"), 403));
        all.add(c("metadata literal", connect("169.254.169.254:80"), 403));
        all.add(c("this-network literal", connect("0.0.0.0:443"), 403));
        all.add(c("localhost by name", connect("localhost:443"), 403));
        all.add(c("double dot", connect("registry..redhat.io:443"), 400));
        all.add(c("two trailing dots", connect("registry.redhat.io..:443"), 400));
        all.add(c("leading dot", connect(".registry.redhat.io:443"), 400));
        all.add(c("label ending in a hyphen", connect("registry-.redhat.io:443"), 400));
        all.add(c("label longer than 63", connect("a".repeat(64) + ".redhat.io:443"), 400));
        all.add(c("wildcard as a host", connect("*.redhat.io:443"), 400));
        all.add(c("URL as a CONNECT target", connect("http://registry.redhat.io:443"), 400));
        all.add(c("path after the port", connect("registry.redhat.io:443/x"), 400));
        all.add(c("allowed host on another port", connect("registry.redhat.io:8443"), 403));
        all.add(c("allowed host, port 80 via CONNECT", connect("registry.redhat.io:80"), 403));
        all.add(c("space inside the authority", "CONNECT registry.redhat.io :443 HTTP/1.1\r\n\r\n", 400));
        // Allowed names whose DNS answer points inside the network (rebinding, stale or hostile records).
        all.add(c("allowed name resolving to the metadata address", connect("metadata.test:443"), 403));
        all.add(c("allowed name resolving to 10/8", connect("internal.test:443"), 403));
        all.add(c("allowed name resolving to loopback", connect("loopback.test:443"), 403));
        all.add(c("allowed name resolving to CGNAT", connect("cgnat.test:443"), 403));
        all.add(c("allowed name resolving to 0.0.0.0", connect("zero.test:443"), 403));
        all.add(c("allowed name resolving to IPv6 unique-local", connect("ula.test:443"), 403));
        all.add(c("allowed name resolving to NAT64 of the metadata address", connect("nat64.test:443"), 403));
        all.add(c("allowed name resolving to 6to4 of 10/8", connect("sixtofour.test:443"), 403));
        all.add(c("allowed name resolving to IPv6 link-local", connect("linklocal6.test:443"), 403));
        // Absolute-form and origin-form requests.
        all.add(c("origin-form with an allowed Host header", "GET /v2/ HTTP/1.1\r\nHost: registry.redhat.io\r\n\r\n", 400));
        all.add(c("asterisk form", "OPTIONS * HTTP/1.1\r\nHost: registry.redhat.io\r\n\r\n", 400));
        all.add(c("protocol-relative target", get("//registry.redhat.io/v2/"), 400));
        all.add(c("userinfo in a URL", get("http://registry.redhat.io@evil.example/"), 400));
        all.add(c("backslash trick in a URL", get("http://registry.redhat.io\\@evil.example/"), 400));
        all.add(c("evil authority with an allowed Host header", get("http://evil.example/v2/"), 403));
        all.add(c("query with an at sign", get("http://evil.example?@registry.redhat.io/"), 403));
        all.add(c("https URL sent as plain HTTP", get("https://registry.redhat.io/v2/"), 400));
        all.add(c("ftp URL", get("ftp://registry.redhat.io/"), 400));
        all.add(c("empty host in a URL", get("http:///v2/"), 400));
        all.add(c("port out of range in a URL", get("http://registry.redhat.io:99999/"), 400));
        all.add(c("port zero in a URL", get("http://registry.redhat.io:0/"), 400));
        all.add(c("percent-encoded host in a URL", get("http://%72egistry.redhat.io/"), 400));
        all.add(c("semicolon in a URL host", get("http://registry.redhat.io;.evil.example/"), 400));
        all.add(c("loopback URL", get("http://127.0.0.1/"), 403));
        all.add(c("IPv6 loopback URL", get("http://[::1]/"), 403));
        all.add(c("decimal IPv4 URL", get("http://2130706433/"), 400));
        all.add(c("plain HTTP to port 443", get("http://registry.redhat.io:443/"), 403));
        all.add(c("upper-case evil URL", get("HTTP://REGISTRY.REDHAT.IO.EVIL.EXAMPLE/"), 403));
        all.add(c("control character in the method", "G\u0001T http://registry.redhat.io/ HTTP/1.1\r\n\r\n", 400));
        // Request smuggling: framing that a server behind the proxy might read differently.
        all.add(c("Content-Length with chunked", post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400));
        all.add(c("Content-Length with upper-case CHUNKED", post("Content-Length: 5\r\nTransfer-Encoding: CHUNKED\r\n", "0\r\n\r\n"), 400));
        all.add(c("chunked before Content-Length zero", post("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", "0\r\n\r\n"), 400));
        all.add(c("two different Content-Lengths", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400));
        all.add(c("two equal Content-Lengths", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), 400));
        all.add(c("Content-Length list", post("Content-Length: 5, 5\r\n", "hello"), 400));
        all.add(c("Content-Length with a plus", post("Content-Length: +5\r\n", "hello"), 400));
        all.add(c("negative Content-Length", post("Content-Length: -1\r\n", ""), 400));
        all.add(c("Content-Length in exponent form", post("Content-Length: 1e3\r\n", ""), 400));
        all.add(c("gzip then chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 400));
        all.add(c("chunked then gzip", post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"), 400));
        all.add(c("identity transfer coding", post("Transfer-Encoding: identity\r\n", ""), 400));
        all.add(c("misspelt chunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), 400));
        all.add(c("Transfer-Encoding twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400));
        all.add(c("space before the colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), 400));
        all.add(c("Transfer-Encoding folded onto the next line", post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"), 400));
        all.add(c("obsolete line folding", get("http://registry.redhat.io/").replace("\r\n\r\n", "\r\nX-A: a\r\n b\r\n\r\n"), 400));
        all.add(c("folding in a pipelined second request", post("Content-Length: 5\r\n", "hello")
                + "GET http://registry.redhat.io/ HTTP/1.1\r\nHost: registry.redhat.io\r\nX-A: a\r\n\tb\r\n\r\n", 400));
        all.add(c("folding after a long request line", "GET http://registry.redhat.io/" + "a".repeat(30_000)
                + " HTTP/1.1\r\nHost: registry.redhat.io\r\nX-Pad: " + "b".repeat(20_000) + "\r\nX-A: a\r\n b\r\n\r\n", 400));
        all.add(c("bare LF line ends", "GET http://registry.redhat.io/ HTTP/1.1\nHost: registry.redhat.io\n\n", 400));
        all.add(c("bare CR in a header value", get("http://registry.redhat.io/").replace("\r\n\r\n", "\r\nX-A: a\rb\r\n\r\n"), 400));
        all.add(c("NUL in a header value", get("http://registry.redhat.io/").replace("\r\n\r\n", "\r\nX-A: a\u0000b\r\n\r\n"), 400));
        all.add(c("space inside a header name", get("http://registry.redhat.io/").replace("\r\n\r\n", "\r\nX A: b\r\n\r\n"), 400));
        all.add(c("two Host headers", "GET http://registry.redhat.io/ HTTP/1.1\r\nHost: registry.redhat.io\r\nHost: evil.example\r\n\r\n", 400));
        all.add(c("chunked body in an HTTP/1.0 request", post("Transfer-Encoding: chunked\r\n", "0\r\n\r\n")
                .replace("HTTP/1.1", "HTTP/1.0"), 400));
        all.add(c("HTTP/9.9 CONNECT", "CONNECT registry.redhat.io:443 HTTP/9.9\r\nHost: registry.redhat.io:443\r\n\r\n", 505));
        all.add(c("HTTP/2.0 request line", "GET http://registry.redhat.io/ HTTP/2.0\r\nHost: registry.redhat.io\r\n\r\n", 505));
        all.add(c("another protocol name", "GET http://registry.redhat.io/ FOO/1.1\r\nHost: registry.redhat.io\r\n\r\n", 400));
        all.add(c("WebSocket upgrade on plain HTTP", get("http://registry.redhat.io/").replace("\r\n\r\n",
                "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), 400));
        all.add(c("CONNECT with a Content-Length body", "CONNECT registry.redhat.io:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400));
        all.add(c("CONNECT with a chunked body", "CONNECT registry.redhat.io:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400));
        all.add(c("oversized header", connect("registry.redhat.io:443").replace("\r\n\r\n", "\r\nX-Big: " + "a".repeat(40_000) + "\r\n\r\n"), 431));
        all.add(c("oversized URI", get("http://registry.redhat.io/" + "a".repeat(40_000)), 414));
        return all.stream();
    }

    /**
     * The sentinel's connection count once every connection made so far has been accepted: the
     * kernel completes a handshake before the server's accept loop sees it, so a bare read of the
     * counter could lag. A probe connection of our own is accepted after all earlier ones (the
     * accept queue is first in, first out); the count is read when the probe is in, less the probe.
     */
    private static int settledConnections() throws Exception {
        try (java.net.Socket probe = new java.net.Socket("127.0.0.1", sentinel.port())) {
            int port = probe.getLocalPort();
            org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(10)).pollDelay(java.time.Duration.ZERO)
                    .pollInterval(java.time.Duration.ofMillis(2))
                    .until(() -> sentinel.hasAcceptedFrom(port));
            return sentinel.connections.get() - 1;
        }
    }

    @ParameterizedTest(name = "{0} -> {2}")
    @MethodSource("corpus")
    void hostileRequestIsAnsweredAndOpensNoUpstreamConnection(String name, String request, int status) throws Exception {
        int before = settledConnections();
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(request.getBytes(StandardCharsets.UTF_8));
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).as(head.statusLine()).isEqualTo(status);
            assertThat(head.header("x-egress-proxy-reason")).isNotBlank();
            assertClosed(raw);
        }
        // The probe of the first settle counts as one connection.
        assertThat(settledConnections()).as("upstream connections opened").isEqualTo(before + 1);
    }

    /** The proxy closes the connection after its answer (the body, if any, is short). */
    private static void assertClosed(RawClient raw) throws IOException {
        byte[] rest = raw.readToEnd();
        assertThat(rest.length).isLessThan(1024);
    }

    @Test
    void controlAllowedRequestsDoReachTheSentinel() throws Exception {
        int before = settledConnections();
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(connect("registry.redhat.io:443"));
            assertThat(raw.readHead().status()).isEqualTo(200);
        }
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(connect("REGISTRY.redhat.IO.:443"));
            assertThat(raw.readHead().status()).isEqualTo(200);
        }
        assertThat(settledConnections()).isEqualTo(before + 1 + 2);
    }
}
