package dev.egressproxy.upstream;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The CONNECT handshake with a parent proxy, on an {@link EmbeddedChannel}. */
class ParentHandshakeTest {

    private final List<String> outcomes = new ArrayList<>();

    private final ParentHandshake.Outcome outcome = new ParentHandshake.Outcome() {
        @Override
        public void connected(Channel parent) {
            outcomes.add("connected");
        }

        @Override
        public void failed(Channel parent, ParentFailure failure, String clientText, String logText) {
            outcomes.add(failure.label() + ": " + clientText);
        }
    };

    private EmbeddedChannel channel(String credentials) {
        EmbeddedChannel ch = new EmbeddedChannel();
        ch.config().setAutoRead(false);
        ch.pipeline().addLast(new ChannelInboundHandlerAdapter());
        ch.pipeline().addFirst("handshake", new ParentHandshake("cdn02.quay.io:443", credentials, 1024,
                TimeUnit.SECONDS.toNanos(10), "10s", outcome));
        return ch;
    }

    private static String text(ByteBuf buf) {
        try {
            return buf.toString(StandardCharsets.US_ASCII);
        } finally {
            buf.release();
        }
    }

    private static ByteBuf bytes(String s) {
        return Unpooled.copiedBuffer(s, StandardCharsets.US_ASCII);
    }

    @Test
    void sendsConnectWithHostAndTheParentsCredentials() {
        EmbeddedChannel ch = channel("Basic dTpw");
        assertThat(text(ch.readOutbound())).isEqualTo(
                "CONNECT cdn02.quay.io:443 HTTP/1.1\r\nHost: cdn02.quay.io:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n");
        ch.finishAndReleaseAll();
    }

    @Test
    void answer2xxInPiecesConnectsAndLeavesThePipeline() {
        EmbeddedChannel ch = channel(null);
        text(ch.readOutbound());
        ch.writeInbound(bytes("HTTP/1.1 200 Connection est"));
        assertThat(outcomes).isEmpty();
        ch.writeInbound(bytes("ablished\r\n\r\n"));
        assertThat(outcomes).containsExactly("connected");
        assertThat(ch.pipeline().get("handshake")).isNull();
        assertThat(ch.isOpen()).isTrue();
        assertThat((Object) ch.readInbound()).isNull();
        ch.finishAndReleaseAll();
    }

    @Test
    void bytesBehindThe200ReachTheTunnelOnItsFirstRead() {
        EmbeddedChannel ch = channel(null);
        text(ch.readOutbound());
        ch.writeInbound(bytes("HTTP/1.0 200 OK\r\nX-Squid: 1\r\n\r\nbanner"));
        ch.pipeline().fireUserEventTriggered(ChannelInputShutdownEvent.INSTANCE);
        assertThat(outcomes).containsExactly("connected");
        assertThat((Object) ch.readInbound()).isNull();
        ch.read();
        assertThat(text(ch.readInbound())).isEqualTo("banner");
        assertThat(ch.pipeline().get("handshake")).isNull();
        ch.finishAndReleaseAll();
    }

    @Test
    void non2xxFailsNamingTheStatus() {
        EmbeddedChannel ch = channel(null);
        text(ch.readOutbound());
        ch.writeInbound(bytes("HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!"));
        assertThat(outcomes).containsExactly("answered_403: answered 403");
        assertThat(ch.isOpen()).isFalse();
        ch.finishAndReleaseAll();
    }

    @Test
    void headLargerThanTheLimitIsABadResponse() {
        EmbeddedChannel ch = channel(null);
        text(ch.readOutbound());
        ch.writeInbound(bytes("HTTP/1.1 200 OK\r\nX: " + "a".repeat(2000)));
        assertThat(outcomes).containsExactly("bad_response: sent a response head larger than 1024 bytes"
                + " (limits.max-response-head)");
        ch.finishAndReleaseAll();
    }

    @Test
    void notHttpIsABadResponse() {
        EmbeddedChannel ch = channel(null);
        text(ch.readOutbound());
        ch.writeInbound(bytes("SSH-2.0-OpenSSH\r\n\r\n"));
        assertThat(outcomes).containsExactly("bad_response: sent a malformed answer to the CONNECT");
        ch.finishAndReleaseAll();
    }

    @Test
    void closeBeforeTheAnswerIsABadResponse() {
        EmbeddedChannel ch = channel(null);
        text(ch.readOutbound());
        ch.writeInbound(bytes("HTTP/1.1 2"));
        ch.pipeline().fireUserEventTriggered(ChannelInputShutdownEvent.INSTANCE);
        assertThat(outcomes).containsExactly("bad_response: closed the connection before answering the CONNECT");
        ch.finishAndReleaseAll();
    }
}
