package dev.egressproxy.upstream;

import dev.egressproxy.config.ProxyConfig;
import io.netty.channel.EventLoop;
import io.netty.channel.socket.DatagramChannel;
import io.netty.channel.socket.SocketChannel;
import io.netty.resolver.AddressResolver;
import io.netty.resolver.ResolvedAddressTypes;
import io.netty.resolver.dns.DefaultDnsCache;
import io.netty.resolver.dns.DnsAddressResolverGroup;
import io.netty.resolver.dns.DnsNameResolverBuilder;
import io.netty.resolver.dns.DnsServerAddressStreamProviders;
import io.netty.resolver.dns.SequentialDnsServerAddressStreamProvider;
import java.io.Closeable;
import java.net.InetSocketAddress;

/**
 * The asynchronous DNS resolvers, one per event loop, sharing one cache that honours record TTLs
 * within {@code dns.min-ttl}..{@code dns.max-ttl} and remembers failures for {@code dns.negative-ttl}.
 * Lookups never block an event loop. {@code /etc/hosts} is consulted first, as the system resolver
 * would.
 */
public final class DnsResolvers implements Closeable {

    private final DnsAddressResolverGroup group;

    public DnsResolvers(ProxyConfig.Dns dns, Class<? extends DatagramChannel> datagramClass,
            Class<? extends SocketChannel> socketClass) {
        DnsNameResolverBuilder builder = new DnsNameResolverBuilder()
                .datagramChannelType(datagramClass)
                .socketChannelType(socketClass)
                .queryTimeoutMillis(dns.queryTimeout().toMillis())
                .resolvedAddressTypes(ResolvedAddressTypes.IPV4_PREFERRED)
                .resolveCache(new DefaultDnsCache(
                        (int) dns.minTtl().toSeconds(),
                        (int) Math.max(dns.minTtl().toSeconds(), dns.maxTtl().toSeconds()),
                        (int) dns.negativeTtl().toSeconds()));
        if (dns.servers().isEmpty()) {
            builder.nameServerProvider(DnsServerAddressStreamProviders.platformDefault());
        } else {
            builder.nameServerProvider(new SequentialDnsServerAddressStreamProvider(
                    dns.servers().toArray(new InetSocketAddress[0])));
        }
        this.group = new DnsAddressResolverGroup(builder);
    }

    /** The resolver bound to {@code loop}; its callbacks run on that loop. */
    public AddressResolver<InetSocketAddress> resolver(EventLoop loop) {
        return group.getResolver(loop);
    }

    @Override
    public void close() {
        group.close();
    }
}
