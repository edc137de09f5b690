package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.RawResponse;
import dev.egressproxy.testing.RecordingOrigin;
import dev.egressproxy.testing.RecordingOrigin.Reply;
import dev.egressproxy.testing.RecordingOrigin.Request;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Hostile and awkward plain-HTTP requests (issue 17), each checked by what the origin actually
 * received: request lines, Host, framing headers, body bytes, how many requests and how many
 * connections. A {@link RecordingOrigin} with its own strict parser stands behind {@code
 * origin.test}; a request the proxy lets through must reach it as exactly one request framed as
 * the proxy decided, and a request the proxy refuses must not open a connection to it at all.
 *
 * <p>The contract is the one after the issue 17 fixes: tokens in {@code Connection} (or {@code
 * Proxy-Connection}) never remove Content-Length, Transfer-Encoding or Host; Via lists are kept;
 * the Trailer header and trailer fields pass, forbidden trailer fields do not; Upgrade is refused
 * except h2c (stripped); unknown HTTP versions get 505; an HTTP/1.0 client never gets chunked;
 * pipelined requests, even followed by the client's FIN, are all answered; large response heads
 * pass up to {@code limits.max-response-head}.
 */
class ForwardingSmugglingIT {

    private static final Duration QUIET = Duration.ofSeconds(10);
    private static final String REASON = "X-Egress-Proxy-Reason";
    /** A whole request for a host outside the allowlist, sent as the body of an allowed one. */
    private static final String SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: not-allowlisted.example\r\n\r\n";
    private static final byte[] BIG = new byte[1024 * 1024];

    static RecordingOrigin origin;
    static TcpServer tunnel;
    static TestProxy proxy;

    @BeforeAll
    static void start() throws Exception {
        new Random(17).nextBytes(BIG);
        origin = new RecordingOrigin();
        tunnel = TcpServer.echo();
        proxy = TestProxy.start(config(""));
    }

    private static String config(String extra) {
        return """
                allowlist.hosts = ["origin.test", "tunnel.test"]
                destinations.connect-to {
                  "origin.test:80" = "127.0.0.1:%d"
                  "origin.test:443" = "127.0.0.1:%d"
                  "tunnel.test:443" = "127.0.0.1:%d"
                }
                """.formatted(origin.port(), origin.port(), tunnel.port()) + extra;
    }

    @AfterAll
    static void stop() throws Exception {
        if (proxy != null) {
            proxy.close();
        }
        origin.close();
        tunnel.close();
    }

    /** The origin's parser found nothing malformed in what the proxy sent, whatever the test checked. */
    @AfterEach
    void originSawOnlyWellFormedRequests() throws Exception {
        try {
            origin.awaitQuiet(QUIET);
            assertThat(origin.errors()).as("requests the origin could not parse").isEmpty();
            assertThat(tunnel.errors).as("tunnel echo server errors").isEmpty();
        } finally {
            origin.reset();
        }
    }

    // ---- helpers ----------------------------------------------------------------------------

    /** Sends {@code request} on a fresh connection and reads one response to {@code method}. */
    private static RawResponse exchange(String request, String method) throws IOException {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(request);
            return RawResponse.read(raw.in(), method);
        }
    }

    private static String chunked(String body) {
        // Two chunks, so that a proxy that forwards the decoded bytes unframed is caught.
        int half = body.length() / 2;
        return Integer.toHexString(half) + "\r\n" + body.substring(0, half) + "\r\n"
                + Integer.toHexString(body.length() - half) + "\r\n" + body.substring(half) + "\r\n0\r\n\r\n";
    }

    /** After the client is gone: the origin received exactly one request, on one connection. */
    private static Request onlyRequest() throws IOException {
        origin.awaitQuiet(QUIET);
        assertThat(origin.requests()).as("requests the origin received").hasSize(1);
        assertThat(origin.connections()).as("connections the origin accepted").hasSize(1);
        assertThat(origin.connections().get(0).leftover()).as("bytes after the request").isEmpty();
        return origin.requests().get(0);
    }

    /**
     * The request is complete and carries exactly one framing, which delimits exactly {@code body}:
     * Content-Length with its length, or chunked (any chunking) decoding to it. No framing at all is
     * accepted only for an empty body.
     */
    private static void assertFramedBody(Request r, byte[] body) {
        assertThat(r.complete()).as("request complete: " + r).isTrue();
        List<String> length = r.values("content-length");
        List<String> te = r.values("transfer-encoding");
        assertThat(length.isEmpty() || te.isEmpty()).as("only one framing: " + r).isTrue();
        if (r.chunked()) {
            assertThat(te).containsExactly("chunked");
        } else if (!length.isEmpty()) {
            assertThat(length).containsExactly(String.valueOf(body.length));
        } else {
            assertThat(body).as("a body but no framing: " + r).isEmpty();
        }
        assertThat(r.body()).as("body bytes of " + r).isEqualTo(body);
    }

    private static List<String> headerNames(Request r) {
        return r.headers().stream().map(f -> f.name().toLowerCase(Locale.ROOT)).toList();
    }

    /** The proxy closes the connection after its answer (a few bytes of body at most). */
    private static void assertClosedAfterAnswer(RawClient raw) throws IOException {
        assertThat(raw.readToEnd().length).as("bytes after the answer before the proxy closed").isLessThan(1024);
    }

    private static String sha256(byte[] data) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    // ---- 1. Connection-listed framing and routing headers ----------------------------------

    static Arguments smuggle(String connectionLines, boolean chunked, boolean namesXa) {
        return Arguments.of(connectionLines.replace("\r\n", " + ") + (chunked ? ", chunked body" : ", Content-Length body"),
                connectionLines, chunked, namesXa);
    }

    static Stream<Arguments> connectionListedFraming() {
        return Stream.of(
                smuggle("Connection: content-length", false, false),
                smuggle("Connection: Content-Length", false, false),
                smuggle("Connection: keep-alive, Content-Length", false, false),
                smuggle("Connection: ,,CONTENT-LENGTH , x-a", false, true),
                smuggle("Connection: keep-alive\r\nConnection: content-length", false, false),
                smuggle("Connection: close, content-length", false, false),
                smuggle("Proxy-Connection: content-length", false, false),
                smuggle("Proxy-Connection: keep-alive, Content-Length", false, false),
                smuggle("Connection: transfer-encoding", true, false),
                smuggle("Connection: Transfer-Encoding, x-a", true, true),
                smuggle("Connection: ,TRANSFER-ENCODING ,", true, false),
                smuggle("Proxy-Connection: transfer-encoding", true, false),
                smuggle("Connection: host", false, false),
                smuggle("Connection: HOST, content-length, transfer-encoding, x-a", false, true),
                smuggle("Connection: host, transfer-encoding", true, false),
                smuggle("Proxy-Connection: host", false, false));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource
    void connectionListedFraming(String name, String connectionLines, boolean chunked, boolean namesXa) throws Exception {
        String request = "POST http://origin.test/submit HTTP/1.1\r\nHost: origin.test\r\n" + connectionLines + "\r\n"
                + (namesXa ? "X-A: must-not-arrive\r\n" : "") + "X-Kept: stays\r\n"
                + (chunked ? "Transfer-Encoding: chunked\r\n\r\n" + chunked(SMUGGLED)
                        : "Content-Length: " + SMUGGLED.length() + "\r\n\r\n" + SMUGGLED);
        RawResponse res = exchange(request, "POST");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        assertThat(res.bodyText()).isEqualTo("request 1\n");

        Request r = onlyRequest();
        assertThat(r.requestLine()).isEqualTo("POST /submit HTTP/1.1");
        assertThat(r.values("host")).containsExactly("origin.test");
        assertFramedBody(r, SMUGGLED.getBytes(StandardCharsets.ISO_8859_1));
        assertThat(r.values("x-kept")).containsExactly("stays");
        assertThat(headerNames(r)).doesNotContain("connection", "proxy-connection", "x-a");
    }

    // ---- 2. Hop-by-hop headers, and names that differ only in case --------------------------

    static Stream<Arguments> hopByHop() {
        String one = "Connection: keep-alive, X-Hop-One, x-hop-two\r\n";
        String two = "Connection: X-HOP-ONE\r\nconnection: x-Hop-Two , keep-alive\r\n";
        return Stream.of(
                Arguments.of("names in one Connection line, Content-Length body", one, false),
                Arguments.of("names in one Connection line, chunked body", one, true),
                Arguments.of("names over two Connection lines in odd case, Content-Length body", two, false),
                Arguments.of("names over two Connection lines in odd case, chunked body", two, true));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource
    void hopByHop(String name, String connectionLines, boolean chunked) throws Exception {
        String request = "POST http://origin.test/hop HTTP/1.1\r\nHost: origin.test\r\n" + connectionLines
                + "X-Hop-One: 1\r\nX-Hop-Two: 2\r\nX-End-To-End: kept\r\nProxy-Connection: keep-alive\r\n"
                + "Keep-Alive: timeout=5, max=100\r\nTE: trailers\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n"
                + (chunked ? "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" : "Content-Length: 5\r\n\r\nhello");
        RawResponse res = exchange(request, "POST");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);

        Request r = onlyRequest();
        assertThat(r.requestLine()).isEqualTo("POST /hop HTTP/1.1");
        assertFramedBody(r, "hello".getBytes(StandardCharsets.ISO_8859_1));
        assertThat(headerNames(r)).doesNotContain("connection", "proxy-connection", "keep-alive", "te",
                "proxy-authorization", "x-hop-one", "x-hop-two");
        assertThat(r.values("x-end-to-end")).containsExactly("kept");
    }

    @Test
    void lowerCaseContentLengthFramesTheBody() throws Exception {
        RawResponse res = exchange("POST http://origin.test/lower HTTP/1.1\r\nhost: origin.test\r\ncontent-length: 5\r\n\r\nhello",
                "POST");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        Request r = onlyRequest();
        assertThat(r.requestLine()).isEqualTo("POST /lower HTTP/1.1");
        assertThat(r.values("host")).containsExactly("origin.test");
        assertFramedBody(r, "hello".getBytes(StandardCharsets.ISO_8859_1));
    }

    // ---- 3. Via ----------------------------------------------------------------------------

    static Stream<Arguments> via() {
        return Stream.of(
                Arguments.of("two Via lines", "Via: 1.1 a\r\nVia: 1.0 b\r\n"),
                Arguments.of("one Via line with two entries", "Via: 1.1 a, 1.0 b\r\n"));
    }

    @ParameterizedTest(name = "request with {0} keeps them in order, proxy last")
    @MethodSource("via")
    void requestViaKeepsEarlierHops(String name, String viaLines) throws Exception {
        RawResponse res = exchange("GET http://origin.test/via HTTP/1.1\r\nHost: origin.test\r\n" + viaLines + "\r\n", "GET");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        Request r = onlyRequest();
        assertThat(r.list("via")).containsExactly("1.1 a", "1.0 b", "1.1 egress-proxy");
    }

    @ParameterizedTest(name = "response with {0} keeps them in order, proxy last")
    @MethodSource("via")
    void responseViaKeepsEarlierHops(String name, String viaLines) throws Exception {
        String upstreamVia = viaLines.replace("1.1 a", "1.1 x").replace("1.0 b", "1.0 y");
        origin.responder(r -> Reply.raw("HTTP/1.1 200 OK\r\n" + upstreamVia + "Content-Length: 2\r\n\r\nok", false));
        RawResponse res = exchange("GET http://origin.test/via HTTP/1.1\r\nHost: origin.test\r\n\r\n", "GET");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        assertThat(res.list("via")).containsExactly("1.1 x", "1.0 y", "1.1 egress-proxy");
        assertThat(res.bodyText()).isEqualTo("ok");
        onlyRequest();
    }

    // ---- 4. Trailers and chunk extensions ------------------------------------------------------

    @Test
    void chunkedRequestKeepsItsTrailerHeaderAndTrailerField() throws Exception {
        RawResponse res = exchange("POST http://origin.test/trailers HTTP/1.1\r\nHost: origin.test\r\nTrailer: X-Checksum\r\n"
                + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n", "POST");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        Request r = onlyRequest();
        assertThat(r.chunked()).as("forwarded chunked: " + r).isTrue();
        assertFramedBody(r, "hello world".getBytes(StandardCharsets.ISO_8859_1));
        assertThat(r.values("trailer")).containsExactly("X-Checksum");
        assertThat(r.trailerValues("x-checksum")).containsExactly("abc");
    }

    static Stream<Arguments> forbiddenTrailerFields() {
        return Stream.of(
                Arguments.of("Content-Length", "Content-Length: 11"),
                Arguments.of("Transfer-Encoding", "Transfer-Encoding: chunked"),
                Arguments.of("Host", "Host: not-allowlisted.example"));
    }

    @ParameterizedTest(name = "{0} as a trailer field never reaches the origin as one")
    @MethodSource
    void forbiddenTrailerFields(String name, String field) throws Exception {
        RawResponse res = exchange("POST http://origin.test/trailers HTTP/1.1\r\nHost: origin.test\r\nTrailer: X-Checksum\r\n"
                + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n" + field
                + "\r\n\r\n", "POST");
        // Dropping the field and refusing the request are both acceptable.
        assertThat(res.status()).as(res.statusLine()).isIn(200, 400);
        origin.awaitQuiet(QUIET);
        assertThat(origin.requests()).as("requests the origin received").hasSizeLessThanOrEqualTo(1);
        for (Request r : origin.requests()) {
            assertThat(r.trailerValues(name)).as("trailer " + name + " of " + r).isEmpty();
            assertThat(r.values("host")).containsExactly("origin.test");
        }
        if (res.status() == 200) {
            Request r = onlyRequest();
            assertThat(r.requestLine()).isEqualTo("POST /trailers HTTP/1.1");
            assertFramedBody(r, "hello world".getBytes(StandardCharsets.ISO_8859_1));
        }
    }

    static Stream<Arguments> chunkExtensions() {
        return Stream.of(
                Arguments.of("5;ext=1\r\nhello\r\n0\r\n\r\n"),
                Arguments.of("5;name=\"quoted value\";flag\r\nhello\r\n0;last=1\r\n\r\n"));
    }

    @ParameterizedTest(name = "chunk extensions: {0}")
    @MethodSource
    void chunkExtensions(String body) throws Exception {
        RawResponse res = exchange("POST http://origin.test/ext HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                + body, "POST");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        Request r = onlyRequest();
        assertFramedBody(r, "hello".getBytes(StandardCharsets.ISO_8859_1));
    }

    // ---- 5, 6, 13. Refused requests open no upstream connection -----------------------------

    static Arguments refused(String name, String request, int status, String reason, String phraseContains) {
        return Arguments.of(name, request, status, reason, phraseContains);
    }

    static Stream<Arguments> refusedRequests() {
        String get = "GET http://origin.test/r HTTP/1.1\r\nHost: origin.test\r\n";
        return Stream.of(
                refused("Content-Length twice, names in different case",
                        "POST http://origin.test/r HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
                        400, null, null),
                refused("Transfer-Encoding twice, names in different case",
                        "POST http://origin.test/r HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n"
                                + "transfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400, null, null),
                refused("Host twice, names in different case", get + "host: not-allowlisted.example\r\n\r\n", 400, null, null),
                refused("WebSocket upgrade", get + "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 400, "upgrade_not_supported", "CONNECT"),
                refused("WebSocket upgrade, odd case and other tokens", get + "connection: keep-alive, UPGRADE\r\n"
                        + "upgrade: WebSocket\r\n\r\n", 400, "upgrade_not_supported", "CONNECT"),
                refused("CONNECT with HTTP/9.9", "CONNECT origin.test:443 HTTP/9.9\r\nHost: origin.test:443\r\n\r\n",
                        505, "unsupported_http_version", null),
                refused("GET with HTTP/9.9", "GET http://origin.test/ HTTP/9.9\r\nHost: origin.test\r\n\r\n",
                        505, "unsupported_http_version", null),
                refused("GET with HTTP/2.0", "GET http://origin.test/ HTTP/2.0\r\nHost: origin.test\r\n\r\n",
                        505, "unsupported_http_version", null),
                refused("POST with HTTP/2.0 and a body", "POST http://origin.test/ HTTP/2.0\r\nHost: origin.test\r\n"
                        + "Content-Length: " + SMUGGLED.length() + "\r\n\r\n" + SMUGGLED, 505, "unsupported_http_version", null),
                refused("host outside the allowlist", "GET http://not-allowlisted.example/ HTTP/1.1\r\n"
                        + "Host: origin.test\r\n\r\n", 403, null, null),
                refused("header block over the limit", get + "X-Big: " + "a".repeat(40_000) + "\r\n\r\n", 431, null, null));
    }

    @ParameterizedTest(name = "{0} -> {2}")
    @MethodSource
    void refusedRequests(String name, String request, int status, String reason, String phraseContains) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(request);
            RawResponse res = RawResponse.read(raw.in(), request.substring(0, request.indexOf(' ')));
            assertThat(res.status()).as(res.statusLine()).isEqualTo(status);
            assertThat(res.header(REASON)).as(REASON).isNotBlank();
            if (reason != null) {
                assertThat(res.header(REASON)).as(REASON).isEqualTo(reason);
            }
            if (phraseContains != null) {
                assertThat(res.reason()).contains(phraseContains);
            }
            assertClosedAfterAnswer(raw);
        }
        origin.awaitQuiet(QUIET);
        assertThat(origin.connections()).as("upstream connections").isEmpty();
        assertThat(origin.requests()).isEmpty();
    }

    // ---- 5. Upgrade: h2c is stripped, and a 101 from the origin is refused --------------------

    @Test
    void h2cUpgradeIsForwardedWithoutUpgradeHeaders() throws Exception {
        RawResponse res = exchange("GET http://origin.test/h2c HTTP/1.1\r\nHost: origin.test\r\n"
                + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", "GET");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        assertThat(res.bodyText()).isEqualTo("request 1\n");
        Request r = onlyRequest();
        assertThat(r.requestLine()).isEqualTo("GET /h2c HTTP/1.1");
        assertThat(headerNames(r)).doesNotContain("upgrade", "http2-settings", "connection");
        assertFramedBody(r, new byte[0]);
    }

    @Test
    void originThatSwitchesProtocolsGives502AndTheConnectionCloses() throws Exception {
        origin.responder(RecordingOrigin.switchingProtocols());
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("GET http://origin.test/switch HTTP/1.1\r\nHost: origin.test\r\n\r\n");
            RawResponse res = RawResponse.read(raw.in(), "GET");
            assertThat(res.status()).as(res.statusLine()).isEqualTo(502);
            assertThat(res.header(REASON)).isEqualTo("upstream_switched_protocols");
            assertClosedAfterAnswer(raw);
        }
        Request r = onlyRequest();
        assertThat(r.requestLine()).isEqualTo("GET /switch HTTP/1.1");
    }

    // ---- 6. Versions that work --------------------------------------------------------------

    @ParameterizedTest(name = "a {0} request is forwarded as HTTP/1.1")
    @ValueSource(strings = {"HTTP/1.0", "HTTP/1.1"})
    void supportedVersionsAreForwarded(String version) throws Exception {
        RawResponse res = exchange("GET http://origin.test/version " + version + "\r\nHost: origin.test\r\n\r\n", "GET");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        assertThat(res.bodyText()).isEqualTo("request 1\n");
        Request r = onlyRequest();
        assertThat(r.requestLine()).isEqualTo("GET /version HTTP/1.1");
        assertThat(r.values("host")).containsExactly("origin.test");
    }

    // ---- 7. An HTTP/1.0 client never gets chunked -------------------------------------------

    static Stream<Arguments> http10Client() {
        RecordingOrigin.Responder chunked = RecordingOrigin.chunked(BIG, 8192);
        RecordingOrigin.Responder close = RecordingOrigin.closeDelimited(BIG);
        RecordingOrigin.Responder length = r -> Reply.status("200 OK", BIG);
        return Stream.of(
                Arguments.of("chunked origin answer", chunked, false),
                Arguments.of("chunked origin answer, client asks keep-alive", chunked, true),
                Arguments.of("close-delimited origin answer", close, false),
                Arguments.of("close-delimited origin answer, client asks keep-alive", close, true),
                Arguments.of("Content-Length origin answer", length, false));
    }

    @ParameterizedTest(name = "HTTP/1.0 client, {0}: 1 MiB, never chunked")
    @MethodSource
    void http10Client(String name, RecordingOrigin.Responder responder, boolean keepAlive) throws Exception {
        origin.responder(responder);
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("GET http://origin.test/big HTTP/1.0\r\nHost: origin.test\r\n"
                    + (keepAlive ? "Connection: keep-alive\r\n" : "") + "\r\n");
            RawResponse res = RawResponse.read(raw.in(), "GET");
            assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
            assertThat(res.values("transfer-encoding")).as("Transfer-Encoding to an HTTP/1.0 client").isEmpty();
            assertThat(res.framing()).isIn(RawResponse.Framing.CONTENT_LENGTH, RawResponse.Framing.CLOSE);
            assertThat(res.body().length).isEqualTo(BIG.length);
            assertThat(sha256(res.body())).as("body bytes").isEqualTo(sha256(BIG));
            if (res.framing() == RawResponse.Framing.CONTENT_LENGTH && !keepAlive) {
                assertThat(raw.readToEnd()).as("bytes after the body before the proxy closed").isEmpty();
            }
        }
        assertThat(onlyRequest().requestLine()).isEqualTo("GET /big HTTP/1.1");
    }

    // ---- 8. Pipelining ----------------------------------------------------------------------

    private static String get(String path) {
        return "GET http://origin.test" + path + " HTTP/1.1\r\nHost: origin.test\r\n\r\n";
    }

    @ParameterizedTest(name = "three GETs in one write{0}")
    @ValueSource(strings = {"", ", then the client's FIN"})
    void pipelinedGetsAreAllAnsweredInOrder(String fin) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(get("/1") + get("/2") + get("/3"));
            if (!fin.isEmpty()) {
                raw.socket.shutdownOutput();
            }
            for (int i = 1; i <= 3; i++) {
                RawResponse res = RawResponse.read(raw.in(), "GET");
                assertThat(res.status()).as("response " + i + ": " + res.statusLine()).isEqualTo(200);
                assertThat(res.bodyText()).isEqualTo("request " + i + "\n");
            }
            if (!fin.isEmpty()) {
                assertThat(raw.readToEnd()).as("bytes after the third answer before the proxy closed").isEmpty();
            }
        }
        origin.awaitQuiet(QUIET);
        assertThat(origin.requests()).extracting(Request::requestLine)
                .containsExactly("GET /1 HTTP/1.1", "GET /2 HTTP/1.1", "GET /3 HTTP/1.1");
        for (Request r : origin.requests()) {
            assertFramedBody(r, new byte[0]);
        }
        for (RecordingOrigin.Connection c : origin.connections()) {
            assertThat(c.leftover()).isEmpty();
        }
    }

    @ParameterizedTest(name = "POST with a {0} body between two GETs")
    @ValueSource(strings = {"Content-Length", "chunked"})
    void pipelinedPostBodyIsNotConfusedWithItsNeighbours(String framing) throws Exception {
        String body = "payload that looks like " + get("/inner");
        String post = "POST http://origin.test/2 HTTP/1.1\r\nHost: origin.test\r\n"
                + (framing.equals("chunked") ? "Transfer-Encoding: chunked\r\n\r\n" + chunked(body)
                        : "Content-Length: " + body.length() + "\r\n\r\n" + body);
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(get("/1") + post + get("/3"));
            for (int i = 1; i <= 3; i++) {
                RawResponse res = RawResponse.read(raw.in(), i == 2 ? "POST" : "GET");
                assertThat(res.status()).as("response " + i + ": " + res.statusLine()).isEqualTo(200);
                assertThat(res.bodyText()).isEqualTo("request " + i + "\n");
            }
        }
        origin.awaitQuiet(QUIET);
        List<Request> seen = origin.requests();
        assertThat(seen).extracting(Request::requestLine)
                .containsExactly("GET /1 HTTP/1.1", "POST /2 HTTP/1.1", "GET /3 HTTP/1.1");
        assertFramedBody(seen.get(0), new byte[0]);
        assertFramedBody(seen.get(1), body.getBytes(StandardCharsets.ISO_8859_1));
        assertFramedBody(seen.get(2), new byte[0]);
    }

    // ---- 9. CONNECT pipelined behind a plain request --------------------------------------

    @Test
    void connectPipelinedBehindAGetWithEarlyTunnelBytes() throws Exception {
        int tunnelsBefore = tunnel.connections.get();
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send(get("/a") + "CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n" + "hello tunnel");
            RawResponse first = RawResponse.read(raw.in(), "GET");
            assertThat(first.status()).as(first.statusLine()).isEqualTo(200);
            assertThat(first.bodyText()).isEqualTo("request 1\n");
            RawResponse established = RawResponse.read(raw.in(), "CONNECT");
            assertThat(established.status()).as(established.statusLine()).isEqualTo(200);
            assertThat(new String(raw.readExactly("hello tunnel".length()), StandardCharsets.ISO_8859_1))
                    .isEqualTo("hello tunnel");
            raw.socket.shutdownOutput();
            assertThat(raw.readToEnd()).as("bytes after the echo").isEmpty();
        }
        assertThat(tunnel.connections.get() - tunnelsBefore).as("tunnel connections").isEqualTo(1);
        Request r = onlyRequest();
        assertThat(r.requestLine()).isEqualTo("GET /a HTTP/1.1");
    }

    // ---- 10. Response head size ------------------------------------------------------------

    @Test
    void twentyKibResponseHeadIsForwardedIntactByDefault() throws Exception {
        int head = 20 * 1024;
        origin.responder(RecordingOrigin.hugeHeader(head));
        RawResponse res = exchange(get("/csp"), "GET");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        assertThat(res.header("content-security-policy")).isEqualTo(RecordingOrigin.hugeHeaderValue(head));
        assertThat(res.bodyText()).isEqualTo("ok");
        onlyRequest();
    }

    @Test
    void responseHeadUnderTheConfiguredLimitIsForwarded() throws Exception {
        int head = 12 * 1024;
        origin.responder(RecordingOrigin.hugeHeader(head));
        try (TestProxy limited = TestProxy.start(config("limits.max-response-head = 16k\n"));
                RawClient raw = new RawClient(limited.address())) {
            raw.send(get("/csp"));
            RawResponse res = RawResponse.read(raw.in(), "GET");
            assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
            assertThat(res.header("content-security-policy")).isEqualTo(RecordingOrigin.hugeHeaderValue(head));
        }
        onlyRequest();
    }

    @Test
    void responseHeadOverTheConfiguredLimitGives502NamingTheLimit() throws Exception {
        origin.responder(RecordingOrigin.hugeHeader(20 * 1024));
        try (TestProxy limited = TestProxy.start(config("limits.max-response-head = 16k\n"));
                RawClient raw = new RawClient(limited.address())) {
            raw.send(get("/csp"));
            RawResponse res = RawResponse.read(raw.in(), "GET");
            assertThat(res.status()).as(res.statusLine()).isEqualTo(502);
            assertThat(res.header(REASON)).isEqualTo("response_head_too_large");
            assertThat(res.reason()).as("phrase names the 16 KiB limit")
                    .containsPattern("(?i)\\b(16384|16 ?KiB|16 ?k|16 ?KB)\\b");
            assertClosedAfterAnswer(raw);
        }
        onlyRequest();
    }

    /** The table above can tell a refused request from an allowed one: the allowed twin reaches the origin. */
    // ---- A body cut short by the client's FIN -------------------------------------------------

    static Stream<Arguments> cutBodies() {
        return Stream.of(
                Arguments.of("Content-Length 57, 43 bytes sent", "Content-Length: 57\r\n", SMUGGLED.substring(0, 43)),
                Arguments.of("chunked, inside a chunk", "Transfer-Encoding: chunked\r\n", "10\r\nonly eight"),
                Arguments.of("chunked, no last chunk", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n"));
    }

    /**
     * The decoder produces nothing for a body cut short by the end of input, so without a check the
     * origin would wait for the rest until the idle timeout (5 minutes) with both connections held.
     */
    @ParameterizedTest(name = "{0}: 400 request_truncated at once, the upstream closed")
    @MethodSource("cutBodies")
    void bodyCutShortByTheClientsFinIsAnsweredAtOnce(String name, String framing, String partialBody) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("POST http://origin.test/cut HTTP/1.1\r\nHost: origin.test\r\n" + framing + "\r\n" + partialBody);
            raw.socket.shutdownOutput();
            long start = System.nanoTime();
            RawResponse res = RawResponse.read(raw.in(), "POST");
            assertThat(res.status()).as(res.statusLine()).isEqualTo(400);
            assertThat(res.header(REASON)).isEqualTo("request_truncated");
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(5));
            assertClosedAfterAnswer(raw);
        }
        // The upstream connection the proxy opened for it is closed too, not left to the idle timeout.
        origin.awaitQuiet(QUIET);
        assertThat(origin.connections()).allSatisfy(c -> assertThat(c.ended()).isTrue());
        assertThat(origin.requests()).allSatisfy(r -> assertThat(r.complete()).as(r.toString()).isFalse());
    }

    @Test
    void controlAllowedRequestReachesTheOrigin() throws Exception {
        RawResponse res = exchange(get("/control"), "GET");
        assertThat(res.status()).as(res.statusLine()).isEqualTo(200);
        Request r = onlyRequest();
        assertThat(r.requestLine()).isEqualTo("GET /control HTTP/1.1");
        assertThat(r.values("host")).containsExactly("origin.test");
        assertThat(r.list("via")).containsExactly("1.1 egress-proxy");
    }
}
