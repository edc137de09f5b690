package dev.egressproxy.upstream;

import dev.egressproxy.config.ConfigSnapshot;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.FdBudget;
import dev.egressproxy.handler.PipelineNames;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.policy.AddressText;
import dev.egressproxy.policy.Kind;
import dev.egressproxy.policy.PolicyEngine;
import dev.egressproxy.policy.Target;
import dev.egressproxy.util.Channels;
import dev.egressproxy.util.EpollInterest;
import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFactory;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelOption;
import io.netty.channel.ConnectTimeoutException;
import io.netty.channel.EventLoop;
import io.netty.channel.RecvByteBufAllocator;
import io.netty.channel.ReflectiveChannelFactory;
import io.netty.channel.WriteBufferWaterMark;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.resolver.AddressResolver;
import io.netty.resolver.dns.DnsNameResolverTimeoutException;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.Promise;
import io.netty.util.concurrent.ScheduledFuture;
import java.net.ConnectException;
import java.net.Inet6Address;
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
 * return something else. A name's allowed addresses are dialled per RFC 8305 (Happy Eyeballs, see
 * {@link Attempts}) until one connects, within one {@code timeouts.connect}, so one dead address
 * or a dead address family of a registry or CDN costs {@code timeouts.connect-attempt-delay}, not
 * the pull. An address whose connects timed out recently is skipped ({@link FastFail},
 * {@code upstream.fast-fail}), and a destination all of whose addresses are skipped is refused at
 * once. {@code connect-to} mappings are trusted
 * operator input and skip both DNS and the address check (not the fast-fail: it is the address that is dead). The outbound channel runs on the inbound
 * channel's event loop and class, so the two sides of a tunnel never need cross-thread handoff.
 *
 * <p>Owns the {@code dns_seconds} (the lookup alone), {@code upstream_connect_seconds} (the TCP
 * connect alone, from its first attempt), {@code upstream_failures_total} and
 * {@code upstream_fast_fail} metrics.
 */
public final class UpstreamConnector {

    private static final Logger log = LoggerFactory.getLogger(UpstreamConnector.class);

    private final ProxyMetrics metrics;
    private final DnsResolvers resolvers;
    private final ChannelFactory<? extends SocketChannel> channelFactory;
    private final ChannelGroup channels;
    private final ProxyConfig.Limits startLimits;
    private final FdBudget fds;
    /** TCP_NOTSENT_LOWAT of every upstream socket: null where the transport cannot set it or it is 0. */
    private final ChannelOption<Long> notSentLowAt;
    private final long notsentLowat;
    /**
     * The reads of up to 64 KiB an upstream socket gets each time it is ready ({@code
     * relay.upstream-reads-per-event}): the kernel sizes a socket's receive buffer by how much the
     * proxy takes from it per round trip, so fewer reads at once keep it small towards slow clients.
     */
    private final RecvByteBufAllocator reads;
    private final FastFail fastFail = new FastFail();

    /**
     * @param startLimits the buffer limits every upstream channel gets (fixed at start; a reload
     *     reports them as needing a restart)
     * @param notsentLowat {@code relay.notsent-lowat}: the unsent bytes an upstream socket queues (0:
     *     the kernel's setting)
     * @param readsPerEvent {@code relay.upstream-reads-per-event}
     * @param fds the open-file budget, which a second connect attempt beside a pending one must fit
     */
    public UpstreamConnector(ProxyConfig.Limits startLimits, int notsentLowat, int readsPerEvent, ProxyMetrics metrics,
            DnsResolvers resolvers, Class<? extends SocketChannel> channelClass, ChannelGroup channels, FdBudget fds) {
        this.fds = fds;
        this.metrics = metrics;
        this.resolvers = resolvers;
        this.channelFactory = new ReflectiveChannelFactory<>(channelClass);
        this.channels = channels;
        this.startLimits = startLimits;
        this.notSentLowAt = Channels.notSentLowAt(channelClass, notsentLowat);
        this.notsentLowat = notsentLowat;
        // Netty's adaptive sizes (64 B to 64 KiB, from 2 KiB), as every other channel has them.
        this.reads = new AdaptiveRecvByteBufAllocator().maxMessagesPerRead(readsPerEvent);
        metrics.watchFastFail(fastFail::downHosts);
    }

    /** The addresses and hosts skipped after connect timeouts. */
    public FastFail fastFail() {
        return fastFail;
    }

    /**
     * The parent proxy a request to {@code target} goes through under {@code live}, or null when it
     * is dialled directly: {@code upstream-proxy.hosts} names it and {@code bypass} does not, and
     * no {@code connect-to} pins it (a pinned address can only be dialled directly).
     */
    public static ProxyConfig.UpstreamProxy parentFor(ConfigSnapshot live, Target target) {
        ProxyConfig cfg = live.config();
        ProxyConfig.UpstreamProxy parent = cfg.upstreamProxy();
        if (!parent.routes(target) || cfg.destinations().connectTo().containsKey(target.authority())) {
            return null;
        }
        return parent;
    }

    /**
     * Opens the connection a decided request needs under {@code live}: to the destination itself
     * ({@link #connect}) when {@code parent} is null, else to the parent, which the caller got from
     * {@link #parentFor} (once per request: it also marks the access log). For a {@code CONNECT}
     * the parent is asked for the tunnel first, so the channel returned carries the destination's
     * bytes; for plain HTTP it is the parent's connection, to which the caller writes absolute-form
     * requests with the parent's credentials.
     */
    public Future<Channel> open(ConfigSnapshot live, ProxyConfig.UpstreamProxy parent, Target target, Kind kind,
            EventLoop loop, Supplier<? extends ChannelHandler> handler) {
        return parent == null ? connect(live, target, loop, handler) : viaParent(live, parent, target, kind, loop, handler);
    }

    /**
     * Dials the parent like any destination (its name resolved here, each of its addresses checked
     * against the address policy, Happy Eyeballs, fast-fail, the open-file budget), never resolving
     * the destination: the parent does. An IP-literal destination is still checked here.
     */
    private Future<Channel> viaParent(ConfigSnapshot live, ProxyConfig.UpstreamProxy parent, Target target, Kind kind,
            EventLoop loop, Supplier<? extends ChannelHandler> handler) {
        Promise<Channel> promise = loop.newPromise();
        ProxyConfig cfg = live.config();
        PolicyEngine policy = live.policy();
        if (target.isIpLiteral()
                && !checkAddress(policy, target, new InetSocketAddress(target.ipLiteral(), target.port()), promise)) {
            return promise;
        }
        Route route = new Route(target, parent, kind == Kind.CONNECT);
        Target p = parent.address();
        if (p.isIpLiteral()) {
            allowedParentAddresses(cfg, policy, route, List.of(new InetSocketAddress(p.ipLiteral(), p.port())), loop,
                    handler, promise);
            return promise;
        }
        long dnsStart = System.nanoTime();
        resolvers.resolver(loop).resolveAll(InetSocketAddress.createUnresolved(p.host(), p.port()))
                .addListener((Future<List<InetSocketAddress>> f) -> {
                    metrics.dnsResolved(f.isSuccess() ? DnsResult.OK : DnsResult.ofFailure(f.cause()),
                            System.nanoTime() - dnsStart);
                    if (!f.isSuccess()) {
                        fail(route, p, promise, FailureCause.DNS, p.authority() + " could not be resolved ("
                                + dnsText(f.cause()) + ")", "DNS lookup of parent " + p.host() + " failed: " + f.cause());
                        return;
                    }
                    allowedParentAddresses(cfg, policy, route, f.getNow(), loop, handler, promise);
                });
        return promise;
    }

    private void allowedParentAddresses(ProxyConfig cfg, PolicyEngine policy, Route route, List<InetSocketAddress> addresses,
            EventLoop loop, Supplier<? extends ChannelHandler> handler, Promise<Channel> promise) {
        List<InetSocketAddress> allowed = new ArrayList<>();
        String firstForbidden = null;
        for (InetSocketAddress a : addresses) {
            Optional<String> why = policy.forbiddenAddress(a.getAddress());
            if (why.isEmpty()) {
                allowed.add(a);
            } else if (firstForbidden == null) {
                firstForbidden = AddressText.of(a.getAddress()) + " (" + why.get() + ")";
            }
        }
        Target p = route.parent().address();
        if (allowed.isEmpty()) {
            String text = "parent proxy " + p.authority() + " is at an address the egress policy does not allow"
                    + " (destinations.allow-private), for " + route.destination().authority();
            metrics.parentFailure(route.destination().host(), ParentFailure.ADDRESS_NOT_ALLOWED);
            log.warn("{}: {}", text, firstForbidden);
            promise.tryFailure(UpstreamException.parent(ParentFailure.ADDRESS_NOT_ALLOWED, null, text,
                    "parent " + p.authority() + " resolved only to forbidden addresses, first " + firstForbidden));
            return;
        }
        dial(cfg, p, route, allowed, loop, handler, promise);
    }

    /**
     * A destination reached through a parent proxy: the destination the client asked for, the
     * parent, and whether the parent must open a tunnel ({@code CONNECT}).
     */
    private record Route(Target destination, ProxyConfig.UpstreamProxy parent, boolean tunnel) {
    }

    /**
     * Resolves, checks and connects under {@code live}, the snapshot the request was decided under:
     * its {@code connect-to}, address policy and connect timeout, whatever a reload has published
     * since. The returned future succeeds with an active channel whose auto-read is off, or fails
     * with an {@link UpstreamException}.
     *
     * @param handler makes the upstream channel's handler (an initializer or a single handler),
     *     once per address tried
     */
    public Future<Channel> connect(ConfigSnapshot live, Target target, EventLoop loop,
            Supplier<? extends ChannelHandler> handler) {
        Promise<Channel> promise = loop.newPromise();
        ProxyConfig cfg = live.config();
        PolicyEngine policy = live.policy();
        InetSocketAddress pinned = cfg.destinations().connectTo().get(target.authority());
        if (pinned != null) {
            dial(cfg, target, null, List.of(pinned), loop, handler, promise);
        } else if (target.isIpLiteral()) {
            InetSocketAddress address = new InetSocketAddress(target.ipLiteral(), target.port());
            if (checkAddress(policy, target, address, promise)) {
                dial(cfg, target, null, List.of(address), loop, handler, promise);
            }
        } else {
            AddressResolver<InetSocketAddress> resolver = resolvers.resolver(loop);
            long dnsStart = System.nanoTime();
            resolver.resolveAll(InetSocketAddress.createUnresolved(target.host(), target.port()))
                    .addListener((Future<List<InetSocketAddress>> f) -> {
                        metrics.dnsResolved(f.isSuccess() ? DnsResult.OK : DnsResult.ofFailure(f.cause()),
                                System.nanoTime() - dnsStart);
                        if (!f.isSuccess()) {
                            fail(null, target, promise, FailureCause.DNS, target.authority() + " could not be resolved (" + dnsText(f.cause()) + ")",
                                    "DNS lookup of " + target.host() + " failed: " + f.cause());
                            return;
                        }
                        List<InetSocketAddress> allowed = new ArrayList<>();
                        String firstForbidden = null;
                        for (InetSocketAddress a : f.getNow()) {
                            Optional<String> why = policy.forbiddenAddress(a.getAddress());
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
                        dial(cfg, target, null, allowed, loop, handler, promise);
                    });
        }
        return promise;
    }

    /**
     * Dials {@code addresses} but those {@link FastFail} skips; when it skips them all, fails at once
     * with {@link FailureCause#UNREACHABLE_RECENTLY}. {@code target} is what is dialled: the
     * destination, or the parent of {@code route} (null when direct).
     */
    private void dial(ProxyConfig cfg, Target target, Route route, List<InetSocketAddress> addresses, EventLoop loop,
            Supplier<? extends ChannelHandler> handler, Promise<Channel> promise) {
        FastFail.Selection selection = fastFail.select(addresses, cfg.upstream().fastFail());
        if (selection == FastFail.UNCHANGED) {
            new Attempts(cfg, target, route, addresses, List.of(), addresses, loop, handler, promise).next();
        } else if (!selection.dial().isEmpty()) {
            log.debug("{}: {} of {} addresses skipped after connect timeouts (fast-fail)", target.authority(),
                    selection.skipped(), addresses.size());
            new Attempts(cfg, target, route, selection.dial(), selection.trials(), addresses, loop, handler, promise).next();
        } else {
            if (fastFail.hostDown(target.authority(), target.host(), addresses)) {
                metrics.upstreamFastFail(target.host());
            }
            fail(route, target, promise, FailureCause.UNREACHABLE_RECENTLY, fastFailText(target.authority(), selection),
                    "fast-fail: " + target.authority() + " not dialled, every address timed out recently: "
                            + addresses.stream().map(AddressText::of).toList());
        }
    }

    /** The answer to a destination whose every address is skipped: when it timed out, and until when. */
    static String fastFailText(String authority, FastFail.Selection selection) {
        String retry = selection.untilRetry() == 0 ? "being retried by another request"
                : "not retried for another " + Math.max(1, (selection.untilRetry() + 999_999_999L) / 1_000_000_000L) + "s";
        long ago = selection.sinceTimeout();
        String agoText = ago < 10_000_000_000L
                ? String.format(Locale.ROOT, "%.1fs", ago / 1e9)
                : (ago / 1_000_000_000L) + "s";
        return authority + " timed out " + agoText + " ago; " + retry + " (fast-fail"
                + (selection.skipped() > 1 ? ", all " + selection.skipped() + " addresses" : "") + ")";
    }

    private static boolean checkAddress(PolicyEngine policy, Target target, InetSocketAddress address,
            Promise<Channel> promise) {
        Optional<String> why = policy.forbiddenAddress(address.getAddress());
        if (why.isPresent()) {
            promise.tryFailure(UpstreamException.addressForbidden(
                    target.authority() + " is an address the egress policy does not allow",
                    AddressText.of(address.getAddress()) + " is " + why.get()));
            return false;
        }
        return true;
    }

    /**
     * Puts the addresses in RFC 8305 order: the families alternate, starting with the family of the
     * resolver's first address (IPv4, as it prefers), each family keeping the resolver's order.
     */
    static List<InetSocketAddress> interleaveFamilies(List<InetSocketAddress> addresses) {
        if (addresses.size() < 2) {
            return addresses;
        }
        boolean firstIsV6 = addresses.get(0).getAddress() instanceof Inet6Address;
        List<InetSocketAddress> first = new ArrayList<>();
        List<InetSocketAddress> other = new ArrayList<>();
        for (InetSocketAddress a : addresses) {
            ((a.getAddress() instanceof Inet6Address) == firstIsV6 ? first : other).add(a);
        }
        List<InetSocketAddress> ordered = new ArrayList<>(addresses.size());
        for (int i = 0; i < Math.max(first.size(), other.size()); i++) {
            if (i < first.size()) {
                ordered.add(first.get(i));
            }
            if (i < other.size()) {
                ordered.add(other.get(i));
            }
        }
        return ordered;
    }

    /**
     * Dials a destination's addresses per RFC 8305 (Happy Eyeballs), on the tunnel's event loop. The
     * families alternate ({@link #interleaveFamilies}); an attempt starts when the previous one
     * failed, or when it has been pending for {@code timeouts.connect-attempt-delay}, and then runs
     * beside it. The first to connect wins and the others are closed. At most two attempts are
     * pending at once, and the second one's descriptor is taken from the open-file budget (when
     * none is spare, the addresses are dialled in turn). Every attempt ends by the one {@code timeouts.connect} deadline: with
     * two running side by side, the addresses not yet dialled share the time left two by two (as
     * the addresses left shared it one by one when they were dialled strictly in turn).
     */
    private final class Attempts {
        private static final int MAX_PENDING = 2;

        private final ProxyConfig config;
        private final Target target;
        /** The parent route when {@code target} is a parent proxy, else null. */
        private final Route route;
        private final List<InetSocketAddress> addresses;
        /** Addresses whose fast-fail trial this connect claimed: each one's end is reported. */
        private final List<InetSocketAddress> trials;
        /** Every address of the destination, skipped ones included. */
        private final List<InetSocketAddress> resolved;
        private final ProxyConfig.FastFail fastFailSettings;
        private final EventLoop loop;
        private final Supplier<? extends ChannelHandler> handler;
        private final Promise<Channel> promise;
        private final long start;
        private final long deadline;
        private final long attemptDelay;
        private final int lanes;
        private final List<Channel> pending = new ArrayList<>(MAX_PENDING);
        private final StringBuilder tried = new StringBuilder();
        private ScheduledFuture<?> timer;
        private int next;
        private boolean over;
        /** A descriptor of the open-file budget is held for the second of two pending attempts. */
        private boolean spareHeld;
        /** An attempt connected and won the race. */
        private boolean won;

        Attempts(ProxyConfig config, Target target, Route route, List<InetSocketAddress> addresses,
                List<InetSocketAddress> trials, List<InetSocketAddress> resolved, EventLoop loop,
                Supplier<? extends ChannelHandler> handler, Promise<Channel> promise) {
            this.config = config;
            this.target = target;
            this.route = route;
            this.addresses = interleaveFamilies(addresses);
            this.trials = trials;
            this.resolved = resolved;
            this.fastFailSettings = config.upstream().fastFail();
            this.loop = loop;
            this.handler = handler;
            this.promise = promise;
            // The connect timeout and upstream_connect_seconds start here, after DNS.
            this.start = System.nanoTime();
            this.deadline = start + config.timeouts().connect().toNanos();
            this.attemptDelay = config.timeouts().connectAttemptDelay().toNanos();
            // A delay as long as the timeout never starts a second attempt beside the first.
            this.lanes = config.timeouts().connectAttemptDelay().compareTo(config.timeouts().connect()) < 0 ? MAX_PENDING : 1;
        }

        void next() {
            if (!pending.isEmpty()) {
                // A second socket beside the pending one: only within the open-file budget, else
                // the pending attempt runs alone and the next address waits for its end.
                if (!fds.tryAcquireSpare(metrics.connectionsActive())) {
                    return;
                }
                spareHeld = true;
            }
            InetSocketAddress address = addresses.get(next++);
            long left = Math.max(0, deadline - System.nanoTime());
            int undialled = addresses.size() - next + 1;
            long share = Math.max(1, TimeUnit.NANOSECONDS.toMillis(left / ((undialled + lanes - 1) / lanes)));
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
                    .option(ChannelOption.RCVBUF_ALLOCATOR, reads)
                    .option(ChannelOption.WRITE_BUFFER_WATER_MARK,
                            new WriteBufferWaterMark(limits.writeBufferLow(), limits.writeBufferHigh()))
                    .handler(handler.get());
            if (notSentLowAt != null) {
                b.option(notSentLowAt, notsentLowat);
            }
            log.debug("connecting to {} at {} (attempt {} of {})", target.authority(), AddressText.of(address.getAddress()),
                    next, addresses.size());
            ChannelFuture connect = b.connect(address);
            // Added before the listener: a connect that completes at once calls it right away.
            pending.add(connect.channel());
            connect.addListener((ChannelFuture f) -> ended(f, address));
            armNextAttempt();
        }

        /** Starts the next address after the attempt delay, if one is left and there is room beside the pending ones. */
        private void armNextAttempt() {
            cancelTimer();
            if (!over && next < addresses.size() && pending.size() < lanes) {
                timer = loop.schedule(() -> {
                    timer = null;
                    if (!over && !promise.isDone() && next < addresses.size() && pending.size() < lanes) {
                        next();
                    }
                }, attemptDelay, TimeUnit.NANOSECONDS);
            }
        }

        private void cancelTimer() {
            if (timer != null) {
                timer.cancel(false);
                timer = null;
            }
        }

        /** Ends the race: no more attempts, and the ones still pending are closed. */
        private void finish() {
            over = true;
            cancelTimer();
            List<Channel> losers = List.copyOf(pending);
            pending.clear();
            releaseSpare();
            // Trials never dialled go back for the next request; the pending ones are reported as they close.
            for (int i = next; i < addresses.size(); i++) {
                if (trials.contains(addresses.get(i))) {
                    fastFail.trialAbandoned(addresses.get(i), false, fastFailSettings);
                }
            }
            losers.forEach(Channel::close);
        }

        private void releaseSpare() {
            if (spareHeld) {
                spareHeld = false;
                fds.releaseSpare();
            }
        }

        private void ended(ChannelFuture f, InetSocketAddress address) {
            if (pending.remove(f.channel()) && pending.size() < MAX_PENDING) {
                // Down to one socket (or none): the second one's descriptor goes back.
                releaseSpare();
            }
            if (f.isSuccess()) {
                fastFail.answered(address);
                if (over || promise.isDone()) {
                    // Connected as another attempt won (or the client went away): not needed.
                    f.channel().close();
                    return;
                }
                won = true;
                finish();
                fastFail.hostConnected(target.authority());
                metrics.upstreamConnected(target.host(), System.nanoTime() - start);
                channels.add(f.channel());
                if (route != null && route.tunnel()) {
                    askParentForTunnel(config, route, f.channel(), promise);
                } else if (!promise.trySuccess(f.channel())) {
                    f.channel().close();
                }
                return;
            }
            if (over) {
                // A loser closed by finish().
                if (trials.contains(address)) {
                    fastFail.trialAbandoned(address, won, fastFailSettings);
                }
                return;
            }
            Throwable cause = f.cause();
            FailureCause fc = classify(cause);
            if (fc != FailureCause.TIMEOUT) {
                fastFail.answered(address);
            } else if (fastFail.timedOut(address, fastFailSettings)) {
                log.info("{} at {} did not answer within the connect timeout; not dialled for {} (upstream.fast-fail)",
                        target.authority(), AddressText.of(address), human(fastFailSettings.coolDown().toMillis()));
            }
            tried.append(tried.length() == 0 ? "" : "; ").append(AddressText.of(address)).append(' ')
                    .append(fc.label()).append(" (").append(causeText(cause, address)).append(')');
            if (promise.isDone()) {
                finish();
                return;
            }
            if (next < addresses.size()) {
                log.debug("connect to {} at {} failed ({}), trying its next address", target.authority(),
                        AddressText.of(address.getAddress()), fc.label());
                next();
                return;
            }
            if (!pending.isEmpty()) {
                // The attempt still pending may yet connect.
                return;
            }
            finish();
            String clientText = connectText(config, target, fc)
                    + (addresses.size() > 1 ? " (" + addresses.size() + " addresses tried)" : "");
            fail(route, target, promise, fc, clientText, "connect to " + target.authority() + " failed: " + tried);
            if (fastFail.allDown(resolved) && fastFail.hostDown(target.authority(), target.host(), resolved)) {
                metrics.upstreamFastFail(target.host());
            }
        }
    }

    /**
     * Fails a connect to {@code target}. Through a parent ({@code route} not null) the failure is
     * the parent's: counted under the destination in {@code parent_failures_total}, and the answer
     * names both hops.
     */
    private void fail(Route route, Target target, Promise<Channel> promise, FailureCause cause, String clientText,
            String logText) {
        if (route == null) {
            metrics.upstreamFailure(target.host(), cause);
            log.debug("{}", logText);
            promise.tryFailure(UpstreamException.failure(cause, clientText, logText));
            return;
        }
        ParentFailure failure = ParentFailure.of(cause);
        metrics.parentFailure(route.destination().host(), failure);
        log.debug("for {}: parent {}", route.destination().authority(), logText);
        promise.tryFailure(UpstreamException.parent(failure, null,
                "parent proxy " + clientText + ", for " + route.destination().authority(), logText));
    }

    /**
     * Sends the parent {@code CONNECT destination} on its fresh connection {@code parent} and
     * completes {@code promise} with that connection once the parent answered 2xx, within
     * {@code timeouts.connect} of the snapshot, the answer's head bounded by
     * {@code limits.max-response-head}.
     */
    private void askParentForTunnel(ProxyConfig config, Route route, Channel parent, Promise<Channel> promise) {
        String parentAuthority = route.parent().address().authority();
        String destination = route.destination().authority();
        parent.pipeline().addFirst(PipelineNames.PARENT_HANDSHAKE, new ParentHandshake(destination,
                route.parent().proxyAuthorization(), startLimits.maxResponseHead(),
                config.timeouts().connect().toNanos(), human(config.timeouts().connect().toMillis()),
                new ParentHandshake.Outcome() {
                    @Override
                    public void connected(Channel ch) {
                        if (!promise.trySuccess(ch)) {
                            ch.close();
                        }
                    }

                    @Override
                    public void failed(Channel ch, ParentFailure failure, String clientText, String logText) {
                        metrics.parentFailure(route.destination().host(), failure);
                        String text = "parent proxy " + parentAuthority + " " + clientText + " for " + destination;
                        log.debug("CONNECT {} through parent {} at {}: {}", destination, parentAuthority,
                                AddressText.of(ch.remoteAddress()), logText);
                        promise.tryFailure(UpstreamException.parent(failure, ch.remoteAddress(), text,
                                "parent " + parentAuthority + " " + logText + " for " + destination));
                    }
                }));
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
            case UNREACHABLE_RECENTLY -> who + " timed out recently";
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
