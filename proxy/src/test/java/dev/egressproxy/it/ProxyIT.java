package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.Origin;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TcpTable;
import dev.egressproxy.testing.TestCerts;
import dev.egressproxy.testing.TestProxy;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.channel.ChannelOption;
import io.netty.channel.socket.DuplexChannel;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ProxySelector;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.AfterParameterizedClassInvocation;
import org.junit.jupiter.params.BeforeParameterizedClassInvocation;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The core proxy over real sockets on loopback: TLS through CONNECT to a real HTTPS server reached
 * under a registry hostname (through {@code connect-to}), plain HTTP forwarding, redirects,
 * refusals, early payload, half-close, backpressure, and upstream failures.
 *
 * <p>Every test runs twice: with tunnels relayed through the proxy's buffers ({@code relay.splice =
 * false}) and with every tunnel direction moved to splice(2) after its first read ({@code
 * relay.splice-after = 0}).
 */
@ParameterizedClass(name = "relay {0}")
@ValueSource(strings = {"user-space", "splice"})
class ProxyIT {

    @Parameter
    String relay;

    @TempDir
    static Path dir;
    static TestCerts certs;
    static SSLContext clientTls;
    static Origin registryTls;
    static Origin registryHttp;
    static Origin cdnTls;
    static Origin cdnHttp;
    static TcpServer echo;
    static TcpServer source;
    static TcpServer reply;
    /**
     * Reads the request to the client's FIN, answers with as many bytes of the pattern as the
     * request says (a decimal number), and closes.
     */
    static TcpServer sizedReply;
    static TcpServer blackhole;
    /** Another dead address for slow.test: blackhole.test's timeout would put a shared one in fast-fail. */
    static TcpServer slowBlackhole;
    static int closedPort;
    static TestProxy proxy;

    static final long SOURCE_BYTES = 16L * 1024 * 1024;

    @BeforeParameterizedClassInvocation
    static void start(String relay) throws Exception {
        certs = TestCerts.generate(java.nio.file.Files.createDirectories(dir.resolve(relay)));
        clientTls = certs.clientContext();
        registryTls = Origin.https(certs.serverContext())
                .respond("/v2/", 200, "registry over tls\n")
                .redirect("/v2/redhat/ubi9/blobs/sha256:abc", "https://cdn02.quay.io/sha256/ab/abc?grant=secret")
                .redirect("/v2/redhat/ubi9/blobs/sha256:def", "https://cdn04.quay.io/sha256/de/def?grant=secret");
        cdnTls = Origin.https(certs.serverContext()).respond("/sha256/ab/abc", 200, "blob abc\n");
        registryHttp = Origin.http()
                .respond("/v2/", 200, "registry over http\n")
                .redirect("/v2/redhat/ubi9/blobs/sha256:abc", "http://cdn02.quay.io/sha256/ab/abc");
        cdnHttp = Origin.http().respond("/sha256/ab/abc", 200, "blob abc over http\n");
        echo = TcpServer.echo();
        source = TcpServer.source(SOURCE_BYTES);
        reply = TcpServer.sourceAfterEndOfRequest(SOURCE_BYTES);
        sizedReply = TcpServer.of((s, server) -> {
            long size = Long.parseLong(new String(s.getInputStream().readAllBytes(), StandardCharsets.US_ASCII));
            TcpServer.sendPattern(s, server, size);
            s.close();
        });
        blackhole = TcpServer.blackhole();
        slowBlackhole = TcpServer.blackhole();
        try (ServerSocket s = new ServerSocket(0)) {
            closedPort = s.getLocalPort();
        }
        proxy = TestProxy.start(TestProxy.relaySettings(relay) + """
                allowlist.hosts = ["registry.redhat.io", "cdn02.quay.io", "echo.test:7000", "source.test:7001",
                                   "refused.test:7002", "blackhole.test:7003", "slow.test:7004", "reply.test:7005",
                                   "sized.test:7006"]
                timeouts.connect = 1s
                destinations.connect-to {
                  "registry.redhat.io:443" = "127.0.0.1:%d"
                  "registry.redhat.io:80" = "127.0.0.1:%d"
                  "cdn02.quay.io:443" = "127.0.0.1:%d"
                  "cdn02.quay.io:80" = "127.0.0.1:%d"
                  "echo.test:7000" = "127.0.0.1:%d"
                  "source.test:7001" = "127.0.0.1:%d"
                  "refused.test:7002" = "127.0.0.1:%d"
                  "blackhole.test:7003" = "127.0.0.1:%d"
                  "slow.test:7004" = "127.0.0.1:%d"
                  "reply.test:7005" = "127.0.0.1:%d"
                  "sized.test:7006" = "127.0.0.1:%d"
                }
                """.formatted(registryTls.port(), registryHttp.port(), cdnTls.port(), cdnHttp.port(), echo.port(),
                source.port(), closedPort, blackhole.port(), slowBlackhole.port(), reply.port(), sizedReply.port()));
    }

    @AfterParameterizedClassInvocation
    static void stop() throws Exception {
        proxy.close();
        for (AutoCloseable c : List.<AutoCloseable>of(registryTls, registryHttp, cdnTls, cdnHttp, echo, source, reply, sizedReply, blackhole,
                slowBlackhole)) {
            c.close();
        }
        assertThat(echo.errors).isEmpty();
    }

    private static HttpClient client() {
        return HttpClient.newBuilder()
                .proxy(ProxySelector.of(proxy.address()))
                .sslContext(clientTls)
                .version(HttpClient.Version.HTTP_1_1)
                .followRedirects(HttpClient.Redirect.NEVER)
                .connectTimeout(Duration.ofSeconds(5))
                .build();
    }

    private static HttpResponse<String> get(HttpClient c, String url) throws Exception {
        return c.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(15)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void connectTunnelCarriesTlsToAllowedHostUnderItsRealName() throws Exception {
        {
            HttpClient c = client();
            HttpResponse<String> res = get(c, "https://registry.redhat.io/v2/");
            assertThat(res.statusCode()).isEqualTo(200);
            assertThat(res.body()).isEqualTo("registry over tls\n");
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> proxy.scrapeValue(
                "egress_proxy_requests_total{decision=\"allowed\",kind=\"connect\",reason=\"host_allowlisted\"}") >= 1);
    }

    @Test
    void forwardsPlainHttpWithHopByHopHeadersRemovedAndViaAdded() throws Exception {
        int before = registryHttp.seen.size();
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("GET http://registry.redhat.io/v2/ HTTP/1.1\r\n"
                    + "Host: evil.example\r\n"
                    + "Connection: keep-alive, X-Hop\r\n"
                    + "X-Hop: must-not-pass\r\n"
                    + "X-End-To-End: kept\r\n"
                    + "Proxy-Authorization: Basic c2VjcmV0\r\n"
                    + "Proxy-Connection: keep-alive\r\n"
                    + "Keep-Alive: timeout=5\r\n"
                    + "TE: trailers\r\n"
                    + "Upgrade: h2c\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).isEqualTo(200);
            assertThat(head.header("via")).contains("1.1 egress-proxy");
            int length = Integer.parseInt(head.header("content-length"));
            assertThat(new String(raw.readExactly(length), StandardCharsets.US_ASCII)).isEqualTo("registry over http\n");
        }
        Origin.Seen seen = registryHttp.seen.get(before);
        assertThat(seen.path()).isEqualTo("/v2/");
        assertThat(seen.header("Host")).isEqualTo("registry.redhat.io");
        assertThat(seen.header("X-End-To-End")).isEqualTo("kept");
        assertThat(seen.header("Via")).isEqualTo("1.1 egress-proxy");
        for (String hop : List.of("X-Hop", "Proxy-Authorization", "Proxy-Connection", "Keep-Alive", "TE", "Upgrade")) {
            assertThat(seen.header(hop)).as(hop).isNull();
        }
    }

    @Test
    void keepAliveCarriesSeveralRequestsOverOneUpstreamConnection() throws Exception {
        int before = registryHttp.seen.size();
        try (RawClient raw = new RawClient(proxy.address())) {
            for (int i = 0; i < 3; i++) {
                raw.send("GET http://registry.redhat.io/v2/ HTTP/1.1\r\nHost: registry.redhat.io\r\n\r\n");
                RawClient.Head head = raw.readHead();
                assertThat(head.status()).isEqualTo(200);
                raw.readExactly(Integer.parseInt(head.header("content-length")));
            }
        }
        List<Origin.Seen> mine = registryHttp.seen.subList(before, before + 3);
        assertThat(mine).extracting(Origin.Seen::clientPort).containsOnly(mine.get(0).clientPort());
    }

    @Test
    void redirectComesBackUnchangedAndTheFollowUpIsDecidedOnItsOwn() throws Exception {
        {
            HttpClient c = client();
            HttpResponse<String> redirect = get(c, "https://registry.redhat.io/v2/redhat/ubi9/blobs/sha256:abc");
            assertThat(redirect.statusCode()).isEqualTo(302);
            String location = redirect.headers().firstValue("location").orElseThrow();
            assertThat(location).isEqualTo("https://cdn02.quay.io/sha256/ab/abc?grant=secret");
            HttpResponse<String> blob = get(c, location);
            assertThat(blob.statusCode()).isEqualTo(200);
            assertThat(blob.body()).isEqualTo("blob abc\n");

            HttpResponse<String> plainRedirect = get(c, "http://registry.redhat.io/v2/redhat/ubi9/blobs/sha256:abc");
            assertThat(plainRedirect.statusCode()).isEqualTo(302);
            String plainLocation = plainRedirect.headers().firstValue("location").orElseThrow();
            HttpResponse<String> plainBlob = get(c, plainLocation);
            assertThat(plainBlob.statusCode()).isEqualTo(200);
            assertThat(plainBlob.body()).isEqualTo("blob abc over http\n");
        }
        try (AccessLogCapture log = new AccessLogCapture()) {
            HttpClient c = client();
            HttpResponse<String> redirect = get(c, "https://registry.redhat.io/v2/redhat/ubi9/blobs/sha256:def");
            assertThat(redirect.statusCode()).isEqualTo(302);
            String location = redirect.headers().firstValue("location").orElseThrow();
            assertThat(location).startsWith("https://cdn04.quay.io/");
            try (RawClient raw = new RawClient(proxy.address())) {
                raw.send("CONNECT cdn04.quay.io:443 HTTP/1.1\r\nHost: cdn04.quay.io:443\r\n\r\n");
                assertThat(raw.readHead().statusLine())
                        .isEqualTo("HTTP/1.1 403 cdn04.quay.io:443 is not in the egress allowlist");
            }
            await().atMost(Duration.ofSeconds(5)).until(() -> log.lines().stream()
                    .anyMatch(l -> l.contains("target=cdn04.quay.io:443") && l.contains("decision=denied")));
        }
    }

    @Test
    void refusedConnectNamesTheHostInTheReasonPhraseAndEverywhereElse() throws Exception {
        try (AccessLogCapture log = new AccessLogCapture(); RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT CDN05.quay.io.:443 HTTP/1.1\r\nHost: cdn05.quay.io:443\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.statusLine()).isEqualTo("HTTP/1.1 403 cdn05.quay.io:443 is not in the egress allowlist");
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("host_not_allowlisted");
            String body = new String(raw.readToEnd(), StandardCharsets.US_ASCII);
            assertThat(body).contains("cdn05.quay.io:443 is not in the egress allowlist")
                    .contains("egress-proxy.allowlist.hosts");
            await().atMost(Duration.ofSeconds(5)).until(() -> log.lines().stream()
                    .anyMatch(l -> l.contains("method=CONNECT target=cdn05.quay.io:443 decision=denied "
                            + "reason=host_not_allowlisted") && l.contains("status=403")));
        }
        assertThat(proxy.scrapeValue("egress_proxy_denied_total{host=\"cdn05.quay.io\",policy=\"default\",reason=\"host_not_allowlisted\"}"))
                .isEqualTo(1.0);
        assertThat(proxy.admin("/denied").body())
                .contains("\"destination\":\"cdn05.quay.io:443\"")
                .contains("\"reason\":\"host_not_allowlisted\"");
    }

    @Test
    void wrongPortOnAnAllowedHostIsRefused() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT registry.redhat.io:8443 HTTP/1.1\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).isEqualTo(403);
            assertThat(head.reason()).startsWith("registry.redhat.io:8443 is not in the egress allowlist");
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("port_not_allowed");
        }
    }

    @Test
    void originFormRequestIsRefusedWith400() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("GET /v2/ HTTP/1.1\r\nHost: registry.redhat.io\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).isEqualTo(400);
            assertThat(head.reason()).contains("forward proxy");
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("origin_form_request");
        }
        assertThat(registryHttp.seen).noneMatch(s -> "evil".equals(s.path()));
    }

    @Test
    void bytesSentInTheSameWriteAsTheConnectHeadAreDelivered() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\nHost: echo.test:7000\r\n\r\nhello in the same packet");
            RawClient.Head head = raw.readHead();
            assertThat(head.statusLine()).isEqualTo("HTTP/1.1 200 Connection established");
            byte[] echoed = raw.readExactly("hello in the same packet".length());
            assertThat(new String(echoed, StandardCharsets.US_ASCII)).isEqualTo("hello in the same packet");
        }
    }

    @Test
    void connectHeadPayloadAndEndOfInputSentAtOnceAreAllRelayed() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\nsent before the tunnel was up");
            raw.socket.shutdownOutput();
            assertThat(raw.readHead().status()).isEqualTo(200);
            assertThat(new String(raw.readToEnd(), StandardCharsets.US_ASCII)).isEqualTo("sent before the tunnel was up");
        }
    }

    @Test
    void bytesSentBehindTheConnectWhileTheUpstreamIsSlowAreBufferedOnlyUpToABound() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT slow.test:7004 HTTP/1.1\r\n\r\n");
            // 4 MiB behind the head while the upstream connect hangs (until the 1 s connect timeout):
            // the proxy keeps at most 64 KiB of it and then stops reading from the client.
            CompletableFuture<Void> sending = CompletableFuture.runAsync(() -> {
                try {
                    OutputStream out = raw.out();
                    byte[] chunk = new byte[16 * 1024];
                    for (int i = 0; i < 256; i++) {
                        out.write(chunk);
                    }
                } catch (IOException expected) {
                    // the proxy closes after its 504
                }
            });
            await().atMost(Duration.ofSeconds(5)).until(() -> proxy.server.clientChannels().stream()
                    .anyMatch(ch -> !ch.config().isAutoRead()));
            assertThat(raw.readHead().status()).isEqualTo(504);
            sending.get(30, TimeUnit.SECONDS);
        }
    }

    @Test
    void bothSidesOfATunnelSendSmallWritesAtOnceAndShareTheMeteredBufferPool() throws Exception {
        // TCP_NODELAY comes from the transport's defaults, not from an option the proxy sets. The
        // buffers come from the pool the allocator metrics report, on both sides.
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\nping");
            assertThat(raw.readHead().status()).isEqualTo(200);
            assertThat(raw.readExactly(4)).isEqualTo("ping".getBytes(StandardCharsets.US_ASCII));
            // Tunnels of earlier tests may still be closing: a channel's option is read on its own
            // event loop, where a close cannot happen between the isOpen check and the read.
            Channel client = proxy.server.clientChannels().stream()
                    .filter(ch -> ch.remoteAddress() instanceof InetSocketAddress a && a.getPort() == raw.socket.getLocalPort())
                    .findFirst().orElseThrow();
            List<Channel> sides = new ArrayList<>(List.of(client));
            sides.addAll(upstreamsTo(echo).toList());
            List<Boolean> noDelay = new ArrayList<>();
            for (Channel ch : sides) {
                Boolean value = ch.eventLoop().submit(() -> ch.isOpen() ? ch.config().getOption(ChannelOption.TCP_NODELAY) : null)
                        .get(5, TimeUnit.SECONDS);
                if (value != null) {
                    noDelay.add(value);
                }
            }
            assertThat(noDelay).as("TCP_NODELAY of the open client side and upstream sides").hasSizeGreaterThanOrEqualTo(2)
                    .containsOnly(true);
            assertThat(sides).allSatisfy(ch -> assertThat(ch.alloc()).isSameAs(PooledByteBufAllocator.DEFAULT));
        }
    }

    @Test
    void plainRequestFollowedByEndOfInputIsStillAnswered() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("GET http://registry.redhat.io/v2/ HTTP/1.1\r\nHost: registry.redhat.io\r\n\r\n");
            raw.socket.shutdownOutput();
            RawClient.Head head = raw.readHead();
            assertThat(head.status()).isEqualTo(200);
            assertThat(new String(raw.readToEnd(), StandardCharsets.US_ASCII)).isEqualTo("registry over http\n");
        }
    }

    @Test
    void halfCloseDeliversEveryEchoedByteBeforeTheConnectionCloses() throws Exception {
        byte[] payload = new byte[1024 * 1024];
        new Random(42).nextBytes(payload);
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
            assertThat(raw.readHead().status()).isEqualTo(200);
            CompletableFuture<byte[]> received = readToEndInBackground(raw);
            OutputStream out = raw.out();
            for (int off = 0; off < payload.length; off += 8192) {
                out.write(payload, off, 8192);
            }
            out.flush();
            raw.socket.shutdownOutput();
            byte[] back = received.get(30, TimeUnit.SECONDS);
            assertThat(back.length).isEqualTo(payload.length);
            assertThat(Arrays.equals(back, payload)).isTrue();
        }
    }

    @Test
    void bulkEchoEndedByHalfCloseArrivesWholeAndIsCountedExactly() throws Exception {
        // Sizes at which Netty's own splice lost bytes at end of input: a little, several pipes'
        // worth, and more than the socket buffers hold when the FIN arrives.
        for (int size : new int[] {100_000, 4_000_000, 40_000_000}) {
            double upBefore = proxy.scrapeValue("egress_proxy_bytes_total{direction=\"client_to_upstream\"}");
            double downBefore = proxy.scrapeValue("egress_proxy_bytes_total{direction=\"upstream_to_client\"}");
            double splicesBefore = proxy.scrapeValue("egress_proxy_tunnel_splices_total");
            byte[] payload = new byte[size];
            new Random(size).nextBytes(payload);
            try (AccessLogCapture log = new AccessLogCapture(); RawClient raw = new RawClient(proxy.address())) {
                raw.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
                assertThat(raw.readHead().status()).isEqualTo(200);
                CompletableFuture<byte[]> received = readToEndInBackground(raw);
                raw.out().write(payload);
                raw.out().flush();
                raw.socket.shutdownOutput();
                byte[] back = received.get(60, TimeUnit.SECONDS);
                assertThat(back.length).as("bytes echoed of %d", size).isEqualTo(size);
                assertThat(Arrays.equals(back, payload)).as("echo of %d bytes intact", size).isTrue();
                await().atMost(Duration.ofSeconds(10)).until(() -> log.lines().stream()
                        .anyMatch(l -> l.contains("echo.test") && l.contains("bytes_up=" + size + " bytes_down=" + size)));
            }
            assertThat(proxy.scrapeValue("egress_proxy_bytes_total{direction=\"client_to_upstream\"}") - upBefore)
                    .isEqualTo(size);
            assertThat(proxy.scrapeValue("egress_proxy_bytes_total{direction=\"upstream_to_client\"}") - downBefore)
                    .isEqualTo(size);
            assertThat(proxy.scrapeValue("egress_proxy_tunnel_splices_total") - splicesBefore)
                    .as("tunnel directions moved to splice").isEqualTo(
                            relay.equals("splice") && proxy.server.transportName().equals("epoll") ? 2.0 : 0.0);
        }
    }

    @Test
    void slowReaderDoesNotMakeTheProxyBufferWithoutBound() throws Exception {
        try (RawClient raw = tunnelWithSmallReceiveBuffer("CONNECT source.test:7001 HTTP/1.1\r\n\r\n")) {
            // The client reads nothing: the proxy must stop reading the source instead of queueing.
            // Wait until it has (upstream auto-read off) or until it has queued more than it may.
            long bound = 64 * 1024 + 64 * 1024; // high water mark plus at most one read of the upstream
            await().atMost(Duration.ofSeconds(20)).until(() -> pendingTowardsClients() > bound || upstreamPaused(source));
            assertThat(pendingTowardsClients()).isLessThanOrEqualTo(bound);
            assertThat(source.bytesWritten.get()).isLessThan(SOURCE_BYTES);

            // Once the client reads, everything arrives intact.
            assertThat(readPatternToEnd(raw.in())).isEqualTo(SOURCE_BYTES);
        }
    }

    @Test
    void clientThatEndsItsRequestBeforeTheDownloadStartsStillReceivesAllOfIt() throws Exception {
        // The client's FIN reaches the proxy while nothing is being written to it; the download
        // then outpaces the client. Netty 4.2's epoll took such a socket out of its epoll set and
        // failed the first write that had to wait ("epoll_ctl(..) failed: No such file or
        // directory"), cutting the download short.
        try (RawClient raw = tunnelWithSmallReceiveBuffer("CONNECT reply.test:7005 HTTP/1.1\r\n\r\nrequest")) {
            raw.socket.shutdownOutput();
            // Read only once the proxy has had to wait for the client (or the tunnel has gone).
            await().atMost(Duration.ofSeconds(20)).until(() -> upstreamPaused(reply) || upstreamsTo(reply).findAny().isEmpty());
            assertThat(readPatternToEnd(raw.in())).isEqualTo(SOURCE_BYTES);
        }
    }

    @Test
    void originThatEndsWhileTheClientIsBehindAfterTheClientsFinStillDeliversAllOfIt() throws Exception {
        // The client's FIN goes to the origin first, then the origin's whole answer and its FIN
        // reach the proxy while it still waits on the client. Spliced, Netty's pending chunk turned
        // reading of the origin's socket back on once the client took it, after the socket had left
        // the epoll set (input ended, output shut): epoll_ctl failed, Netty closed the socket with
        // the rest of the answer unread, and the tunnel ended upstream_error. That takes the
        // origin's FIN to arrive after the proxy has started to wait on the client, with more of
        // the answer left than the proxy queues towards the client: as the kernel's buffers grow
        // and shrink, some sizes of answer do that and others do not, so several are tried.
        try (AccessLogCapture log = new AccessLogCapture()) {
            for (int kib : new int[] {640, 768, 896, 1024, 1152, 1280, 1536, 2048}) {
                long size = kib * 1024L;
                int port = downloadAfterTheOriginsEnd(size);
                assertThat(log.lineOf(port)).as("answer of %d KiB", kib)
                        .contains(" bytes_up=" + String.valueOf(size).length() + " bytes_down=" + size + " ")
                        .endsWith(" end=client_closed");
            }
        }
    }

    /**
     * Opens a tunnel to {@link #sizedReply}, asks for {@code size} bytes and half-closes, and reads
     * the answer only once the proxy holds all of it (or as much as the buffers on the way take);
     * returns the client's port.
     */
    private static int downloadAfterTheOriginsEnd(long size) throws Exception {
        try (RawClient raw = tunnelWithSmallReceiveBuffer("CONNECT sized.test:7006 HTTP/1.1\r\n\r\n" + size)) {
            raw.socket.shutdownOutput();
            // Read only once the proxy has seen the origin's FIN (or the tunnel has gone), or, where
            // the buffers on the way hold less than the answer, once the origin's FIN waits behind
            // bytes the proxy does not take (its socket's send queue stays put).
            long[] queue = {-1, 0};
            await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(100)).until(() -> {
                List<Channel> up = upstreamsTo(sizedReply).toList();
                if (up.stream().allMatch(ch -> ((DuplexChannel) ch).isInputShutdown())) {
                    return true;
                }
                // Gone from the table: the origin's FIN has been taken, and the proxy sees it next.
                long now = TcpTable.sendQueueIfListed(sizedReply.port(),
                        ((InetSocketAddress) up.get(0).localAddress()).getPort());
                queue[1] = now == queue[0] ? queue[1] + 1 : 0;
                queue[0] = now;
                return now > 0 && queue[1] >= 5 && upstreamPaused(sizedReply);
            });
            assertThat(readPatternToEnd(raw.in())).isEqualTo(size);
            return raw.socket.getLocalPort();
        }
    }

    private static CompletableFuture<byte[]> readToEndInBackground(RawClient raw) {
        return CompletableFuture.supplyAsync(() -> {
            try {
                return raw.readToEnd();
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        });
    }

    /** A tunnel from a client whose socket holds little (16 KiB), so that the proxy soon waits on it. */
    private static RawClient tunnelWithSmallReceiveBuffer(String connect) throws IOException {
        RawClient raw = new RawClient(proxy.address());
        raw.socket.setReceiveBufferSize(16 * 1024);
        raw.send(connect);
        assertThat(raw.readHead().status()).isEqualTo(200);
        return raw;
    }

    private static java.util.stream.Stream<Channel> upstreamsTo(TcpServer server) {
        return proxy.server.upstreamChannels().stream()
                .filter(ch -> ch.remoteAddress().toString().endsWith(":" + server.port()));
    }

    /** The proxy has stopped reading from its connection to {@code server} (backpressure). */
    private static boolean upstreamPaused(TcpServer server) {
        return upstreamsTo(server).anyMatch(ch -> !ch.config().isAutoRead());
    }

    /** Reads to the end, checking every byte against the source servers' pattern; returns the count. */
    private static long readPatternToEnd(InputStream in) throws IOException {
        byte[] buf = new byte[65536];
        long offset = 0;
        int n;
        while ((n = in.read(buf)) >= 0) {
            for (int i = 0; i < n; i++) {
                if (buf[i] != TcpServer.patternByte(offset + i)) {
                    throw new AssertionError("byte " + (offset + i) + " differs");
                }
            }
            offset += n;
        }
        return offset;
    }

    private static long pendingTowardsClients() {
        long pending = 0;
        for (Channel ch : proxy.server.clientChannels()) {
            if (ch.unsafe().outboundBuffer() != null) {
                pending = Math.max(pending, ch.unsafe().outboundBuffer().totalPendingWriteBytes());
            }
        }
        return pending;
    }

    @Test
    void refusedUpstreamPortAnswers502NamingHostAndCause() throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT refused.test:7002 HTTP/1.1\r\n\r\n");
            RawClient.Head head = raw.readHead();
            assertThat(head.statusLine()).isEqualTo("HTTP/1.1 502 refused.test:7002 is unreachable: connection refused");
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("upstream_refused");
        }
        assertThat(proxy.scrapeValue("egress_proxy_upstream_failures_total{cause=\"refused\",host=\"refused.test\"}"))
                .isEqualTo(1.0);
    }

    @Test
    void blackholedUpstreamAnswers504WithinTheConnectTimeout() throws Exception {
        long start = System.nanoTime();
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.send("CONNECT blackhole.test:7003 HTTP/1.1\r\n\r\n");
            RawClient.Head head = raw.readHead();
            long elapsedMs = (System.nanoTime() - start) / 1_000_000;
            assertThat(head.statusLine())
                    .isEqualTo("HTTP/1.1 504 blackhole.test:7003 did not answer within 1s (connect timeout)");
            assertThat(head.header("x-egress-proxy-reason")).isEqualTo("upstream_timeout");
            assertThat(elapsedMs).isBetween(900L, 5_000L);
        }
        assertThat(proxy.scrapeValue("egress_proxy_upstream_failures_total{cause=\"timeout\",host=\"blackhole.test\"}"))
                .isEqualTo(1.0);
    }

    @Test
    void curlThroughTheProxyReachesTheTlsServer() throws Exception {
        Process curl = new ProcessBuilder("curl", "-sS", "--max-time", "20", "--cacert", certs.certPem().toString(),
                "-x", "http://127.0.0.1:" + proxy.port(), "https://registry.redhat.io/v2/")
                .redirectErrorStream(true).start();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        curl.getInputStream().transferTo(out);
        assertThat(curl.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(out.toString(StandardCharsets.UTF_8)).isEqualTo("registry over tls\n");
        assertThat(curl.exitValue()).isZero();

        Process refused = new ProcessBuilder("curl", "-sS", "--max-time", "20", "-x", "http://127.0.0.1:" + proxy.port(),
                "https://cdn04.quay.io/").redirectErrorStream(true).start();
        ByteArrayOutputStream refusedOut = new ByteArrayOutputStream();
        refused.getInputStream().transferTo(refusedOut);
        assertThat(refused.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(refused.exitValue()).isNotZero();
        assertThat(refusedOut.toString(StandardCharsets.UTF_8)).contains("403");
    }
}
