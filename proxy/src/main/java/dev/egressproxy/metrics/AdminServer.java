package dev.egressproxy.metrics;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.handler.PipelineNames;
import dev.egressproxy.util.Channels;
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
import io.netty.handler.codec.http.QueryStringDecoder;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * The admin listener, on its own port: {@code /metrics} (Prometheus text, or OpenMetrics when the
 * scraper asks for it), {@code /healthz} (the process is alive), {@code /readyz} (listener bound and
 * config loaded; 503 while starting or draining) and {@code /denied} (the JSON gap report;
 * {@code ?format=hocon}: the allowlist entries that would admit its refused destinations).
 */
public final class AdminServer implements AutoCloseable {

    private static final String OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    private static final String PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";

    private final ProxyConfig.Admin config;
    private final PrometheusMeterRegistry registry;
    private final DeniedReport report;
    private final BooleanSupplier ready;
    private final Supplier<? extends CompletionStage<?>> beforeScrape;
    private final EventLoopGroup boss;
    private final EventLoopGroup workers;
    private final Class<? extends ServerSocketChannel> channelClass;
    private Channel channel;

    /**
     * {@code beforeScrape} is asked before every {@code /metrics} answer, which waits (off the event
     * loop) until the stage it returns completes: the JVM meters that Main binds after start-up.
     */
    public AdminServer(ProxyConfig.Admin config, PrometheusMeterRegistry registry, DeniedReport report,
            BooleanSupplier ready, Supplier<? extends CompletionStage<?>> beforeScrape, EventLoopGroup boss,
            EventLoopGroup workers, Class<? extends ServerSocketChannel> channelClass) {
        this.channelClass = channelClass;
        this.beforeScrape = beforeScrape;
        this.config = config;
        this.registry = registry;
        this.report = report;
        this.ready = ready;
        this.boss = boss;
        this.workers = workers;
    }

    public void start() throws IOException, InterruptedException {
        AdminHandler handler = new AdminHandler();
        ServerBootstrap bootstrap = new ServerBootstrap()
                .group(boss, workers)
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
        channel = Channels.bindOrExplain(bootstrap, "admin", config.host(), config.port());
    }

    public InetSocketAddress address() {
        return (InetSocketAddress) channel.localAddress();
    }

    @Override
    public void close() {
        if (channel != null) {
            channel.close().syncUninterruptibly();
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
            if (!HttpMethod.GET.equals(req.method()) && !head) {
                respond(ctx, text(HttpResponseStatus.METHOD_NOT_ALLOWED, "only GET and HEAD\n"), keepAlive, head);
                return;
            }
            QueryStringDecoder uri = new QueryStringDecoder(req.uri());
            String path = uri.path();
            if (path.equals("/metrics")) {
                String accept = req.headers().get(HttpHeaderNames.ACCEPT, "");
                CompletableFuture<?> meters = beforeScrape.get().toCompletableFuture();
                if (meters.isDone()) {
                    respond(ctx, metrics(accept), keepAlive, head);
                } else {
                    // The request is released when this method returns: only what was read from it
                    // is carried over to the answer.
                    meters.whenComplete((ok, failed) -> ctx.executor().execute(
                            () -> respond(ctx, metrics(accept), keepAlive, head)));
                }
                return;
            }
            FullHttpResponse res = switch (path) {
                case "/healthz" -> text(HttpResponseStatus.OK, "ok\n");
                case "/readyz" -> ready.getAsBoolean()
                        ? text(HttpResponseStatus.OK, "ready\n")
                        : text(HttpResponseStatus.SERVICE_UNAVAILABLE, "not ready\n");
                case "/denied" -> denied(uri);
                default -> text(HttpResponseStatus.NOT_FOUND, "not found; try /metrics, /healthz, /readyz or /denied\n");
            };
            respond(ctx, res, keepAlive, head);
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

        private FullHttpResponse metrics(String accept) {
            String type = accept.contains("application/openmetrics-text") ? OPENMETRICS : PROMETHEUS_TEXT;
            return body(HttpResponseStatus.OK, type, registry.scrape(type));
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
}
