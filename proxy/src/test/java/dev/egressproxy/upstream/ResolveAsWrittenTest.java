package dev.egressproxy.upstream;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.config.ConfigLoader;
import dev.egressproxy.config.ConfigSnapshot;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.FdBudget;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.policy.Target;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestDnsServer;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.netty.channel.Channel;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.nio.NioDatagramChannel;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.resolver.dns.DnsNameResolverBuilder;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A name is resolved as the client wrote it, whatever the search list and {@code ndots} of the
 * machine's resolv.conf say. The resolvers here start from a Netty builder set as a resolv.conf with
 * {@code search corp.example} and {@code options ndots:5} would set it (a Kubernetes pod's
 * resolv.conf looks like that); the test DNS server answers the name with a search domain appended
 * with another address, on which a second server listens on the same port. Without the proxy's
 * override, {@code registry.example.test} (two dots, fewer than five) is first asked as
 * {@code registry.example.test.corp.example} and the connector dials 127.0.0.2.
 */
class ResolveAsWrittenTest {

    static TcpServer asWritten;
    static TcpServer withSearchDomain;
    static TestDnsServer dns;
    static EventLoopGroup loop;
    static DnsResolvers resolvers;
    static UpstreamConnector connector;
    static ConfigSnapshot live;
    static int port;

    @BeforeAll
    static void start() throws Exception {
        asWritten = TcpServer.echo();
        port = asWritten.port();
        withSearchDomain = TcpServer.echo(InetAddress.getByName("127.0.0.2"), port);
        dns = new TestDnsServer()
                .add("registry.example.test", "127.0.0.1")
                .add("registry.example.test.corp.example", "127.0.0.2")
                .add("only-in-search.test.corp.example", "127.0.0.2");
        ProxyConfig config = ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.example.test", "only-in-search.test"]
                  destinations.allow-private = ["127.0.0.0/8"]
                  dns { servers = ["%s"], query-timeout = 2s }
                  timeouts.connect = 2s
                }
                """.formatted(dns.address()));
        live = ConfigSnapshot.of(config);
        loop = new MultiThreadIoEventLoopGroup(1, NioIoHandler.newFactory());
        // What DnsNameResolverBuilder takes from a resolv.conf with "search corp.example" and "options ndots:5".
        DnsNameResolverBuilder resolvConf = new DnsNameResolverBuilder().searchDomains(List.of("corp.example")).ndots(5);
        resolvers = new DnsResolvers(config.dns(), NioDatagramChannel.class, NioSocketChannel.class, resolvConf);
        connector = new UpstreamConnector(config.limits(), config.relay().notsentLowat(), 1, new ProxyMetrics(new SimpleMeterRegistry(), 100, "test"),
                resolvers, NioSocketChannel.class, new DefaultChannelGroup(GlobalEventExecutor.INSTANCE),
                FdBudget.ofThisProcess(config.limits().maxConnections()));
    }

    @AfterAll
    static void stop() throws Exception {
        resolvers.close();
        loop.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
        dns.close();
        asWritten.close();
        withSearchDomain.close();
    }

    private static Future<Channel> connect(String host) {
        return connector.connect(live, new Target(host, port, null), loop.next(), ChannelInboundHandlerAdapter::new)
                .awaitUninterruptibly();
    }

    @Test
    void aNameWithFewerDotsThanNdotsIsDialledAtItsOwnAddressNotAtTheSearchDomainOne() throws Exception {
        Future<Channel> f = connect("registry.example.test");

        assertThat(f.isSuccess()).as("%s", f.cause()).isTrue();
        try {
            assertThat(((InetSocketAddress) f.getNow().remoteAddress()).getAddress())
                    .isEqualTo(InetAddress.getByName("127.0.0.1"));
        } finally {
            f.getNow().close().syncUninterruptibly();
        }
        assertThat(dns.questions).contains("registry.example.test").noneMatch(q -> q.endsWith("corp.example"));
        assertThat(withSearchDomain.connections.get()).isZero();
    }

    @Test
    void aNameThatOnlyResolvesWithASearchDomainAppendedDoesNotResolve() {
        Future<Channel> f = connect("only-in-search.test");

        assertThat(f.isSuccess()).isFalse();
        assertThat(f.cause()).isInstanceOf(UpstreamException.class);
        assertThat(((UpstreamException) f.cause()).failureCause()).isEqualTo(FailureCause.DNS);
        assertThat(dns.questions).noneMatch(q -> q.endsWith("corp.example"));
        assertThat(withSearchDomain.connections.get()).isZero();
    }
}
