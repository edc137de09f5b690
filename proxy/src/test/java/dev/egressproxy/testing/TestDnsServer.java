package dev.egressproxy.testing;

import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.DatagramChannel;
import io.netty.channel.socket.nio.NioDatagramChannel;
import io.netty.handler.codec.dns.DatagramDnsQuery;
import io.netty.handler.codec.dns.DatagramDnsQueryDecoder;
import io.netty.handler.codec.dns.DatagramDnsResponse;
import io.netty.handler.codec.dns.DatagramDnsResponseEncoder;
import io.netty.handler.codec.dns.DefaultDnsRawRecord;
import io.netty.handler.codec.dns.DnsQuestion;
import io.netty.handler.codec.dns.DnsRecordType;
import io.netty.handler.codec.dns.DnsResponseCode;
import io.netty.handler.codec.dns.DnsSection;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A small authoritative DNS server over UDP on loopback: answers A and AAAA queries for the
 * names it was given and NXDOMAIN for all others. Lets tests resolve real names to chosen
 * addresses (for instance an allowed name that resolves to 169.254.169.254) without touching the
 * machine's resolver. It records every name it is asked, and can hold its answers back for a
 * while ({@link #delay}), as a slow resolver would.
 */
public final class TestDnsServer implements AutoCloseable {

    private final EventLoopGroup group = new MultiThreadIoEventLoopGroup(1, NioIoHandler.newFactory());
    private final Map<String, List<InetAddress>> records = new ConcurrentHashMap<>();
    private final Channel channel;
    public final AtomicInteger queries = new AtomicInteger();
    /** Every name asked, in lower case without the final dot, in the order the queries came. */
    public final List<String> questions = new CopyOnWriteArrayList<>();
    private volatile long delayMillis;
    /** Answers held back by {@link #delay} and not sent yet; released on close if never sent. */
    private final Set<DatagramDnsResponse> held = Collections.synchronizedSet(Collections.newSetFromMap(new IdentityHashMap<>()));

    public TestDnsServer() throws InterruptedException {
        channel = new Bootstrap().group(group).channel(NioDatagramChannel.class)
                .handler(new ChannelInitializer<DatagramChannel>() {
                    @Override
                    protected void initChannel(DatagramChannel ch) {
                        ch.pipeline().addLast(new DatagramDnsQueryDecoder(), new DatagramDnsResponseEncoder(),
                                new Responder());
                    }
                })
                .bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0)).sync().channel();
    }

    /** Adds an address to {@code name}'s answer; a name added more than once answers them in that order. */
    public TestDnsServer add(String name, String address) throws Exception {
        records.computeIfAbsent(name.toLowerCase(Locale.ROOT), n -> new CopyOnWriteArrayList<>())
                .add(InetAddress.getByName(address));
        return this;
    }

    /** Answers every query {@code delay} after it arrives (0: at once). */
    public TestDnsServer delay(Duration delay) {
        this.delayMillis = delay.toMillis();
        return this;
    }

    /** {@code 127.0.0.1:port}, for the proxy's {@code dns.servers}. */
    public String address() {
        InetSocketAddress a = (InetSocketAddress) channel.localAddress();
        return a.getAddress().getHostAddress() + ":" + a.getPort();
    }

    private final class Responder extends SimpleChannelInboundHandler<DatagramDnsQuery> {
        @Override
        protected void channelRead0(ChannelHandlerContext ctx, DatagramDnsQuery query) {
            queries.incrementAndGet();
            DatagramDnsResponse response = new DatagramDnsResponse(query.recipient(), query.sender(), query.id());
            response.setRecursionAvailable(true);
            DnsQuestion question = query.recordAt(DnsSection.QUESTION);
            response.addRecord(DnsSection.QUESTION, question);
            String name = question.name().toLowerCase(Locale.ROOT);
            if (name.endsWith(".")) {
                name = name.substring(0, name.length() - 1);
            }
            questions.add(name);
            List<InetAddress> addresses = records.get(name);
            if (addresses == null) {
                response.setCode(DnsResponseCode.NXDOMAIN);
            } else {
                for (InetAddress address : addresses) {
                    boolean v6 = address.getAddress().length == 16;
                    DnsRecordType wanted = question.type();
                    if ((wanted == DnsRecordType.A && !v6) || (wanted == DnsRecordType.AAAA && v6)) {
                        response.addRecord(DnsSection.ANSWER, new DefaultDnsRawRecord(question.name(), wanted, 60,
                                Unpooled.wrappedBuffer(address.getAddress())));
                    }
                }
            }
            long delay = delayMillis;
            if (delay > 0) {
                held.add(response);
                ctx.executor().schedule(() -> {
                    if (held.remove(response)) {
                        ctx.writeAndFlush(response);
                    }
                }, delay, TimeUnit.MILLISECONDS);
            } else {
                ctx.writeAndFlush(response);
            }
        }
    }

    @Override
    public void close() {
        channel.close().syncUninterruptibly();
        group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
        synchronized (held) {
            held.forEach(DatagramDnsResponse::release);
            held.clear();
        }
    }
}
