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
import java.util.Locale;

/**
 * The network transport: Netty's native epoll on Linux (fewer system calls and less garbage than
 * NIO's selector), Java NIO elsewhere or when asked for. One choice for every channel of the process,
 * so that a tunnel's two channels share an event loop and class.
 */
public record Transport(String name, IoHandlerFactory ioHandlerFactory, Class<? extends ServerSocketChannel> serverChannel,
        Class<? extends SocketChannel> socketChannel, Class<? extends DatagramChannel> datagramChannel) {

    /**
     * Picks the transport for {@code setting} ({@code auto}, {@code epoll} or {@code nio}).
     *
     * @throws IllegalStateException if epoll is asked for and cannot load here
     */
    public static Transport choose(String setting) {
        String s = setting.toLowerCase(Locale.ROOT);
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
