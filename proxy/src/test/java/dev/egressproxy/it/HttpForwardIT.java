package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Plain-HTTP forwarding: bodies stream both ways in any size and framing, HEAD and pipelined
 * requests keep their order, a close-delimited origin answer reaches an HTTP/1.1 client intact,
 * and an origin that hangs up before answering gives a 502.
 */
class HttpForwardIT {

    static final byte[] BIG = new byte[8 * 1024 * 1024];
    static Origin origin;
    static TcpServer closeDelimited;
    static TcpServer hangsUp;
    static TestProxy proxy;

    @BeforeAll
    static void start() throws Exception {
        new Random(7).nextBytes(BIG);
        origin = Origin.http()
                .route("/upload", ex -> {
                    Origin.Seen seen = null;
                    for (Origin.Seen s : origin.seen) {
                        seen = s;
                    }
                    String answer = seen.body().length + " " + sha256(seen.body());
                    Origin.send(ex, 200, answer.getBytes(StandardCharsets.US_ASCII));
                })
                .route("/big", ex -> Origin.send(ex, 200, BIG))
                .respond("/a", 200, "first\n")
                .respond("/b", 200, "second\n");
        closeDelimited = TcpServer.of((s, server) -> {
            InputStream in = s.getInputStream();
            readHead(in);
            s.getOutputStream().write("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the origin closes\n"
                    .getBytes(StandardCharsets.US_ASCII));
            s.getOutputStream().flush();
        });
        hangsUp = TcpServer.of((s, server) -> readHead(s.getInputStream()));
        proxy = TestProxy.start("""
                allowlist.hosts = ["origin.test", "legacy.test", "hangup.test"]
                destinations.connect-to {
                  "origin.test:80" = "127.0.0.1:%d"
                  "legacy.test:80" = "127.0.0.1:%d"
                  "hangup.test:80" = "127.0.0.1:%d"
                }
                """.formatted(origin.port(), closeDelimited.port(), hangsUp.port()));
    }

    @AfterAll
    static void stop() throws Exception {
        proxy.close();
        origin.close();
        closeDelimited.close();
        hangsUp.close();
    }

    static void readHead(InputStream in) throws IOException {
        int matched = 0;
        while (matched < 4) {
            int b = in.read();
            if (b < 0) {
                return;
            }
            matched = (b == (matched % 2 == 0 ? '\r' : '\n')) ? matched + 1 : (b == '\r' ? 1 : 0);
        }
    }

    static String sha256(byte[] data) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private static HttpClient client() {
        return HttpClient.newBuilder().proxy(ProxySelector.of(proxy.address())).version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(5)).build();
    }

    @Test
    void requestBodyStreamsToTheOriginIntact() throws Exception {
        HttpResponse<String> res = client().send(HttpRequest.newBuilder(URI.create("http://origin.test/upload"))
                .POST(HttpRequest.BodyPublishers.ofByteArray(BIG)).timeout(Duration.ofSeconds(30)).build(),
                HttpResponse.BodyHandlers.ofString());
        assertThat(res.statusCode()).isEqualTo(200);
        assertThat(res.body()).isEqualTo(BIG.length + " " + sha256(BIG));
    }

    @Test
    void chunkedRequestBodyIsForwardedChunked() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("POST http://origin.test/upload HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).isEqualTo(200);
            String body = new String(raw.readExactly(Integer.parseInt(head.header("content-length"))), StandardCharsets.US_ASCII);
            assertThat(body).isEqualTo("11 " + sha256("hello world".getBytes(StandardCharsets.US_ASCII)));
        }
    }

    @Test
    void largeResponseStreamsBackIntact() throws Exception {
        HttpResponse<byte[]> res = client().send(HttpRequest.newBuilder(URI.create("http://origin.test/big"))
                .timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofByteArray());
        assertThat(res.statusCode()).isEqualTo(200);
        assertThat(sha256(res.body())).isEqualTo(sha256(BIG));
    }

    @Test
    void pipelinedRequestsAreAnsweredInOrderAndHeadHasNoBody() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("GET http://origin.test/a HTTP/1.1\r\nHost: origin.test\r\n\r\n"
                    + "HEAD http://origin.test/big HTTP/1.1\r\nHost: origin.test\r\n\r\n"
                    + "GET http://origin.test/b HTTP/1.1\r\nHost: origin.test\r\n\r\n");
            RawClient.Head a = raw.readHead();
            assertThat(new String(raw.readExactly(Integer.parseInt(a.header("content-length"))))).isEqualTo("first\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).isEqualTo(200);
            RawClient.Head b = raw.readHead();
            assertThat(b.status()).isEqualTo(200);
            assertThat(new String(raw.readExactly(Integer.parseInt(b.header("content-length"))))).isEqualTo("second\n");
        }
    }

    @Test
    void closeDelimitedOriginAnswerReachesAnHttp11ClientChunked() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("GET http://legacy.test/ HTTP/1.1\r\nHost: legacy.test\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).isEqualTo(200);
            assertThat(head.header("transfer-encoding")).isEqualTo("chunked");
            ByteArrayOutputStream body = new ByteArrayOutputStream();
            InputStream in = raw.in();
            while (true) {
                StringBuilder size = new StringBuilder();
                int c;
                while ((c = in.read()) != '\r') {
                    size.append((char) c);
                }
                in.read();
                int n = Integer.parseInt(size.toString().trim(), 16);
                body.write(in.readNBytes(n));
                in.readNBytes(2);
                if (n == 0) {
                    break;
                }
            }
            assertThat(body.toString(StandardCharsets.US_ASCII)).isEqualTo("until the origin closes\n");
        }
    }

    @Test
    void originThatHangsUpBeforeAnsweringGives502() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("GET http://hangup.test/ HTTP/1.1\r\nHost: hangup.test\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.statusLine()).isEqualTo("HTTP/1.1 502 hangup.test:80 closed the connection before answering");
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("upstream_closed");
        }
    }
}
