package dev.egressproxy.tunnel;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.FdBudget;
import dev.egressproxy.guard.MemoryBudget;
import dev.egressproxy.handler.PipelineNames;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.log.AccessLog;
import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.metrics.DeniedReport;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.policy.Target;
import dev.egressproxy.testing.AccessLogCapture;
import dev.egressproxy.testing.TlsHellos;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.CompositeByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * {@link SniCheckHandler} between two embedded channels standing for the client and the upstream
 * of a tunnel, with the real {@link Tunnel} and {@link RelayHandler}s around it: what reaches the
 * upstream, what the client gets back, the metric and the access-log fields. Buffers come from
 * the pooled allocator, so Netty's paranoid leak detector sees every one.
 */
class SniCheckHandlerTest {

    private static final byte[] ACCESS_DENIED_ALERT = {21, 3, 3, 0, 2, 2, 49};
    private static final Target TARGET = new Target("cdn.quay.io", 443, null);

    private final SimpleMeterRegistry registry = new SimpleMeterRegistry();
    private final ProxyMetrics metrics = new ProxyMetrics(registry, 10, "test");
    private final AccessLogCapture log = new AccessLogCapture();
    private EmbeddedChannel client;
    private EmbeddedChannel upstream;

    private void tunnel(ProxyConfig.SniCheckMode mode) throws Exception {
        ProxyConfig config = ConfigLoader.fromString("egress-proxy.allowlist.hosts = [\"cdn.quay.io\"]");
        ProxyServices services = new ProxyServices(config, () -> null, metrics, new DeniedReport(10),
                new AccessLog(ProxyConfig.AccessLogFormat.TEXT), null, new AtomicLong(),
                FdBudget.ofThisProcess(config.limits().maxConnections()),
                MemoryBudget.of(PooledByteBufAllocator.DEFAULT, 0));
        upstream = new EmbeddedChannel();
        client = new EmbeddedChannel();
        AccessRecord record = new AccessRecord("1-1", null).method("CONNECT").target(TARGET.authority())
                .decision("allowed", "host_allowlisted", "cdn.quay.io").status(200);
        Tunnel tunnel = new Tunnel(services, record, client, upstream);
        upstream.pipeline().addLast(PipelineNames.RELAY, new RelayHandler(tunnel, upstream));
        client.pipeline().addLast(PipelineNames.RELAY, new RelayHandler(tunnel, client));
        client.pipeline().addBefore(PipelineNames.RELAY, PipelineNames.SNI_CHECK, new SniCheckHandler(tunnel, TARGET,
                record, metrics, new ProxyConfig.Tunnels(mode, Set.of(443), Duration.ofSeconds(10))));
    }

    @AfterEach
    void release() {
        if (client != null) {
            client.finishAndReleaseAll();
            upstream.finishAndReleaseAll();
        }
        log.close();
    }

    @Test
    void aMatchingHelloSplitOverManyBuffersReachesTheUpstreamWholeAndInOrder() throws Exception {
        tunnel(ProxyConfig.SniCheckMode.ENFORCE);
        byte[] hello = TlsHellos.jdk("cdn.quay.io");
        byte[] after = "application data".getBytes(StandardCharsets.US_ASCII);
        for (int off = 0, n = 1; off < hello.length; off += n, n = n % 7 + 1) {
            writeInbound(hello, off, Math.min(n, hello.length - off));
            if (off + n < hello.length) {
                assertThat(upstream.outboundMessages()).as("nothing passes before the hello is complete").isEmpty();
            }
        }
        client.writeInbound(pooled(after, 0, after.length));

        assertThat(drain(upstream)).isEqualTo(TlsHellos.concat(hello, after));
        assertThat(client.pipeline().get(PipelineNames.SNI_CHECK)).as("removed after the pass").isNull();
        assertThat(mismatches()).isZero();
        client.close();
        assertThat(logLine()).contains(" error=- sni=cdn.quay.io sni_check=ok bytes_up=" + (hello.length + after.length) + " ");
    }

    @Test
    void aHelloInACompositeBufferIsReadAcrossItsComponents() throws Exception {
        tunnel(ProxyConfig.SniCheckMode.ENFORCE);
        byte[] hello = TlsHellos.jdk("cdn.quay.io");
        CompositeByteBuf composite = PooledByteBufAllocator.DEFAULT.compositeDirectBuffer();
        for (int off = 0; off < hello.length; off += 100) {
            composite.addComponent(true, pooled(hello, off, Math.min(100, hello.length - off)));
        }
        client.writeInbound(composite);

        assertThat(drain(upstream)).isEqualTo(hello);
        assertThat(mismatches()).isZero();
    }

    @Test
    void anotherNameUnderEnforceGetsTheAlertAndNothingReachesTheUpstream() throws Exception {
        tunnel(ProxyConfig.SniCheckMode.ENFORCE);
        // The rest of the hello comes with more bytes behind it in the same read: all dropped.
        byte[] hello = TlsHellos.jdk("www.fronted.example");
        byte[] rest = TlsHellos.concat(Arrays.copyOfRange(hello, 10, hello.length), new byte[] {1, 2, 3});
        writeInbound(hello, 0, 10);
        writeInbound(rest, 0, rest.length);

        assertThat(drain(upstream)).isEmpty();
        assertThat(drain(client)).isEqualTo(ACCESS_DENIED_ALERT);
        assertThat(client.isOpen()).isFalse();
        assertThat(upstream.isOpen()).isFalse();
        assertThat(mismatches()).isEqualTo(1.0);
        assertThat(logLine()).contains(" error=sni_mismatch sni=www.fronted.example sni_check=sni_mismatch bytes_up=0 ");
    }

    @Test
    void anotherNameUnderReportPassesEveryByteAndIsCounted() throws Exception {
        tunnel(ProxyConfig.SniCheckMode.REPORT);
        byte[] hello = TlsHellos.jdk("www.fronted.example");
        writeInbound(hello, 0, 3);
        writeInbound(hello, 3, hello.length - 3);

        assertThat(drain(upstream)).isEqualTo(hello);
        assertThat(drain(client)).isEmpty();
        assertThat(client.isOpen()).isTrue();
        assertThat(mismatches()).isEqualTo(1.0);
    }

    @Test
    void bytesThatAreNotTlsAreRefusedWithoutAnAlert() throws Exception {
        tunnel(ProxyConfig.SniCheckMode.ENFORCE);
        byte[] get = "GET / HTTP/1.1\r\n\r\n".getBytes(StandardCharsets.US_ASCII);
        writeInbound(get, 0, get.length);

        assertThat(drain(upstream)).isEmpty();
        assertThat(drain(client)).isEmpty();
        assertThat(client.isOpen()).isFalse();
        assertThat(registry.get(ProxyMetrics.SNI_MISMATCH).tag("reason", "not_tls").counter().count()).isEqualTo(1.0);
    }

    @Test
    void aSilentClientTimesOutUnderEnforceWhileTheOriginStillReachesIt() throws Exception {
        tunnel(ProxyConfig.SniCheckMode.ENFORCE);
        upstream.writeInbound(pooled("220 banner\r\n".getBytes(StandardCharsets.US_ASCII), 0, 12));
        assertThat(new String(drain(client), StandardCharsets.US_ASCII)).isEqualTo("220 banner\r\n");

        client.advanceTimeBy(10, TimeUnit.SECONDS);
        client.runScheduledPendingTasks();

        assertThat(drain(client)).isEqualTo(ACCESS_DENIED_ALERT);
        assertThat(client.isOpen()).isFalse();
        assertThat(registry.get(ProxyMetrics.SNI_MISMATCH).tag("reason", "client_hello_timeout").counter().count())
                .isEqualTo(1.0);
    }

    @Test
    void underReportAPartialHelloPassesAtTheTimeoutAndTheTunnelGoesOn() throws Exception {
        tunnel(ProxyConfig.SniCheckMode.REPORT);
        byte[] hello = TlsHellos.jdk("cdn.quay.io");
        writeInbound(hello, 0, 20);

        client.advanceTimeBy(10, TimeUnit.SECONDS);
        client.runScheduledPendingTasks();
        writeInbound(hello, 20, hello.length - 20);

        assertThat(drain(upstream)).isEqualTo(hello);
        assertThat(client.pipeline().get(PipelineNames.SNI_CHECK)).isNull();
        assertThat(registry.get(ProxyMetrics.SNI_MISMATCH).tag("reason", "client_hello_timeout").counter().count())
                .isEqualTo(1.0);
    }

    @Test
    void endOfInputBeforeAnyByteIsNoProblemAndEndInsideAHelloIsMalformed() throws Exception {
        tunnel(ProxyConfig.SniCheckMode.ENFORCE);
        client.pipeline().fireUserEventTriggered(ChannelInputShutdownEvent.INSTANCE);
        assertThat(client.pipeline().get(PipelineNames.SNI_CHECK)).isNull();
        assertThat(mismatches()).isZero();
        client.close();
        assertThat(logLine()).contains(" sni=- sni_check=no_bytes ");
        client.finishAndReleaseAll();
        upstream.finishAndReleaseAll();

        tunnel(ProxyConfig.SniCheckMode.ENFORCE);
        byte[] hello = TlsHellos.jdk("cdn.quay.io");
        writeInbound(hello, 0, 30);
        client.pipeline().fireUserEventTriggered(ChannelInputShutdownEvent.INSTANCE);
        assertThat(drain(upstream)).isEmpty();
        assertThat(client.isOpen()).isFalse();
        assertThat(registry.get(ProxyMetrics.SNI_MISMATCH).tag("reason", "malformed_client_hello").counter().count())
                .isEqualTo(1.0);
    }

    private void writeInbound(byte[] bytes, int off, int len) {
        client.writeInbound(pooled(bytes, off, len));
    }

    private static ByteBuf pooled(byte[] bytes, int off, int len) {
        return PooledByteBufAllocator.DEFAULT.directBuffer(len).writeBytes(bytes, off, len);
    }

    /** Every byte written to {@code ch} so far, its buffers released. */
    private static byte[] drain(EmbeddedChannel ch) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteBuf buf;
        while ((buf = ch.readOutbound()) != null) {
            byte[] b = new byte[buf.readableBytes()];
            buf.readBytes(b);
            buf.release();
            out.writeBytes(b);
        }
        return out.toByteArray();
    }

    private double mismatches() {
        return registry.find(ProxyMetrics.SNI_MISMATCH).counters().stream().mapToDouble(Counter::count).sum();
    }

    private String logLine() {
        List<String> lines = log.lines();
        assertThat(lines).isNotEmpty();
        return lines.get(lines.size() - 1);
    }
}
