package dev.egressproxy.server;

import dev.egressproxy.config.ConfigSnapshot;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.AcceptFailureHandler;
import dev.egressproxy.guard.ClientGuardHandler;
import dev.egressproxy.guard.FdBudget;
import dev.egressproxy.guard.MemoryBudget;
import dev.egressproxy.guard.ProxyAuth;
import dev.egressproxy.handler.DrainEvent;
import dev.egressproxy.handler.ProxyClosingEvent;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.log.AccessLog;
import dev.egressproxy.metrics.AdminServer;
import dev.egressproxy.metrics.DeniedReport;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.metrics.StatusReport;
import dev.egressproxy.policy.AddressText;
import dev.egressproxy.tunnel.SpliceRelay;
import dev.egressproxy.upstream.DnsResolvers;
import dev.egressproxy.upstream.UpstreamConnector;
import dev.egressproxy.util.Channels;
import dev.egressproxy.util.EpollInterest;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.WriteBufferWaterMark;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.netty.util.concurrent.EventExecutor;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The running proxy: binds the proxy listener and the admin listener, owns the event loops, and
 * stops them in order. Upstream connections run on the event loop of their client connection.
 */
public final class ProxyServer implements AutoCloseable {

    private static final Logger log = LoggerFactory.getLogger(ProxyServer.class);

    private static final String REPORT_MODE_WARNING = "allowlist.mode = report (top-level or a policy's): that allowlist is NOT enforced; "
            + "destinations it does not name are let through (the address policy still applies) and counted as "
            + "would-be denials (egress_proxy_would_deny_total, /denied?format=hocon). Set allowlist.mode = enforce "
            + "once the allowlist is complete.";

    private final ProxyConfig config;
    /** The configuration in force ({@link #config} or the last reloaded one) with its policy, published together. */
    private final AtomicReference<ConfigSnapshot> live = new AtomicReference<>();
    private final PrometheusMeterRegistry registry;
    private final ProxyMetrics metrics;
    private final DeniedReport deniedReport;
    private final StatusReport status;
    private final ChannelGroup clientChannels = new DefaultChannelGroup("clients", GlobalEventExecutor.INSTANCE);
    private final ChannelGroup upstreamChannels = new DefaultChannelGroup("upstreams", GlobalEventExecutor.INSTANCE);
    private EventLoopGroup workerGroup;
    private DnsResolvers resolvers;
    private Transport transport;
    private Channel listener;
    private ProxyChannelInitializer initializer;
    private ListenerTls listenerTls;
    private AdminServer admin;
    private FdBudget fds;
    private MemoryBudget memory;
    private ProxyAuth auth;
    private volatile boolean ready;
    private boolean holdReadiness;
    private Supplier<? extends CompletionStage<?>> beforeScrape = () -> CompletableFuture.completedFuture(null);

    public ProxyServer(ProxyConfig config, PrometheusMeterRegistry registry, String version) {
        this.config = config;
        this.registry = registry;
        this.metrics = new ProxyMetrics(registry, config.metrics().maxHostLabels(), version);
        this.deniedReport = new DeniedReport(config.metrics().deniedReportSize());
        this.status = new StatusReport(version, this::liveConfig, metrics, deniedReport, this::transportName,
                () -> fds == null ? 0 : fds.maxConnections(), () -> ready);
        ConfigSnapshot first = ConfigSnapshot.of(config);
        live.set(first);
        metrics.setAllowlistEntries(config.allowlist().entries().size());
        metrics.setAllowlistEnforced(first.enforcing());
        metrics.registerAllowlistedHosts(first.exactHosts());
    }

    /**
     * Puts a reloaded configuration in force. The allowlist (and its mode), {@code clients},
     * {@code destinations}, {@code admin.clients.allow}, the connect timeout and
     * {@code upstream.fast-fail} apply to the next connection or request at once; connections
     * already open (tunnels included) are not touched. Configuration and policy are published as
     * one {@link ConfigSnapshot}, so a request is decided and dialled under the same one. Returns
     * the settings that differ but only take effect after a restart. The TLS listener's
     * certificate, key and client CAs ({@code listen.tls}, read by the loader) serve the next
     * handshake; turning TLS on or off needs a restart.
     */
    public List<String> apply(ProxyConfig next) {
        ConfigSnapshot snapshot = ConfigSnapshot.of(next);
        metrics.registerAllowlistedHosts(snapshot.exactHosts());
        metrics.setAllowlistEntries(next.allowlist().entries().size());
        boolean wasEnforcing = live.get().enforcing();
        live.set(snapshot);
        metrics.setAllowlistEnforced(snapshot.enforcing());
        if (!snapshot.enforcing()) {
            log.warn("{}", REPORT_MODE_WARNING);
        } else if (!wasEnforcing) {
            log.info("allowlist.mode = enforce: destinations the allowlist does not name are refused again");
        }
        List<String> restart = new ArrayList<>();
        ProxyConfig running = config;
        if (listenerTls != null) {
            // Re-read on every reload: new connections get the new certificate, key and client CAs.
            listenerTls.reload(next.listen().tls());
        }
        // listen.proxy-protocol-from and the TLS files apply to the next connection; the rest of listen
        // (host, port, TLS on or off) and the PROXY protocol mode need a restart.
        if (!running.listen().sameListener(next.listen())) {
            restart.add("listen");
        }
        if (running.listen().proxyProtocol().mode() != next.listen().proxyProtocol().mode()) {
            restart.add("listen.proxy-protocol");
        }
        if (!running.admin().sameListener(next.admin())) {
            restart.add("admin");
        }
        if (!running.dns().equals(next.dns())) {
            restart.add("dns");
        }
        if (!running.limits().equals(next.limits())) {
            restart.add("limits");
        }
        if (!running.relay().equals(next.relay())) {
            restart.add("relay");
        }
        if (!running.metrics().equals(next.metrics())) {
            restart.add("metrics");
        }
        if (!running.logging().equals(next.logging())) {
            restart.add("logging");
        }
        if (!running.timeouts().requestHead().equals(next.timeouts().requestHead())) {
            restart.add("timeouts.request-head");
        }
        if (!running.timeouts().idle().equals(next.timeouts().idle())) {
            restart.add("timeouts.idle");
        }
        if (!running.shutdown().equals(next.shutdown())) {
            restart.add("shutdown");
        }
        if (!running.transport().equals(next.transport())) {
            restart.add("transport");
        }
        if (running.ioThreads() != next.ioThreads()) {
            restart.add("io-threads");
        }
        if (!running.reload().equals(next.reload())) {
            restart.add("reload");
        }
        if (running.auth().verifyThreads() != next.auth().verifyThreads()) {
            restart.add("auth.basic.verify-threads");
        }
        if (running.auth().verifyQueue() != next.auth().verifyQueue()) {
            restart.add("auth.basic.verify-queue");
        }
        logAuth(next);
        return restart.stream().map(k -> "egress-proxy." + k).toList();
    }

    private static void logAuth(ProxyConfig c) {
        if (c.auth().enabled()) {
            log.info("proxy authentication: HTTP Basic, {} users from {}", c.auth().users().size(), c.auth().users().path());
        }
    }

    /** The configuration in force now. */
    public ProxyConfig liveConfig() {
        return live.get().config();
    }

    /**
     * What every {@code /metrics} answer waits for first (default: nothing); set before
     * {@link #start()}. Main passes the JVM meters it binds after start-up.
     */
    public ProxyServer scrapeWaitsFor(Supplier<? extends CompletionStage<?>> stage) {
        this.beforeScrape = stage;
        return this;
    }

    /**
     * Leaves {@code /readyz} at 503 after {@link #start} until {@link #markReady}: for a caller
     * that has more to set up before the proxy may count as ready (Main: the SIGHUP handler and
     * the config watcher, so that a reload sent at the first "ready" is never lost).
     */
    public ProxyServer holdReadiness() {
        this.holdReadiness = true;
        return this;
    }

    /** Ready from now on (after {@link #holdReadiness}); a drain that has begun stays unready. */
    public void markReady() {
        if (listener != null && listener.isOpen()) {
            ready = true;
        }
    }

    /** Binds both listeners; returns once they accept connections. */
    public ProxyServer start() throws IOException, InterruptedException {
        transport = Transport.choose(config.transport());
        int threads = config.ioThreads() > 0 ? config.ioThreads() : Math.max(1, Runtime.getRuntime().availableProcessors());
        workerGroup = new MultiThreadIoEventLoopGroup(threads, new DefaultThreadFactory("egress-io"),
                transport.ioHandlerFactory());
        resolvers = new DnsResolvers(config.dns(), transport.datagramChannel(), transport.socketChannel());
        // What the open-file limit allows, measured with the event loops and resolvers open.
        fds = FdBudget.ofThisProcess(config.limits().maxConnections());
        UpstreamConnector connector = new UpstreamConnector(config.limits(), config.relay().notsentLowat(),
                config.relay().upstreamReadsPerEvent(), metrics, resolvers,
                transport.socketChannel(), upstreamChannels, fds);
        status.fastFail(connector.fastFail());
        metrics.setConnectionsLimit(fds.maxConnections());
        if (fds.capsConfigured()) {
            log.warn("{}", fds.capWarning());
        }
        memory = MemoryBudget.of(PooledByteBufAllocator.DEFAULT, config.limits().memoryBudget()).start();
        metrics.registerMemoryBudget(memory::budget, memory::held, memory::pauses);
        auth = new ProxyAuth(metrics, config.auth().verifyThreads(), config.auth().verifyQueue());
        logAuth(config);
        ProxyServices services = new ProxyServices(config, live::get, metrics, deniedReport,
                new AccessLog(config.logging().accessFormat()), connector, new AtomicLong(), fds, memory, auth);

        listenerTls = new ListenerTls(config.listen().tls());
        initializer = new ProxyChannelInitializer(services, clientChannels, listenerTls::current);
        ProxyConfig.Limits limits = config.limits();
        ServerBootstrap b = new ServerBootstrap()
                // Accepting on an I/O event loop, not a separate acceptor thread: with the accept on
                // its own thread every new connection is handed to the I/O thread through a task
                // queue and a wake-up (an eventfd write and a context switch); here, with one I/O
                // thread, the accepted channel is registered in the same loop iteration. With more
                // threads the listener lives on one of them and spreads connections over all.
                .group(workerGroup)
                .channel(transport.serverChannel())
                .option(ChannelOption.SO_BACKLOG, 1024)
                .option(ChannelOption.SO_REUSEADDR, true)
                // Before each accepted socket is registered: see EpollInterest. A failed accept
                // (out of descriptors after all) is counted and retried shortly.
                .handler(new ChannelInitializer<Channel>() {
                    @Override
                    protected void initChannel(Channel ch) {
                        ch.pipeline().addLast(new EpollInterest.OnAccept(), new AcceptFailureHandler(metrics, fds));
                    }
                })
                .childOption(ChannelOption.ALLOW_HALF_CLOSURE, true)
                // No TCP_NODELAY child option: Netty's socket channels turn it on when they are
                // created; setting it again would cost a second setsockopt per connection.
                .childOption(ChannelOption.ALLOCATOR, PooledByteBufAllocator.DEFAULT)
                .childOption(ChannelOption.WRITE_BUFFER_WATER_MARK,
                        new WriteBufferWaterMark(limits.writeBufferLow(), limits.writeBufferHigh()))
                .childHandler(initializer);
        ChannelOption<Long> notSentLowAt = Channels.notSentLowAt(transport.socketChannel(), config.relay().notsentLowat());
        if (notSentLowAt != null) {
            b.childOption(notSentLowAt, (long) config.relay().notsentLowat());
        }
        // The admin listener comes up first so that /healthz answers and /readyz says 503 until
        // the proxy listener is bound.
        if (config.admin().enabled()) {
            // On its own event loop, not the I/O loops: a scrape must not delay a relay.
            admin = new AdminServer(config.admin(), () -> live.get().config().admin().clientsAllow(),
                    () -> live.get().config().admin().hosts(), registry, deniedReport,
                    status, metrics, () -> ready, beforeScrape, transport.ioHandlerFactory(), transport.serverChannel());
            admin.start();
        }
        listener = Channels.bindOrExplain(b, "proxy", config.listen().host(), config.listen().port());
        ready = !holdReadiness;
        // Workarounds that read Netty's private members, and what is lost where a Netty version lacks them.
        SpliceRelay.warnIfUnavailable(transport.name(), config.relay().splice());
        EpollInterest.warnIfUnavailable(transport.name());
        log.info("egress-proxy listening on {} (admin {}), transport {} with {} io threads, tunnels relayed {}, allowlist: {} entries{}",
                text(proxyAddress()), admin == null ? "disabled" : text(admin.address()), transport.name(), threads,
                relayText(config.relay(), transport.name()), config.allowlist().entries().size(),
                config.allowlist().presets().isEmpty() ? "" : " (presets " + String.join(", ", config.allowlist().presets()) + ")");
        log.info("budgets: {}; {}", fds.describe(), memory.describe());
        ProxyConfig.ProxyProtocol proxyProtocol = config.listen().proxyProtocol();
        if (proxyProtocol.enabled()) {
            log.info("listen.proxy-protocol = {}: every connection must begin with a PROXY header from {}; "
                    + "its source address is the client", proxyProtocol.mode().label(), proxyProtocol.from());
        }
        if (listenerTls.enabled()) {
            log.info("proxy listener speaks {}", ListenerTls.describe(config.listen().tls()));
        }
        if (!live.get().enforcing()) {
            log.warn("{}", REPORT_MODE_WARNING);
        }
        if (!config.policies().isEmpty()) {
            log.info("policies, first match wins: {}; other clients: the top-level allowlist (policy default)",
                    config.policies().stream().map(p -> p.name() + " (" + p.allowlist().entries().size() + " entries, "
                            + p.allowlist().mode().label() + ")").collect(java.util.stream.Collectors.joining(", ")));
        }
        return this;
    }

    private static String text(InetSocketAddress a) {
        return a.getAddress().isAnyLocalAddress() ? "*:" + a.getPort() : AddressText.of(a);
    }

    public InetSocketAddress proxyAddress() {
        return (InetSocketAddress) listener.localAddress();
    }

    public InetSocketAddress adminAddress() {
        return admin == null ? null : admin.address();
    }

    /** How tunnels relay their bytes here, for the start-up line. */
    private static String relayText(ProxyConfig.Relay relay, String transport) {
        if (!relay.splice()) {
            return "through user space (relay.splice = false)";
        }
        if (!transport.equals("epoll")) {
            return "through user space (splice needs the epoll transport)";
        }
        String unavailable = SpliceRelay.unavailableReason();
        if (unavailable != null) {
            return "through user space (splice unavailable: " + unavailable + ")";
        }
        return "with splice(2) after " + relay.spliceAfter() + " bytes per direction, on reads of at least "
                + relay.spliceMinRead() + " bytes";
    }

    /** The transport in use ("epoll", "nio" or "io_uring"); null before {@link #start()}. */
    public String transportName() {
        return transport == null ? null : transport.name();
    }

    public ProxyMetrics metrics() {
        return metrics;
    }

    public DeniedReport deniedReport() {
        return deniedReport;
    }

    /** What {@code /status} shows; the reloader records its outcomes here. */
    public StatusReport status() {
        return status;
    }

    /** Client connections open now (for tests and the drain). */
    public ChannelGroup clientChannels() {
        return clientChannels;
    }

    /** The guard that counts connections per client address; null before {@link #start()}. */
    public ClientGuardHandler clientGuard() {
        return initializer == null ? null : initializer.clientGuard();
    }

    /** Upstream connections open now. */
    public ChannelGroup upstreamChannels() {
        return upstreamChannels;
    }

    public boolean isReady() {
        return ready;
    }

    /**
     * Starts draining: {@code /readyz} turns 503 and the listener stops accepting, while open
     * connections carry on. {@link #close()} ends them.
     */
    public void stopAccepting() {
        ready = false;
        if (listener != null) {
            listener.close().syncUninterruptibly();
        }
    }

    /**
     * Drains: stops accepting, asks every client connection to finish (idle keep-alive connections
     * close at once, HTTP exchanges in flight close after their answer, tunnels run on) and waits up
     * to {@code grace} for them to end. Blocks; call it off the event loops. Returns the number of
     * connections still open when the grace ran out (0 for a clean drain).
     */
    public int drain(Duration grace) throws InterruptedException {
        stopAccepting();
        awaitAcceptedRegistrations();
        for (Channel ch : clientChannels) {
            ch.pipeline().fireUserEventTriggered(DrainEvent.INSTANCE);
        }
        long deadline = System.nanoTime() + grace.toNanos();
        while (!clientChannels.isEmpty() && System.nanoTime() < deadline) {
            TimeUnit.MILLISECONDS.sleep(50);
        }
        return clientChannels.size();
    }

    /**
     * Returns once every connection the listener accepted before it closed is in
     * {@link #clientChannels}. The listener's loop hands each accepted channel to another I/O loop
     * with a queued registration task, and the channel joins the group only when that task runs
     * (the initializer adds it); with several loops some of those tasks may still be queued when
     * the listener's close completes, and a drain that looked at the group then would never tell
     * those connections, and wait out its grace for them. A task queued now on every loop runs
     * after any registration queued there before the close.
     */
    private void awaitAcceptedRegistrations() {
        if (workerGroup == null) {
            return;
        }
        List<Future<?>> barriers = new ArrayList<>();
        for (EventExecutor loop : workerGroup) {
            barriers.add(loop.submit(() -> { }));
        }
        for (Future<?> barrier : barriers) {
            barrier.awaitUninterruptibly(5, TimeUnit.SECONDS);
        }
    }

    /** Stops accepting, closes every connection and stops the event loops. */
    @Override
    public void close() {
        ready = false;
        if (listener != null) {
            listener.close().syncUninterruptibly();
        }
        for (Channel ch : clientChannels) {
            // Queued on the channel's loop before the close below: a tunnel records why it ends.
            ch.pipeline().fireUserEventTriggered(ProxyClosingEvent.INSTANCE);
        }
        clientChannels.close().awaitUninterruptibly(5, TimeUnit.SECONDS);
        upstreamChannels.close().awaitUninterruptibly(5, TimeUnit.SECONDS);
        if (admin != null) {
            admin.close();
        }
        if (resolvers != null) {
            resolvers.close();
        }
        if (auth != null) {
            auth.close();
        }
        if (memory != null) {
            memory.close();
        }
        if (workerGroup != null) {
            workerGroup.shutdownGracefully(0, 5, TimeUnit.SECONDS).awaitUninterruptibly(10, TimeUnit.SECONDS);
        }
    }
}
