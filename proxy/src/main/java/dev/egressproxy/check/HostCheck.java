package dev.egressproxy.check;

import dev.egressproxy.config.ConfigSnapshot;
import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.FdBudget;
import dev.egressproxy.metrics.ProxyMetrics;
import dev.egressproxy.policy.AddressText;
import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.policy.AuthorityParser;
import dev.egressproxy.policy.MalformedTargetException;
import dev.egressproxy.policy.Target;
import dev.egressproxy.server.Transport;
import dev.egressproxy.upstream.DnsResolvers;
import dev.egressproxy.upstream.UpstreamException;
import dev.egressproxy.upstream.UpstreamConnector;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.EventLoop;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslHandler;
import io.netty.handler.ssl.SslHandshakeTimeoutException;
import io.netty.resolver.dns.DnsNameResolverTimeoutException;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateException;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedTrustManager;
import javax.net.ssl.X509TrustManager;

/**
 * {@code egress-proxy check hosts}: dials every allowlisted host exactly as the proxy would, from
 * this machine. The pieces are the proxy's own, built as {@code ProxyServer} builds them: the
 * transport the configuration picks, {@link DnsResolvers} with {@code dns.*} (no search list),
 * and {@link UpstreamConnector} under a {@link ConfigSnapshot} of the configuration, so that
 * {@code connect-to}, the address policy, Happy Eyeballs and {@code timeouts.connect} all apply.
 * On a port of {@code tunnels.tls-ports} a TLS handshake with SNI follows over the connected
 * channel. At most {@value #PARALLEL} hosts are checked at once, on a small event loop group.
 */
public final class HostCheck {

    static final int PARALLEL = 16;
    private static final int IO_THREADS = 2;

    private final ProxyConfig config;
    private final Trust trust;

    public HostCheck(ProxyConfig config, Trust trust) {
        this.config = config;
        this.trust = trust;
    }

    /** One host and port to dial, for the allowlist entry that names it. */
    record Dial(String entry, String host, int port) {
    }

    /**
     * The certificates the handshake trusts: the JDK's default trust store, the CAs of a PEM file,
     * or any certificate ({@code --insecure}: the handshake is still done and the certificate still
     * reported, but not validated).
     */
    public record Trust(X509TrustManager manager, boolean validates) {

        public static Trust jdkDefault() throws Exception {
            return new Trust(fromKeyStore(null), true);
        }

        public static Trust caFile(Path pem) throws Exception {
            KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
            ks.load(null, null);
            try (InputStream in = Files.newInputStream(pem)) {
                int i = 0;
                for (var cert : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                    ks.setCertificateEntry("ca" + i++, cert);
                }
                if (i == 0) {
                    throw new IllegalArgumentException(pem + " holds no PEM certificate");
                }
            }
            return new Trust(fromKeyStore(ks), true);
        }

        public static Trust insecure() {
            return new Trust(new X509TrustManager() {
                @Override
                public void checkClientTrusted(X509Certificate[] chain, String authType) {
                }

                @Override
                public void checkServerTrusted(X509Certificate[] chain, String authType) {
                }

                @Override
                public X509Certificate[] getAcceptedIssuers() {
                    return new X509Certificate[0];
                }
            }, false);
        }

        private static X509TrustManager fromKeyStore(KeyStore ks) throws Exception {
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(ks);
            for (TrustManager tm : tmf.getTrustManagers()) {
                if (tm instanceof X509TrustManager x) {
                    return x;
                }
            }
            throw new IllegalStateException("no X.509 trust manager");
        }
    }

    /**
     * The dials and skips for the allowlist in force and then each policy's, in their order; one
     * dial per host and port, one line per entry text.
     */
    static List<Object> plan(ProxyConfig config) {
        List<Object> plan = new ArrayList<>();
        Map<String, Boolean> seen = new LinkedHashMap<>();
        List<AllowlistEntry> all = new ArrayList<>(config.allowlist().entries());
        config.policies().forEach(p -> all.addAll(p.allowlist().entries()));
        Set<String> texts = new java.util.HashSet<>();
        for (AllowlistEntry e : all) {
            if (!texts.add(e.text())) {
                continue;
            }
            if (e instanceof AllowlistEntry.Cidr) {
                plan.add(HostResult.skip(e.text(), "CIDR entry: allows IP literals, names no host to dial"));
                continue;
            }
            AllowlistEntry.Host h = (AllowlistEntry.Host) e;
            // No port: the entry allows 443 to CONNECT (and 80 to plain HTTP); a pull tunnels to 443.
            int port = h.port() == AllowlistEntry.ANY_DEFAULT_PORT ? 443 : h.port();
            List<String> hosts = h.wildcard()
                    ? config.check().samples().stream().filter(h::nameMatches).toList()
                    : List.of(h.name());
            if (hosts.isEmpty()) {
                plan.add(HostResult.skip(e.text(), "wildcard entry: cannot be dialled; name hosts under it in check.samples"));
            }
            for (String host : hosts) {
                if (seen.putIfAbsent(host + ":" + port, true) == null) {
                    plan.add(new Dial(e.text(), host, port));
                }
            }
        }
        return plan;
    }

    /** Checks every dial of the plan, at most {@value #PARALLEL} at once; results in the plan's order. */
    public List<HostResult> run() throws Exception {
        List<Object> plan = plan(config);
        long dials = plan.stream().filter(Dial.class::isInstance).count();
        if (dials == 0) {
            return plan.stream().map(HostResult.class::cast).toList();
        }
        Transport transport = Transport.choose(config.transport());
        EventLoopGroup group = new MultiThreadIoEventLoopGroup(IO_THREADS, new DefaultThreadFactory("check-io", true),
                transport.ioHandlerFactory());
        DnsResolvers resolvers = new DnsResolvers(config.dns(), transport.datagramChannel(), transport.socketChannel());
        ChannelGroup channels = new DefaultChannelGroup("check", GlobalEventExecutor.INSTANCE);
        ExecutorService pool = Executors.newFixedThreadPool((int) Math.min(PARALLEL, dials),
                new DefaultThreadFactory("check", true));
        try {
            ProxyMetrics metrics = new ProxyMetrics(new SimpleMeterRegistry(), config.metrics().maxHostLabels(), "check");
            UpstreamConnector connector = new UpstreamConnector(config.limits(), 0, 1, metrics, resolvers,
                    transport.socketChannel(), channels, FdBudget.ofThisProcess(config.limits().maxConnections()));
            RecordingTrust recording = new RecordingTrust(trust.manager());
            SslContext ssl = SslContextBuilder.forClient()
                    .trustManager(recording)
                    .endpointIdentificationAlgorithm(trust.validates() ? "HTTPS" : null)
                    .build();
            // Every host is dialled for itself: no fast-fail, or a host sharing a dead address with
            // one checked before would be reported as skipped instead of timing out on its own.
            ProxyConfig.FastFail ff = config.upstream().fastFail();
            ConfigSnapshot live = ConfigSnapshot.of(config.withUpstream(new ProxyConfig.Upstream(
                    new ProxyConfig.FastFail(false, ff.timeouts(), ff.window(), ff.coolDown()))));
            Dialer dialer = new Dialer(live, connector, resolvers, group, ssl, recording);
            List<java.util.concurrent.Future<HostResult>> futures = new ArrayList<>();
            for (Object o : plan) {
                futures.add(o instanceof Dial d ? pool.submit(() -> dialer.check(d))
                        : java.util.concurrent.CompletableFuture.completedFuture((HostResult) o));
            }
            List<HostResult> results = new ArrayList<>();
            for (var f : futures) {
                results.add(f.get());
            }
            return results;
        } finally {
            pool.shutdownNow();
            channels.close().awaitUninterruptibly(5, TimeUnit.SECONDS);
            resolvers.close();
            group.shutdownGracefully(0, 1, TimeUnit.SECONDS).awaitUninterruptibly(5, TimeUnit.SECONDS);
        }
    }

    /** One dial: DNS (or connect-to), the connector, then the handshake on a TLS port. */
    private final class Dialer {
        private final ConfigSnapshot live;
        private final UpstreamConnector connector;
        private final DnsResolvers resolvers;
        private final EventLoopGroup group;
        private final SslContext ssl;
        private final RecordingTrust recording;
        private final Duration timeout;

        Dialer(ConfigSnapshot live, UpstreamConnector connector, DnsResolvers resolvers, EventLoopGroup group,
                SslContext ssl, RecordingTrust recording) {
            this.live = live;
            this.connector = connector;
            this.resolvers = resolvers;
            this.group = group;
            this.ssl = ssl;
            this.recording = recording;
            this.timeout = live.config().timeouts().connect();
        }

        HostResult check(Dial d) {
            Target target;
            try {
                target = AuthorityParser.parseConnectAuthority(d.host() + ":" + d.port());
            } catch (MalformedTargetException e) {
                return fail(d, "dns", List.of(), -1, -1, null, "not a valid host: " + e.getMessage());
            }
            EventLoop loop = group.next();
            InetSocketAddress pinned = live.config().destinations().connectTo().get(target.authority());
            String via = pinned != null ? "connect-to" : "dns";
            List<String> addresses = new ArrayList<>();
            List<String> forbidden = new ArrayList<>();
            long dnsMillis = -1;
            if (pinned != null) {
                addresses.add(AddressText.withPort(pinned.getAddress(), pinned.getPort()));
            } else {
                // The proxy's own resolver and cache: the connector's lookup just below is then
                // answered from the cache, and this one gives the table its addresses and time.
                long t0 = System.nanoTime();
                Future<List<InetSocketAddress>> lookup = resolvers.resolver(loop)
                        .resolveAll(InetSocketAddress.createUnresolved(target.host(), target.port()));
                boolean done = lookup.awaitUninterruptibly(live.config().dns().queryTimeout().toMillis() * 3 + 1000);
                dnsMillis = millisSince(t0);
                if (!done || !lookup.isSuccess()) {
                    return fail(d, via, addresses, dnsMillis, -1, null, dnsText(done ? lookup.cause() : null));
                }
                for (InetSocketAddress a : lookup.getNow()) {
                    String text = AddressText.of(a.getAddress());
                    addresses.add(text);
                    Optional<String> why = live.policy().forbiddenAddress(a.getAddress());
                    why.ifPresent(w -> forbidden.add(text + " (" + w + ")"));
                }
            }
            long t1 = System.nanoTime();
            Future<Channel> connect = connector.connect(live, target, loop, () -> new ChannelInitializer<Channel>() {
                @Override
                protected void initChannel(Channel ch) {
                    // Handlers come after the connect, when the handshake starts.
                }
            });
            // The connector ends every attempt by timeouts.connect; the margin covers its scheduling.
            boolean connected = connect.awaitUninterruptibly(timeout.toMillis() + 5000);
            long connectMillis = millisSince(t1);
            if (!connected) {
                connect.cancel(false);
                return fail(d, via, addresses, dnsMillis, connectMillis, null, "connect timed out after " + human(timeout));
            }
            if (!connect.isSuccess()) {
                if (connect.cause() instanceof UpstreamException u && u.addressForbidden()) {
                    return fail(d, via, addresses, dnsMillis, -1, null, "resolves to a forbidden address: "
                            + (forbidden.isEmpty() ? u.getMessage() : String.join(", ", forbidden)));
                }
                return fail(d, via, addresses, dnsMillis, connectMillis, null, connectText(connect.cause()));
            }
            Channel ch = connect.getNow();
            String connectedTo = AddressText.of(ch.remoteAddress());
            String note = forbidden.isEmpty() ? "" : "; not dialled: " + String.join(", ", forbidden);
            try {
                if (!live.config().tunnels().tlsPorts().contains(d.port())) {
                    return new HostResult(d.entry(), d.host(), d.port(), via, addresses, dnsMillis, connectMillis,
                            connectedTo, null, HostResult.Verdict.PASS, "connected (not a TLS port)" + note);
                }
                HostResult.Tls tls = handshake(ch, d);
                if (!tls.ok()) {
                    return new HostResult(d.entry(), d.host(), d.port(), via, addresses, dnsMillis, connectMillis,
                            connectedTo, tls, HostResult.Verdict.FAIL, "TLS: " + tls.error() + note);
                }
                return new HostResult(d.entry(), d.host(), d.port(), via, addresses, dnsMillis, connectMillis,
                        connectedTo, tls, HostResult.Verdict.PASS, "TLS " + tls.protocol()
                        + (trust.validates() ? "" : ", certificate not validated (--insecure)") + note);
            } finally {
                ch.close().awaitUninterruptibly(2000);
            }
        }

        private HostResult.Tls handshake(Channel ch, Dial d) {
            SslHandler handler = ssl.newHandler(ch.alloc(), d.host(), d.port());
            handler.setHandshakeTimeoutMillis(timeout.toMillis());
            SSLEngine engine = handler.engine();
            try {
                ch.pipeline().addLast(handler, new Sink());
                ch.config().setAutoRead(true);
                Future<Channel> hs = handler.handshakeFuture();
                if (!hs.awaitUninterruptibly(timeout.toMillis() + 5000)) {
                    return tls(engine, null, "handshake timed out after " + human(timeout));
                }
                if (!hs.isSuccess()) {
                    return tls(engine, null, tlsText(hs.cause(), d.host()));
                }
                return tls(engine, engine.getSession().getProtocol(), null);
            } finally {
                recording.forget(engine);
            }
        }

        private HostResult.Tls tls(SSLEngine engine, String protocol, String error) {
            X509Certificate[] chain = recording.chain(engine);
            X509Certificate leaf = chain == null || chain.length == 0 ? null : chain[0];
            return new HostResult.Tls(error == null, protocol, leaf == null ? null : leaf.getSubjectX500Principal().getName(),
                    leaf == null ? null : leaf.getIssuerX500Principal().getName(),
                    leaf == null ? null : leaf.getNotAfter().toInstant(), error);
        }

        private HostResult fail(Dial d, String via, List<String> addresses, long dnsMillis, long connectMillis,
                String connectedTo, String reason) {
            return new HostResult(d.entry(), d.host(), d.port(), via, addresses, dnsMillis, connectMillis, connectedTo,
                    null, HostResult.Verdict.FAIL, reason);
        }
    }

    private static long millisSince(long t0) {
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
    }

    static String human(Duration d) {
        long ms = d.toMillis();
        return ms % 1000 == 0 ? (ms / 1000) + "s" : ms + "ms";
    }

    private static String dnsText(Throwable cause) {
        for (Throwable t = cause; t != null; t = t.getCause()) {
            if (t instanceof DnsNameResolverTimeoutException) {
                return "DNS lookup timed out";
            }
        }
        return cause == null ? "DNS lookup timed out" : "DNS: no such host";
    }

    private String connectText(Throwable cause) {
        if (cause instanceof UpstreamException u && u.failureCause() != null) {
            return switch (u.failureCause()) {
                case TIMEOUT -> "connect timed out after " + human(timeout());
                case REFUSED -> "connection refused";
                case RESET -> "connection reset";
                case UNREACHABLE -> "unreachable: no route to host";
                case DNS -> "DNS: no such host";
                case UNREACHABLE_RECENTLY -> "skipped: timed out recently (fast-fail)";
            };
        }
        return String.valueOf(cause.getMessage());
    }

    private Duration timeout() {
        return config.timeouts().connect();
    }

    /** A handshake failure in a few words: the certificate's problem where there is one. */
    static String tlsText(Throwable cause, String host) {
        for (Throwable t = cause; t != null; t = t.getCause()) {
            if (t instanceof SslHandshakeTimeoutException) {
                return "handshake timed out";
            }
            if (t instanceof CertificateExpiredException) {
                return "certificate expired";
            }
            String m = String.valueOf(t.getMessage());
            if (m.contains("unable to find valid certification path") || m.contains("PKIX path")) {
                return "certificate not trusted (its issuer is not in the trust store)";
            }
            if (m.contains("No subject alternative") || m.contains("No name matching")) {
                return "certificate does not name " + host;
            }
        }
        Throwable root = cause;
        while (root.getCause() != null) {
            root = root.getCause();
        }
        return root.getClass().getSimpleName() + ": " + root.getMessage();
    }

    /** Releases whatever arrives after the handshake; its failure is read from the handshake future. */
    private static final class Sink extends ChannelInboundHandlerAdapter {
        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            ReferenceCountUtil.release(msg);
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            ctx.close();
        }
    }

    /**
     * Remembers the chain each handshake was shown (also one that does not validate, so that the
     * report names its subject and expiry), then lets the delegate decide.
     */
    static final class RecordingTrust extends X509ExtendedTrustManager {
        private final X509TrustManager delegate;
        private final Map<SSLEngine, X509Certificate[]> chains = new ConcurrentHashMap<>();

        RecordingTrust(X509TrustManager delegate) {
            this.delegate = delegate;
        }

        X509Certificate[] chain(SSLEngine engine) {
            return chains.get(engine);
        }

        void forget(SSLEngine engine) {
            chains.remove(engine);
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
            chains.put(engine, chain.clone());
            if (delegate instanceof X509ExtendedTrustManager x) {
                // Also checks the name against the SNI host (endpoint identification "HTTPS").
                x.checkServerTrusted(chain, authType, engine);
            } else {
                delegate.checkServerTrusted(chain, authType);
            }
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
            throw new CertificateException("only SSLEngine handshakes are checked");
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException {
            throw new CertificateException("only SSLEngine handshakes are checked");
        }

        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
            throw new CertificateException("a client check");
        }

        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
            throw new CertificateException("a client check");
        }

        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType) throws CertificateException {
            throw new CertificateException("a client check");
        }

        @Override
        public X509Certificate[] getAcceptedIssuers() {
            return delegate.getAcceptedIssuers();
        }
    }
}
