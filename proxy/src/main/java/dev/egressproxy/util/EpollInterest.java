package dev.egressproxy.util;

import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.epoll.Native;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps a socket in Netty's epoll set while the proxy may still write to it.
 *
 * <p>Netty 4.2.18's epoll transport takes a socket out of the epoll set ({@code epoll_ctl(DEL)})
 * when the events it waits for become none (its input has ended and nothing is waiting to be
 * written), but goes on treating it as registered: the next write that has to wait for the socket
 * asks for {@code EPOLLOUT} with {@code epoll_ctl(MOD)}, which fails with ENOENT, and Netty then
 * shuts the output down. A client that sends its FIN and then downloads more than its socket
 * buffers hold lost the rest of the download that way ({@code
 * ProxyIT.clientThatEndsItsRequestBeforeTheDownloadStartsStillReceivesAllOfIt}).
 *
 * <p>Here every proxied socket also asks for {@code EPOLLERR}, which the kernel reports whether
 * asked for or not (so no event changes), and the set of events never becomes empty. It is added
 * before the socket is registered, which costs no system call. It is taken off when the proxy shuts
 * the socket's output down ({@link Channels#shutdownOutput}), after which nothing more is written
 * to it: a socket shut in both
 * directions reports {@code EPOLLHUP}, which Netty ignores, and would wake the event loop again and
 * again until it is closed if it stayed in the set.
 *
 * <p>The two methods are Netty's own ({@code setFlag} and {@code clearFlag}, not public), reached
 * by reflection; if a Netty version changes them the start-up log says so and the proxy runs
 * without the workaround.
 */
public final class EpollInterest {

    private static final Logger log = LoggerFactory.getLogger(EpollInterest.class);
    /** Netty's {@code AbstractEpollChannel} (not public); null where it cannot be used. */
    private static final Class<?> EPOLL_CHANNEL;
    private static final Method SET;
    private static final Method CLEAR;

    static {
        Class<?> type = null;
        Method set = null;
        Method clear = null;
        try {
            type = Class.forName("io.netty.channel.epoll.AbstractEpollChannel");
            set = type.getDeclaredMethod("setFlag", int.class);
            clear = type.getDeclaredMethod("clearFlag", int.class);
            set.setAccessible(true);
            clear.setAccessible(true);
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            log.warn("cannot keep sockets in Netty's epoll set (a client that half-closes may lose the end of a "
                    + "download): {}", e.toString());
            type = null;
        }
        EPOLL_CHANNEL = type;
        SET = type == null ? null : set;
        CLEAR = type == null ? null : clear;
    }

    /** Marks the server channel's accepted sockets before they are registered. */
    @ChannelHandler.Sharable
    public static final class OnAccept extends ChannelInboundHandlerAdapter {
        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            if (msg instanceof Channel child) {
                hold(child);
            }
            ctx.fireChannelRead(msg);
        }
    }

    private EpollInterest() {
    }

    /** Adds {@code EPOLLERR} to an epoll channel not yet registered; returns the channel. */
    public static <C extends Channel> C hold(C ch) {
        if (SET != null && EPOLL_CHANNEL.isInstance(ch) && !ch.isRegistered()) {
            invoke(SET, ch);
        }
        return ch;
    }

    /** Takes {@code EPOLLERR} off again; {@link Channels#shutdownOutput} calls it before the FIN. */
    public static void release(Channel ch) {
        if (CLEAR != null && EPOLL_CHANNEL.isInstance(ch) && ch.isRegistered() && ch.isOpen()) {
            invoke(CLEAR, ch);
        }
    }

    private static void invoke(Method m, Channel ch) {
        try {
            m.invoke(ch, Native.EPOLLERR);
        } catch (InvocationTargetException e) {
            // The epoll_ctl failed: the socket is going away; its own handlers see why.
            log.debug("{} EPOLLERR on {} failed: {}", m.getName(), ch, String.valueOf(e.getCause()));
        } catch (IllegalAccessException e) {
            throw new IllegalStateException("made accessible at class initialisation", e);
        }
    }
}
