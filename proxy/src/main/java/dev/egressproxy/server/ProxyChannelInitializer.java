package dev.egressproxy.server;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.guard.ClientGuardHandler;
import dev.egressproxy.guard.ConnectionLimitHandler;
import dev.egressproxy.guard.HeadGuardHandler;
import dev.egressproxy.guard.IdleCloseHandler;
import dev.egressproxy.guard.ProxyProtocolHandler;
import dev.egressproxy.guard.RequestHeadTimeoutHandler;
import dev.egressproxy.guard.TlsHandshakeHandler;
import dev.egressproxy.handler.PipelineNames;
import dev.egressproxy.handler.ProxyServices;
import dev.egressproxy.handler.RequestPolicyHandler;
import dev.egressproxy.http.HttpForwardHandler;
import dev.egressproxy.policy.CidrBlock;
import dev.egressproxy.tunnel.ConnectTunnelHandler;
import dev.egressproxy.util.LogThrottle;
import io.netty.channel.ChannelInboundHandler;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.handler.codec.haproxy.HAProxyMessageDecoder;
import io.netty.handler.codec.http.HttpDecoderConfig;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.flow.FlowControlHandler;
import java.util.List;
import java.util.concurrent.TimeUnit;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslHandler;
import java.util.function.Supplier;

/**
 * Builds a client connection's pipeline. In order:
 *
 * <pre>
 *  proxy-protocol-decoder  listen.proxy-protocol only: read the PROXY header  (removed once read)
 *  proxy-protocol    listen.proxy-protocol only: judge it, set the client   (removed once judged)
 *  tls               listen.tls only: Netty's SslHandler, handshake timeout timeouts.request-head
 *  tls-handshake     listen.tls only: certificate identities; count, log, close a failed handshake
 *                    (removes itself after a successful handshake)
 *  connection-limit  count; 503 past the connection cap or at the memory budget
 *  client-guard      clients.allow and clients.max-connections-per-client (with PROXY protocol:
 *                    decided once the header is read, see ClientGuardHandler#afterProxyHeader)
 *  idle              close after timeouts.idle without traffic
 *  head-guard        400 on obsolete line folding                   (removed for a tunnel)
 *  http-codec        HTTP/1.x decode + encode, head size limits      (removed for a tunnel)
 *  flow-control      hold decoded messages while reading is paused  (removed for a tunnel)
 *  request-head-timeout  408 if no complete head in time          (removed for a tunnel)
 *  request-policy    parse the destination, proxy authentication (auth.basic),
 *                    allowlist decision                              (removed for a tunnel)
 *  connect-tunnel    CONNECT: connect upstream, 200, then relay     (replaced by relay, and for a
 *                    TLS port by sni-check in front of it until the ClientHello is judged)
 *  http-forward      absolute-form requests: forward and stream     (removed for a tunnel)
 * </pre>
 *
 * After a CONNECT succeeds the pipeline is {@code connection-limit, client-guard, idle, relay}
 * (with {@code tls} in front on the TLS listener). The TLS handler comes before the guards so that
 * their refusals are encrypted too (it holds writes until the handshake is done); a handler added
 * later with {@code addFirst} (a PROXY protocol decoder) goes in front of it.
 */
public final class ProxyChannelInitializer extends ChannelInitializer<SocketChannel> {

    /**
     * Bytes of v2 TLVs a PROXY header may carry beyond the addresses (a balancer's unique id, VPC
     * endpoint id, TLS details): a larger header is refused as malformed, so a connection waiting
     * for its header never holds more than about 4 KiB.
     */
    static final int MAX_PROXY_TLV_BYTES = 4096;

    private final ProxyServices services;
    private final ConnectionLimitHandler connectionLimit;
    private final ClientGuardHandler clientGuard;
    /** The listener's PROXY protocol settings as started (the mode needs a restart). */
    private final ProxyConfig.ProxyProtocol proxyProtocol;
    /** {@link #clientGuard}, or its variant that decides once the PROXY header is read. */
    private final ChannelInboundHandler guard;
    private final LogThrottle proxyProtocolLog = new LogThrottle(10, TimeUnit.SECONDS);
    private final ChannelGroup channels;

    private final Supplier<SslContext> tls;
    private final TlsHandshakeHandler tlsHandshake;

    public ProxyChannelInitializer(ProxyServices services, ChannelGroup channels) {
        this(services, channels, () -> null);
    }

    /** {@code tls} gives the listener's TLS context for each new connection, or null for plain HTTP. */
    public ProxyChannelInitializer(ProxyServices services, ChannelGroup channels, Supplier<SslContext> tls) {
        this.services = services;
        this.channels = channels;
        this.tls = tls;
        this.tlsHandshake = new TlsHandshakeHandler(services.metrics());
        this.connectionLimit = new ConnectionLimitHandler(services.metrics(), services.fds(), services.memory());
        this.clientGuard = new ClientGuardHandler(() -> services.live().get().config().clients(), services.metrics());
        this.proxyProtocol = services.config().listen().proxyProtocol();
        this.guard = proxyProtocol.enabled() ? clientGuard.afterProxyHeader() : clientGuard;
    }

    /**
     * listen.proxy-protocol-from as reloaded; if a reload turned the header off (which needs a
     * restart), the listener, still reading headers, keeps the list it started with.
     */
    private List<CidrBlock> proxyProtocolFrom() {
        ProxyConfig.ProxyProtocol live = services.live().get().config().listen().proxyProtocol();
        return live.enabled() ? live.from() : proxyProtocol.from();
    }

    /** The per-client guard shared by every connection (its counts, for tests). */
    public ClientGuardHandler clientGuard() {
        return clientGuard;
    }

    @Override
    protected void initChannel(SocketChannel ch) {
        channels.add(ch);
        ChannelPipeline p = ch.pipeline();
        // First, so that its header timer is armed before the request-head timer (same duration).
        addProxyProtocolHandlers(p);
        // Then TLS: behind the PROXY header, in front of everything that reads or writes HTTP.
        addTlsHandlers(p, ch);

        addConnectionHandlers(p);
        addHttpHandlers(p);
        addProxyHandlers(p);
    }

    /**
     * With listen.proxy-protocol, the header decoder and its judge at the very front: the header
     * arrives before any other byte, in clear even on a TLS listener, whose SslHandler goes right
     * behind {@link PipelineNames#PROXY_PROTOCOL}.
     */
    private void addProxyProtocolHandlers(ChannelPipeline p) {
        if (!proxyProtocol.enabled()) {
            return;
        }
        p.addFirst(PipelineNames.PROXY_PROTOCOL, new ProxyProtocolHandler(proxyProtocol.mode(), this::proxyProtocolFrom,
                services.config().timeouts().requestHead(), services.metrics(), proxyProtocolLog));
        p.addFirst(PipelineNames.PROXY_PROTOCOL_DECODER, new HAProxyMessageDecoder(MAX_PROXY_TLV_BYTES));
    }

    private void addTlsHandlers(ChannelPipeline p, SocketChannel ch) {
        SslContext context = tls.get();
        if (context == null) {
            return;
        }
        SslHandler handler = context.newHandler(ch.alloc());
        handler.setHandshakeTimeoutMillis(services.config().timeouts().requestHead().toMillis());
        p.addLast(PipelineNames.TLS, handler);
        p.addLast(PipelineNames.TLS_HANDSHAKE, tlsHandshake);
    }

    private void addConnectionHandlers(ChannelPipeline p) {
        p.addLast(PipelineNames.CONNECTION_LIMIT, connectionLimit);
        p.addLast(PipelineNames.CLIENT_GUARD, guard);
        p.addLast(PipelineNames.IDLE, new IdleCloseHandler(services.config().timeouts().idle(), services.metrics()));
    }

    private void addHttpHandlers(ChannelPipeline p) {
        int maxHead = services.config().limits().maxRequestHead();
        HttpDecoderConfig decoder = new HttpDecoderConfig()
                .setMaxInitialLineLength(maxHead)
                .setMaxHeaderSize(maxHead)
                .setMaxChunkSize(64 * 1024)
                .setValidateHeaders(true)
                // Request smuggling defences: CRLF only, RFC 9112 Transfer-Encoding rules, a single
                // Content-Length. RequestPolicyHandler adds what the decoder does not check.
                .setStrictLineParsing(true)
                .setUseRfc9112TransferEncoding(true)
                .setAllowDuplicateContentLengths(false);
        p.addLast(PipelineNames.HEAD_GUARD, new HeadGuardHandler(services, maxHead));
        p.addLast(PipelineNames.HTTP_CODEC, new HttpServerCodec(decoder));
        p.addLast(PipelineNames.FLOW_CONTROL, new FlowControlHandler());
        p.addLast(PipelineNames.REQUEST_HEAD_TIMEOUT,
                new RequestHeadTimeoutHandler(services.config().timeouts().requestHead(), services.metrics()));
    }

    private void addProxyHandlers(ChannelPipeline p) {
        p.addLast(PipelineNames.REQUEST_POLICY, new RequestPolicyHandler(services));
        p.addLast(PipelineNames.CONNECT_TUNNEL, new ConnectTunnelHandler(services));
        p.addLast(PipelineNames.HTTP_FORWARD, new HttpForwardHandler(services));
    }
}
