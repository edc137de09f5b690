package dev.egressproxy.guard;

import dev.egressproxy.handler.ErrorResponses;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.handler.RequestPolicyHandler;
import dev.egressproxy.log.AccessRecord;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.Reason;
import dev.egressproxy.util.Channels;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.util.ReferenceCountUtil;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Locale;

/**
 * Refuses obsolete line folding (a header or trailer line that starts with a space or tab) before
 * the HTTP decoder sees it. Netty's decoder would join such a line to the previous header, which
 * RFC 9112 allows, but a proxy that reads a head differently from the server behind it is how
 * request smuggling starts, so egress-proxy answers 400 and closes instead. Everything else about
 * the head (bare CR or LF, header name syntax, Content-Length and Transfer-Encoding) the decoder and
 * {@link RequestPolicyHandler} check.
 *
 * <p>Sits in front of the HTTP codec and passes every byte through untouched. To know where each
 * head starts it follows the body framing (Content-Length, chunked) of the requests it has seen;
 * after anything it cannot follow it stops looking and leaves the decision to the decoder, which
 * refuses what this handler could not follow.
 *
 * <p>It also keeps the decoder from reading past a CONNECT head: the bytes behind it are the
 * tunnel's, not a next request. They are held here (at most {@value #HOLD_LIMIT} bytes, past
 * which the connection is closed) until {@code ConnectTunnelHandler} removes this handler, which
 * then passes them on as raw bytes. So a CONNECT pipelined behind a plain-HTTP request, with its
 * first tunnel bytes in the same write, waits its turn and gets its tunnel with those bytes intact.
 */
public final class HeadGuardHandler extends ChannelInboundHandlerAdapter {

    private enum State {
        HEAD_LINE_START, HEAD_LINE, HEAD_CR,
        BODY,
        CHUNK_LINE, CHUNK_CR, CHUNK_DATA, CHUNK_DATA_CR, CHUNK_DATA_LF,
        TRAILER_LINE_START, TRAILER_LINE, TRAILER_CR,
        PASS,
        /** After a CONNECT head: hold every byte for the tunnel. */
        HOLD
    }

    /** Bytes held behind a CONNECT head; normally one read at most (reading pauses during an exchange). */
    static final int HOLD_LIMIT = 128 * 1024;

    private final ProxyServices services;
    private final int maxHead;
    private State state = State.HEAD_LINE_START;
    private final StringBuilder line = new StringBuilder();
    private boolean firstLine = true;
    private int headBytes;
    private String method = "-";
    private boolean chunked;
    private long contentLength;
    private long remaining;
    private boolean trailerLine;
    private final ArrayDeque<ByteBuf> held = new ArrayDeque<>();
    private int heldBytes;

    public HeadGuardHandler(ProxyServices services, int maxHead) {
        this.services = services;
        this.maxHead = maxHead;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (state == State.HOLD && msg instanceof ByteBuf buf) {
            hold(ctx, buf);
            return;
        }
        if (state == State.PASS || !(msg instanceof ByteBuf buf)) {
            ctx.fireChannelRead(msg);
            return;
        }
        int i = buf.readerIndex();
        int end = buf.writerIndex();
        while (i < end && state != State.PASS && state != State.HOLD) {
            if (state == State.BODY || state == State.CHUNK_DATA) {
                int skip = (int) Math.min(remaining, end - i);
                remaining -= skip;
                i += skip;
                if (remaining == 0) {
                    if (state == State.BODY) {
                        startHead();
                    } else {
                        state = State.CHUNK_DATA_CR;
                    }
                }
                continue;
            }
            if (!accept(buf.getByte(i++))) {
                ReferenceCountUtil.release(buf);
                refuse(ctx);
                return;
            }
        }
        if (state == State.HOLD && i < end) {
            // Held before the head goes on: the CONNECT may start its tunnel, and remove this
            // handler, while the decoder is still reading the head.
            ByteBuf head = buf.retainedSlice(buf.readerIndex(), i - buf.readerIndex());
            ByteBuf rest = buf.retainedSlice(i, end - i);
            buf.release();
            hold(ctx, rest);
            ctx.fireChannelRead(head);
            return;
        }
        ctx.fireChannelRead(msg);
    }

    private void hold(ChannelHandlerContext ctx, ByteBuf buf) {
        held.add(buf);
        heldBytes += buf.readableBytes();
        if (heldBytes > HOLD_LIMIT) {
            releaseHeld();
            ctx.close();
        }
    }

    private void releaseHeld() {
        ByteBuf b;
        while ((b = held.poll()) != null) {
            b.release();
        }
        heldBytes = 0;
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        // The tunnel starts: what followed the CONNECT head goes on, in order, as raw bytes.
        ByteBuf b;
        while ((b = held.poll()) != null) {
            ctx.fireChannelRead(b);
        }
        heldBytes = 0;
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        releaseHeld();
        ctx.fireChannelInactive();
    }

    private void startHead() {
        state = State.HEAD_LINE_START;
        firstLine = true;
        headBytes = 0;
        chunked = false;
        contentLength = 0;
        line.setLength(0);
    }

    /** Feeds one byte that is not body data; false on obsolete line folding. */
    private boolean accept(byte b) {
        switch (state) {
            case HEAD_LINE_START -> {
                if (firstLine && line.length() == 0 && (b == '\r' || b == '\n')) {
                    return true; // blank lines before a request line are skipped, as the decoder does
                }
                if (!firstLine && (b == ' ' || b == '\t')) {
                    return false;
                }
                if (b == '\r') {
                    state = State.HEAD_CR;
                } else {
                    state = State.HEAD_LINE;
                    append(b);
                }
            }
            case HEAD_LINE -> {
                if (b == '\r') {
                    state = State.HEAD_CR;
                } else {
                    append(b);
                }
            }
            case HEAD_CR -> {
                if (b != '\n') {
                    state = State.PASS; // bare CR: the decoder refuses it
                } else {
                    endOfHeadLine();
                }
            }
            case CHUNK_LINE -> {
                if (b == '\r') {
                    state = State.CHUNK_CR;
                } else {
                    append(b);
                }
            }
            case CHUNK_CR -> {
                if (b != '\n') {
                    state = State.PASS;
                } else {
                    endOfChunkLine();
                }
            }
            case CHUNK_DATA_CR -> state = b == '\r' ? State.CHUNK_DATA_LF : State.PASS;
            case CHUNK_DATA_LF -> {
                if (b == '\n') {
                    state = State.CHUNK_LINE;
                    line.setLength(0);
                } else {
                    state = State.PASS;
                }
            }
            case TRAILER_LINE_START -> {
                if (b == ' ' || b == '\t') {
                    return false;
                }
                trailerLine = b != '\r';
                state = trailerLine ? State.TRAILER_LINE : State.TRAILER_CR;
            }
            case TRAILER_LINE -> {
                if (b == '\r') {
                    state = State.TRAILER_CR;
                }
            }
            case TRAILER_CR -> {
                if (b != '\n') {
                    state = State.PASS;
                } else if (!trailerLine) {
                    startHead(); // the empty line that ends the trailers ends the request
                } else {
                    state = State.TRAILER_LINE_START;
                }
            }
            default -> {
                // BODY and CHUNK_DATA are skipped in channelRead; PASS is never fed.
            }
        }
        return true;
    }

    private void append(byte b) {
        // The decoder bounds the request line and the header block separately, each by maxHead; only a
        // head longer than both together is one the decoder is sure to refuse (414 or 431).
        if (++headBytes > 2L * maxHead + 4) {
            state = State.PASS;
        } else if (line.length() < 512) {
            line.append((char) (b & 0xff));
        }
    }

    private void endOfHeadLine() {
        String text = line.toString();
        line.setLength(0);
        if (text.isEmpty()) {
            endOfHead();
            return;
        }
        if (firstLine) {
            firstLine = false;
            int sp = text.indexOf(' ');
            method = sp > 0 ? text.substring(0, sp) : text;
        } else {
            int colon = text.indexOf(':');
            if (colon > 0) {
                String name = text.substring(0, colon).toLowerCase(Locale.ROOT);
                String value = text.substring(colon + 1).trim();
                if (name.equals("transfer-encoding")) {
                    chunked = true;
                } else if (name.equals("content-length")) {
                    try {
                        contentLength = Long.parseLong(value);
                    } catch (NumberFormatException e) {
                        contentLength = -1;
                    }
                }
            }
        }
        state = State.HEAD_LINE_START;
    }

    private void endOfHead() {
        if ("CONNECT".equals(method)) {
            state = State.HOLD;
        } else if (contentLength < 0) {
            state = State.PASS;
        } else if (chunked) {
            state = State.CHUNK_LINE;
        } else if (contentLength > 0) {
            remaining = contentLength;
            state = State.BODY;
        } else {
            startHead();
        }
    }

    private void endOfChunkLine() {
        String text = line.toString();
        line.setLength(0);
        int semi = text.indexOf(';');
        String size = (semi < 0 ? text : text.substring(0, semi)).trim();
        try {
            remaining = Long.parseLong(size, 16);
        } catch (NumberFormatException e) {
            state = State.PASS;
            return;
        }
        if (remaining < 0) {
            state = State.PASS;
        } else {
            state = remaining == 0 ? State.TRAILER_LINE_START : State.CHUNK_DATA;
        }
    }

    private void refuse(ChannelHandlerContext ctx) {
        state = State.PASS;
        services.metrics().request(Kind.HTTP, Reason.MALFORMED_REQUEST);
        AccessRecord record = AccessRecord.of(services.nextConnectionId() + "-1", ClientIdentity.of(ctx.channel()))
                .method(method).decision("denied", Reason.MALFORMED_REQUEST.label(), "-").status(400);
        services.accessLog().log(record);
        // Written from in front of the codec, so the bytes go out as they are.
        Channels.answerAndClose(ctx, Unpooled.copiedBuffer(REFUSAL, StandardCharsets.US_ASCII));
    }

    private static final String REFUSAL_BODY = "obsolete line folding in the request head is not accepted\n";
    private static final String REFUSAL = "HTTP/1.1 400 obsolete line folding in the request head\r\n"
            + "Content-Type: text/plain\r\nContent-Length: " + REFUSAL_BODY.length() + "\r\nConnection: close\r\n"
            + ErrorResponses.REASON_HEADER + ": " + Reason.MALFORMED_REQUEST.label() + "\r\n\r\n" + REFUSAL_BODY;
}
