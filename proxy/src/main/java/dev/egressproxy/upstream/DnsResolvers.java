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
import java.util.List;

/**
 * The asynchronous DNS resolvers, one per event loop, sharing one cache that honours record TTLs
 * within {@code dns.min-ttl}..{@code dns.max-ttl} and remembers failures for {@code dns.negative-ttl}.
 * Lookups never block an event loop. {@code /etc/hosts} is consulted first, as the system resolver
 * would.
 *
 * <p>A name is queried exactly as the client wrote it, as a fully qualified name. Netty's resolver
 * otherwise takes the {@code search} list and {@code ndots} of {@code /etc/resolv.conf}, as libc
 * does: in a Kubernetes pod ({@code ndots:5}, four search domains) {@code registry.redhat.io} would
 * first be asked as {@code registry.redhat.io.<namespace>.svc.cluster.local} and so on, and a
 * search domain with a wildcard record would send an allowlisted name to another host. A client of
 * an egress proxy names hosts on the internet, so the search list never applies.
 */
public final class DnsResolvers implements Closeable {

    private final DnsAddressResolverGroup group;

    public DnsResolvers(ProxyConfig.Dns dns, Class<? extends DatagramChannel> datagramClass,
            Class<? extends SocketChannel> socketClass) {
        this(dns, datagramClass, socketClass, new DnsNameResolverBuilder());
    }

    /**
     * @param base a builder as Netty makes it, whose search domains and ndots default to those of
     *     {@code /etc/resolv.conf}; tests pass one with a search list set, as a resolv.conf would
     */
    DnsResolvers(ProxyConfig.Dns dns, Class<? extends DatagramChannel> datagramClass,
            Class<? extends SocketChannel> socketClass, DnsNameResolverBuilder base) {
        DnsNameResolverBuilder builder = base
                // No search list: every name is absolute (see the class comment).
                .searchDomains(List.of())
                .ndots(1)
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
