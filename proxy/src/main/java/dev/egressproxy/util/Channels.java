package dev.egressproxy.util;

import io.netty.bootstrap.AbstractBootstrap;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelOption;
import io.netty.channel.ChannelOutboundBuffer;
import io.netty.channel.epoll.EpollChannelOption;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.uring.IoUringChannelOption;
import io.netty.channel.uring.IoUringSocketChannel;
import io.netty.util.ReferenceCountUtil;
import java.io.IOException;
import java.util.concurrent.TimeUnit;

/** Small channel helpers shared by the handlers. */
public final class Channels {

    /** How long a refused client may go on sending before the connection is closed regardless. */
    private static final long LINGER_MILLIS = 2000;
    /** How much a refused client may send in that time; past it the connection closes at once. */
    private static final long LINGER_BYTES = 1024 * 1024;

    private Channels() {
    }

    /**
     * The TCP_NOTSENT_LOWAT option that sets {@code relay.notsent-lowat} = {@code bytes} on sockets
     * of {@code socketChannel}'s transport (epoll's or io_uring's); null when there is nothing to
     * set: {@code bytes} is 0 (the kernel's setting), or the transport is NIO, which cannot set it.
     */
    public static ChannelOption<Long> notSentLowAt(Class<? extends SocketChannel> socketChannel, int bytes) {
        if (bytes <= 0) {
            return null;
        }
        if (EpollSocketChannel.class.isAssignableFrom(socketChannel)) {
            return EpollChannelOption.TCP_NOTSENT_LOWAT;
        }
        if (IoUringSocketChannel.class.isAssignableFrom(socketChannel)) {
            return IoUringChannelOption.TCP_NOTSENT_LOWAT;
        }
        return null;
    }

    /**
     * Binds a listener, or fails with a message that names it and the address: "cannot listen
     * (proxy) on 127.0.0.1:3128: Address already in use" instead of the transport's
     * "bind(..) failed with error(-98)".
     */
    public static Channel bindOrExplain(AbstractBootstrap<?, ?> bootstrap, String listener, String host, int port)
            throws IOException, InterruptedException {
        ChannelFuture bound = bootstrap.bind(host, port).await();
        if (bound.isSuccess()) {
            return bound.channel();
        }
        Throwable cause = bound.cause();
        String reason = String.valueOf(cause.getMessage());
        int colon = reason.lastIndexOf(": ");
        if (reason.startsWith("bind(") && colon >= 0) {
            reason = reason.substring(colon + 2);
        }
        throw new IOException("cannot listen (" + listener + ") on " + host + ":" + port + ": " + reason, cause);
    }

    /**
     * Closes {@code ch} once everything already written to it has been flushed. With nothing
     * queued (the usual end of a tunnel) or its output already shut down it closes at once: an
     * empty write and a listener would only wait for nothing, and a write after a shutdown of the
     * output fails with an exception Netty makes for the purpose. Netty drops a channel's outbound
     * buffer when its output is shut down or it closes, so a missing buffer covers both.
     */
    public static void closeOnFlush(Channel ch) {
        if (ch == null) {
            return;
        }
        ChannelOutboundBuffer queued = ch.unsafe().outboundBuffer();
        if (ch.isActive() && queued != null && queued.totalPendingWriteBytes() > 0) {
            ch.writeAndFlush(Unpooled.EMPTY_BUFFER).addListener(ChannelFutureListener.CLOSE);
        } else {
            ch.close();
        }
    }

    /**
     * Shuts {@code sc}'s output down (sends its FIN). The proxy's one way to do so: the socket's
     * {@code EPOLLERR} interest comes off first, since nothing is written to it afterwards
     * ({@link EpollInterest}).
     */
    public static ChannelFuture shutdownOutput(SocketChannel sc) {
        EpollInterest.release(sc);
        return sc.shutdownOutput();
    }

    /**
     * Writes a final answer and closes without losing it. Closing a socket whose receive buffer
     * still holds bytes the client sent (the rest of an oversized head, a request body) makes the
     * kernel send a reset, and a reset can destroy the answer before the client reads it. So, as
     * web servers do, the proxy sends its answer, shuts down its output, and reads and discards
     * what the client still sends until the client closes, for at most two seconds or 1 MiB.
     */
    public static void answerAndClose(ChannelHandlerContext ctx, Object answer) {
        Channel ch = ctx.channel();
        ch.config().setAutoRead(false);
        // Written from the caller's place in the pipeline: through the HTTP encoder when the caller
        // sits behind it, as raw bytes when it sits in front.
        ctx.writeAndFlush(answer).addListener(f -> {
            if (!f.isSuccess() || !(ch instanceof SocketChannel sc) || !ch.isActive()) {
                ch.close();
                return;
            }
            ch.pipeline().addFirst(new Discard());
            shutdownOutput(sc).addListener(s -> ch.config().setAutoRead(true));
            ch.eventLoop().schedule(() -> {
                ch.close();
            }, LINGER_MILLIS, TimeUnit.MILLISECONDS);
        });
    }

    /** Drops everything the client still sends after a final answer; closes on its FIN. */
    private static final class Discard extends ChannelInboundHandlerAdapter {
        private long discarded;

        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            if (msg instanceof io.netty.buffer.ByteBuf buf) {
                discarded += buf.readableBytes();
            }
            ReferenceCountUtil.release(msg);
            if (discarded > LINGER_BYTES) {
                ctx.close();
            }
        }

        @Override
        public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
            if (evt instanceof ChannelInputShutdownEvent) {
                ctx.close();
                return;
            }
            ReferenceCountUtil.release(evt);
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            ctx.close();
        }
    }
}
