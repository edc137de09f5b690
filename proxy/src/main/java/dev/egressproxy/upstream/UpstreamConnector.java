package dev.egressproxy.upstream;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.policy.AddressText;
import dev.egressproxy.policy.PolicyEngine;
import dev.egressproxy.policy.Target;
import dev.egressproxy.util.EpollInterest;
import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFactory;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelOption;
import io.netty.channel.ConnectTimeoutException;
import io.netty.channel.EventLoop;
import io.netty.channel.ReflectiveChannelFactory;
import io.netty.channel.WriteBufferWaterMark;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.resolver.AddressResolver;
import io.netty.resolver.dns.DnsNameResolverTimeoutException;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.Promise;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.NoRouteToHostException;
import java.net.SocketAddress;
import java.net.SocketException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Opens upstream connections for allowed destinations. Resolution never blocks an event loop (the
 * asynchronous DNS resolver runs on the caller's loop), every resolved address is checked against
 * the address policy, and exactly the checked addresses are dialled, so a second lookup cannot
 * return something else. A name's allowed addresses are tried in the resolver's order until one
 * connects, sharing {@code timeouts.connect} (each attempt gets the time left divided by the
 * addresses left, as Go's dialer does), so one dead address of a registry or CDN does not fail the
 * pull and the whole connect stays within the timeout. {@code connect-to} mappings are trusted
 * operator input and skip both DNS and the address check. The outbound channel runs on the inbound
 * channel's event loop and class, so the two sides of a tunnel never need cross-thread handoff.
 *
 * <p>Owns the {@code dns_seconds} (the lookup alone), {@code upstream_connect_seconds} (the TCP
 * connect alone, from its first attempt) and {@code upstream_failures_total} metrics.
 */
public final class UpstreamConnector {

    private static final Logger log = LoggerFactory.getLogger(UpstreamConnector.class);

    private final Supplier<ProxyConfig> config;
    private final Supplier<PolicyEngine> policy;
    private final ProxyMetrics metrics;
    private final DnsResolvers resolvers;
    private final ChannelFactory<? extends SocketChannel> channelFactory;
    private final ChannelGroup channels;
    private final ProxyConfig.Limits startLimits;

    /**
     * @param config the configuration in force; read per connection, so a reload's
     *     {@code connect-to} and connect timeout apply to the next connection
     */
    public UpstreamConnector(Supplier<ProxyConfig> config, Supplier<PolicyEngine> policy, ProxyMetrics metrics,
            DnsResolvers resolvers, Class<? extends SocketChannel> channelClass, ChannelGroup channels) {
        this.config = config;
        this.policy = policy;
        this.metrics = metrics;
        this.resolvers = resolvers;
        this.channelFactory = new ReflectiveChannelFactory<>(channelClass);
        this.channels = channels;
        this.startLimits = config.get().limits();
    }

    /**
     * Resolves, checks and connects. The returned future succeeds with an active channel whose
     * auto-read is off, or fails with an {@link UpstreamException}.
     *
     * @param handler makes the upstream channel's handler (an initializer or a single handler),
     *     once per address tried
     */
    public Future<Channel> connect(Target target, EventLoop loop, Supplier<? extends ChannelHandler> handler) {
        Promise<Channel> promise = loop.newPromise();
        ProxyConfig cfg = config.get();
        InetSocketAddress pinned = cfg.destinations().connectTo().get(target.authority());
        if (pinned != null) {
            new Attempts(cfg, target, List.of(pinned), loop, handler, promise).next();
        } else if (target.isIpLiteral()) {
            InetSocketAddress address = new InetSocketAddress(target.ipLiteral(), target.port());
            if (checkAddress(target, address, promise)) {
                new Attempts(cfg, target, List.of(address), loop, handler, promise).next();
            }
        } else {
            AddressResolver<InetSocketAddress> resolver = resolvers.resolver(loop);
            long dnsStart = System.nanoTime();
            resolver.resolveAll(InetSocketAddress.createUnresolved(target.host(), target.port()))
                    .addListener((Future<List<InetSocketAddress>> f) -> {
                        metrics.dnsResolved(f.isSuccess() ? DnsResult.OK : DnsResult.ofFailure(f.cause()),
                                System.nanoTime() - dnsStart);
                        if (!f.isSuccess()) {
                            fail(target, promise, FailureCause.DNS, target.authority() + " could not be resolved (" + dnsText(f.cause()) + ")",
                                    "DNS lookup of " + target.host() + " failed: " + f.cause());
                            return;
                        }
                        List<InetSocketAddress> allowed = new ArrayList<>();
                        String firstForbidden = null;
                        for (InetSocketAddress a : f.getNow()) {
                            Optional<String> why = policy.get().forbiddenAddress(a.getAddress());
                            if (why.isEmpty()) {
                                allowed.add(a);
                            } else if (firstForbidden == null) {
                                firstForbidden = AddressText.of(a.getAddress()) + " (" + why.get() + ")";
                            }
                        }
                        if (allowed.isEmpty()) {
                            promise.tryFailure(UpstreamException.addressForbidden(
                                    target.authority() + " resolves to an address the egress policy does not allow",
                                    target.host() + " resolved only to forbidden addresses, first " + firstForbidden));
                            return;
                        }
                        new Attempts(cfg, target, allowed, loop, handler, promise).next();
                    });
        }
        return promise;
    }

    private boolean checkAddress(Target target, InetSocketAddress address, Promise<Channel> promise) {
        Optional<String> why = policy.get().forbiddenAddress(address.getAddress());
        if (why.isPresent()) {
            promise.tryFailure(UpstreamException.addressForbidden(
                    target.authority() + " is an address the egress policy does not allow",
                    AddressText.of(address.getAddress()) + " is " + why.get()));
            return false;
        }
        return true;
    }

    /**
     * Dials a destination's addresses one after another until one connects; every attempt gets the
     * connect time left divided by the addresses left. Runs on the tunnel's event loop.
     */
    private final class Attempts {
        private final ProxyConfig config;
        private final Target target;
        private final List<InetSocketAddress> addresses;
        private final EventLoop loop;
        private final Supplier<? extends ChannelHandler> handler;
        private final Promise<Channel> promise;
        private final long start;
        private final long deadline;
        private final StringBuilder tried = new StringBuilder();
        private int index;

        Attempts(ProxyConfig config, Target target, List<InetSocketAddress> addresses, EventLoop loop,
                Supplier<? extends ChannelHandler> handler, Promise<Channel> promise) {
            this.config = config;
            this.target = target;
            this.addresses = addresses;
            this.loop = loop;
            this.handler = handler;
            this.promise = promise;
            // The connect timeout and upstream_connect_seconds start here, after DNS.
            this.start = System.nanoTime();
            this.deadline = start + config.timeouts().connect().toNanos();
        }

        void next() {
            InetSocketAddress address = addresses.get(index);
            long left = deadline - System.nanoTime();
            long share = Math.max(1, TimeUnit.NANOSECONDS.toMillis(left / (addresses.size() - index)));
            // Buffer limits are fixed at start for every channel alike; a reload reports them as needing a restart.
            ProxyConfig.Limits limits = startLimits;
            Bootstrap b = new Bootstrap()
                    .group(loop)
                    // EPOLLERR added before registration: see EpollInterest.
                    .channelFactory((ChannelFactory<SocketChannel>) () -> EpollInterest.hold(channelFactory.newChannel()))
                    .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) Math.min(Integer.MAX_VALUE, share))
                    .option(ChannelOption.ALLOW_HALF_CLOSURE, true)
                    .option(ChannelOption.AUTO_READ, false)
                    // TCP_NODELAY: Netty's socket channels turn it on when they are created (one
                    // setsockopt); asking again here would cost a second one per connection.
                    .option(ChannelOption.SO_KEEPALIVE, true)
                    // The client side's allocator: one pool for both directions of a tunnel, the pool
                    // the allocator metrics report. (Netty 4.2's default is another, adaptive pool.)
                    .option(ChannelOption.ALLOCATOR, PooledByteBufAllocator.DEFAULT)
                    .option(ChannelOption.WRITE_BUFFER_WATER_MARK,
                            new WriteBufferWaterMark(limits.writeBufferLow(), limits.writeBufferHigh()))
                    .handler(handler.get());
            b.connect(address).addListener((ChannelFuture f) -> {
                if (f.isSuccess()) {
                    metrics.upstreamConnected(target.host(), System.nanoTime() - start);
                    channels.add(f.channel());
                    if (!promise.trySuccess(f.channel())) {
                        f.channel().close();
                    }
                    return;
                }
                Throwable cause = f.cause();
                FailureCause fc = classify(cause);
                tried.append(tried.length() == 0 ? "" : "; ").append(AddressText.of(address)).append(' ')
                        .append(fc.label()).append(" (").append(causeText(cause, address)).append(')');
                index++;
                if (index < addresses.size() && !promise.isDone()) {
                    log.debug("connect to {} at {} failed ({}), trying its next address", target.authority(),
                            AddressText.of(address.getAddress()), fc.label());
                    next();
                    return;
                }
                String clientText = connectText(config, target, fc)
                        + (addresses.size() > 1 ? " (" + addresses.size() + " addresses tried)" : "");
                fail(target, promise, fc, clientText, "connect to " + target.authority() + " failed: " + tried);
            });
        }
    }

    private void fail(Target target, Promise<Channel> promise, FailureCause cause, String clientText, String logText) {
        metrics.upstreamFailure(target.host(), cause);
        log.debug("{}", logText);
        promise.tryFailure(UpstreamException.failure(cause, clientText, logText));
    }

    private static String connectText(ProxyConfig config, Target target, FailureCause cause) {
        String who = target.authority();
        return switch (cause) {
            case TIMEOUT -> who + " did not answer within " + human(config.timeouts().connect().toMillis())
                    + " (connect timeout)";
            case REFUSED -> who + " is unreachable: connection refused";
            case RESET -> who + " is unreachable: connection reset";
            case UNREACHABLE -> who + " is unreachable: no route to host";
            case DNS -> who + " could not be resolved";
        };
    }

    private static String human(long millis) {
        return millis % 1000 == 0 ? (millis / 1000) + "s" : millis + "ms";
    }

    private static String dnsText(Throwable cause) {
        for (Throwable t = cause; t != null; t = t.getCause()) {
            if (t instanceof DnsNameResolverTimeoutException) {
                return "DNS lookup timed out";
            }
        }
        return "DNS: no such host";
    }

    /**
     * A connect failure's message without the address Netty appends to it ({@code ": /0:0:0:0:0:0:0:1:443"},
     * in Java's long IPv6 form); the log line names the address already, in {@link AddressText} form.
     */
    static String causeText(Throwable cause, SocketAddress address) {
        String message = String.valueOf(cause.getMessage());
        String suffix = ": " + address;
        return message.endsWith(suffix) ? message.substring(0, message.length() - suffix.length()) : message;
    }

    /** Maps a connect failure to its cause; the exception types differ between NIO and epoll. */
    static FailureCause classify(Throwable cause) {
        if (cause instanceof ConnectTimeoutException) {
            return FailureCause.TIMEOUT;
        }
        String msg = String.valueOf(cause.getMessage()).toLowerCase(Locale.ROOT);
        if (msg.contains("refused")) {
            return FailureCause.REFUSED;
        }
        if (msg.contains("reset")) {
            return FailureCause.RESET;
        }
        if (msg.contains("timed out")) {
            return FailureCause.TIMEOUT;
        }
        if (cause instanceof NoRouteToHostException || msg.contains("unreachable") || msg.contains("no route")) {
            return FailureCause.UNREACHABLE;
        }
        if (cause instanceof ConnectException || cause instanceof SocketException) {
            return FailureCause.UNREACHABLE;
        }
        return FailureCause.UNREACHABLE;
    }
}
