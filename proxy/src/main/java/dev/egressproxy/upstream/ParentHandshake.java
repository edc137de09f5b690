package dev.egressproxy.upstream;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelDuplexHandler;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.ScheduledFuture;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Opens a tunnel through the parent proxy on a fresh connection to it: writes
 * {@code CONNECT host:port HTTP/1.1} with {@code Host} and the parent's {@code Proxy-Authorization},
 * reads the parent's response head (at most {@code maxHead} bytes, within {@code timeout}) and
 * reports a 2xx as connected, anything else as a {@link ParentFailure}. Added first to the
 * upstream pipeline while auto-read is off; it asks for each read itself.
 *
 * <p>Bytes the parent sent behind its head (a server that speaks first) are the tunnel's first
 * bytes: the handler keeps them, and an end of input behind them, and stays in the pipeline until
 * the tunnel first asks to read, then hands them on as if just read and removes itself. Without
 * such bytes it removes itself at once.
 */
final class ParentHandshake extends ChannelDuplexHandler {

    /** What the handshake ended with; called once, on the channel's event loop. */
    interface Outcome {
        void connected(Channel parent);

        /** The channel is closed after this returns. */
        void failed(Channel parent, ParentFailure failure, String clientText, String logText);
    }

    private static final Pattern STATUS_LINE = Pattern.compile("HTTP/1\\.[01] ([1-9][0-9][0-9])(?: .*)?");

    private final String request;
    private final int maxHead;
    private final long timeoutNanos;
    private final String timeoutText;
    private final Outcome outcome;
    private ByteBuf head;
    /** Where the search for the end of the head resumes. */
    private int searched;
    private ByteBuf leftover;
    private boolean inputShutBehind;
    private boolean done;
    private ScheduledFuture<?> timer;

    /**
     * @param authority the destination's {@code host:port}, validated
     * @param proxyAuthorization the parent's credentials header value, or null
     * @param timeoutText how the timeout reads in an answer, e.g. {@code 10s}
     */
    ParentHandshake(String authority, String proxyAuthorization, int maxHead, long timeoutNanos, String timeoutText,
            Outcome outcome) {
        this.request = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n"
                + (proxyAuthorization == null ? "" : "Proxy-Authorization: " + proxyAuthorization + "\r\n") + "\r\n";
        this.maxHead = maxHead;
        this.timeoutNanos = timeoutNanos;
        this.timeoutText = timeoutText;
        this.outcome = outcome;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        head = ctx.alloc().buffer(256);
        timer = ctx.executor().schedule(() -> fail(ctx, ParentFailure.TIMEOUT,
                "did not answer the CONNECT within " + timeoutText + " (connect timeout)",
                "no answer to CONNECT within " + timeoutText), timeoutNanos, TimeUnit.NANOSECONDS);
        ctx.writeAndFlush(Unpooled.copiedBuffer(request, StandardCharsets.US_ASCII)).addListener((ChannelFutureListener) f -> {
            if (!f.isSuccess()) {
                fail(ctx, ParentFailure.RESET, "closed the connection before the CONNECT was sent",
                        "writing CONNECT failed: " + f.cause());
            }
        });
        ctx.read();
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (done) {
            // Only after a failure (the channel is closing): nobody wants these bytes.
            ReferenceCountUtil.release(msg);
            return;
        }
        if (!(msg instanceof ByteBuf buf)) {
            ReferenceCountUtil.release(msg);
            return;
        }
        head.writeBytes(buf);
        buf.release();
        int end = endOfHead();
        if (end < 0) {
            if (head.readableBytes() > maxHead) {
                fail(ctx, ParentFailure.BAD_RESPONSE, "sent a response head larger than " + maxHead
                        + " bytes (limits.max-response-head)", "response head over " + maxHead + " bytes");
            } else {
                ctx.read();
            }
            return;
        }
        // The CRLFCRLF at end may be the status line's own CRLF too.
        int lineEnd = head.indexOf(head.readerIndex(), end + 1, (byte) '\r');
        String statusLine = head.toString(head.readerIndex(), lineEnd - head.readerIndex(), StandardCharsets.ISO_8859_1);
        Matcher m = STATUS_LINE.matcher(statusLine);
        if (!m.matches()) {
            fail(ctx, ParentFailure.BAD_RESPONSE, "sent a malformed answer to the CONNECT",
                    "malformed status line: " + printable(statusLine));
            return;
        }
        int status = Integer.parseInt(m.group(1));
        if (status < 200 || status > 299) {
            ParentFailure failure = ParentFailure.answered(status);
            fail(ctx, failure, "answered " + status, "answered CONNECT with " + printable(statusLine));
            return;
        }
        done = true;
        cancelTimer();
        if (head.readableBytes() > end + 4 - head.readerIndex()) {
            head.readerIndex(end + 4);
            leftover = head;
        } else {
            head.release();
        }
        head = null;
        if (leftover == null) {
            ctx.pipeline().remove(this);
        }
        outcome.connected(ctx.channel());
    }

    /** The index of the CRLFCRLF ending the head, or -1. */
    private int endOfHead() {
        int from = Math.max(head.readerIndex(), searched - 3);
        int to = head.writerIndex() - 3;
        for (int i = from; i < to; i++) {
            if (head.getByte(i) == '\r' && head.getByte(i + 1) == '\n' && head.getByte(i + 2) == '\r'
                    && head.getByte(i + 3) == '\n') {
                return i;
            }
        }
        searched = head.writerIndex();
        return -1;
    }

    @Override
    public void read(ChannelHandlerContext ctx) {
        if (done && leftover != null) {
            // The tunnel reads for the first time: its first bytes are the ones behind the head.
            ByteBuf first = leftover;
            leftover = null;
            ctx.fireChannelRead(first);
            ctx.fireChannelReadComplete();
            if (inputShutBehind) {
                ctx.fireUserEventTriggered(ChannelInputShutdownEvent.INSTANCE);
            }
            ctx.pipeline().remove(this);
        }
        ctx.read();
    }

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) {
        if (done && leftover == null && head == null) {
            ctx.fireChannelReadComplete();
        }
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
        if (evt instanceof ChannelInputShutdownEvent) {
            if (!done) {
                fail(ctx, ParentFailure.BAD_RESPONSE, "closed the connection before answering the CONNECT",
                        "end of input before the answer to CONNECT");
                return;
            }
            if (leftover != null) {
                inputShutBehind = true;
                return;
            }
        }
        ctx.fireUserEventTriggered(evt);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        if (!done) {
            fail(ctx, ParentFailure.BAD_RESPONSE, "closed the connection before answering the CONNECT",
                    "connection closed before the answer to CONNECT");
        }
        release();
        ctx.fireChannelInactive();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        if (!done) {
            fail(ctx, ParentFailure.RESET, "failed while answering the CONNECT (" + UpstreamConnector.classify(cause).label()
                    + ")", "error before the answer to CONNECT: " + cause);
            return;
        }
        ctx.fireExceptionCaught(cause);
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        cancelTimer();
        release();
    }

    private void fail(ChannelHandlerContext ctx, ParentFailure failure, String clientText, String logText) {
        if (done) {
            return;
        }
        done = true;
        cancelTimer();
        release();
        try {
            outcome.failed(ctx.channel(), failure, clientText, logText);
        } finally {
            ctx.close();
        }
    }

    private void cancelTimer() {
        if (timer != null) {
            timer.cancel(false);
            timer = null;
        }
    }

    private void release() {
        if (head != null) {
            head.release();
            head = null;
        }
        if (leftover != null) {
            leftover.release();
            leftover = null;
        }
    }

    private static String printable(String s) {
        StringBuilder sb = new StringBuilder(Math.min(s.length(), 200));
        for (int i = 0; i < s.length() && i < 200; i++) {
            char c = s.charAt(i);
            sb.append(c >= 0x20 && c < 0x7f ? c : '?');
        }
        return sb.toString();
    }
}
