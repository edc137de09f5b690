package dev.egressproxy.util;

import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.epoll.Native;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.concurrent.atomic.AtomicBoolean;
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
 * by reflection ({@link Access}); if a Netty version changes them the proxy runs without the
 * workaround and, on the epoll transport, the start-up log says so at WARN
 * ({@link #warnIfUnavailable}). {@code NettyInternalsTest} fails the build when they are missing.
 */
public final class EpollInterest {

    private static final Logger log = LoggerFactory.getLogger(EpollInterest.class);
    /** Netty's private methods this class calls, looked up once. */
    private static final Access ACCESS = Access.find("io.netty.channel.epoll.AbstractEpollChannel", "setFlag", "clearFlag");

    /**
     * Netty's {@code AbstractEpollChannel} (not public) and its {@code setFlag(int)} and
     * {@code clearFlag(int)}, which change a channel's epoll interest set. {@code missing} names
     * the first one not found, and is null when all were. The names are parameters so that a test
     * can look up one that is not there.
     */
    record Access(Class<?> type, Method set, Method clear, String missing, AtomicBoolean warned) {

        static Access find(String typeName, String setName, String clearName) {
            try {
                Class<?> type = NettyInternals.type(typeName);
                Method set = NettyInternals.method(type, setName, int.class);
                Method clear = NettyInternals.method(type, clearName, int.class);
                return new Access(type, set, clear, null, new AtomicBoolean());
            } catch (NettyInternals.Missing e) {
                return new Access(null, null, null, e.getMessage(), new AtomicBoolean());
            }
        }

        /** Logs at WARN, once, what is lost without the workaround, on the epoll transport. */
        boolean warnIfMissing(String transport) {
            if (missing == null || !"epoll".equals(transport) || !warned.compareAndSet(false, true)) {
                return false;
            }
            log.warn("cannot keep sockets in Netty's epoll set: {}; a client that half-closes (sends its FIN) and "
                    + "then downloads more than the socket buffers hold can lose the end of the download "
                    + "(Netty shuts the output down when epoll_ctl(MOD) fails with ENOENT; see docs/architecture.md, "
                    + "\"Netty bugs we work around\")", missing);
            return true;
        }
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

    /** Null when the workaround is in force; otherwise the Netty member that is missing. */
    public static String unavailableReason() {
        return ACCESS.missing();
    }

    /**
     * At start-up: a WARN, once per process, when the transport is epoll and Netty's members are
     * missing (the workaround is then off).
     */
    public static void warnIfUnavailable(String transport) {
        ACCESS.warnIfMissing(transport);
    }

    /** Adds {@code EPOLLERR} to an epoll channel not yet registered; returns the channel. */
    public static <C extends Channel> C hold(C ch) {
        if (ACCESS.missing() == null && ACCESS.type().isInstance(ch) && !ch.isRegistered()) {
            invoke(ACCESS.set(), ch);
        }
        return ch;
    }

    /** Takes {@code EPOLLERR} off again; {@link Channels#shutdownOutput} calls it before the FIN. */
    public static void release(Channel ch) {
        if (ACCESS.missing() == null && ACCESS.type().isInstance(ch) && ch.isRegistered() && ch.isOpen()) {
            invoke(ACCESS.clear(), ch);
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
