package dev.egressproxy.metrics;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.handler.ErrorResponses;
import dev.egressproxy.handler.PipelineNames;
import dev.egressproxy.policy.CidrBlock;
import dev.egressproxy.util.Channels;
import dev.egressproxy.util.LogThrottle;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.IoHandlerFactory;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.socket.ServerSocketChannel;
import io.netty.channel.socket.SocketChannel;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The admin listener, on its own port: {@code /metrics} (Prometheus text, or OpenMetrics when the
 * scraper asks for it), {@code /healthz} (the process is alive), {@code /readyz} (listener bound and
 * config loaded; 503 while starting or draining), {@code /denied} (the JSON gap report;
 * {@code ?format=hocon}: the allowlist entries that would admit its refused destinations),
 * {@code /status} (the JSON {@link StatusReport}) and {@code /} (the status page, which reads those
 * two; its script and style are {@code /status.js} and {@code /status.css}, all three resources in
 * the jar, served with a Content-Security-Policy that lets the page load nothing else).
 *
 * <p>Who may read it: {@code /healthz} and {@code /readyz} answer every address (kubelet probes come
 * from the node's address, which is outside the private ranges on some clouds, and the two answers
 * carry nothing but "alive" and "ready"); every other path answers only addresses in
 * {@code admin.clients.allow} (read per request, so a reload applies to the next request) and 403
 * others, counted as {@code egress_proxy_admin_rejected_total} and logged at most every ten seconds;
 * and only under a {@code Host} that is one of the listener's names ({@link AdminHosts}, {@code
 * admin.hosts}), else 403, counted as {@code egress_proxy_admin_host_rejected_total}.
 *
 * <p>Threads: the listener and its connections run on an event loop of their own (one thread,
 * {@code egress-admin}), never on the I/O loops that relay tunnels, and {@code /metrics} is rendered
 * on one more thread ({@code egress-admin-render}), so a long scrape delays neither a relay nor a
 * probe. Scrapes are rendered one at a time.
 */
public final class AdminServer implements AutoCloseable {

    private static final Logger log = LoggerFactory.getLogger(AdminServer.class);
    private static final String OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    private static final String PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";
    private static final String REFUSED = "egress-proxy admin: your address may not read this path; only /healthz"
            + " and /readyz answer every address (egress-proxy.admin.clients.allow)\n";
    private static final String REFUSED_REASON = "admin_client_not_allowed";
    private static final String HOST_REFUSED = "egress-proxy admin: this listener does not answer to the name in your"
            + " Host header (a defence against DNS rebinding); use its IP address, or add the name to"
            + " egress-proxy.admin.hosts\n";
    private static final String HOST_REFUSED_REASON = "admin_host_not_allowed";
    /**
     * The status page may run its own script and style and fetch from this listener, nothing else:
     * no inline script (a host name that slipped into the markup could not run), no other origin,
     * no framing.
     */
    static final String PAGE_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            + "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    private static final Page STATUS_HTML = Page.load("status.html", "text/html; charset=utf-8");
    private static final Page STATUS_JS = Page.load("status.js", "text/javascript; charset=utf-8");
    private static final Page STATUS_CSS = Page.load("status.css", "text/css; charset=utf-8");

    private final ProxyConfig.Admin config;
    private final Supplier<List<CidrBlock>> allow;
    private final Supplier<List<String>> hosts;
    /** This machine's host name, which the listener always answers to (null when unknown). */
    private final String machine = AdminHosts.machineName();
    private final PrometheusMeterRegistry registry;
    private final DeniedReport report;
    private final StatusReport status;
    private final ProxyMetrics metrics;
    private final BooleanSupplier ready;
    private final Supplier<? extends CompletionStage<?>> beforeScrape;
    private final IoHandlerFactory ioHandlerFactory;
    private final Class<? extends ServerSocketChannel> channelClass;
    private final LogThrottle refusalLog = new LogThrottle(10, TimeUnit.SECONDS);
    private final LogThrottle hostRefusalLog = new LogThrottle(10, TimeUnit.SECONDS);
    private EventLoopGroup group;
    private ExecutorService render;
    private Channel channel;

    /**
     * {@code allow} and {@code hosts} are asked on every request to a path other than the probes
     * ({@code admin.clients.allow} and {@code admin.hosts} of the configuration in force).
     * {@code beforeScrape} is asked before every {@code /metrics} answer, which waits (off the event
     * loop) until the stage it returns completes: the JVM meters that Main binds after start-up.
     * The event loop is built with {@code ioHandlerFactory}, the proxy's transport, and the
     * listener is a {@code channelClass}.
     */
    public AdminServer(ProxyConfig.Admin config, Supplier<List<CidrBlock>> allow, Supplier<List<String>> hosts,
            PrometheusMeterRegistry registry, DeniedReport report, StatusReport status, ProxyMetrics metrics,
            BooleanSupplier ready, Supplier<? extends CompletionStage<?>> beforeScrape,
            IoHandlerFactory ioHandlerFactory, Class<? extends ServerSocketChannel> channelClass) {
        this.config = config;
        this.allow = allow;
        this.hosts = hosts;
        this.registry = registry;
        this.report = report;
        this.status = status;
        this.metrics = metrics;
        this.ready = ready;
        this.beforeScrape = beforeScrape;
        this.ioHandlerFactory = ioHandlerFactory;
        this.channelClass = channelClass;
    }

    public void start() throws IOException, InterruptedException {
        group = new MultiThreadIoEventLoopGroup(1, new DefaultThreadFactory("egress-admin"), ioHandlerFactory);
        render = Executors.newSingleThreadExecutor(new DefaultThreadFactory("egress-admin-render", true));
        AdminHandler handler = new AdminHandler();
        ServerBootstrap bootstrap = new ServerBootstrap()
                .group(group)
                .channel(channelClass)
                .option(ChannelOption.SO_REUSEADDR, true)
                .childHandler(new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                        ch.pipeline()
                                .addLast(PipelineNames.ADMIN_HTTP_CODEC, new HttpServerCodec())
                                .addLast(PipelineNames.ADMIN_AGGREGATOR, new HttpObjectAggregator(8192))
                                .addLast(PipelineNames.ADMIN_HANDLER, handler);
                    }
                });
        try {
            channel = Channels.bindOrExplain(bootstrap, "admin", config.host(), config.port());
        } catch (IOException | InterruptedException | RuntimeException e) {
            close();
            throw e;
        }
    }

    public InetSocketAddress address() {
        return (InetSocketAddress) channel.localAddress();
    }

    @Override
    public void close() {
        if (channel != null) {
            channel.close().syncUninterruptibly();
        }
        if (render != null) {
            render.shutdownNow();
        }
        if (group != null) {
            group.shutdownGracefully(0, 5, TimeUnit.SECONDS).awaitUninterruptibly(10, TimeUnit.SECONDS);
        }
    }

    private static boolean isProbe(String path) {
        return path.equals("/healthz") || path.equals("/readyz");
    }

    /** Counts a refusal, and logs it with those since the last line at most every ten seconds. */
    private void refused(InetAddress client, HttpMethod method, String path) {
        metrics.adminRejected();
        LogThrottle.Due due = refusalLog.event();
        if (due != null) {
            log.warn("admin listener refused {} request(s) in the last {} s from addresses outside "
                    + "egress-proxy.admin.clients.allow (403); the latest: {} {} from {}", due.events(),
                    due.seconds(), method,
                    path.length() > 64 ? path.substring(0, 64) + "..." : path, client.getHostAddress());
        }
    }

    /** Counts a refusal for the Host header, and logs it as {@link #refused} does. */
    private void hostRefused(InetAddress client, String host) {
        metrics.adminHostRejected();
        LogThrottle.Due due = hostRefusalLog.event();
        if (due != null) {
            String shown = host.length() > 64 ? host.substring(0, 64) + "..." : host;
            log.warn("admin listener refused {} request(s) in the last {} s for a Host none of its names "
                    + "(IP addresses, localhost, {}, egress-proxy.admin.hosts) (403); the latest: Host {} from {}; "
                    + "a name the monitoring uses belongs in egress-proxy.admin.hosts", due.events(), due.seconds(),
                    machine == null ? "this machine's name" : machine,
                    shown.replaceAll("[^\\x21-\\x7e]", "?"), client.getHostAddress());
        }
    }

    /** Routes admin requests. Stateless, so one instance serves every admin connection. */
    @Sharable
    private final class AdminHandler extends SimpleChannelInboundHandler<FullHttpRequest> {

        @Override
        protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest req) {
            boolean keepAlive = HttpUtil.isKeepAlive(req);
            boolean head = HttpMethod.HEAD.equals(req.method());
            if (!req.decoderResult().isSuccess()) {
                respond(ctx, text(HttpResponseStatus.BAD_REQUEST, "bad request\n"), keepAlive, head);
                return;
            }
            QueryStringDecoder uri = new QueryStringDecoder(req.uri());
            String path = uri.path();
            InetAddress client = ((InetSocketAddress) ctx.channel().remoteAddress()).getAddress();
            if (!isProbe(path) && !CidrBlock.anyContains(allow.get(), client)) {
                refused(client, req.method(), path);
                forbidden(ctx, REFUSED, REFUSED_REASON, head);
                return;
            }
            String host = req.headers().get(HttpHeaderNames.HOST);
            if (!isProbe(path) && !AdminHosts.accepts(host, hosts.get(), machine)) {
                hostRefused(client, host);
                forbidden(ctx, HOST_REFUSED, HOST_REFUSED_REASON, head);
                return;
            }
            if (!HttpMethod.GET.equals(req.method()) && !head) {
                respond(ctx, text(HttpResponseStatus.METHOD_NOT_ALLOWED, "only GET and HEAD\n"), keepAlive, head);
                return;
            }
            if (path.equals("/metrics")) {
                scrape(ctx, req.headers().get(HttpHeaderNames.ACCEPT, ""), keepAlive, head);
                return;
            }
            FullHttpResponse res = switch (path) {
                case "/healthz" -> text(HttpResponseStatus.OK, "ok\n");
                case "/readyz" -> ready.getAsBoolean()
                        ? text(HttpResponseStatus.OK, "ready\n")
                        : text(HttpResponseStatus.SERVICE_UNAVAILABLE, "not ready\n");
                case "/denied" -> denied(uri);
                case "/status" -> uncached(body(HttpResponseStatus.OK, "application/json", status.toJson()));
                case "/" -> page(STATUS_HTML);
                case "/status.js" -> page(STATUS_JS);
                case "/status.css" -> page(STATUS_CSS);
                default -> text(HttpResponseStatus.NOT_FOUND,
                        "not found; try /, /status, /metrics, /healthz, /readyz or /denied\n");
            };
            respond(ctx, res, keepAlive, head);
        }

        /**
         * Renders on the render thread once the late meters are bound, and answers on the channel's
         * loop. The request is released when channelRead0 returns: only what was read from it is
         * carried over. The connection reads nothing more until the answer is written, so that a
         * client cannot queue scrapes, and a request sent after it is not answered first.
         */
        private void scrape(ChannelHandlerContext ctx, String accept, boolean keepAlive, boolean head) {
            String type = accept.contains("application/openmetrics-text") ? OPENMETRICS : PROMETHEUS_TEXT;
            ctx.channel().config().setAutoRead(false);
            beforeScrape.get().toCompletableFuture()
                    .handleAsync((ok, failed) -> registry.scrape(type), render)
                    .whenComplete((text, failed) -> ctx.executor().execute(() -> {
                        FullHttpResponse res;
                        if (failed == null) {
                            res = body(HttpResponseStatus.OK, type, text);
                        } else {
                            log.warn("admin: rendering /metrics failed", failed);
                            res = text(HttpResponseStatus.INTERNAL_SERVER_ERROR, "rendering the metrics failed\n");
                        }
                        respond(ctx, res, keepAlive, head);
                        ctx.channel().config().setAutoRead(true);
                    }));
        }

        private void respond(ChannelHandlerContext ctx, FullHttpResponse res, boolean keepAlive, boolean head) {
            HttpUtil.setKeepAlive(res, keepAlive);
            if (head) {
                res.content().clear();
            }
            var f = ctx.writeAndFlush(res);
            if (!keepAlive) {
                f.addListener(ChannelFutureListener.CLOSE);
            }
        }

        /** {@code /denied} as JSON, or with {@code ?format=hocon} as allowlist entries to paste. */
        private FullHttpResponse denied(QueryStringDecoder uri) {
            String format = uri.parameters().getOrDefault("format", List.of("json")).get(0);
            return switch (format) {
                case "json" -> body(HttpResponseStatus.OK, "application/json", report.toJson());
                case "hocon" -> text(HttpResponseStatus.OK, report.toHocon());
                default -> text(HttpResponseStatus.BAD_REQUEST, "format must be json or hocon\n");
            };
        }

        /** A file of the status page, with the headers that keep a browser from doing more with it. */
        private FullHttpResponse page(Page page) {
            FullHttpResponse res = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, HttpResponseStatus.OK,
                    Unpooled.wrappedBuffer(page.bytes()));
            res.headers().set(HttpHeaderNames.CONTENT_TYPE, page.type())
                    .setInt(HttpHeaderNames.CONTENT_LENGTH, page.bytes().length)
                    .set(HttpHeaderNames.CONTENT_SECURITY_POLICY, PAGE_POLICY)
                    .set(HttpHeaderNames.X_FRAME_OPTIONS, "DENY")
                    .set("Referrer-Policy", "no-referrer");
            return uncached(res);
        }

        /** The answer is now's; a browser keeps no copy and takes it for nothing but its type. */
        private FullHttpResponse uncached(FullHttpResponse res) {
            res.headers().set(HttpHeaderNames.CACHE_CONTROL, "no-store")
                    .set("X-Content-Type-Options", "nosniff");
            return res;
        }

        /** A 403 with {@code reason} in X-Egress-Proxy-Reason; the connection closes after it. */
        private void forbidden(ChannelHandlerContext ctx, String text, String reason, boolean head) {
            FullHttpResponse res = text(HttpResponseStatus.FORBIDDEN, text);
            res.headers().set(ErrorResponses.REASON_HEADER, reason);
            respond(ctx, res, false, head);
        }

        private FullHttpResponse text(HttpResponseStatus status, String text) {
            return body(status, "text/plain; charset=utf-8", text);
        }

        private FullHttpResponse body(HttpResponseStatus status, String type, String text) {
            ByteBuf content = Unpooled.copiedBuffer(text, StandardCharsets.UTF_8);
            FullHttpResponse res = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status, content);
            res.headers().set(HttpHeaderNames.CONTENT_TYPE, type)
                    .setInt(HttpHeaderNames.CONTENT_LENGTH, content.readableBytes());
            return res;
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            ctx.close();
        }
    }

    /** A file of the status page, read from the jar once. */
    private record Page(byte[] bytes, String type) {
        static Page load(String name, String type) {
            try (InputStream in = AdminServer.class.getResourceAsStream("/admin/" + name)) {
                if (in == null) {
                    throw new IllegalStateException("the jar lacks /admin/" + name);
                }
                return new Page(in.readAllBytes(), type);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
