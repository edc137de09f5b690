package dev.egressproxy.fuzz;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ConfigSnapshot;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.FdBudget;
import dev.egressproxy.guard.MemoryBudget;
import dev.egressproxy.guard.HeadGuardHandler;
import dev.egressproxy.handler.ProxyRequest;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.handler.RequestPolicyHandler;
import dev.egressproxy.log.AccessLog;
import dev.egressproxy.metrics.DeniedReport;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.policy.AuthorityParser;
import dev.egressproxy.policy.MalformedTargetException;
import dev.egressproxy.policy.Target;
import dev.egressproxy.tls.ClientHelloParser;
import dev.egressproxy.tls.SniReason;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.http.HttpDecoderConfig;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.flow.FlowControlHandler;
import io.netty.util.ReferenceCountUtil;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Coverage-guided fuzzing (Jazzer) of the parsers that read what clients send: the authority
 * parser, the request-head path (head guard, HTTP decoder, policy handler), and the TLS
 * ClientHello parser of the SNI check. In a normal build these run the inputs kept under
 * {@code src/test/resources/.../ParserFuzzTestInputs} as regression cases; with
 * {@code JAZZER_FUZZ=1} they fuzz for the bounded time given here (.ci/run does so).
 */
class ParserFuzzTest {

    private static final ProxyServices SERVICES = services();

    private static ProxyServices services() {
        // Millions of refused inputs would each write an access-log line.
        ((ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(AccessLog.LOGGER))
                .setLevel(ch.qos.logback.classic.Level.OFF);
        try {
            ProxyConfig config = ConfigLoader.fromString("egress-proxy.allowlist.hosts = [\"registry.redhat.io\", \"*.quay.io\"]");
            ConfigSnapshot live = ConfigSnapshot.of(config);
            return new ProxyServices(config, () -> live, new ProxyMetrics(new SimpleMeterRegistry(), 100, "fuzz"),
                    new DeniedReport(100), new AccessLog(ProxyConfig.AccessLogFormat.TEXT), null, new AtomicLong(),
                FdBudget.ofThisProcess(config.limits().maxConnections()),
                MemoryBudget.of(PooledByteBufAllocator.DEFAULT, 0));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    @FuzzTest(maxDuration = "20s")
    void connectAuthorityParsesOrRefusesCleanly(byte[] input) {
        String authority = new String(input, StandardCharsets.ISO_8859_1);
        try {
            Target t = AuthorityParser.parseConnectAuthority(authority);
            // Whatever is accepted is safe to echo in a status line and names a real port.
            assertThat(t.host()).matches("[a-z0-9._:-]+");
            assertThat(t.port()).isBetween(1, 65535);
            assertThat(t.authority()).doesNotContain("@").doesNotContain("%").doesNotContain("\\");
        } catch (MalformedTargetException e) {
            assertThat(e.getMessage()).isNotBlank();
        }
    }

    /**
     * The ClientHello parser of the SNI check: whatever the bytes, a result (more needed, a hello,
     * or a refusal with its reason) and never an exception (a read out of bounds would be one);
     * the same result whether the bytes come at once or in two pieces; an accepted server name
     * is a lower-case DNS name.
     */
    @FuzzTest(maxDuration = "20s")
    void clientHelloParsesOrRefusesCleanly(byte[] input) {
        ClientHelloParser.Result whole = new ClientHelloParser().feed(input);

        int split = input.length == 0 ? 0 : (input[0] & 0xff) % (input.length + 1);
        ClientHelloParser pieces = new ClientHelloParser();
        pieces.feed(input, 0, split);
        assertThat(pieces.feed(input, split, input.length - split)).isEqualTo(whole);

        if (whole instanceof ClientHelloParser.Hello hello) {
            if (hello.serverName() != null) {
                assertThat(hello.serverName()).hasSizeBetween(1, 253)
                        .matches("([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
                        .doesNotMatch("(.*\\.)?[0-9]+");
            }
        } else if (whole instanceof ClientHelloParser.Refused refused) {
            assertThat(refused.reason()).isIn(SniReason.NOT_TLS, SniReason.MALFORMED_CLIENT_HELLO);
            assertThat(refused.detail()).isNotBlank();
        } else {
            assertThat(whole).isInstanceOf(ClientHelloParser.NeedMore.class);
            assertThat(pieces.end()).isNotInstanceOf(input.length == 0
                    ? ClientHelloParser.Refused.class : ClientHelloParser.NeedMore.class);
        }
    }

    @FuzzTest(maxDuration = "20s")
    void requestHeadIsAnsweredOrPassedOnWithoutLeaksOrUnsafeStatusLines(byte[] input) {
        int maxHead = 4096;
        HttpDecoderConfig decoder = new HttpDecoderConfig().setMaxInitialLineLength(maxHead).setMaxHeaderSize(maxHead)
                .setStrictLineParsing(true).setUseRfc9112TransferEncoding(true).setAllowDuplicateContentLengths(false);
        EmbeddedChannel ch = new EmbeddedChannel(new HeadGuardHandler(SERVICES, maxHead), new HttpServerCodec(decoder),
                new FlowControlHandler(), new RequestPolicyHandler(SERVICES), new ChannelInboundHandlerAdapter() {
                    @Override
                    public void channelRead(ChannelHandlerContext ctx, Object msg) {
                        if (msg instanceof ProxyRequest pr) {
                            // Allowed: only allowlisted destinations may ever get here. A DNS label may
                            // hold an underscore (AuthorityParser.normaliseHostName; _dmarc, _sip), so
                            // *.quay.io allows _dn01.quay.io (an input the fuzzer found).
                            assertThat(pr.target().host()).matches("registry\\.redhat\\.io|[a-z0-9._-]+\\.quay\\.io");
                            ReferenceCountUtil.release(pr.request());
                        } else {
                            ReferenceCountUtil.release(msg);
                        }
                    }
                });
        try {
            ch.writeInbound(Unpooled.wrappedBuffer(input));
            ch.checkException();
            Object out;
            while ((out = ch.readOutbound()) != null) {
                if (out instanceof ByteBuf buf) {
                    String text = buf.toString(StandardCharsets.ISO_8859_1);
                    if (text.startsWith("HTTP/")) {
                        String statusLine = text.substring(0, text.indexOf("\r\n"));
                        assertThat(statusLine).matches("HTTP/1\\.1 (400|403|408|414|431|505) [\\x20-\\x7e]+");
                    }
                }
                ReferenceCountUtil.release(out);
            }
        } finally {
            ch.finishAndReleaseAll();
        }
    }
}
