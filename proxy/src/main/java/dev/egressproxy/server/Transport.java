package dev.egressproxy.server;

import io.netty.channel.IoHandlerFactory;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollDatagramChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerSocketChannel;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.DatagramChannel;
import io.netty.channel.socket.ServerSocketChannel;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioDatagramChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.channel.uring.IoUring;
import io.netty.channel.uring.IoUringDatagramChannel;
import io.netty.channel.uring.IoUringIoHandler;
import io.netty.channel.uring.IoUringServerSocketChannel;
import io.netty.channel.uring.IoUringSocketChannel;
import java.util.Locale;

/**
 * The network transport: Netty's native epoll on Linux (fewer system calls and less garbage than
 * NIO's selector), Java NIO elsewhere or when asked for, and Linux io_uring when asked for (faster
 * round trips, but no splice(2) relay; docs/performance.md has the measurements).
 * One choice for every channel of the process, so that a tunnel's two channels share an event loop
 * and class.
 */
public record Transport(String name, IoHandlerFactory ioHandlerFactory, Class<? extends ServerSocketChannel> serverChannel,
        Class<? extends SocketChannel> socketChannel, Class<? extends DatagramChannel> datagramChannel) {

    /**
     * Picks the transport for {@code setting} ({@code auto}, {@code epoll}, {@code io_uring} or
     * {@code nio}). {@code auto} never picks io_uring: container runtimes' default seccomp profiles
     * refuse its system calls, and without splice it moves bulk tunnel bytes more slowly.
     *
     * @throws IllegalStateException if epoll or io_uring is asked for and cannot be used here
     */
    public static Transport choose(String setting) {
        String s = setting.toLowerCase(Locale.ROOT);
        if (s.equals("io_uring")) {
            if (!IoUring.isAvailable()) {
                throw new IllegalStateException("transport = io_uring, but io_uring is not available here"
                        + " (a seccomp profile or kernel.io_uring_disabled can refuse it): " + IoUring.unavailabilityCause());
            }
            return new Transport("io_uring", IoUringIoHandler.newFactory(), IoUringServerSocketChannel.class,
                    IoUringSocketChannel.class, IoUringDatagramChannel.class);
        }
        if (s.equals("nio") || (s.equals("auto") && !Epoll.isAvailable())) {
            return nio();
        }
        if (!Epoll.isAvailable()) {
            throw new IllegalStateException("transport = epoll, but native epoll is not available here: "
                    + Epoll.unavailabilityCause());
        }
        return new Transport("epoll", EpollIoHandler.newFactory(), EpollServerSocketChannel.class,
                EpollSocketChannel.class, EpollDatagramChannel.class);
    }

    public static Transport nio() {
        return new Transport("nio", NioIoHandler.newFactory(), NioServerSocketChannel.class, NioSocketChannel.class,
                NioDatagramChannel.class);
    }
}
